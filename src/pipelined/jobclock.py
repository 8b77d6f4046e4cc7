"""The time budget clock of the consumer job running in the current task.

The consumer gives each job ``max_job_time_s``; the time a job spends waiting for a free worker
is not its own doing, so it must not count. The wait happens in the pool, the budget is kept by
the consumer: this module lets the one pause the other's clock without either importing the
other. The consumer binds a clock to each job's task; the pool pauses whatever clock is bound.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar


class JobClock:
    """A job's age less the time it spent waiting for a worker: what counts against its budget."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._started_at = clock()
        self._waited_s = 0.0
        # A job's tasks could wait side by side: the clock runs again when the last wait ends.
        self._waits = 0
        self._waiting_since = 0.0

    def used_s(self) -> float:
        now = self._clock()
        waited_s = self._waited_s + (now - self._waiting_since if self._waits else 0.0)
        return now - self._started_at - waited_s

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        if not self._waits:
            self._waiting_since = self._clock()
        self._waits += 1
        try:
            yield
        finally:
            self._waits -= 1
            if not self._waits:
                self._waited_s += self._clock() - self._waiting_since


_current: ContextVar[JobClock | None] = ContextVar("pipelined_job_clock", default=None)


def bind(clock: JobClock) -> None:
    """Make ``clock`` the current job's, for this task and the tasks it starts."""
    _current.set(clock)


@contextlib.contextmanager
def waiting_for_worker() -> Iterator[None]:
    """Pause the current job's clock for the block; outside a consumer job, do nothing."""
    clock = _current.get()
    if clock is None:
        yield
        return
    with clock.paused():
        yield
