"""A job's time budget against a real process pool: waiting for a worker is not the job's time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from pipelined.consumer import ConsumerConfig, Delivery
from pipelined.disposition import Ack, Disposition
from pipelined.pool import WorkerPool
from tests.integration.helpers import eventually
from tests.unit.test_consumer_engine import FakeQueue, consuming

pytestmark = pytest.mark.timeout(90)

JOB_S = 2.5
"""How long each job keeps its worker busy."""


@pytest.fixture
async def one_worker() -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(workers=1, timeout_s=60, memory_mb=1024)
    await pool.run(time.sleep, 0)  # a warm worker: its start-up is no job's time
    try:
        yield pool
    finally:
        await asyncio.to_thread(pool.close)


async def test_jobs_waiting_for_a_worker_keep_their_time_budget(one_worker: WorkerPool) -> None:
    queue = FakeQueue()
    queue.send(2)  # received together; one worker, so one job waits for the other
    finished: list[str] = []

    async def handler(delivery: Delivery) -> Disposition:
        await one_worker.run(time.sleep, JOB_S)
        finished.append(delivery.message_id)
        return Ack()

    # Longer than one job, shorter than both: only the wait for the worker could exceed it.
    max_job_time_s = int(JOB_S * 1.6)
    config = ConsumerConfig(
        max_inflight=8,
        pollers=1,
        wait_time_s=0,
        visibility_timeout_s=2,
        lease_renew_interval_s=0.5,
        max_job_time_s=max_job_time_s,
    )
    with capture_logs() as logs:
        async with consuming(queue, handler, config):
            assert await eventually(
                lambda: len(queue.deleted) + len(queue.released) == 2, timeout_s=30
            )
    cancelled = [entry for entry in logs if entry["event"] == "job_cancelled"]
    assert cancelled == [], "a job waiting for a worker ran out of time before it ran"
    assert sorted(finished) == ["m0", "m1"]
    assert sorted(d.message_id for d in queue.deleted) == ["m0", "m1"]
