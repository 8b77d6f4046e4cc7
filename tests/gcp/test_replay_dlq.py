"""``pipelined replay gs://...`` and ``pipelined dlq`` on the emulators: the replay through the
daemon is a duplicate unless forced, and a forced one says so in its Firestore document; the
dead letters are peeked without being consumed and redriven to the subscription's topic."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import grpc
import pytest
from google.pubsub_v1 import types as pubsub
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

from pipelined import samples
from pipelined.cli import main
from pipelined.gcp.local import GcpStack
from tests.gcp.helpers import (
    backlog,
    drain_tap,
    ledger_document,
    notifications,
    object_ids,
    point_at,
    put,
    tap,
)
from tests.integration.helpers import running_daemon

pytestmark = pytest.mark.timeout(180)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_replay_publishes_one_notification_per_object(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_at(gcp, monkeypatch)
    generation = put(gcp, "in/a b+1.png", b"a")
    put(gcp, "pipelined/in/a b+1.png/1/thumb-256.webp", b"own")
    tapped = tap(gcp)
    code, summary = run_json(capsys, "replay", f"gs://{gcp.input_bucket}", "--force", "--json")
    assert code == 0, summary
    assert (summary["listed"], summary["sent"], summary["target"]) == (2, 1, gcp.topic)
    # The storage emulator's own notifications of the uploads may reach the tap late: only
    # the replay's carry its marker.
    [message] = [m for m in drain_tap(gcp, tapped) if b"pipelinedReplay" in m.data]
    attributes = dict(message.attributes)
    assert (attributes["objectId"], attributes["objectGeneration"]) == ("in/a b+1.png", generation)
    assert json.loads(message.data)["pipelinedReplay"] == {"force": True}


async def test_replay_is_a_duplicate_unless_forced_and_the_document_says_forced(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_at(gcp, monkeypatch)
    key = "logos/logo.png"
    url = f"gs://{gcp.input_bucket}/logos/"
    async with running_daemon():
        put(gcp, key, samples.transparent_png(), "image/png")
        [first] = await notifications(gcp, 1)
        assert await asyncio.to_thread(main, ["replay", url, "--force"]) == 0
        [second] = await notifications(gcp, 1)
    capsys.readouterr()
    assert second["notification_id"] != first["notification_id"], "asked for, not a repeat"
    assert second["forced"] is True
    document = ledger_document(gcp, gcp.input_bucket, key)
    assert document is not None
    assert (document["forced"], document["attempts"]) == (True, 2)


def publish_dead_letters(gcp: GcpStack, count: int) -> Counter[bytes]:
    """``count`` Cloud Storage notifications straight onto the dead-letter topic."""
    # provision_topics names the dead-letter topic and its subscription alike.
    dead_letter_topic = gcp.dead_letter_subscription.replace("/subscriptions/", "/topics/")
    messages = [
        pubsub.PubsubMessage(
            data=json.dumps({"name": f"in/{index}.png", "size": "1"}).encode(),
            attributes={
                "eventType": "OBJECT_FINALIZE",
                "bucketId": gcp.input_bucket,
                "objectId": f"in/{index}.png",
                "objectGeneration": str(1000 + index),
                "payloadFormat": "JSON_API_V1",
            },
        )
        for index in range(count)
    ]
    channel = grpc.insecure_channel(gcp.emulators.pubsub_host)
    try:
        client = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        client.publish(topic=dead_letter_topic, messages=messages)
    finally:
        channel.close()
    return Counter(message.data for message in messages)


def test_dlq_peeks_without_consuming_and_redrives_every_one(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_at(gcp, monkeypatch)
    sent = publish_dead_letters(gcp, 12)

    code, peeked = run_json(capsys, "dlq", "peek", "-n", "3", "--json")
    assert code == 0
    assert len(peeked["messages"]) == 3
    assert peeked["messages"][0]["objects"][0].startswith(f"gs://{gcp.input_bucket}/in/")
    code, stats = run_json(capsys, "dlq", "stats", "--json")
    assert (code, stats["visible"], stats["dead_letters"]) == (0, 12, gcp.dead_letter_subscription)

    tapped = tap(gcp)
    code, summary = run_json(capsys, "dlq", "redrive", "--json")
    assert code == 0, summary
    assert (summary["method"], summary["moved"], summary["destination"]) == (
        "pull-publish-ack",
        12,
        gcp.topic,
    )
    assert Counter(message.data for message in drain_tap(gcp, tapped)) == sent
    assert object_ids(backlog(gcp, gcp.dead_letter_subscription)) == Counter(), "none left"
