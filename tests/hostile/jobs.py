"""Small jobs for the pool tests.

Workers receive functions pickled by module and name and import them, so these live in an
importable module rather than in a test file.
"""

import os
import resource
import signal
import time
from pathlib import Path

from pipelined.errors import PermanentError
from pipelined.processing import ProcessingOptions, process_file
from pipelined.processing import standing as standing_module
from pipelined.processing.isolation import StepFailedError, call_isolated
from pipelined.processing.standing import call_standing


def pid() -> int:
    return os.getpid()


def sleep_forever() -> None:
    while True:
        time.sleep(60)


def allocate(megabytes: int) -> int:
    """Allocate and touch megabytes of memory; returns how many bytes it held."""
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])
    return len(block)


def exit_abruptly(code: int) -> None:
    """Leave without unwinding, as a crashing native library would."""
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def peak_rss_mib() -> float:
    """The highest resident memory this process, or any child it waited for, ever had."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # Linux reports KiB


def process_and_measure(
    source: str, out_dir: str, options: ProcessingOptions
) -> tuple[str, str, float]:
    """process_file, then (status, reason or artifact names, peak RSS in MiB).

    Run it in a pool whose workers do one task each, so the peak belongs to this job.
    """
    try:
        result = process_file(source, out_dir, options)
    except PermanentError as error:
        return "failed", str(error), peak_rss_mib()
    names = ",".join(Path(artifact.path).name for artifact in result.artifacts)
    return "processed", names, peak_rss_mib()


# -- call_isolated, exercised inside a worker (single-threaded, as in production) -----------


def _behave(behaviour: str, pid_file: str | None) -> int:
    if pid_file is not None:
        Path(pid_file).write_text(str(os.getpid()))
    if behaviour == "return":
        return 42
    if behaviour == "raise":
        raise ValueError("bad page tree")
    if behaviour == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if behaviour == "abort":
        os.abort()
    if behaviour == "exit":
        os._exit(3)
    if behaviour == "hang":
        sleep_forever()
    raise AssertionError(behaviour)


def isolated(behaviour: str, timeout_s: float, pid_file: str | None = None) -> tuple[str, bool]:
    """call_isolated(behaviour) in this worker: ("ok: value" or "failed: reason", whether a
    child process is left behind)."""
    try:
        value = call_isolated(lambda: _behave(behaviour, pid_file), timeout_s)
        outcome = f"ok: {value}"
    except StepFailedError as error:
        outcome = f"failed: {error}"
    try:
        os.waitpid(-1, os.WNOHANG)
        children_left = True
    except ChildProcessError:
        children_left = False
    return outcome, children_left


# -- call_standing: the same, in the worker's standing child ---------------------------------


def standing(behaviour: str, timeout_s: float, pid_file: str | None = None) -> str:
    """call_standing(behaviour) in this worker: "ok: value" or "failed: reason"."""
    try:
        return f"ok: {call_standing(_behave, behaviour, pid_file, timeout_s=timeout_s)}"
    except StepFailedError as error:
        return f"failed: {error}"


def standing_pids(count: int, max_steps: int) -> list[int]:
    """The standing child's pid at each of ``count`` steps, replaced every ``max_steps``."""
    standing_module.MAX_STEPS = max_steps
    return [call_standing(os.getpid, timeout_s=5) for _ in range(count)]
