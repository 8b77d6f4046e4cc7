"""What every Queue port must do on the wire, written once and run against each backend.

The consumer's own logic is tested against SQS (test_consumer.py); here, that a port keeps the
promises the consumer builds on: a batch no larger than asked, a lease that holds while it is
extended, a release that hands the message back at once, a delete that is for good, and an
empty receive that ends within its wait.

A backend's test module subclasses QueueContract (pytest collects the subclass, named Test...)
and gives it a ``backend`` fixture on a fresh, empty queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from pipelined.consumer import Delivery, Queue

pytestmark = pytest.mark.timeout(60)

SHORT_LEASE_S = 2
"""Long enough for the calls that follow a receive, short enough to wait out in a test."""
LONG_LEASE_S = 30
"""Longer than any test waits: a message seen again under it was given back, not expired."""
FIRST_RECEIVE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class QueueBackend:
    queue: Queue
    send: Callable[[str], Awaitable[None]]
    """Put one message with this body on the queue."""
    counts_receives: bool
    """Whether a redelivered message says it was received before (Pub/Sub counts delivery
    attempts only on a subscription with a dead-letter policy)."""


async def receive_first(queue: Queue, lease_s: int, wanted: int = 1) -> list[Delivery]:
    """Receive until something comes (a message just sent may take a moment to be pulled)."""
    deadline = time.monotonic() + FIRST_RECEIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        received = await queue.receive(wanted, 1, lease_s)
        if received:
            return received
    raise AssertionError(f"nothing received within {FIRST_RECEIVE_TIMEOUT_S} s")


class QueueContract:
    async def test_a_receive_returns_at_most_what_is_asked(self, backend: QueueBackend) -> None:
        for index in range(5):
            await backend.send(f"message-{index}")
        received = await receive_first(backend.queue, LONG_LEASE_S, wanted=3)
        assert 1 <= len(received) <= 3
        assert len({delivery.message_id for delivery in received}) == len(received)
        assert {delivery.body for delivery in received} <= {f"message-{n}" for n in range(5)}

    async def test_a_message_extended_past_its_lease_is_not_redelivered(
        self, backend: QueueBackend
    ) -> None:
        await backend.send("extended")
        [delivery] = await receive_first(backend.queue, SHORT_LEASE_S)
        assert await backend.queue.extend([delivery], 10) == []
        await asyncio.sleep(SHORT_LEASE_S + 1.5)  # past the lease it was received with
        assert await backend.queue.receive(10, 1, SHORT_LEASE_S) == []
        assert await backend.queue.delete([delivery]) == [], "the extended lease still holds"

    async def test_a_message_released_at_once_comes_back_at_once(
        self, backend: QueueBackend
    ) -> None:
        await backend.send("released")
        [first] = await receive_first(backend.queue, LONG_LEASE_S)
        assert await backend.queue.release([(first, 0)]) == []
        [again] = await receive_first(backend.queue, LONG_LEASE_S)
        assert (again.message_id, again.body) == (first.message_id, "released")
        if backend.counts_receives:
            assert again.receive_count > first.receive_count
        else:
            assert (first.receive_count, again.receive_count) == (1, 1)

    async def test_a_deleted_message_is_gone_for_good(self, backend: QueueBackend) -> None:
        await backend.send("deleted")
        [delivery] = await receive_first(backend.queue, SHORT_LEASE_S)
        assert await backend.queue.delete([delivery]) == []
        await asyncio.sleep(SHORT_LEASE_S + 1.5)  # its lease would have run out by now
        assert await backend.queue.receive(10, 1, SHORT_LEASE_S) == []

    async def test_an_empty_receive_returns_nothing_within_its_wait(
        self, backend: QueueBackend
    ) -> None:
        wait_s = 1
        started = time.monotonic()
        assert await backend.queue.receive(10, wait_s, LONG_LEASE_S) == []
        assert time.monotonic() - started < wait_s + 2.0
