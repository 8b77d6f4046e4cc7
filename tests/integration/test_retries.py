"""Retryable failures, duplicates and the dead-letter queue, through the whole daemon."""

from __future__ import annotations

import asyncio
import json

import pytest

from pipelined import metrics, samples
from pipelined.local import LocalStack
from tests.integration.helpers import (
    eventually,
    ledger_item,
    notifications,
    put,
    queue_counts,
    running_daemon,
)

pytestmark = pytest.mark.timeout(120)


async def test_a_retryable_failure_is_retried_and_then_succeeds(stack: LocalStack) -> None:
    # The ledger table is missing at first: a real AWS error that retrying can cure.
    dynamodb = stack.client("dynamodb")
    dynamodb.delete_table(TableName=stack.table)
    retries_before = metrics.MESSAGES.labels("retry_in_place")._value.get()
    # Backoff of 2, 4, 4 ... s, three tries per receive, keeps the fifth receive (and the DLQ)
    # well beyond the outage.
    async with running_daemon(retry_base_delay_s=2.0, retry_max_delay_s=4.0):
        put(stack, "later.png", samples.transparent_png())
        await asyncio.sleep(3)  # a few failed attempts, waited out in place after a backoff
        assert await notifications(stack, 1, timeout_s=0.5) == []
        dynamodb.create_table(
            TableName=stack.table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        [notification] = await notifications(stack, 1, settle_s=2)
    assert notification["status"] == "processed"
    assert metrics.MESSAGES.labels("retry_in_place")._value.get() > retries_before
    assert queue_counts(stack) == (0, 0)
    assert queue_counts(stack, stack.dead_letter_queue_url) == (0, 0)


async def test_a_duplicate_delivery_is_a_no_op(stack: LocalStack) -> None:
    sqs, s3 = stack.client("sqs"), stack.client("s3")
    async with running_daemon():
        put(stack, "dup.png", samples.transparent_png())
        [first] = await notifications(stack, 1)
        etag = s3.head_object(Bucket=stack.input_bucket, Key="dup.png")["ETag"].strip('"')
        event = {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": stack.input_bucket},
                        "object": {"key": "dup.png", "eTag": etag},
                    },
                }
            ]
        }
        for _ in range(3):
            sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(event))
        again = await notifications(stack, 0, timeout_s=5, settle_s=5)
    assert again == [], "a repeated event must not notify twice"
    item = ledger_item(stack, stack.input_bucket, "dup.png")
    assert item is not None
    assert (item["status"], item["attempts"]) == ("processed", 1)
    assert first["status"] == "processed"
    assert queue_counts(stack) == (0, 0)


async def test_what_keeps_failing_ends_in_the_dead_letter_queue(stack: LocalStack) -> None:
    stack.client("dynamodb").delete_table(TableName=stack.table)  # and it never comes back
    async with running_daemon(retry_base_delay_s=0.1, retry_max_delay_s=1):
        put(stack, "doomed.png", samples.transparent_png())
        await eventually(lambda: queue_counts(stack, stack.dead_letter_queue_url)[0] == 1, 30)
    assert queue_counts(stack, stack.dead_letter_queue_url) == (1, 0)
    assert queue_counts(stack) == (0, 0)
