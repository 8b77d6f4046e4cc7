"""The whole daemon on the Google Cloud emulators: upload, process, artifacts, ledger,
notification; corrupt files, duplicates, retries, dead letters, ignored events, signed URLs.

The daemon runs in this process (running_daemon); the stack is the ``gcp`` fixture's, whose
input bucket is also the output bucket, so every test also sees the daemon skip the
notifications of its own artifacts. Before a daemon stops, a test waits until it has settled
(acknowledged or rejected) every message it expects, so that what is left on the subscription
afterwards means something.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.pubsub_v1 import types as pubsub
from PIL import Image
from structlog.testing import capture_logs

from pipelined import metrics, samples
from pipelined.gcp.local import GcpStack
from tests.gcp.helpers import (
    backlog,
    create_results_topic,
    drain_tap,
    ledger,
    ledger_document,
    notifications,
    object_bytes,
    object_ids,
    object_names,
    point_at,
    put,
    republish,
    service_account_key,
    tap,
)
from tests.integration.helpers import eventually, running_daemon
from tests.integration.object_store_contract import fetch

pytestmark = pytest.mark.timeout(120)

AWKWARD_KEYS = ["photos/beach trip.jpg", "photos/1+1=2.jpg", "photos/café 写真%20.jpg"]


def settled() -> float:
    """Messages this process's daemons have acknowledged or rejected so far."""
    return float(sum(metrics.MESSAGES.labels(o)._value.get() for o in ("ack", "reject")))


def retried() -> float:
    """Retries this process's daemons have decided on so far, in place or through the queue."""
    return float(sum(metrics.MESSAGES.labels(o)._value.get() for o in ("retry", "retry_in_place")))


async def until_settled(before: float, count: int, timeout_s: float = 30) -> None:
    """Wait until the daemon has settled ``count`` more messages than ``before``."""
    assert await eventually(lambda: settled() - before >= count, timeout_s), (
        f"settled {settled() - before:g} of {count} messages"
    )


def artifact_count(found: list[dict[str, Any]]) -> int:
    """How many artifacts the notifications name: each one's upload into the watched bucket
    is a notification of its own, which the daemon acknowledges as its own output."""
    return sum(len(notification["artifacts"]) for notification in found)


def assert_nothing_left(stack: GcpStack) -> None:
    """Nothing on the subscription (after the daemon stopped) and nothing dead-lettered."""
    assert object_ids(backlog(stack, stack.subscription)) == {}
    assert object_ids(backlog(stack, stack.dead_letter_subscription)) == {}


async def test_image_and_pdf_end_to_end(gcp: GcpStack, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at(gcp, monkeypatch)
    photo = samples.photo_jpeg(width=1600, height=1200, orientation=6, gps=True)
    pdf = samples.text_pdf(["first page text", "second page text", "third"], title="Report")
    before = settled()
    async with running_daemon():
        generations = {
            "in/photo one.jpg": put(gcp, "in/photo one.jpg", photo, "image/jpeg"),
            "in/report.pdf": put(gcp, "in/report.pdf", pdf, "application/pdf"),
        }
        found = {n["source"]["key"]: n for n in await notifications(gcp, 2)}
        await until_settled(before, 2 + artifact_count(list(found.values())))

    image = found["in/photo one.jpg"]
    assert (image["status"], image["kind"]) == ("processed", "image")
    assert image["_attributes"] == {"status": "processed", "kind": "image"}
    assert image["source"]["bucket"] == gcp.input_bucket
    assert image["source"]["size"] == len(photo)
    assert image["metadata"]["orientation"] == 6
    assert "gps" not in json.dumps(image["metadata"]).lower()
    sizes = {}
    for artifact in image["artifacts"]:
        thumb_bytes = object_bytes(gcp, artifact["bucket"], artifact["key"])
        thumb = Image.open(io.BytesIO(thumb_bytes))
        # Orientation 6 turns the 1600x1200 landscape into a portrait.
        assert thumb.height > thumb.width
        assert (thumb.width, thumb.height) == (artifact["width"], artifact["height"])
        assert artifact["size"] == len(thumb_bytes)
        assert not thumb.getexif(), "thumbnails carry no EXIF (and so no GPS)"
        sizes[max(thumb.size)] = artifact
    assert sorted(sizes) == [256, 1024]

    document = found["in/report.pdf"]
    assert (document["kind"], document["_attributes"]) == (
        "pdf",
        {"status": "processed", "kind": "pdf"},
    )
    assert document["metadata"]["page_count"] == 3
    assert document["metadata"]["title"] == "Report"
    [text] = [a for a in document["artifacts"] if a["content_type"].startswith("text/plain")]
    pages = object_bytes(gcp, text["bucket"], text["key"]).decode("utf-8").split("\f")
    assert [page.strip() for page in pages] == ["first page text", "second page text", "third"]

    for key, notification in found.items():
        generation = generations[key]
        assert notification["source"]["version_id"] == generation, "the version is the generation"
        folder = f"pipelined/{gcp.input_bucket}/{key}/{generation}/"
        assert {a["bucket"] for a in notification["artifacts"]} == {gcp.output_bucket}
        assert all(a["key"].startswith(folder) for a in notification["artifacts"])
        assert sorted(object_names(gcp, gcp.output_bucket, folder)) == sorted(
            a["key"] for a in notification["artifacts"]
        )
        stored = ledger_document(gcp, gcp.input_bucket, key)
        assert stored is not None
        assert (stored["bucket"], stored["object_key"], stored["version"]) == (
            gcp.input_bucket,
            key,
            generation,
        )
        assert stored["status"] == notification["status"] == "processed"
        assert stored["attempts"] == notification["attempts"] == 1
        assert stored["notified"] is True
        assert "claim" not in stored, "the claim ends with the job"
        assert [a["key"] for a in stored["artifacts"]] == [
            a["key"] for a in notification["artifacts"]
        ]
        assert stored["metadata"] == notification["metadata"]
    assert_nothing_left(gcp)


async def test_awkward_object_names_are_processed_as_they_are(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cloud Storage sends object names as they are, not URL-encoded: a "+" or "%20" is itself.
    point_at(gcp, monkeypatch)
    before = settled()
    async with running_daemon():
        for key in AWKWARD_KEYS:
            put(gcp, key, samples.photo_jpeg(width=320, height=240, orientation=1), "image/jpeg")
        found = await notifications(gcp, len(AWKWARD_KEYS))
        await until_settled(before, len(AWKWARD_KEYS) + artifact_count(found))

    assert sorted(n["source"]["key"] for n in found) == sorted(AWKWARD_KEYS)
    for notification in found:
        assert notification["status"] == "processed", notification
        key = notification["source"]["key"]
        folder = f"pipelined/{gcp.input_bucket}/{key}/{notification['source']['version_id']}/"
        for artifact in notification["artifacts"]:
            assert artifact["key"].startswith(folder)
            assert object_bytes(gcp, artifact["bucket"], artifact["key"])
    assert set(ledger(gcp)) == set(AWKWARD_KEYS)
    assert_nothing_left(gcp)


async def test_artifacts_in_the_input_bucket_never_trigger_processing(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gcp.output_bucket == gcp.input_bucket, "the fixture's stack shares one bucket"
    point_at(gcp, monkeypatch)
    tapped = tap(gcp)
    before = settled()
    async with running_daemon():
        put(gcp, "logo.png", samples.transparent_png(), "image/png")
        found = await notifications(gcp, 1)
        await until_settled(before, 1 + artifact_count(found))
        found += await notifications(gcp, 0, timeout_s=2, settle_s=2)

    assert [n["source"]["key"] for n in found] == ["logo.png"]
    # The artifacts did reach the subscription, as notifications of the bucket, and were
    # acknowledged (above) without a job: no notification, no ledger document.
    announced = object_ids(drain_tap(gcp, tapped))
    artifacts = {a["key"] for a in found[0]["artifacts"]}
    assert announced == {"logo.png": 1, **dict.fromkeys(artifacts, 1)}
    assert list(ledger(gcp)) == ["logo.png"]
    assert_nothing_left(gcp)


async def test_a_corrupt_file_is_recorded_failed_and_never_retried(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(gcp, monkeypatch)
    before, retries_before = settled(), retried()
    async with running_daemon():
        put(gcp, "broken.jpg", samples.corrupt_jpeg(), "image/jpeg")
        put(gcp, "notes.jpg", b"just some text, not a picture\n", "image/jpeg")
        found = {n["source"]["key"]: n for n in await notifications(gcp, 2)}
        await until_settled(before, 2)
        found |= {n["source"]["key"]: n for n in await notifications(gcp, 0, 2, settle_s=2)}

    assert set(found) == {"broken.jpg", "notes.jpg"}
    assert found["broken.jpg"]["status"] == "failed"
    assert "corrupt" in found["broken.jpg"]["error"].lower()
    assert found["notes.jpg"]["kind"] == "unknown"
    assert "unsupported" in found["notes.jpg"]["error"].lower()
    for key, notification in found.items():
        assert notification["_attributes"]["status"] == "failed"
        assert notification["artifacts"] == []
        stored = ledger_document(gcp, gcp.input_bucket, key)
        assert stored is not None
        assert (stored["status"], stored["attempts"], stored["error"]) == (
            "failed",
            1,
            notification["error"],
        )
    assert retried() == retries_before, "a permanent failure is rejected, never retried"
    assert_nothing_left(gcp)


def _finalize_of(key: str, tapped: list[pubsub.PubsubMessage]) -> pubsub.PubsubMessage:
    [original] = [
        message
        for message in tapped
        if message.attributes.get("objectId") == key
        and message.attributes.get("eventType") == "OBJECT_FINALIZE"
    ]
    return original


async def test_a_duplicate_notification_is_a_no_op(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(gcp, monkeypatch)
    tapped = tap(gcp)
    before = settled()
    async with running_daemon():
        put(gcp, "dup.png", samples.transparent_png(), "image/png")
        [first] = await notifications(gcp, 1)
        await until_settled(before, 1 + artifact_count([first]))
        # Cloud Storage delivers at least once: the same notification again, three times.
        original = _finalize_of("dup.png", drain_tap(gcp, tapped))
        assert republish(gcp, [original] * 3) == 3
        await until_settled(before, 1 + artifact_count([first]) + 3)
        again = await notifications(gcp, 0, timeout_s=3, settle_s=3)

    assert again == [], "a repeated event must not notify twice"
    stored = ledger_document(gcp, gcp.input_bucket, "dup.png")
    assert stored is not None
    assert (stored["status"], stored["attempts"], stored["notified"]) == ("processed", 1, True)
    assert first["status"] == "processed"
    assert_nothing_left(gcp)


async def test_deletions_and_metadata_updates_are_acknowledged_and_skipped(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(gcp, monkeypatch)
    tapped = tap(gcp)
    before = settled()
    with capture_logs() as logs:
        async with running_daemon():
            generation = put(gcp, "kept.png", samples.transparent_png(), "image/png")
            [first] = await notifications(gcp, 1)
            await until_settled(before, 1 + artifact_count([first]))
            recorded = ledger_document(gcp, gcp.input_bucket, "kept.png")
            # A real metadata update, sent by the emulator.
            blob = gcp.storage_client().bucket(gcp.input_bucket).blob("kept.png")
            blob.metadata = {"reviewed": "yes"}
            blob.patch()
            # The emulator sends no OBJECT_DELETE for a versioned bucket (it archives the
            # generation, and the stack subscribes no archive events), so the deletion for good
            # and the archive are the real notification with Cloud Storage's other event types.
            original = _finalize_of("kept.png", drain_tap(gcp, tapped))
            for event_type in ("OBJECT_DELETE", "OBJECT_ARCHIVE"):
                copy = pubsub.PubsubMessage(
                    data=original.data,
                    attributes={**original.attributes, "eventType": event_type},
                )
                republish(gcp, [copy])
            await until_settled(before, 1 + artifact_count([first]) + 3)
            again = await notifications(gcp, 0, timeout_s=2, settle_s=2)

    assert again == [], "nothing to process, nothing to notify"
    reasons = [str(entry["reason"]) for entry in logs if entry["event"] == "record_ignored"]
    for event_type in ("OBJECT_METADATA_UPDATE", "OBJECT_DELETE", "OBJECT_ARCHIVE"):
        assert any(reason.startswith(event_type) for reason in reasons), (event_type, reasons)
    assert ledger_document(gcp, gcp.input_bucket, "kept.png") == recorded, "the record stays"
    assert recorded is not None
    assert recorded["version"] == generation
    assert_nothing_left(gcp)


async def test_a_malformed_message_is_rejected_not_retried(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(gcp, monkeypatch)
    before, retries_before = settled(), retried()
    rejected_before = metrics.MESSAGES.labels("reject")._value.get()
    async with running_daemon():
        republish(gcp, [pubsub.PubsubMessage(data=b"this is not an event")])
        put(gcp, "after.png", samples.transparent_png(), "image/png")
        found = await notifications(gcp, 1)
        await until_settled(before, 2 + artifact_count(found))
    assert [n["source"]["key"] for n in found] == ["after.png"]
    assert metrics.MESSAGES.labels("reject")._value.get() == rejected_before + 1
    assert retried() == retries_before
    assert_nothing_left(gcp)


async def _when_first_retried(retries_before: float, then: Callable[[], None]) -> None:
    """Run ``then`` as soon as the daemon has decided on a retry: the next attempt waits for
    its backoff (in place or on the queue), so ``then`` is done before it."""
    assert await eventually(lambda: retried() > retries_before, timeout_s=30)
    await asyncio.to_thread(then)


async def test_a_retryable_failure_is_retried_and_then_succeeds(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The output bucket does not exist at first: Cloud Storage refuses the artifacts' uploads
    # (404), a real error that retrying can cure once the bucket is there.
    later = f"{gcp.input_bucket}-later"
    point_at(gcp, monkeypatch, output_bucket=later)
    retries_before = retried()

    def create_the_bucket() -> None:
        bucket = gcp.storage_client().bucket(later)
        bucket.versioning_enabled = True
        gcp.storage_client().create_bucket(bucket)

    # A backoff of 2 to 4 s leaves time to create the bucket before the next attempt.
    async with running_daemon(retry_base_delay_s=4.0, retry_max_delay_s=4.0):
        put(gcp, "later.png", samples.transparent_png(), "image/png")
        await _when_first_retried(retries_before, create_the_bucket)
        [notification] = await notifications(gcp, 1, settle_s=2)

    assert notification["status"] == "processed"
    assert notification["attempts"] >= 2, "processed again, after the failed attempt"
    assert {a["bucket"] for a in notification["artifacts"]} == {later}
    for artifact in notification["artifacts"]:
        assert object_bytes(gcp, later, artifact["key"])
    stored = ledger_document(gcp, gcp.input_bucket, "later.png")
    assert stored is not None
    assert (stored["status"], stored["attempts"]) == ("processed", notification["attempts"])
    assert_nothing_left(gcp)


async def test_a_notification_that_failed_to_publish_is_sent_from_the_record(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The results topic does not exist at first: the job is done and recorded, and its
    # publish fails (404). The retry finds the record complete but not notified, and sends
    # that record's notification without processing the file again.
    later = replace(
        gcp,
        results_topic=f"{gcp.results_topic}-later",
        watch_subscription=f"{gcp.watch_subscription}-later",
    )
    point_at(gcp, monkeypatch, topic=later.results_topic)
    before, retries_before = settled(), retried()

    def create_the_topic() -> None:
        create_results_topic(later)

    async with running_daemon(retry_base_delay_s=4.0, retry_max_delay_s=4.0):
        put(gcp, "unannounced.png", samples.transparent_png(), "image/png")
        await _when_first_retried(retries_before, create_the_topic)
        [notification] = await notifications(later, 1, settle_s=2)
        await until_settled(before, 1 + artifact_count([notification]))

    stored = ledger_document(gcp, gcp.input_bucket, "unannounced.png")
    assert stored is not None
    assert (stored["status"], stored["notified"]) == ("processed", True)
    assert notification["attempts"] == stored["attempts"] == 1, "processed once"
    assert notification["finished_at"] == stored["finished_at"], "the recorded job's"
    assert [a["key"] for a in notification["artifacts"]] == [a["key"] for a in stored["artifacts"]]
    assert_nothing_left(gcp)


async def test_what_keeps_failing_ends_in_the_dead_letter_topic(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The output bucket never comes: after its fifth delivery Pub/Sub sets the message aside.
    point_at(gcp, monkeypatch, output_bucket=f"{gcp.input_bucket}-never")
    dead: list[pubsub.PubsubMessage] = []
    async with running_daemon(retry_base_delay_s=1.0, retry_max_delay_s=1.0):
        put(gcp, "doomed.png", samples.transparent_png(), "image/png")

        def dead_lettered() -> bool:
            dead.extend(backlog(gcp, gcp.dead_letter_subscription, 0.5, give_back=False))
            return bool(dead)

        assert await eventually(dead_lettered, timeout_s=60)
        found = await notifications(gcp, 0, timeout_s=1)

    assert found == []
    [message] = dead
    assert message.attributes["objectId"] == "doomed.png"
    assert message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert object_ids(backlog(gcp, gcp.subscription)) == {}
    stored = ledger_document(gcp, gcp.input_bucket, "doomed.png")
    assert stored is None or "status" not in stored, "never recorded as done"


@pytest.fixture
def signing_key(tmp_path: Path, gcp: GcpStack) -> tuple[Path, str]:
    path = tmp_path / "service-account.json"
    return path, service_account_key(path, gcp.project)


async def test_notifications_can_carry_signed_urls(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, signing_key: tuple[Path, str]
) -> None:
    key_file, email = signing_key
    point_at(gcp, monkeypatch)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    async with running_daemon(presign_ttl_s=300):
        put(gcp, "shared/logo.png", samples.transparent_png(), "image/png")
        [notification] = await notifications(gcp, 1)
    assert notification["artifacts"]
    for artifact in notification["artifacts"]:
        url = artifact["url"]
        assert url.startswith(gcp.emulators.storage_url), url
        assert "X-Goog-Expires=300" in url
        assert "X-Goog-Signature=" in url
        assert f"X-Goog-Credential={email.replace('@', '%40')}" in url, "signed by that key"
        fetched = await asyncio.to_thread(fetch, url)
        assert fetched == object_bytes(gcp, artifact["bucket"], artifact["key"])
    stored = ledger_document(gcp, gcp.input_bucket, "shared/logo.png")
    assert stored is not None
    assert all(artifact.get("url") is None for artifact in stored["artifacts"]), "URLs expire"
