"""MiniStack, a second AWS emulator, as a server process on 127.0.0.1 (tests and the bench).

An implementation of the AWS APIs of its own, not moto's: its answers differ in timing and in
how many messages one receive brings, as AWS's may, so a test that leans on one emulator's
habits fails on the other. Tests marked ``every_aws_emulator`` run on both.

MiniStack pins a botocore release that aiobotocore's pins exclude, so it lives in an
environment of its own, which ``make test`` builds from requirements-ministack.lock.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
EXECUTABLE = ROOT / ".venv" / "ministack" / "bin" / "ministack"
START_TIMEOUT_S = 30
# hypercorn's start-up line names the port the kernel gave it: binding port 0 leaves no gap
# between choosing a free port and taking it.
_LISTENING = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")
# Run by MiniStack's own Python before it becomes MiniStack: ask the kernel for a SIGTERM when
# the thread that started it ends (prctl PR_SET_PDEATHSIG, kept across exec). The callers start
# it from their main thread, so it stops when they die, even by SIGKILL.
_STOP_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class Running(NamedTuple):
    url: str
    pid: int


class MinistackError(RuntimeError):
    pass


@contextmanager
def ministack(
    executable: Path = EXECUTABLE,
    *,
    entry: Path | None = None,
    environment: Mapping[str, str] | None = None,
) -> Iterator[Running]:
    """Run MiniStack until the block ends; yield its endpoint URL and process id.

    ``entry``: a script that MiniStack's own interpreter runs instead of MiniStack's command,
    with ``environment`` added to MiniStack's (the bench's network latency, bench/latency.py).
    It has a session of its own, so a Ctrl-C stops it only through the block's end, after
    whatever still talks to it.
    """
    if not executable.is_file():
        raise MinistackError(
            f"MiniStack is not installed at {executable}: `make test` installs it "
            "(or: python3 -m venv .venv/ministack && "
            ".venv/ministack/bin/pip install -r requirements-ministack.lock)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="ministack-"))
    log_path = workdir / "ministack.log"
    interpreter = executable.with_name("python")
    command = [str(interpreter), str(entry)] if entry else [str(executable)]
    variables = {
        **(environment or {}),
        "PATH": os.environ.get("PATH", ""),
        "BIND_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "TMPDIR": str(workdir),  # its PID file
        "LOG_LEVEL": "INFO",  # hypercorn says the port it bound at INFO; no access log
        "MINISTACK_REGION": "us-east-1",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(interpreter), "-c", _STOP_WITH_PARENT, *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=variables,
            start_new_session=True,
        )
    try:
        port = _wait_listening(process, log_path)
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(process, url, log_path)
        yield Running(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_listening(process: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = _LISTENING.search(log_path.read_bytes())
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise MinistackError(f"MiniStack did not start:\n{_tail(log_path)}")


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_ministack/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise MinistackError(f"MiniStack is not answering at {url}:\n{_tail(log_path)}")


def _tail(log_path: Path, lines: int = 30) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
