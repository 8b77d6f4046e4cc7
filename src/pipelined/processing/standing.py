"""Isolated steps in one standing child per worker, instead of a fork per step.

isolation.call_isolated forks the worker for every step. A fork of a worker with its decoders
loaded is not cheap: about 18 ms of CPU and as much wall time on a 2-core VM, for every PDF's
preview (bench/isolation.py, in a process of 228 MiB). Here the worker forks one child on its
first step and hands it each later step through a pipe, so a step costs a pickle and a round
trip. The isolation is the same: the child
leads its own process group, dies with the worker, and has a deadline of its own. A step that
crashes the child, or runs past its deadline (the child is then killed), fails with the same
reasons call_isolated gives, and the next step gets a fresh child.

For steps that start no programs of their own (pdfium rendering previews): a standing child's
group is only killed when the child goes, so anything a step left running would outlive it.
OCR, which runs tesseract, keeps call_isolated. A child serves MAX_STEPS steps and is then
replaced, so whatever a native library leaks is given back. The child is a copy of the worker
as it was at the first step: a step must depend on its arguments, not on module state the
worker changes later (no step here does; a test that patches a module closes the child).
"""

import contextlib
import functools
import os
import pickle
import select
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pipelined.processing.isolation import (
    CHILD_FAILED_EXIT,
    StepFailedError,
    alarm_after,
    become_step_child,
    crash_reason,
    kill_group,
    overtime_reason,
    step_answer,
    step_result,
)

T = TypeVar("T")

MAX_STEPS = 50
"""Steps one child serves before it is replaced."""

_LENGTH = struct.Struct("!Q")  # each message on the pipes: its length, then a pickle


@dataclass
class _Child:
    pid: int
    owner: int  # the process that forked it: a copy of this module in a fork must not use it
    requests: int  # the write end of the child's request pipe
    answers: int  # the read end of its answer pipe
    steps: int = 0


class StandingChild:
    """This process's standing child: started on the first step, replaced when it fails."""

    def __init__(self) -> None:
        self._child: _Child | None = None

    def call(self, function: Callable[..., T], *args: Any, timeout_s: float) -> T:
        child = self._ready()
        child.steps += 1
        try:
            _send(child.requests, pickle.dumps((function, args, timeout_s)))
            answer = _receive(child.answers, time.monotonic() + timeout_s)
        except OSError:  # the child is gone: the write found the pipe closed
            answer = b""
        if not answer:
            self._child = None
            status = _end(child, kill=True)
            reason = overtime_reason(timeout_s) if answer is None else crash_reason(status)
            raise StepFailedError(reason)
        if child.steps >= MAX_STEPS:
            self.close()
        result: T = step_result(answer)
        return result

    def close(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.owner == os.getpid():
            _end(child, kill=False)

    def _ready(self) -> _Child:
        child = self._child
        if child is None or child.owner != os.getpid() or _has_exited(child):
            child = self._child = _start()
        return child


_STANDING = StandingChild()


def call_standing(function: Callable[..., T], *args: Any, timeout_s: float) -> T:
    """Return function(*args) computed in this process's standing child, or raise
    StepFailedError. ``function`` and ``args`` travel pickled: a module-level function and
    small arguments (paths and options); so does the result."""
    return _STANDING.call(function, *args, timeout_s=timeout_s)


def close_standing_child() -> None:
    """Let this process's standing child exit, and reap it (its CPU then counts as reaped
    children's: a benchmark reads it there)."""
    _STANDING.close()


def _start() -> _Child:
    request_read, request_write = os.pipe()
    answer_read, answer_write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: serves until its request pipe closes, never returns
        os.close(request_write)
        os.close(answer_read)
        _serve(request_read, answer_write, parent)
    # Both sides set the group, so it exists before either of them relies on it.
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    os.close(request_read)
    os.close(answer_write)
    return _Child(pid, parent, request_write, answer_read)


def _has_exited(child: _Child) -> bool:
    """Did the idle child die (killed from outside, say)? Then it is reaped here, and the
    next step goes to a new one instead of failing for nothing it did."""
    pid, _ = os.waitpid(child.pid, os.WNOHANG)
    if pid == 0:
        return False
    os.close(child.requests)
    os.close(child.answers)
    return True


def _end(child: _Child, *, kill: bool) -> int:
    """Close the pipes (the child's cue to exit), kill its group if asked, reap it."""
    os.close(child.requests)
    os.close(child.answers)
    if kill:
        kill_group(child.pid)
    _, status = os.waitpid(child.pid, 0)
    return status


def _serve(requests: int, answers: int, parent: int) -> None:
    code = CHILD_FAILED_EXIT
    try:
        become_step_child(parent)
        while request := _receive(requests, None):
            function, args, timeout_s = pickle.loads(request)  # noqa: S301 - our own parent
            signal.alarm(alarm_after(timeout_s))
            answer = step_answer(functools.partial(function, *args))
            signal.alarm(0)
            _send(answers, answer)
        code = 0
    finally:
        # Skip every atexit handler and buffer flush inherited from the worker.
        os._exit(code)


def _send(fd: int, message: bytes) -> None:
    data = memoryview(_LENGTH.pack(len(message)) + message)
    while data:
        data = data[os.write(fd, data) :]


def _receive(fd: int, deadline: float | None) -> bytes | None:
    """One message; b"" if the writer closed the pipe first, None past the deadline."""
    header = _read_exactly(fd, _LENGTH.size, deadline)
    if not header:
        return header
    (length,) = _LENGTH.unpack(header)
    return _read_exactly(fd, length, deadline)


def _read_exactly(fd: int, count: int, deadline: float | None) -> bytes | None:
    chunks: list[bytes] = []
    missing = count
    while missing:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(remaining, 0))
            if not ready:
                return None
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            return b""
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
