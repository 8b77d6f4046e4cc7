"""An isolated step's cost: a fork per step (call_isolated) against the standing child.

A PDF's preview runs isolated from the worker. This process first grows to a worker's size
(the processing libraries imported, plus --ballast-mib of touched memory, as a worker holds
after a few 12 MP photos), then runs the same empty step both ways, in the same process:
CPU (this process and its reaped children) and wall time per step, and the ratio.

Usage: python bench/isolation.py [--steps 200] [--ballast-mib 150]
"""

import argparse
import os
import resource
import time
from collections.abc import Callable

import numpy  # noqa: F401 - imagehash's, loaded in a warm worker
import pypdf  # noqa: F401
import pypdfium2  # type: ignore[import-untyped]  # noqa: F401

from pipelined.processing import process_file  # noqa: F401 - a worker's imports
from pipelined.processing.isolation import call_isolated
from pipelined.processing.standing import call_standing, close_standing_child


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(step: Callable[[], object], steps: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per step."""
    step()  # the standing child's first fork is not a per-step cost
    started_cpu, started = cpu_seconds(), time.perf_counter()
    for _ in range(steps):
        step()
    close_standing_child()  # reaped, so its CPU is counted
    return (
        1000 * (cpu_seconds() - started_cpu) / steps,
        1000 * (time.perf_counter() - started) / steps,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--ballast-mib", type=int, default=150)
    arguments = parser.parse_args()
    ballast = bytearray(arguments.ballast_mib * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fork_cpu, fork_wall = measure(lambda: call_isolated(os.getpid, 10), arguments.steps)
    standing_cpu, standing_wall = measure(
        lambda: call_standing(os.getpid, timeout_s=10), arguments.steps
    )
    print(f"{arguments.steps} empty steps in a process of {rss_mib:.0f} MiB")
    print(f"{'':<32}{'CPU ms/step':>12}{'wall ms/step':>14}")
    print(f"{'fork per step (call_isolated)':<32}{fork_cpu:>12.2f}{fork_wall:>14.2f}")
    print(f"{'standing child (call_standing)':<32}{standing_cpu:>12.2f}{standing_wall:>14.2f}")
    print(f"standing over fork: CPU {standing_cpu / fork_cpu:.3f}x, "
          f"wall {standing_wall / fork_wall:.3f}x")  # fmt: skip


if __name__ == "__main__":
    main()
