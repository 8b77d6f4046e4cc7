"""Helpers for tests against the emulator: run a daemon, read results back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from pipelined.app import run_daemon
from pipelined.aws.ledger import item_from_dynamo, item_key
from pipelined.local import LocalStack
from pipelined.settings import Settings, load_settings
from pipelined.tools import notification_attributes, unwrap_notification

FAST = {
    "wait_time_s": 1,
    "metrics_port": 0,
    "workers": 2,
    "drain_timeout_s": 5.0,
    "retry_base_delay_s": 1.0,
    "retry_max_delay_s": 2.0,
    "visibility_timeout_s": 10,
    "claim_lease_s": 30,
}


async def eventually(condition: Callable[[], bool], timeout_s: float = 10) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def fast_settings(**overrides: Any) -> Settings:
    return load_settings(**{**FAST, **overrides})


@asynccontextmanager
async def running_daemon(**overrides: Any) -> AsyncIterator[Settings]:
    """Run the whole daemon in this event loop; stop and drain it on exit."""
    settings = fast_settings(**overrides)
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_daemon(settings, stop, handle_signals=False, started=started))
    await asyncio.wait([task, asyncio.create_task(started.wait())], return_when="FIRST_COMPLETED")
    if task.done():
        task.result()
    try:
        yield settings
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def artifact_events_consumed(stack: LocalStack) -> None:
    """Wait until the daemon has taken (and ignored) the bucket events of the artifacts it
    wrote back into the input bucket: they reach the queue just after the last notification,
    and a daemon stopped at once would leave them there."""
    assert await eventually(lambda: queue_counts(stack) == (0, 0)), queue_counts(stack)


def put(stack: LocalStack, key: str, body: bytes, bucket: str | None = None) -> None:
    stack.client("s3").put_object(Bucket=bucket or stack.input_bucket, Key=key, Body=body)


async def notifications(
    stack: LocalStack, count: int, timeout_s: float = 60, settle_s: float = 0.0
) -> list[dict[str, Any]]:
    """Read notifications until ``count`` arrived (and ``settle_s`` passed with no more)."""
    return await asyncio.to_thread(_read_notifications, stack, count, timeout_s, settle_s)


def _read_notifications(
    stack: LocalStack, count: int, timeout_s: float, settle_s: float
) -> list[dict[str, Any]]:
    sqs = stack.client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    quiet_until: float | None = None
    while time.monotonic() < deadline:
        if len(found) >= count:
            quiet_until = quiet_until or time.monotonic() + settle_s
            if time.monotonic() >= quiet_until:
                break
        response = sqs.receive_message(
            QueueUrl=stack.watch_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            notification = unwrap_notification(message["Body"])
            notification["_attributes"] = notification_attributes(message["Body"])
            found.append(notification)
            sqs.delete_message(
                QueueUrl=stack.watch_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
    return found


def ledger_item(stack: LocalStack, bucket: str, key: str) -> dict[str, Any] | None:
    response = stack.client("dynamodb").get_item(
        TableName=stack.table, Key={"pk": {"S": item_key(bucket, key)}}, ConsistentRead=True
    )
    item = response.get("Item")
    return item_from_dynamo(item) if item else None


def queue_counts(stack: LocalStack, queue_url: str | None = None) -> tuple[int, int]:
    """(visible, in flight) messages on the queue."""
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=queue_url or stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def object_bytes(stack: LocalStack, bucket: str, key: str) -> bytes:
    body: bytes = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body
