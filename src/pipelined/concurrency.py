"""Adaptive concurrency: additive increase, multiplicative decrease (AIMD), as TCP does.

When the cloud throttles us, running as many jobs as before only makes it worse; halving the
number of jobs in flight relieves it at once, and adding one back per window of successes finds
the sustainable level again without oscillating wildly.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class AimdLimit:
    """A concurrency limit between ``minimum`` and ``maximum`` that reacts to throttling."""

    def __init__(
        self,
        maximum: int,
        minimum: int = 1,
        decrease_cooldown_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.minimum = min(minimum, maximum)
        self.current = maximum
        self._cooldown_s = decrease_cooldown_s
        self._clock = clock
        self._last_decrease = -float("inf")
        self._successes = 0

    def on_success(self) -> bool:
        """Count a success; after ``current`` of them in a row, allow one more. True if raised."""
        if self.current >= self.maximum:
            return False
        self._successes += 1
        if self._successes < self.current:
            return False
        self._successes = 0
        self.current += 1
        return True

    def on_throttle(self) -> bool:
        """Halve the limit, at most once per cooldown (one burst is one signal). True if lowered."""
        now = self._clock()
        self._successes = 0
        if now - self._last_decrease < self._cooldown_s or self.current <= self.minimum:
            return False
        self._last_decrease = now
        self.current = max(self.minimum, self.current // 2)
        return True


class ThrottleSignal:
    """Fan-out of "the cloud throttled us", from where it is seen to whoever adapts to it.

    The AWS clients see throttling on every attempt, including the ones their own retries
    absorb; the consumer is created later and subscribes.
    """

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.remove(listener)

    def __call__(self) -> None:
        for listener in self._listeners:
            listener()
