"""Run one risky step in a forked copy of the worker, with its own deadline.

The worker pool already kills a job that runs too long and survives a worker that dies, but
either way the whole job is lost. Some steps are optional: a PDF's preview is worth having,
its text is the point. Such a step runs here, in a child forked from the worker, so that a
native library that spins, aborts on an allocation it cannot make, or crashes outright takes
only that step with it; the caller gets a reason and carries on.

Forking is cheap (the child shares the worker's memory copy-on-write and inherits its
address-space cap) and safe here: pool workers are single-threaded.
"""

import contextlib
import math
import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from typing import TypeVar

from pipelined.processing.sanitize import describe_error

T = TypeVar("T")

_CHILD_FAILED_EXIT = 70


class StepFailedError(Exception):
    """The isolated step raised, crashed or ran past its deadline; the message says which."""


def call_isolated(function: Callable[[], T], timeout_s: float) -> T:
    """Return function() computed in a forked child, or raise StepFailedError.

    The result travels back pickled through a pipe, so it should be small (a path and a few
    numbers, not pixels). The child is killed at the deadline, and also arms an alarm of its
    own, so it dies even if this process is killed first and cannot wait for it.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's stack
        os.close(read_end)
        _run_child(function, write_end, timeout_s)
    os.close(write_end)
    try:
        payload = _read_until(read_end, time.monotonic() + timeout_s)
    finally:
        os.close(read_end)
    if payload is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise StepFailedError(f"ran past its {timeout_s:g} s limit and was stopped")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise StepFailedError(f"crashed ({name})")
    if not payload:
        raise StepFailedError(f"crashed (exit code {os.waitstatus_to_exitcode(status)})")
    succeeded, value = pickle.loads(payload)  # noqa: S301 - written by our own child
    if not succeeded:
        raise StepFailedError(str(value))
    result: T = value
    return result


def _run_child(function: Callable[[], T], write_end: int, timeout_s: float) -> None:
    code = _CHILD_FAILED_EXIT
    try:
        # Default SIGALRM action terminates: a backstop if the parent is gone.
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(math.ceil(timeout_s) + 1)
        try:
            payload = pickle.dumps((True, function()))
        except Exception as exc:  # everything must reach the parent as a reason
            payload = pickle.dumps((False, describe_error(exc)))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        code = 0
    finally:
        # Skip every atexit handler and buffer flush inherited from the worker.
        os._exit(code)


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
