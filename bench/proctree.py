"""CPU and memory of a process tree from procfs (Linux): a daemon and all its descendants.

A tree's CPU is the sum, over its live members, of their own time (utime + stime) and the
time of the children they have already reaped (cutime + cstime). A pool worker that exits
and is reaped by the forkserver keeps counting, in the forkserver's cutime, so the difference
of two snapshots is all the CPU the tree spent between them. The bench makes itself a child
subreaper, so that anything orphaned under the daemon (a worker whose forkserver died) comes
to the bench instead of init and can still be found and stopped.
"""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphans of our descendants reparent to this process; False where prctl is missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    own_s: float  # utime + stime
    reaped_s: float  # cutime + cstime: children already waited for
    rss_bytes: int


def read_stat(pid: int) -> ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        own_s=(utime + stime) / CLOCK_TICKS,
        reaped_s=(cutime + cstime) / CLOCK_TICKS,
        rss_bytes=int(fields[21]) * PAGE_BYTES,
    )


def all_stats() -> dict[int, ProcStat]:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def descendants(root: int, stats: dict[int, ProcStat]) -> list[ProcStat]:
    children: dict[int, list[ProcStat]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat)
    found, frontier = [], [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child.pid)
    return found


@dataclass(frozen=True)
class TreeSample:
    """One look at the tree: the main process apart from everything under it."""

    main_s: float  # the main process's own CPU
    workers_s: float  # descendants' own and reaped CPU, and what the main process reaped
    main_rss: int
    workers_rss: int
    worker_count: int

    @property
    def total_s(self) -> float:
        return self.main_s + self.workers_s

    def minus(self, earlier: TreeSample) -> CpuSplit:
        return CpuSplit(self.main_s - earlier.main_s, self.workers_s - earlier.workers_s)


@dataclass(frozen=True)
class CpuSplit:
    main_s: float
    workers_s: float

    @property
    def total_s(self) -> float:
        return self.main_s + self.workers_s


def sample_tree(root: int, extra_roots: tuple[int, ...] = ()) -> TreeSample:
    """``extra_roots``: orphans adopted by the bench that belonged to the tree."""
    stats = all_stats()
    main = stats.get(root)
    if main is None:
        raise ProcessLookupError(root)
    members = descendants(root, stats)
    for orphan in extra_roots:
        if orphan in stats:
            members += [stats[orphan], *descendants(orphan, stats)]
    return TreeSample(
        main_s=main.own_s,
        workers_s=main.reaped_s + sum(m.own_s + m.reaped_s for m in members),
        main_rss=main.rss_bytes,
        workers_rss=sum(m.rss_bytes for m in members),
        worker_count=len(members),
    )


def kill_tree(root: int) -> None:
    """SIGKILL the root and every descendant (found first, so none reparents unseen)."""
    members = descendants(root, all_stats())
    for pid in [root, *(m.pid for m in members)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


def reap_adopted(keep: set[int]) -> None:
    """Wait for exited orphans the subreaper adopted; never for the bench's own children."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in keep:
            return
        os.waitpid(info.si_pid, 0)
