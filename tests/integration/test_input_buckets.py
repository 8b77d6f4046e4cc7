"""PIPELINED_INPUT_BUCKETS through the daemon on the emulator: an event from a bucket it does
not list is rejected with its reason, and nothing of it is read, recorded or notified."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from pipelined import samples
from pipelined.local import LocalStack
from tests.integration.helpers import (
    ledger_item,
    notifications,
    put,
    queue_counts,
    running_daemon,
)

pytestmark = pytest.mark.timeout(120)


def _created(bucket: str, key: str) -> str:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }
    return json.dumps({"Records": [record]})


async def test_an_event_from_an_unlisted_bucket_is_rejected_with_its_reason(
    stack: LocalStack,
) -> None:
    # A bucket without notifications: only the hand-made event below names it.
    other = f"{stack.input_bucket}-other"
    stack.client("s3").create_bucket(Bucket=other)
    put(stack, "intruder.png", samples.transparent_png(), bucket=other)
    with capture_logs() as logs:
        async with running_daemon(input_buckets=(stack.input_bucket,)):
            stack.client("sqs").send_message(
                QueueUrl=stack.queue_url, MessageBody=_created(other, "intruder.png")
            )
            put(stack, "listed.png", samples.transparent_png())
            found = await notifications(stack, 1, settle_s=2)

    assert [n["source"]["key"] for n in found] == ["listed.png"]
    assert ledger_item(stack, other, "intruder.png") is None, "nothing recorded for it"
    assert ledger_item(stack, stack.input_bucket, "listed.png") is not None
    reason = f"bucket '{other}' is not one of PIPELINED_INPUT_BUCKETS"
    rejected = [line for line in logs if line["event"] == "message_rejected"]
    assert [line["reason"] for line in rejected] == [reason]
    # Deleted, not retried: neither the queue nor the dead-letter queue keeps it.
    assert queue_counts(stack) == (0, 0)
    assert queue_counts(stack, stack.dead_letter_queue_url) == (0, 0)
