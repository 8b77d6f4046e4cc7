"""The worker pool's series: busy and queued jobs, and what each way of ending a job counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from pipelined.errors import LimitExceededError, WorkerDiedError
from pipelined.pool import WorkerPool
from tests.hostile import jobs

pytestmark = pytest.mark.timeout(60)

MEMORY_MB = 256

SERIES = [
    ("pipelined_pool_timeouts_total", {}),
    ("pipelined_pool_memory_kills_total", {}),
    ("pipelined_pool_worker_restarts_total", {"reason": "timeout"}),
    ("pipelined_pool_worker_restarts_total", {"reason": "memory"}),
    ("pipelined_pool_worker_restarts_total", {"reason": "died"}),
]


def counted() -> list[float]:
    return [REGISTRY.get_sample_value(name, labels) or 0.0 for name, labels in SERIES]


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(workers=1, timeout_s=1.0, memory_mb=MEMORY_MB, max_tasks=100)
    yield pool
    pool.close()


@pytest.mark.parametrize(
    ("job", "args", "error", "grown"),
    [
        (jobs.sleep_forever, (), LimitExceededError, [1, 0, 1, 0, 0]),
        (jobs.allocate, (2 * MEMORY_MB,), LimitExceededError, [0, 1, 0, 0, 0]),
        (jobs.kill_self, (), WorkerDiedError, [0, 1, 0, 1, 0]),
        (jobs.exit_abruptly, (3,), WorkerDiedError, [0, 0, 0, 0, 1]),
    ],
    ids=["timeout", "memory_error", "sigkill", "exit"],
)
async def test_each_way_a_job_ends_badly_is_counted(
    pool: WorkerPool,
    job: Callable[..., Any],
    args: tuple[Any, ...],
    error: type[Exception],
    grown: list[int],
) -> None:
    before = counted()
    with pytest.raises(error):
        await pool.run(job, *args)
    assert [a - b for a, b in zip(counted(), before, strict=True)] == grown


async def test_busy_workers_and_queued_jobs(pool: WorkerPool) -> None:
    assert gauge("pipelined_pool_workers") == 1
    first = asyncio.create_task(pool.run(jobs.sleep_forever))
    second = asyncio.create_task(pool.run(jobs.pid))
    for _ in range(10):  # let both calls reach the pool: no time passes in between
        await asyncio.sleep(0)
    assert gauge("pipelined_pool_busy_workers") == 1
    assert gauge("pipelined_pool_queued_jobs") == 1
    with pytest.raises(LimitExceededError):
        await first
    await second
    assert gauge("pipelined_pool_busy_workers") == 0
    assert gauge("pipelined_pool_queued_jobs") == 0
