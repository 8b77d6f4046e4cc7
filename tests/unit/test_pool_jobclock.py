"""The job budget clock the pool pauses while a job waits for a worker."""

from __future__ import annotations

import asyncio

from pipelined import jobclock
from tests.unit.test_consumer_engine import FakeClock


def test_time_waiting_for_a_worker_does_not_count() -> None:
    clock = FakeClock()
    budget = jobclock.JobClock(clock)
    clock.now = 5
    with budget.paused():
        clock.now = 65
        assert budget.used_s() == 5
    clock.now = 70
    assert budget.used_s() == 10


def test_overlapping_waits_pause_the_clock_once() -> None:
    clock = FakeClock()
    budget = jobclock.JobClock(clock)
    with budget.paused():
        clock.now = 10
        with budget.paused():
            clock.now = 20
        clock.now = 30
    clock.now = 31
    assert budget.used_s() == 1


async def test_the_pool_pauses_the_clock_bound_to_the_current_task_only() -> None:
    clock = FakeClock()
    budget = jobclock.JobClock(clock)

    async def job() -> None:
        jobclock.bind(budget)
        with jobclock.waiting_for_worker():
            clock.now = 100

    await asyncio.create_task(job())
    assert budget.used_s() == 0
    with jobclock.waiting_for_worker():  # no job here: nothing to pause, and no error
        clock.now = 130
    assert budget.used_s() == 30
