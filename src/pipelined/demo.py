"""``pipelined demo`` and ``pipelined local``: the daemon on the embedded stack of either cloud."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pipelined.app import run_daemon
from pipelined.logs import configure_logging
from pipelined.samples import Sample, demo_samples
from pipelined.settings import load_settings
from pipelined.tools import notification_attributes, unwrap_notification

if TYPE_CHECKING:
    from pipelined.local import LocalStack

DEMO_TIMEOUT_S = 120.0
DEMO_OUTPUT_DIR = Path("pipelined-demo-output")
"""Where ``pipelined demo`` keeps what came out, relative to the current directory."""
DEMO_MARKER = ".pipelined-demo"
Cloud = Literal["aws", "gcp"]


class DemoStack(Protocol):
    """An embedded stack, provisioned and pointed at by this process's environment."""

    scheme: str  # of object URLs: s3, gs
    input_bucket: str

    def upload(self, samples: list[Sample]) -> None: ...

    def notifications(self, wanted: set[str], deadline: float) -> dict[str, dict[str, Any]]:
        """Read notifications until one per wanted key has come, or the deadline (monotonic)."""
        ...

    def ledger(self) -> dict[str, tuple[str, str]]:
        """Each source key's ledger status and attempts, as the ledger holds them."""
        ...

    def download(self, bucket: str, key: str) -> bytes: ...

    def instructions(self, metrics_port: int) -> str: ...


def embedded_stack(
    cloud: Cloud, name: str, port: int | None = None
) -> AbstractContextManager[DemoStack]:
    if cloud == "gcp":
        from pipelined.gcp.demo import gcp_demo_stack

        return gcp_demo_stack(name)
    return _aws_demo_stack(name, port)


async def run_demo(cloud: Cloud = "aws", out_dir: Path = DEMO_OUTPUT_DIR) -> int:
    """Upload the samples, let the daemon process them, print what came out and keep it in
    ``out_dir``, exit."""
    configure_logging("error", "console")  # the summary is the output; errors still show
    samples = demo_samples()
    with embedded_stack(cloud, "pipelined-demo") as stack:
        settings = load_settings(wait_time_s=1, metrics_port=0, drain_timeout_s=10)
        stop, started = asyncio.Event(), asyncio.Event()
        daemon = asyncio.create_task(
            run_daemon(settings, stop, handle_signals=False, started=started)
        )
        await started.wait()
        print(f"uploading {len(samples)} sample files to {stack.scheme}://{stack.input_bucket} ...")
        await asyncio.to_thread(stack.upload, samples)
        deadline = time.monotonic() + DEMO_TIMEOUT_S
        wanted = {sample.key for sample in samples}
        notifications = await asyncio.to_thread(stack.notifications, wanted, deadline)
        ledger = await asyncio.to_thread(stack.ledger)
        saved = await asyncio.to_thread(save_outputs, stack, notifications, out_dir)
        stop.set()
        await daemon
    exit_code = _print_summary(stack.scheme, samples, notifications, ledger)
    print(f"Artifacts and notifications are in {saved}/ (one folder per uploaded file).")
    return exit_code


def save_outputs(stack: DemoStack, notifications: dict[str, dict[str, Any]], out_dir: Path) -> Path:
    """Copy each notification and its artifacts into ``out_dir/SOURCE_KEY/``, a folder a person
    can open; return its absolute path. A folder of an earlier demo is replaced."""
    folder = _fresh_folder(out_dir)
    for source_key, notification in notifications.items():
        target = folder / _relative(source_key)
        target.mkdir(parents=True, exist_ok=True)
        shown = {name: value for name, value in notification.items() if not name.startswith("_")}
        (target / "notification.json").write_text(json.dumps(shown, indent=2) + "\n")
        for artifact in notification.get("artifacts", []):
            body = stack.download(artifact["bucket"], artifact["key"])
            (target / _relative(artifact["key"]).name).write_bytes(body)
    return folder


def _fresh_folder(out_dir: Path) -> Path:
    """``out_dir`` emptied, if an earlier demo made it (its marker file says so), else created.
    A folder that is not the demo's is written into, never cleared."""
    folder = out_dir.resolve()
    if (folder / DEMO_MARKER).is_file():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEMO_MARKER).write_text("made by pipelined demo; replaced by the next run\n")
    return folder


def _relative(key: str) -> PurePosixPath:
    """An object key as a relative path that stays inside the folder."""
    parts = [part for part in PurePosixPath(key).parts if part not in ("", ".", "..", "/")]
    return PurePosixPath(*parts) if parts else PurePosixPath("_")


def _print_summary(
    scheme: str,
    samples: list[Sample],
    notifications: dict[str, dict[str, Any]],
    ledger: dict[str, tuple[str, str]],
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
            location = f"{scheme}://{artifact['bucket']}/{artifact['key']}"
            print(f"     artifact: {location}  ({size}{artifact['size']:,} bytes)")
        if notification.get("metadata"):
            print(f"     metadata: {_short_metadata(notification['metadata'])}")
        ledger_status, attempts = ledger.get(sample.key, ("?", "?"))
        print(
            f"     notified: id {notification['notification_id']}, "
            f"attributes {notification['_attributes']}; "
            f"ledger status {ledger_status}, attempts {attempts}"
        )
    print(f"\n{as_expected} of {len(samples)} files ended as expected.")
    return 0 if as_expected == len(samples) else 1


def _short_metadata(metadata: dict[str, Any]) -> str:
    return ", ".join(
        f"{name}={value}" for name, value in metadata.items() if value not in (None, "")
    )


async def run_local(cloud: Cloud = "aws", port: int | None = None) -> int:
    """Start the stack and the daemon, print how to use them, run until interrupted."""
    configure_logging("info", "auto")
    with embedded_stack(cloud, "pipelined-local", port) as stack:
        settings = load_settings(wait_time_s=5)
        stop, started = asyncio.Event(), asyncio.Event()
        daemon = asyncio.create_task(run_daemon(settings, stop, started=started))
        await started.wait()
        print(stack.instructions(settings.metrics_port), file=sys.stdout, flush=True)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await daemon
    return 0


# --- the AWS stack ------------------------------------------------------------------------------


@contextmanager
def _aws_demo_stack(name: str, port: int | None) -> Iterator[DemoStack]:
    from pipelined.local import apply_environment, emulator, provision

    with emulator(port) as endpoint:
        stack = provision(endpoint, name)
        apply_environment(stack)
        yield AwsDemoStack(stack)


class AwsDemoStack:
    scheme = "s3"

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        self.input_bucket = stack.input_bucket

    def upload(self, samples: list[Sample]) -> None:
        s3 = self._stack.client("s3")
        for sample in samples:
            s3.put_object(
                Bucket=self.input_bucket,
                Key=sample.key,
                Body=sample.body,
                ContentType=sample.content_type,
            )

    def notifications(self, wanted: set[str], deadline: float) -> dict[str, dict[str, Any]]:
        """Read the topic's subscriber queue."""
        sqs = self._stack.client("sqs")
        found: dict[str, dict[str, Any]] = {}
        while wanted - found.keys() and time.monotonic() < deadline:
            response = sqs.receive_message(
                QueueUrl=self._stack.watch_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            for message in response.get("Messages", []):
                notification = unwrap_notification(message["Body"])
                notification["_attributes"] = notification_attributes(message["Body"])
                source = notification.get("source")
                if isinstance(source, dict):
                    found[str(source["key"])] = notification
                sqs.delete_message(
                    QueueUrl=self._stack.watch_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return found

    def ledger(self) -> dict[str, tuple[str, str]]:
        items = self._stack.client("dynamodb").scan(TableName=self._stack.table)["Items"]
        return {
            item["object_key"]["S"]: (
                item.get("status", {}).get("S", "?"),
                item.get("attempts", {}).get("N", "?"),
            )
            for item in items
        }

    def download(self, bucket: str, key: str) -> bytes:
        body: bytes = self._stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def instructions(self, metrics_port: int) -> str:
        stack = self._stack
        exports = " ".join(f"{name}={value}" for name, value in stack.aws_environment().items())
        return f"""
pipelined is running on the embedded AWS stack at {stack.endpoint_url}

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

Ctrl-C drains and stops."""
