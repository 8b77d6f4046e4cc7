"""A real daemon process (``python -m pipelined run``) pointed at a proxy, and the results.

Shared by the daemon-level fault tests and the chaos runner. Everything here is synchronous and
talks to the emulator directly (never through the proxy), so reading results is never faulted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pipelined.aws.ledger import item_from_dynamo
from pipelined.local import LocalStack
from pipelined.tools import unwrap_notification

# Short leases so that a killed daemon's work comes back within seconds.
FAST_SETTINGS: dict[str, str] = {
    "WAIT_TIME_S": "1",
    "VISIBILITY_TIMEOUT_S": "5",
    "CLAIM_LEASE_S": "6",
    "RETRY_BASE_DELAY_S": "1",
    "RETRY_MAX_DELAY_S": "3",
    "DRAIN_TIMEOUT_S": "2",
    "WORKERS": "1",
    "MAX_INFLIGHT": "4",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "info",
}


def daemon_environment(
    stack: LocalStack, endpoint_url: str, settings: Mapping[str, str]
) -> dict[str, str]:
    """The daemon's environment: nothing of the caller's AWS or PIPELINED variables leaks in."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "PIPELINED_"))
    }
    return {
        **inherited,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **stack.daemon_environment(),
        "AWS_ENDPOINT_URL": endpoint_url,
        **METRICS_ON_ANY_PORT,
        **{f"PIPELINED_{name.upper()}": value for name, value in settings.items()},
    }


METRICS_ON_ANY_PORT = {"PIPELINED_METRICS_HOST": "127.0.0.1", "PIPELINED_METRICS_PORT": "0"}
"""The kernel picks the port as the daemon binds it (no gap in which another process could take
a port chosen beforehand); the daemon logs it at info (``metrics_listening``, JSON in
FAST_SETTINGS), and Daemon reads it from there."""


class Daemon:
    """One daemon process; its JSON log goes to ``log_path``."""

    def __init__(
        self, stack: LocalStack, endpoint_url: str, log_path: Path, **settings: str
    ) -> None:
        self.stack = stack
        self.endpoint_url = endpoint_url
        self._prepare(log_path, settings)

    def _prepare(
        self, log_path: Path, settings: Mapping[str, str], base: Mapping[str, str] = FAST_SETTINGS
    ) -> None:
        """What a daemon has before it starts, whatever its cloud: ``settings`` laid over
        ``base``."""
        self.log_path = log_path
        self.settings = {**base, **{k.upper(): v for k, v in settings.items()}}
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._log_start = 0  # where this process's lines begin in the log (it may be shared)
        self._metrics_port: int | None = None

    def environment(self) -> dict[str, str]:
        return daemon_environment(self.stack, self.endpoint_url, self.settings)

    def start(self) -> Self:
        env = self.environment()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_start, self._metrics_port = log.tell(), None
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipelined", "run"],
                env=env,
                cwd=self.log_path.parent,  # no developer's .env is read
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started_at = time.monotonic()
        return self

    @property
    def metrics_port(self) -> int:
        port = self._logged_metrics_port()
        if port is None:
            raise AssertionError(f"the daemon has not said its metrics port:\n{self.log_tail()}")
        return port

    def _logged_metrics_port(self) -> int | None:
        if self._metrics_port is None:
            for record in self.log_records(since_start=True):
                if record.get("event") == "metrics_listening":
                    self._metrics_port = int(record["port"])
        return self._metrics_port

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def http_status(self, path: str) -> int | None:
        """Status of GET ``path`` on the metrics port; None when nothing answers."""
        port = self._logged_metrics_port()
        if port is None:
            return None  # not listening yet
        url = f"http://127.0.0.1:{port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled metric from /metrics, or None."""
        port = self._logged_metrics_port()
        if port is None:
            return None
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                text = reply.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"the daemon exited early:\n{self.log_tail()}")
            if self.http_status("/readyz") == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"the daemon never became ready:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no drain, no release, leases and claims left to run out."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout_s: float = 30) -> int | None:
        """SIGTERM and wait for the drain; SIGKILL past ``timeout_s``. Return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def log_records(self, *, since_start: bool = False) -> list[dict[str, Any]]:
        """The log's JSON records; ``since_start``: only this process's."""
        records = []
        if self.log_path.exists():
            with self.log_path.open("rb") as log:
                log.seek(self._log_start if since_start else 0)
                text = log.read().decode(errors="replace")
            for line in text.splitlines():
                if line.startswith("{"):
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue
        return records

    def events(self, name: str) -> list[dict[str, Any]]:
        return [record for record in self.log_records() if record.get("event") == name]

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.terminate()


# ---------------------------------------------------------------------------------------------
# Reading results back, directly from the emulator.
# ---------------------------------------------------------------------------------------------


@dataclass
class Notification:
    key: str
    notification_id: str
    status: str
    finished_at: str
    body: dict[str, Any]


class CollectedNotifications:
    """What a watcher has read of the results topic, whatever the cloud; ``poll`` reads more."""

    received: list[Notification]

    def poll(self) -> int:
        """Read what has arrived; return how many notifications that was."""
        raise NotImplementedError

    def per_key(self) -> Counter[str]:
        return Counter(notification.key for notification in self.received)

    def wait_for_keys(self, keys: Iterable[str], timeout_s: float) -> bool:
        """Poll until every key has at least one notification; False on timeout."""
        wanted = set(keys)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if wanted <= set(self.per_key()):
                return True
            self.poll()
        return wanted <= set(self.per_key())

    def settle(self, quiet_s: float, timeout_s: float = 30) -> None:
        """Keep polling until nothing arrived for ``quiet_s`` (a late duplicate would show)."""
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if self.poll():
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return

    def by_key(self) -> dict[str, list[Notification]]:
        grouped: defaultdict[str, list[Notification]] = defaultdict(list)
        for notification in self.received:
            grouped[notification.key].append(notification)
        return dict(grouped)


@dataclass
class Watcher(CollectedNotifications):
    """Collects the notifications that arrive on the stack's watch queue."""

    stack: LocalStack
    received: list[Notification] = field(default_factory=list)

    def poll(self, wait_s: int = 1) -> int:
        """One receive on the watch queue; return how many notifications arrived."""
        sqs = self.stack.client("sqs")
        response = sqs.receive_message(
            QueueUrl=self.stack.watch_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s
        )
        messages = response.get("Messages", [])
        for message in messages:
            body = unwrap_notification(message["Body"])
            source = body.get("source")
            key = str(source.get("key")) if isinstance(source, dict) else ""
            self.received.append(
                Notification(
                    key=key,
                    notification_id=str(body.get("notification_id")),
                    status=str(body.get("status")),
                    finished_at=str(body.get("finished_at")),
                    body=body,
                )
            )
        if messages:
            sqs.delete_message_batch(
                QueueUrl=self.stack.watch_queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(messages)
                ],
            )
        return len(messages)


def ledger(stack: LocalStack) -> dict[str, dict[str, Any]]:
    """Every ledger item, by object key (consistent scan)."""
    dynamodb = stack.client("dynamodb")
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": stack.table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        for raw in page.get("Items", []):
            item = item_from_dynamo(raw)
            items[str(item.get("object_key", item["pk"]))] = item
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def object_keys(stack: LocalStack, bucket: str, prefix: str) -> list[str]:
    s3 = stack.client("s3")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def all_terminal(stack: LocalStack, keys: Iterable[str]) -> bool:
    items = ledger(stack)
    return all(items.get(key, {}).get("status") in {"processed", "failed"} for key in keys)


# ---------------------------------------------------------------------------------------------
# Inputs.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    key: str
    body: bytes
    expect: str  # "processed" or "failed"
    kind: str  # "image", "pdf" or "corrupt"


_BODIES: dict[tuple[str, int], bytes] = {}


def make_uploads(count: int, prefix: str = "in/", corrupt_every: int = 8) -> list[Upload]:
    """A mix of small JPEGs, PNGs and PDFs, with every ``corrupt_every``-th one corrupt."""
    from pipelined import samples

    makers: dict[str, Callable[[int], bytes]] = {
        "jpg": lambda v: samples.photo_jpeg(480 + 32 * v, 360 + 24 * v, orientation=1 + v % 8),
        "png": lambda v: samples.transparent_png(240 + 16 * v, 180 + 12 * v),
        "pdf": lambda v: samples.text_pdf([f"page {n} of variant {v}" for n in range(1 + v % 3)]),
        "corrupt": lambda _: samples.corrupt_jpeg(),
    }
    uploads = []
    for index in range(count):
        if corrupt_every and index % corrupt_every == corrupt_every - 1:
            kind, extension, expect = "corrupt", "jpg", "failed"
        else:
            extension = ("jpg", "png", "pdf")[index % 3]
            kind, expect = ("pdf" if extension == "pdf" else "image"), "processed"
        maker = "corrupt" if kind == "corrupt" else extension
        variant = index % 5
        body = _BODIES.get((maker, variant))
        if body is None:
            body = _BODIES[(maker, variant)] = makers[maker](variant)
        uploads.append(Upload(f"{prefix}{index:04d}-{kind}.{extension}", body, expect, kind))
    return uploads


def upload(stack: LocalStack, uploads: Iterable[Upload]) -> None:
    """Put the objects directly on the emulator: the uploads themselves are never faulted."""
    s3 = stack.client("s3")
    for item in uploads:
        s3.put_object(Bucket=stack.input_bucket, Key=item.key, Body=item.body)
