"""The daemon as a real process: exit codes, signals, drain, health endpoints."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import ClassVar

import pytest

from pipelined import samples
from pipelined.local import LocalStack, free_port
from tests.faults.daemon import Daemon
from tests.integration.helpers import eventually, ledger_item, notifications, put, queue_counts

pytestmark = pytest.mark.timeout(120)


class ProcessDaemon(Daemon):
    """A Daemon on the daemon's own defaults rather than FAST_SETTINGS, but for a short long
    poll and a visibility timeout longer than these tests' jobs, so that nothing the drain
    should have released comes back by itself."""

    SETTINGS: ClassVar[dict[str, str]] = {
        "WAIT_TIME_S": "1",
        "VISIBILITY_TIMEOUT_S": "30",
        "LOG_FORMAT": "json",
    }

    def __init__(
        self, stack: LocalStack, log_path: Path, endpoint_url: str | None = None, **settings: str
    ) -> None:
        self.stack = stack
        self.endpoint_url = endpoint_url or stack.endpoint_url
        self._prepare(log_path, settings, base=self.SETTINGS)


def http_body(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
        return str(reply.read().decode())


def run_to_exit(env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """``pipelined run`` in ``env``, for a start-up that is expected to end by itself."""
    return subprocess.run(
        [sys.executable, "-m", "pipelined", "run"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({}, "PIPELINED_OUTPUT_BUCKET is required"),
        ({"PIPELINED_OUTPUT_BUCKET": "artifacts"}, "PIPELINED_QUEUE_URL, PIPELINED_TABLE"),
    ],
)
def test_a_missing_setting_stops_start_up_with_exit_code_2(
    given: dict[str, str], named: str
) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PIPELINED_")}
    result = run_to_exit({**env, **given})
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert named in lines[0]


def test_a_bad_setting_is_named(stack: LocalStack) -> None:
    env = {**os.environ, **stack.daemon_environment(), "PIPELINED_MAX_INFLIGHT": "-3"}
    result = run_to_exit(env)
    assert result.returncode == 2
    assert "PIPELINED_MAX_INFLIGHT" in result.stderr.decode()


def test_sigterm_during_start_up_exits_0_without_waiting_for_the_queue_check(
    stack: LocalStack, tmp_path: Path
) -> None:
    # Nothing listens there: the start-up queue check is still in botocore's retries.
    unreachable = f"http://127.0.0.1:{free_port()}"
    daemon = ProcessDaemon(stack, tmp_path / "daemon.log", endpoint_url=unreachable).start()
    try:
        deadline = time.monotonic() + 30
        while (status := daemon.http_status("/readyz")) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 503, "the metrics server is up, the daemon not yet ready"
        returncode = daemon.terminate(30)
    finally:
        daemon.kill()
    events = daemon.log_path.read_text()
    assert returncode == 0, events
    assert '"event": "start_up_check_abandoned"' in events, events
    assert "queue_check_failed" not in events


@pytest.mark.every_aws_emulator
async def test_sigterm_drains_and_loses_nothing(stack: LocalStack, tmp_path: Path) -> None:
    keys = [f"batch/doc-{index}.pdf" for index in range(8)]
    body = samples.text_pdf([f"page {n}" for n in range(30)])
    first_daemon = ProcessDaemon(
        stack, tmp_path / "first.log", workers="1", max_inflight="4", drain_timeout_s="1"
    ).start()
    try:
        await asyncio.to_thread(first_daemon.wait_ready)
        assert await asyncio.to_thread(first_daemon.http_status, "/healthz") == 200
        for key in keys:
            put(stack, key, body)
        first = await notifications(stack, 1)  # work is under way
        expected = [
            'pipelined_messages_total{outcome="ack"}',
            'pipelined_jobs_total{kind="pdf",outcome="processed"}',
            'pipelined_processing_seconds_count{kind="pdf"}',
            "pipelined_in_flight_messages",
            "pipelined_concurrency_limit 4.0",
        ]
        for _ in range(50):  # the message is acknowledged just after its notification
            exported = await asyncio.to_thread(http_body, first_daemon.metrics_port, "/metrics")
            if all(line in exported for line in expected):
                break
            await asyncio.sleep(0.1)
        assert [line for line in expected if line not in exported] == []
        returncode = await asyncio.to_thread(first_daemon.terminate, 60)
    finally:
        first_daemon.kill()
    log = first_daemon.log_path.read_text()
    assert returncode == 0, log
    assert '"drain_finished"' in log

    def processed() -> list[str]:
        return [
            k
            for k in keys
            if (ledger_item(stack, stack.input_bucket, k) or {}).get("status") == "processed"
        ]

    visible, in_flight = queue_counts(stack)
    assert in_flight == 0, "unfinished work was released, not left invisible"
    assert len(processed()) + visible >= len(keys), "every upload is processed or back on the queue"

    # A second daemon finishes the rest; nothing was lost.
    second_daemon = ProcessDaemon(stack, tmp_path / "second.log").start()
    try:
        await asyncio.to_thread(second_daemon.wait_ready)
        # Every key processed is not every message taken: a message released by the first
        # daemon after its job's record was written is a duplicate still waiting on the queue,
        # and a receive under load waits for several free slots before it takes it.
        await eventually(
            lambda: len(processed()) == len(keys) and queue_counts(stack) == (0, 0),
            timeout_s=30,
        )
        returncode = await asyncio.to_thread(second_daemon.terminate, 60)
    finally:
        second_daemon.kill()
    assert returncode == 0, second_daemon.log_tail()
    assert sorted(processed()) == sorted(keys)
    assert queue_counts(stack) == (0, 0)
    # One receive may have brought more than the first notification.
    rest = await notifications(stack, len(keys) - len(first), settle_s=2)
    per_key = Counter(n["source"]["key"] for n in first + rest)
    assert per_key == dict.fromkeys(keys, 1), "one notification per upload, no more"


def test_systemd_notify_protocol(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(15)
        # The daemon inherits them (Daemon passes on all but AWS_ and PIPELINED_ variables).
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "1000000")
        daemon = ProcessDaemon(stack, tmp_path / "daemon.log").start()
        try:
            states: list[str] = []
            while not any(s.startswith("WATCHDOG=1") for s in states):
                states.append(listener.recv(4096).decode())
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGTERM)
            while not any(s.startswith("STOPPING=1") for s in states):
                states.append(listener.recv(4096).decode())
            assert daemon.process.wait(30) == 0, daemon.log_tail()
        finally:
            daemon.kill()
    kinds = [state.split("=", 1)[0] for state in states]
    assert kinds.index("READY") < kinds.index("WATCHDOG") < kinds.index("STOPPING")
    stopping = next(state for state in states if state.startswith("STOPPING=1"))
    assert "EXTEND_TIMEOUT_USEC=" in stopping


def test_local_runs_the_stack_and_says_how_to_use_it(tmp_path: Path) -> None:
    env = {**os.environ, "PIPELINED_METRICS_PORT": str(free_port()), "PIPELINED_LOG_FORMAT": "json"}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelined", "local", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(printed)
        assert f"http://127.0.0.1:{port}" in text
        bucket = re.search(r"--bucket (\S+)", text)
        watch = re.search(r"--queue-url (\S+)", text)
        assert bucket, text
        assert watch, text
        stack = LocalStack(
            endpoint_url=f"http://127.0.0.1:{port}",
            input_bucket=bucket.group(1),
            output_bucket=bucket.group(1),
            queue_url="",
            dead_letter_queue_url="",
            table="",
            topic_arn="",
            watch_queue_url=watch.group(1),
        )
        picture = tmp_path / "photo.jpg"
        picture.write_bytes(samples.photo_jpeg(width=400, height=300))
        command = [sys.executable, "-m", "pipelined", "upload", str(picture)]
        upload = subprocess.run(
            [*command, "--bucket", stack.input_bucket],
            env={**env, **stack.aws_environment()},
            capture_output=True,
            timeout=30,
            check=True,
        )
        assert "uploaded" in upload.stdout.decode()
        [notification] = asyncio.run(notifications(stack, 1))
        assert (notification["status"], notification["source"]["key"]) == ("processed", "photo.jpg")
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
