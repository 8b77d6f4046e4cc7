"""Queue depth and oldest-message age, from the queue's own attributes, so a dashboard needs no
CloudWatch exporter. Off the hot path: one task, one attributes call per queue every
``POLL_INTERVAL_S`` (jittered), whose failures are logged and never stop the daemon.

Neither SQS's attributes nor Pub/Sub's API tell the age of the oldest message (that is only a
CloudWatch or Cloud Monitoring metric), so it is approximated from what this daemon sees; see
docs/metrics.md for what the numbers mean.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pipelined import metrics
from pipelined.logs import get_logger

log = get_logger(__name__)

POLL_INTERVAL_S = 30.0
"""Between polls, before jitter: within the 30 to 60 s a dashboard is drawn at."""
JITTER = 0.2
"""Each wait is up to this fraction longer, so replicas started together spread their calls."""


@dataclass(frozen=True)
class Depth:
    """Messages on one queue, by state, as the queue counts them (approximately)."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass(frozen=True)
class QueueStats:
    main: Depth
    dead_letters: Depth | None
    """None: the queue has no dead-letter queue."""


class QueueStatsSource(Protocol):
    """A backend that can tell its queue's depth (SQS can; Pub/Sub only through Monitoring)."""

    async def stats(self) -> QueueStats: ...


class ReceivedAges:
    """What the consumer saw at receive since the poller last looked: the age of the oldest
    message received, and whether a receive came back empty (the queue had nothing to give)."""

    def __init__(self) -> None:
        self._oldest_s: float | None = None
        self._empty = False

    def note(self, count: int, oldest_s: float | None) -> None:
        """A receive returned ``count`` messages, the oldest ``oldest_s`` old (None: unknown)."""
        if count == 0:
            self._empty = True
        if oldest_s is not None and (self._oldest_s is None or oldest_s > self._oldest_s):
            self._oldest_s = oldest_s

    def take(self) -> tuple[float | None, bool]:
        """(oldest age seen, an empty receive seen) since the last take; then start afresh."""
        taken = (self._oldest_s, self._empty)
        self._oldest_s, self._empty = None, False
        return taken


class QueueStatsPoller:
    """Sets the queue gauges every interval until cancelled."""

    def __init__(
        self,
        source: QueueStatsSource | None,
        ages: ReceivedAges,
        interval_s: float | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._source = source
        self._ages = ages
        self._interval_s = POLL_INTERVAL_S if interval_s is None else interval_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._main_age_s = 0.0
        self._last_poll: float | None = None
        self._dead_letters_since: float | None = None
        self._dead_letters_shown = False

    async def run(self) -> None:
        """Poll at once (the gauges are there from the start), then every interval."""
        while True:
            try:
                await self.poll()
            except Exception:  # never fatal: the next poll tries again
                log.exception("queue_stats_crashed")
            await asyncio.sleep(self._interval_s * self._rng.uniform(1.0, 1.0 + JITTER))

    async def poll(self) -> None:
        stats = await self._read()
        now = self._clock()
        self._show_main_age(now, stats)
        if stats is not None:
            _show_depth("main", stats.main)
            self._show_dead_letters(now, stats.dead_letters)
            metrics.QUEUE_STATS_TIMESTAMP.set(now)
        self._last_poll = now

    async def _read(self) -> QueueStats | None:
        if self._source is None:
            return None
        try:
            return await self._source.stats()
        except Exception as error:  # counted in pipelined_cloud_calls_total as well
            log.warning("queue_stats_failed", error=str(error) or type(error).__name__)
            return None

    def _show_main_age(self, now: float, stats: QueueStats | None) -> None:
        oldest_s, empty_seen = self._ages.take()
        if oldest_s is not None:
            self._main_age_s = oldest_s
        elif empty_seen or (stats is not None and stats.main.visible == 0):
            self._main_age_s = 0.0
        elif self._last_poll is not None:
            # Nothing received since the last poll while messages wait (every slot busy): the
            # backlog is not drained here, so its age is taken to grow.
            self._main_age_s += now - self._last_poll
        metrics.QUEUE_OLDEST_MESSAGE_AGE.labels("main").set(self._main_age_s)

    def _show_dead_letters(self, now: float, depth: Depth | None) -> None:
        if depth is None:
            if self._dead_letters_shown:  # the redrive policy was removed
                for state in ("visible", "in_flight", "delayed"):
                    metrics.QUEUE_MESSAGES.remove("dlq", state)
                metrics.QUEUE_OLDEST_MESSAGE_AGE.remove("dlq")
                self._dead_letters_shown = False
            self._dead_letters_since = None
            return
        _show_depth("dlq", depth)
        # How long the dead-letter queue has been non-empty, as this daemon saw it.
        if depth.total == 0:
            self._dead_letters_since = None
        elif self._dead_letters_since is None:
            self._dead_letters_since = now
        since = self._dead_letters_since
        metrics.QUEUE_OLDEST_MESSAGE_AGE.labels("dlq").set(0.0 if since is None else now - since)
        self._dead_letters_shown = True


def _show_depth(queue: str, depth: Depth) -> None:
    metrics.QUEUE_MESSAGES.labels(queue, "visible").set(depth.visible)
    metrics.QUEUE_MESSAGES.labels(queue, "in_flight").set(depth.in_flight)
    metrics.QUEUE_MESSAGES.labels(queue, "delayed").set(depth.delayed)
