"""The whole daemon against the emulator: upload, process, artifacts, ledger, notification."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request

import pytest
from PIL import Image

from pipelined import samples
from pipelined.local import LocalStack
from tests.integration.helpers import (
    artifact_events_consumed,
    ledger_item,
    notifications,
    object_bytes,
    put,
    queue_counts,
    running_daemon,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.every_aws_emulator]

AWKWARD_KEYS = ["photos/beach trip.jpg", "photos/1+1=2.jpg", "photos/café 写真.jpg"]


async def test_image_and_pdf_end_to_end(stack: LocalStack) -> None:
    photo = samples.photo_jpeg(width=1600, height=1200, orientation=6, gps=True)
    pdf = samples.text_pdf(["first page text", "second page text", "third"], title="Report")
    async with running_daemon():
        put(stack, "in/photo one.jpg", photo)
        put(stack, "in/report.pdf", pdf)
        found = {n["source"]["key"]: n for n in await notifications(stack, 2)}
        await artifact_events_consumed(stack)

    image = found["in/photo one.jpg"]
    assert image["status"] == "processed"
    assert image["kind"] == "image"
    assert image["_attributes"] == {"status": "processed", "kind": "image"}
    assert image["source"]["size"] == len(photo)
    assert image["metadata"]["orientation"] == 6
    assert "gps" not in json.dumps(image["metadata"]).lower()
    sizes = {}
    for artifact in image["artifacts"]:
        thumb = Image.open(io.BytesIO(object_bytes(stack, artifact["bucket"], artifact["key"])))
        # Orientation 6 turns the 1600x1200 landscape into a portrait.
        assert thumb.height > thumb.width
        assert (thumb.width, thumb.height) == (artifact["width"], artifact["height"])
        assert artifact["size"] == len(object_bytes(stack, artifact["bucket"], artifact["key"]))
        assert not thumb.getexif(), "thumbnails carry no EXIF (and so no GPS)"
        sizes[max(thumb.size)] = artifact
    assert sorted(sizes) == [256, 1024]
    assert sizes[256]["key"].startswith(f"pipelined/{stack.input_bucket}/in/photo one.jpg/")

    document = found["in/report.pdf"]
    assert document["kind"] == "pdf"
    assert document["metadata"]["page_count"] == 3
    assert document["metadata"]["title"] == "Report"
    [text] = [a for a in document["artifacts"] if a["content_type"].startswith("text/plain")]
    pages = object_bytes(stack, text["bucket"], text["key"]).decode("utf-8").split("\f")
    assert [page.strip() for page in pages] == ["first page text", "second page text", "third"]

    for key, notification in found.items():
        item = ledger_item(stack, stack.input_bucket, key)
        assert item is not None
        assert item["status"] == notification["status"] == "processed"
        assert item["attempts"] == notification["attempts"] == 1
        assert item["notified"] is True
        assert [a["key"] for a in item["artifacts"]] == [
            a["key"] for a in notification["artifacts"]
        ]
        assert item["metadata"] == notification["metadata"]
    assert queue_counts(stack) == (0, 0)
    assert queue_counts(stack, stack.dead_letter_queue_url) == (0, 0)


async def test_artifacts_in_the_input_bucket_never_trigger_processing(stack: LocalStack) -> None:
    async with running_daemon():
        put(stack, "logo.png", samples.transparent_png())
        found = await notifications(stack, 1, settle_s=3)
    assert [n["source"]["key"] for n in found] == ["logo.png"]
    scan = stack.client("dynamodb").scan(TableName=stack.table)["Items"]
    assert [item["object_key"]["S"] for item in scan] == ["logo.png"]
    assert queue_counts(stack) == (0, 0)


async def test_a_corrupt_file_is_recorded_failed_and_never_retried(stack: LocalStack) -> None:
    async with running_daemon():
        put(stack, "broken.jpg", samples.corrupt_jpeg())
        put(stack, "notes.jpg", b"just some text, not a picture\n")
        found = {n["source"]["key"]: n for n in await notifications(stack, 2, settle_s=3)}

    assert set(found) == {"broken.jpg", "notes.jpg"}
    assert found["broken.jpg"]["status"] == "failed"
    assert "corrupt" in found["broken.jpg"]["error"].lower()
    assert found["notes.jpg"]["kind"] == "unknown"
    assert "unsupported" in found["notes.jpg"]["error"].lower()
    for key, notification in found.items():
        assert notification["_attributes"]["status"] == "failed"
        assert notification["artifacts"] == []
        item = ledger_item(stack, stack.input_bucket, key)
        assert item is not None
        assert (item["status"], item["attempts"], item["error"]) == (
            "failed",
            1,
            notification["error"],
        )
    assert queue_counts(stack) == (0, 0)
    assert queue_counts(stack, stack.dead_letter_queue_url) == (0, 0)


def _direct(bucket: str, key: str, etag: str) -> dict[str, object]:
    from urllib.parse import quote_plus

    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": quote_plus(key), "eTag": etag},
                },
            }
        ]
    }


def _eventbridge(bucket: str, key: str, etag: str) -> dict[str, object]:
    return {
        "version": "0",
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "etag": etag}},
    }


@pytest.mark.parametrize("form", ["direct", "sns-raw", "sns-envelope", "eventbridge"])
async def test_every_event_form_with_awkward_keys(stack: LocalStack, form: str) -> None:
    # A bucket without notifications, so only the hand-made events below reach the queue.
    side = f"{stack.input_bucket}-side"
    s3, sqs = stack.client("s3"), stack.client("sqs")
    s3.create_bucket(Bucket=side)
    bodies = []
    for key in AWKWARD_KEYS:
        put(stack, key, samples.photo_jpeg(width=320, height=240, orientation=1), bucket=side)
        etag = s3.head_object(Bucket=side, Key=key)["ETag"].strip('"')
        event = _eventbridge(side, key, etag) if form == "eventbridge" else _direct(side, key, etag)
        body = json.dumps(event)
        if form == "sns-envelope":
            body = json.dumps({"Type": "Notification", "Message": body, "TopicArn": "arn:x"})
        bodies.append(body)
    async with running_daemon():
        for body in bodies:
            sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
        found = await notifications(stack, len(AWKWARD_KEYS))
        await artifact_events_consumed(stack)

    assert sorted(n["source"]["key"] for n in found) == sorted(AWKWARD_KEYS)
    for notification in found:
        assert notification["status"] == "processed", notification
        for artifact in notification["artifacts"]:
            expected = f"pipelined/{side}/{notification['source']['key']}/"
            assert artifact["key"].startswith(expected)
            assert object_bytes(stack, artifact["bucket"], artifact["key"])
    # The emulator's s3:TestEvent (sent when the notification was set up) was acknowledged too.
    assert queue_counts(stack) == (0, 0)


async def test_a_malformed_message_is_rejected_not_retried(stack: LocalStack) -> None:
    sqs = stack.client("sqs")
    async with running_daemon():
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody="this is not an event")
        put(stack, "after.png", samples.transparent_png())
        await notifications(stack, 1)
        await artifact_events_consumed(stack)
    assert queue_counts(stack) == (0, 0)
    assert queue_counts(stack, stack.dead_letter_queue_url) == (0, 0)


async def test_notifications_can_carry_presigned_urls(stack: LocalStack) -> None:
    async with running_daemon(presign_ttl_s=300):
        put(stack, "shared/logo.png", samples.transparent_png())
        [notification] = await notifications(stack, 1)
    for artifact in notification["artifacts"]:
        assert "X-Amz-Expires=300" in artifact["url"]
        fetched = await asyncio.to_thread(_fetch, artifact["url"])
        assert fetched == object_bytes(stack, artifact["bucket"], artifact["key"])
    item = ledger_item(stack, stack.input_bucket, "shared/logo.png")
    assert item is not None
    assert all(artifact.get("url") is None for artifact in item["artifacts"]), "URLs expire"


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body
