"""Isolation: a job that hangs, explodes or dies takes only its own worker with it.

These drive pipelined.pool.WorkerPool (pebble, forkserver, RLIMIT_AS) with the small jobs in
tests/hostile/jobs.py, and the forked preview step (processing/isolation.py) inside a worker.
"""

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelined.errors import LimitExceededError, RetryableError
from pipelined.pool import WorkerPool
from tests.hostile import jobs

pytestmark = pytest.mark.timeout(60)

MEMORY_MB = 256
TIMEOUT_S = 1.0


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(workers=2, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB, max_tasks=100)
    yield pool
    pool.close()


async def worker_pids(pool: WorkerPool, count: int = 8) -> set[int]:
    return set(await asyncio.gather(*(pool.run(jobs.pid) for _ in range(count))))


async def test_a_hang_is_killed_at_the_time_limit_and_the_pool_goes_on(pool: WorkerPool) -> None:
    with pytest.raises(LimitExceededError, match=r"job_timeout_s limit of 1 s; its worker was"):
        await pool.run(jobs.sleep_forever)
    assert await pool.run(jobs.allocate, 1) == 1024 * 1024


async def test_a_hang_does_not_hold_up_the_other_worker(pool: WorkerPool) -> None:
    hang = asyncio.create_task(pool.run(jobs.sleep_forever))
    await asyncio.sleep(0.1)  # let the hang take a worker
    # The other worker serves jobs while the first one is stuck.
    assert await pool.run(jobs.allocate, 1) == 1024 * 1024
    assert not hang.done()
    with pytest.raises(LimitExceededError):
        await hang


async def test_a_memory_hog_fails_naming_the_memory_limit(pool: WorkerPool) -> None:
    with pytest.raises(LimitExceededError, match=r"worker_memory_mb limit of 256 MB"):
        await pool.run(jobs.allocate, 2 * MEMORY_MB)
    # Nothing leaked: the same worker can allocate most of its cap right after.
    assert await pool.run(jobs.allocate, MEMORY_MB // 2) == MEMORY_MB // 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("job", "args", "exit_code"),
    [(jobs.exit_abruptly, (1,), "1"), (jobs.kill_self, (), "-9")],
    ids=["exit", "kill"],
)
async def test_a_worker_that_dies_is_retryable_and_replaced(
    pool: WorkerPool, job: Callable[..., None], args: tuple[int, ...], exit_code: str
) -> None:
    with pytest.raises(RetryableError, match=rf"worker process died \(exit code {exit_code}\)"):
        await pool.run(job, *args)
    # A replacement worker serves the next jobs.
    assert await pool.run(jobs.allocate, 1) == 1024 * 1024
    assert os.getpid() not in await worker_pids(pool)


async def test_an_exception_in_a_job_keeps_the_worker(pool: WorkerPool) -> None:
    with pytest.raises(ValueError, match="boom"):
        await pool.run(jobs.raise_value_error, "boom")
    assert len(await worker_pids(pool)) <= 2


async def test_workers_are_recycled_after_max_tasks() -> None:
    pool = WorkerPool(workers=1, timeout_s=10, memory_mb=MEMORY_MB, max_tasks=2)
    try:
        pids = [await pool.run(jobs.pid) for _ in range(6)]
    finally:
        pool.close()
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[4] == pids[5]
    assert len({pids[0], pids[2], pids[4]}) == 3, pids
    assert os.getpid() not in pids


# -- the forked preview step -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("return", "ok: 42"),
        ("raise", "failed: bad page tree"),
        ("segfault", "failed: crashed (SIGSEGV)"),
        ("abort", "failed: crashed (SIGABRT)"),
        ("exit", "failed: crashed (exit code 3)"),
        ("hang", "failed: ran past its 0.5 s limit and was stopped"),
    ],
)
async def test_an_isolated_step_reports_every_ending(
    pool: WorkerPool, behaviour: str, expected: str
) -> None:
    outcome, children_left = await pool.run(jobs.isolated, behaviour, 0.5)
    assert outcome == expected
    assert not children_left, "the child was reaped"
    assert await pool.run(jobs.allocate, 1) == 1024 * 1024  # and the worker lives on


async def test_an_isolated_step_dies_even_when_its_worker_is_killed(
    pool: WorkerPool, tmp_path: Path
) -> None:
    """The job limit (1 s) kills the worker before the step's own deadline (1.5 s) is up;
    the orphaned child must still end, by its own alarm, instead of spinning forever."""
    pid_file = tmp_path / "child.pid"
    with pytest.raises(LimitExceededError):
        await pool.run(jobs.isolated, "hang", 1.5, str(pid_file))
    child = int(pid_file.read_text())
    await until_dead(child)
    assert not alive(child), "the orphaned step is still running"


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped by whoever adopted it) is not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


# -- the standing child: the same endings, without a fork per step -----------------------------


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("raise", "failed: bad page tree"),
        ("segfault", "failed: crashed (SIGSEGV)"),
        ("abort", "failed: crashed (SIGABRT)"),
        ("exit", "failed: crashed (exit code 3)"),
        ("hang", "failed: ran past its 0.5 s limit and was stopped"),
    ],
)
async def test_a_standing_step_reports_every_ending_and_the_next_step_gets_a_child(
    tmp_path: Path, behaviour: str, expected: str
) -> None:
    # One worker, so every step below goes to the same worker's standing child.
    pool = WorkerPool(workers=1, timeout_s=10, memory_mb=MEMORY_MB, max_tasks=100)
    first, failing, after = (tmp_path / name for name in ("first.pid", "fail.pid", "after.pid"))
    try:
        assert await pool.run(jobs.standing, "return", 5.0, str(first)) == "ok: 42"
        assert await pool.run(jobs.standing, behaviour, 0.5, str(failing)) == expected
        assert await pool.run(jobs.standing, "return", 5.0, str(after)) == "ok: 42"
    finally:
        pool.close()
    pids = [int(path.read_text()) for path in (first, failing, after)]
    if behaviour == "raise":  # an exception is an answer: the child stays
        assert len(set(pids)) == 1, pids
    else:
        assert pids[0] == pids[1] != pids[2], pids
        assert not alive(pids[1]), "the failed child was reaped"


async def test_a_standing_child_serves_many_steps_then_is_replaced(pool: WorkerPool) -> None:
    pids = await pool.run(jobs.standing_pids, 6, 3)
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5], pids
    assert not alive(pids[0]), "the retired child was reaped"


async def test_a_standing_child_killed_while_idle_costs_no_step(tmp_path: Path) -> None:
    pool = WorkerPool(workers=1, timeout_s=10, memory_mb=MEMORY_MB, max_tasks=100)
    first, second = tmp_path / "first.pid", tmp_path / "second.pid"
    try:
        assert await pool.run(jobs.standing, "return", 5.0, str(first)) == "ok: 42"
        child = int(first.read_text())
        os.kill(child, signal.SIGKILL)
        await until_dead(child)  # killed a while ago, not at the moment the next step is sent
        assert await pool.run(jobs.standing, "return", 5.0, str(second)) == "ok: 42"
    finally:
        pool.close()
    assert first.read_text() != second.read_text()


async def test_a_standing_child_dies_when_its_worker_is_killed(
    pool: WorkerPool, tmp_path: Path
) -> None:
    """The job limit (1 s) kills the worker in the middle of a step (deadline 1.5 s): the
    child must end too, instead of spinning on for a worker that is gone."""
    pid_file = tmp_path / "child.pid"
    with pytest.raises(LimitExceededError):
        await pool.run(jobs.standing, "hang", 1.5, str(pid_file))
    child = int(pid_file.read_text())
    await until_dead(child)
    assert not alive(child), "the orphaned standing child is still running"


async def until_dead(pid: int, timeout_s: float = 10) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if not alive(pid):
            return
        await asyncio.sleep(0.05)
