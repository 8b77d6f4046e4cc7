"""Run one risky step in a forked copy of the worker, with its own deadline.

The worker pool already kills a job that runs too long and survives a worker that dies, but
either way the whole job is lost. Some steps are optional: a PDF's preview is worth having,
its text is the point. Such a step runs here, in a child forked from the worker, so that a
native library that spins, aborts on an allocation it cannot make, or crashes outright takes
only that step with it; the caller gets a reason and carries on.

Forking is cheap (the child shares the worker's memory copy-on-write and inherits its
address-space cap) and safe here: pool workers are single-threaded.

A step may start programs of its own (OCR runs tesseract). The child leads a process group of
its own, which such programs join, and the whole group is killed: at the deadline, once the
child is reaped, and when the worker dies first (the pool SIGKILLs a worker at the job time
limit), through the parent-death signal the child asks the kernel for.
"""

import contextlib
import ctypes
import math
import os
import pickle
import select
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from pipelined.processing.sanitize import describe_error

T = TypeVar("T")

CHILD_FAILED_EXIT = 70
"""A step child's exit code when it could not send its answer at all."""
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class StepFailedError(Exception):
    """The isolated step raised, crashed or ran past its deadline; the message says which."""


def call_isolated(function: Callable[[], T], timeout_s: float) -> T:
    """Return function() computed in a forked child, or raise StepFailedError.

    The result travels back pickled through a pipe, so it should be small (a path and a few
    numbers, not pixels). The child is killed at the deadline, with its process group, and
    also arms an alarm of its own, so it dies even if this process is killed first and cannot
    wait for it.
    """
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's stack
        os.close(read_end)
        _run_child(function, write_end, timeout_s, parent)
    # Both sides set the group, so it exists before either of them relies on it.
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    os.close(write_end)
    try:
        payload = _read_until(read_end, time.monotonic() + timeout_s)
    finally:
        os.close(read_end)
    if payload is None:
        kill_group(pid)
        os.waitpid(pid, 0)
        raise StepFailedError(overtime_reason(timeout_s))
    # Exited but not reaped yet, so the group's id is still the child's: whatever the step
    # started and left behind goes, and no one else is reached.
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    kill_group(pid)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or not payload:
        raise StepFailedError(crash_reason(status))
    result: T = step_result(payload)
    return result


def _run_child(function: Callable[[], T], write_end: int, timeout_s: float, parent: int) -> None:
    code = CHILD_FAILED_EXIT
    try:
        become_step_child(parent)
        signal.alarm(alarm_after(timeout_s))
        payload = step_answer(function)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        code = 0
    finally:
        # Skip every atexit handler and buffer flush inherited from the worker.
        os._exit(code)


def step_answer(function: Callable[[], object]) -> bytes:
    """In the child: function()'s value, or the reason it raised, pickled for the parent."""
    try:
        return pickle.dumps((True, function()))
    except Exception as exc:  # everything must reach the parent as a reason
        return pickle.dumps((False, describe_error(exc)))


def step_result(answer: bytes) -> Any:
    """In the parent: the value a step_answer carries, or StepFailedError with its reason."""
    succeeded, value = pickle.loads(answer)  # noqa: S301 - written by our own child
    if not succeeded:
        raise StepFailedError(str(value))
    return value


def become_step_child(parent: int) -> None:
    """In a just-forked child: lead a process group of its own and die with ``parent``."""
    os.setpgid(0, 0)
    _die_with(parent)
    # Default SIGALRM action terminates: the backstop alarm_after arms, if the parent is gone.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)


def alarm_after(timeout_s: float) -> int:
    """Whole seconds for a child's own alarm: past the parent's deadline, never before it."""
    return math.ceil(timeout_s) + 1


def overtime_reason(timeout_s: float) -> str:
    return f"ran past its {timeout_s:g} s limit and was stopped"


def crash_reason(status: int) -> str:
    """A reaped child's wait status, for a child that never sent its answer."""
    if os.WIFSIGNALED(status):
        return f"crashed ({signal.Signals(os.WTERMSIG(status)).name})"
    return f"crashed (exit code {os.waitstatus_to_exitcode(status)})"


def _die_with(parent: int) -> None:
    """Have the kernel signal this child when its parent dies, and then kill the group.

    SIGTERM, not SIGKILL: the handler takes the step's own programs along. It runs as soon as
    the child is back in Python, as it is while it waits for a program; a step stuck in native
    code starts none, and the alarm set by _run_child ends it.
    """
    signal.signal(signal.SIGTERM, _kill_own_group)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        _kill_own_group(signal.SIGTERM, None)


def _kill_own_group(signum: int, frame: FrameType | None) -> None:
    os.killpg(0, signal.SIGKILL)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written to fd until the writer closes it; None past the deadline."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
