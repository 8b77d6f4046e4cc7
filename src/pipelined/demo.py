"""``pipelined demo`` and ``pipelined local``: the daemon on the embedded stack."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

from pipelined.app import run_daemon
from pipelined.local import LocalStack, apply_environment, emulator, provision
from pipelined.logs import configure_logging
from pipelined.samples import Sample, demo_samples
from pipelined.settings import load_settings
from pipelined.tools import notification_attributes, unwrap_notification

DEMO_TIMEOUT_S = 120.0


async def run_demo() -> int:
    """Upload the samples, let the daemon process them, print what came out, exit."""
    configure_logging("error", "console")  # the summary is the output; errors still show
    samples = demo_samples()
    with emulator() as endpoint:
        stack = await asyncio.to_thread(provision, endpoint, "pipelined-demo")
        apply_environment(stack)
        settings = load_settings(wait_time_s=1, metrics_port=0, drain_timeout_s=10)
        stop, started = asyncio.Event(), asyncio.Event()
        daemon = asyncio.create_task(
            run_daemon(settings, stop, handle_signals=False, started=started)
        )
        await started.wait()
        print(f"uploading {len(samples)} sample files to s3://{stack.input_bucket} ...")
        await asyncio.to_thread(_upload_samples, stack, samples)
        notifications = await asyncio.to_thread(_collect_notifications, stack, samples)
        items = await asyncio.to_thread(_ledger_items, stack)
        stop.set()
        await daemon
    return _print_summary(samples, notifications, items)


def _upload_samples(stack: LocalStack, samples: list[Sample]) -> None:
    s3 = stack.client("s3")
    for sample in samples:
        s3.put_object(
            Bucket=stack.input_bucket,
            Key=sample.key,
            Body=sample.body,
            ContentType=sample.content_type,
        )


def _collect_notifications(stack: LocalStack, samples: list[Sample]) -> dict[str, dict[str, Any]]:
    """Read the topic's subscriber queue until every sample has its notification."""
    sqs = stack.client("sqs")
    wanted = {sample.key for sample in samples}
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while wanted - found.keys() and time.monotonic() < deadline:
        response = sqs.receive_message(
            QueueUrl=stack.watch_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            notification = unwrap_notification(message["Body"])
            notification["_attributes"] = notification_attributes(message["Body"])
            source = notification.get("source")
            if isinstance(source, dict):
                found[str(source["key"])] = notification
            sqs.delete_message(
                QueueUrl=stack.watch_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
    return found


def _ledger_items(stack: LocalStack) -> dict[str, dict[str, Any]]:
    dynamodb = stack.client("dynamodb")
    items = dynamodb.scan(TableName=stack.table)["Items"]
    return {item["object_key"]["S"]: item for item in items}


def _print_summary(
    samples: list[Sample],
    notifications: dict[str, dict[str, Any]],
    items: dict[str, dict[str, Any]],
) -> int:
    print()
    as_expected = 0
    for sample in samples:
        notification = notifications.get(sample.key)
        if notification is None:
            print(f"[??] {sample.key}: no notification within {DEMO_TIMEOUT_S:g} s")
            continue
        status = notification["status"]
        as_expected += status == sample.expect
        mark = "ok" if status == sample.expect else "!!"
        print(f"[{mark}] {sample.key}  ({len(sample.body):,} bytes)")
        print(f"     outcome:  {status} ({notification['kind']}), expected {sample.expect}")
        if notification.get("error"):
            print(f"     reason:   {notification['error']}")
        for artifact in notification.get("artifacts", []):
            size = f"{artifact['width']}x{artifact['height']}, " if "width" in artifact else ""
            location = f"s3://{artifact['bucket']}/{artifact['key']}"
            print(f"     artifact: {location}  ({size}{artifact['size']:,} bytes)")
        if notification.get("metadata"):
            print(f"     metadata: {_short_metadata(notification['metadata'])}")
        attributes = notification["_attributes"]
        ledger = items.get(sample.key, {})
        print(
            f"     notified: id {notification['notification_id']}, attributes {attributes}; "
            f"ledger status {ledger.get('status', {}).get('S', '?')}, "
            f"attempts {ledger.get('attempts', {}).get('N', '?')}"
        )
    print(f"\n{as_expected} of {len(samples)} files ended as expected.")
    return 0 if as_expected == len(samples) else 1


def _short_metadata(metadata: dict[str, Any]) -> str:
    return ", ".join(
        f"{name}={value}" for name, value in metadata.items() if value not in (None, "")
    )


async def run_local(port: int) -> int:
    """Start the stack and the daemon, print how to use them, run until interrupted."""
    configure_logging("info", "auto")
    with emulator(port) as endpoint:
        stack = await asyncio.to_thread(provision, endpoint, "pipelined-local")
        apply_environment(stack)
        settings = load_settings(wait_time_s=5)
        stop, started = asyncio.Event(), asyncio.Event()
        daemon = asyncio.create_task(run_daemon(settings, stop, started=started))
        await started.wait()
        _print_instructions(stack, settings.metrics_port)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await daemon
    return 0


def _print_instructions(stack: LocalStack, metrics_port: int) -> None:
    exports = " ".join(f"{name}={value}" for name, value in stack.aws_environment().items())
    print(
        f"""
pipelined is running on the embedded stack at {stack.endpoint_url}

  input bucket   s3://{stack.input_bucket}   (artifacts go to s3://{stack.output_bucket}/pipelined/)
  queue          {stack.queue_url}
  dead letters   {stack.dead_letter_queue_url}
  ledger table   {stack.table}
  topic          {stack.topic_arn}
  metrics        http://127.0.0.1:{metrics_port}/metrics  (/healthz, /readyz)

In another terminal:
  export {exports}
  .venv/bin/pipelined upload path/to/photo.jpg --bucket {stack.input_bucket}
  .venv/bin/pipelined watch --queue-url {stack.watch_queue_url}

Ctrl-C drains and stops.""",
        file=sys.stdout,
        flush=True,
    )
