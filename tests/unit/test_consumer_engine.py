"""The consumer as logic, against an in-memory Queue port: leases, limits, deletes, drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
from structlog.testing import capture_logs

from pipelined import metrics
from pipelined.consumer import (
    BatchFailure,
    Consumer,
    ConsumerConfig,
    DeleteBatcher,
    Delivery,
    Handler,
)
from pipelined.disposition import (
    IN_PLACE_RETRY_MAX_DELAY_S,
    Ack,
    BackoffPolicy,
    Defer,
    Disposition,
    Retry,
)
from pipelined.errors import ThrottledError
from pipelined.quotas import SQS_MAX_VISIBILITY_TIMEOUT_S
from tests.integration.helpers import eventually

pytestmark = pytest.mark.timeout(60)

Hook = Callable[[Sequence[Delivery]], Awaitable[None]]


async def _no_hook(_: Sequence[Delivery]) -> None:
    return None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeQueue:
    """The consumer's Queue port in memory. It refuses a visibility that passes twelve hours
    since the receive, as SQS does, and its ``before_*`` hooks can stall a call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.waiting: list[Delivery] = []
        self.receive_error: Exception | None = None
        self.empty_receive_hangs = False  # a receive that finds nothing never returns
        self.asked: list[int] = []  # each receive's max_messages
        self.received_at: dict[Delivery, float] = {}
        self.extended: list[tuple[Delivery, int, float]] = []  # (delivery, visibility, when)
        self.released: list[tuple[Delivery, int, float]] = []
        self.deleted: list[Delivery] = []
        self.refused: list[tuple[Delivery, int, float]] = []
        self.overlapping: list[Delivery] = []  # extended while an extension of it was in flight
        self.before_extend: Hook = _no_hook
        self.before_release: Hook = _no_hook
        self.before_delete: Hook = _no_hook
        self._extending: set[Delivery] = set()

    @property
    def receives(self) -> int:
        return len(self.asked)

    def send(self, count: int) -> list[Delivery]:
        start = len(self.received_at) + len(self.waiting)
        deliveries = [
            Delivery(f"m{index}", "{}", 1, f"lease-{index}")
            for index in range(start, start + count)
        ]
        self.waiting.extend(deliveries)
        return deliveries

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Delivery]:
        self.asked.append(max_messages)
        if self.receive_error is not None:
            raise self.receive_error
        if not self.waiting:
            if self.empty_receive_hangs:
                await asyncio.Event().wait()
            await asyncio.sleep(0.01)  # a very short long poll
            return []
        taken, self.waiting = self.waiting[:max_messages], self.waiting[max_messages:]
        for delivery in taken:
            self.received_at[delivery] = self.clock()
        return taken

    async def extend(
        self, deliveries: Sequence[Delivery], visibility_timeout_s: int
    ) -> list[BatchFailure]:
        self.overlapping.extend(d for d in deliveries if d in self._extending)
        self._extending.update(deliveries)
        try:
            await self.before_extend(deliveries)
        finally:
            self._extending.difference_update(deliveries)
        entries = [(delivery, visibility_timeout_s) for delivery in deliveries]
        return self._change_visibility(entries, self.extended)

    async def release(self, entries: Sequence[tuple[Delivery, int]]) -> list[BatchFailure]:
        await self.before_release([delivery for delivery, _ in entries])
        return self._change_visibility(entries, self.released)

    async def delete(self, deliveries: Sequence[Delivery]) -> list[BatchFailure]:
        await self.before_delete(deliveries)
        self.deleted.extend(deliveries)
        return []

    def _change_visibility(
        self,
        entries: Sequence[tuple[Delivery, int]],
        done: list[tuple[Delivery, int, float]],
    ) -> list[BatchFailure]:
        now = self.clock()
        failures = []
        for delivery, visibility_s in entries:
            if now + visibility_s > self.received_at[delivery] + SQS_MAX_VISIBILITY_TIMEOUT_S:
                self.refused.append((delivery, visibility_s, now))
                failures.append(BatchFailure(delivery, "InvalidParameterValue", False))
            else:
                done.append((delivery, visibility_s, now))
        return failures


class CountingHealth(metrics.Health):
    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1
        super().tick()


@asynccontextmanager
async def consuming(
    queue: FakeQueue,
    handler: Handler,
    config: ConsumerConfig,
    health: metrics.Health | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Consumer]:
    """A consumer on ``queue`` for the length of the block; leaving it is a shutdown."""
    consumer = Consumer(queue, handler, config, health or metrics.Health(), clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def endless() -> tuple[Handler, asyncio.Event]:
    """A handler whose jobs never finish, and the event it sets when the first one starts."""
    started = asyncio.Event()

    async def handler(_: Delivery) -> Disposition:
        started.set()
        await asyncio.Event().wait()
        return Ack()

    return handler, started


def extended(queue: FakeQueue, delivery: Delivery) -> int:
    return sum(1 for d, _, _ in queue.extended if d is delivery)


# --- e: one stuck extension ---------------------------------------------------------------


async def test_a_stuck_extension_holds_up_neither_other_leases_nor_liveness() -> None:
    queue = FakeQueue()
    deliveries = queue.send(20)
    stuck: list[Sequence[Delivery]] = []
    progress: dict[str, int] = {}
    gave_up = asyncio.Event()
    health = CountingHealth()

    async def stall_the_first_call_with_m0(batch: Sequence[Delivery]) -> None:
        if stuck or deliveries[0] not in batch:
            return
        stuck.append(batch)
        progress.update(ticks=health.ticks, extended=len(queue.extended))
        try:
            await asyncio.Event().wait()  # a blackholed endpoint: no answer, ever
        finally:
            gave_up.set()

    queue.before_extend = stall_the_first_call_with_m0
    release = asyncio.Event()

    async def handler(_: Delivery) -> Disposition:
        await release.wait()
        return Ack()

    failed_before = metrics.VISIBILITY_EXTENSIONS.labels("failed")._value.get()
    config = ConsumerConfig(
        max_inflight=20,
        pollers=2,
        wait_time_s=0,
        visibility_timeout_s=4,
        lease_renew_interval_s=0.5,
        drain_timeout_s=1,
    )
    async with consuming(queue, handler, config, health):
        assert await eventually(lambda: bool(stuck))
        others = [d for d in deliveries if d not in stuck[0]]

        def others_kept_going() -> bool:
            later = queue.extended[progress["extended"] :]
            return health.ticks - progress["ticks"] >= 3 and {d for d, _, _ in later} >= set(others)

        await eventually(lambda: others_kept_going() or gave_up.is_set(), timeout_s=10)
        assert others_kept_going(), "the other leases and the health tick waited for one call"
        assert await eventually(gave_up.is_set, timeout_s=10), "the stuck call was never given up"
        assert metrics.VISIBILITY_EXTENSIONS.labels("failed")._value.get() - failed_before >= len(
            stuck[0]
        ), "a call given up at its deadline counts as failed"
        assert await eventually(lambda: all(extended(queue, d) for d in stuck[0])), (
            "the leases of the stuck call are extended on a later tick"
        )
        release.set()
        assert await eventually(lambda: len(queue.deleted) == 20)
    assert queue.overlapping == [], "no lease is extended while its extension is in flight"


# --- i: the delete in flight when the batcher is cancelled -----------------------------------


async def test_a_delete_in_flight_when_the_batcher_is_cancelled_is_sent_by_the_final_flush() -> (
    None
):
    queue = FakeQueue()
    deliveries = queue.send(3)
    calls: list[Sequence[Delivery]] = []

    async def hang_the_first_call(batch: Sequence[Delivery]) -> None:
        calls.append(batch)
        if len(calls) == 1:
            await asyncio.Event().wait()

    queue.before_delete = hang_the_first_call
    batcher = DeleteBatcher(queue, flush_interval_s=0.01)
    running = asyncio.create_task(batcher.run())
    for delivery in deliveries:
        batcher.add(delivery)
    assert await eventually(lambda: len(calls) == 1)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await asyncio.wait_for(batcher.flush(), 5)
    assert sorted(d.message_id for d in queue.deleted) == ["m0", "m1", "m2"]


# --- k: nothing passes twelve hours since the receive ---------------------------------------

NEAR_THE_LIMIT_S = SQS_MAX_VISIBILITY_TIMEOUT_S - 100


def near_limit_config(**overrides: object) -> ConsumerConfig:
    values: dict[str, object] = {
        "max_inflight": 1,
        "pollers": 1,
        "wait_time_s": 0,
        "visibility_timeout_s": 60,
        "lease_renew_interval_s": 0.2,
        "max_job_time_s": SQS_MAX_VISIBILITY_TIMEOUT_S,
        "drain_timeout_s": 0.5,
        # Delays far longer than what is left of the twelve hours.
        "backoff": BackoffPolicy(base_delay_s=3600, max_delay_s=SQS_MAX_VISIBILITY_TIMEOUT_S),
    }
    return ConsumerConfig(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize("delay_s", [900, SQS_MAX_VISIBILITY_TIMEOUT_S])
async def test_a_retry_delay_is_cut_to_what_is_left_of_twelve_hours(delay_s: int) -> None:
    clock = FakeClock()
    queue = FakeQueue(clock)
    queue.send(1)
    started, finish = asyncio.Event(), asyncio.Event()

    async def handler(_: Delivery) -> Disposition:
        started.set()
        await finish.wait()
        return Retry(delay_s, "busy")

    async with consuming(queue, handler, near_limit_config(), clock=clock):
        await asyncio.wait_for(started.wait(), 5)
        clock.now = NEAR_THE_LIMIT_S
        finish.set()
        assert await eventually(lambda: bool(queue.released or queue.refused))
    assert queue.refused == [], "SQS refuses a visibility past twelve hours since the receive"
    [(_, released_s, _)] = queue.released
    assert 0 < released_s < delay_s


async def test_the_max_job_time_retry_is_cut_to_what_is_left_of_twelve_hours() -> None:
    clock = FakeClock()
    queue = FakeQueue(clock)
    queue.send(1)
    endless_handler, started = endless()

    config = near_limit_config(max_job_time_s=NEAR_THE_LIMIT_S - 1)
    async with consuming(queue, endless_handler, config, clock=clock):
        await asyncio.wait_for(started.wait(), 5)
        clock.now = NEAR_THE_LIMIT_S
        assert await eventually(lambda: bool(queue.released or queue.refused))
    assert queue.refused == []
    [(_, released_s, _)] = queue.released
    assert released_s > 0, "still ours for a while: a short delay rather than none"


async def test_a_long_job_is_extended_up_to_twelve_hours_and_released_before_them() -> None:
    clock = FakeClock()
    queue = FakeQueue(clock)
    [delivery] = queue.send(1)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def endless_handler(_: Delivery) -> Disposition:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Ack()

    async with consuming(queue, endless_handler, near_limit_config(), clock=clock):
        await asyncio.wait_for(started.wait(), 5)
        for now in (SQS_MAX_VISIBILITY_TIMEOUT_S - 200, NEAR_THE_LIMIT_S):
            clock.now = now
            assert await eventually(lambda: any(at == clock.now for _, _, at in queue.extended))
        clock.now = SQS_MAX_VISIBILITY_TIMEOUT_S - 50
        assert await eventually(lambda: cancelled.is_set() or bool(queue.refused))
        assert await eventually(lambda: bool(queue.released or queue.refused))
    assert queue.refused == [], "no extension nor release passes twelve hours since the receive"
    assert cancelled.is_set(), "the job is given up before its message can no longer be held"
    assert [d for d, _, _ in queue.released] == [delivery]


# --- l: receive failures and the drain ------------------------------------------------------


async def test_a_failed_receive_does_not_count_as_a_success_for_the_limit() -> None:
    queue = FakeQueue()
    queue.receive_error = RuntimeError("connection reset")

    async def handler(_: Delivery) -> Disposition:
        return Ack()

    config = ConsumerConfig(max_inflight=8, pollers=8, wait_time_s=0)
    async with consuming(queue, handler, config) as consumer:
        consumer.note_throttle()
        assert consumer.concurrency_limit == 4
        assert await eventually(lambda: queue.receives >= 12)
        assert consumer.concurrency_limit == 4


async def test_a_throttled_receive_lowers_the_limit() -> None:
    queue = FakeQueue()
    queue.receive_error = ThrottledError("slow down")

    async def handler(_: Delivery) -> Disposition:
        return Ack()

    config = ConsumerConfig(max_inflight=8, pollers=1, wait_time_s=0)
    async with consuming(queue, handler, config) as consumer:
        assert await eventually(lambda: consumer.concurrency_limit == 4)


async def test_a_drain_that_gives_up_a_receive_releases_after_its_long_poll() -> None:
    """The queue may still hand that receive what the drain releases: hold it back until the
    receive's long poll has surely ended (sent + wait + margin), rounded up to whole seconds."""
    clock = FakeClock()
    queue = FakeQueue(clock)
    [delivery] = queue.send(1)
    queue.empty_receive_hangs = True
    endless_handler, started = endless()

    config = ConsumerConfig(max_inflight=2, pollers=1, wait_time_s=20, drain_timeout_s=0.05)
    with capture_logs() as logs:
        async with consuming(queue, endless_handler, config, clock=clock):
            await asyncio.wait_for(started.wait(), 5)
            assert await eventually(lambda: queue.receives == 2)  # sent at 0, never answered
            clock.now = 4.5
    [abandoned] = [e for e in logs if e["event"] == "receive_abandoned"]
    assert abandoned["release_after_s"] == 17  # ceil(0 + 20 + 1 - 4.5)
    assert [(d, delay_s) for d, delay_s, _ in queue.released] == [(delivery, 17)]


async def test_a_drain_with_every_receive_ended_releases_at_once() -> None:
    queue = FakeQueue()
    [delivery] = queue.send(1)
    endless_handler, started = endless()

    config = ConsumerConfig(max_inflight=2, pollers=1, wait_time_s=20, drain_timeout_s=0.2)
    with capture_logs() as logs:
        async with consuming(queue, endless_handler, config):
            await asyncio.wait_for(started.wait(), 5)
    assert not [e for e in logs if e["event"] == "receive_abandoned"]
    assert [(d, delay_s) for d, delay_s, _ in queue.released] == [(delivery, 0)]


async def test_the_drain_waits_for_a_disposition_still_being_applied() -> None:
    queue = FakeQueue()
    [delivery] = queue.send(1)
    releasing = asyncio.Event()

    async def slow_release(_: Sequence[Delivery]) -> None:
        releasing.set()
        await asyncio.sleep(0.5)

    queue.before_release = slow_release

    async def handler(_: Delivery) -> Disposition:
        return Retry(5, "flaky")

    config = ConsumerConfig(
        max_inflight=1, pollers=1, wait_time_s=0, drain_timeout_s=0.05, retries_in_place=0
    )
    with capture_logs():
        async with consuming(queue, handler, config):
            await asyncio.wait_for(releasing.wait(), 5)
    # consumer.run has returned: the release must be done, not still on its way.
    assert [(d, delay_s) for d, delay_s, _ in queue.released] == [(delivery, 5)]


# --- receives and deletes under load ---------------------------------------------------------


def held() -> tuple[Handler, dict[str, asyncio.Event]]:
    """A handler whose job for message ``m<n>`` finishes when the test sets its event."""
    finish: dict[str, asyncio.Event] = {}

    async def handler(delivery: Delivery) -> Disposition:
        await finish.setdefault(delivery.message_id, asyncio.Event()).wait()
        return Ack()

    return handler, finish


async def finish_one_by_one(finish: dict[str, asyncio.Event], message_ids: Sequence[str]) -> None:
    for message_id in message_ids:
        finish.setdefault(message_id, asyncio.Event()).set()
        await asyncio.sleep(0.05)  # time for a poller to act on the freed slot


@pytest.mark.parametrize(
    ("max_inflight", "finished", "asked"),
    [
        (8, 6, [8, 3, 3]),  # 2 workers: a receive waits for half of the 6 slots beyond theirs
        (2, 3, [2, 1, 1, 1]),  # none beyond the workers': each freed slot is refilled at once
    ],
)
async def test_under_load_a_receive_waits_for_half_the_slots_beyond_the_workers(
    max_inflight: int, finished: int, asked: list[int]
) -> None:
    """Slots free one at a time under load: receiving for each as it frees costs a receive per
    message (SQS bills each call, and each costs the daemon CPU). The workers' share of the
    slots is refilled as it frees; the rest waits until half of it is free."""
    queue = FakeQueue()
    queue.send(30)
    handler, finish = held()
    config = ConsumerConfig(
        max_inflight=max_inflight, workers=2, pollers=1, wait_time_s=0, drain_timeout_s=0.5
    )
    async with consuming(queue, handler, config) as consumer:
        assert await eventually(lambda: consumer.in_flight == max_inflight)
        await finish_one_by_one(finish, [f"m{index}" for index in range(finished)])
        assert queue.asked == asked


async def test_a_full_batch_of_deletes_goes_out_without_waiting_for_the_interval() -> None:
    queue = FakeQueue()
    deliveries = queue.send(12)
    batcher = DeleteBatcher(queue, flush_interval_s=30)
    running = asyncio.create_task(batcher.run())
    try:
        batcher.add(deliveries[0])
        await asyncio.sleep(0.05)  # the batcher is waiting for more to come
        for delivery in deliveries[1:]:
            batcher.add(delivery)
        assert await eventually(lambda: len(queue.deleted) >= 10, timeout_s=5)
        assert queue.deleted[:10] == deliveries[:10]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


# --- m: short retries waited out in place ---------------------------------------------------


def scripted(*dispositions: Disposition) -> tuple[Handler, list[Delivery]]:
    """A handler that answers with ``dispositions`` in turn, then Ack; and its calls."""
    calls: list[Delivery] = []

    async def handler(delivery: Delivery) -> Disposition:
        calls.append(delivery)
        return dispositions[len(calls) - 1] if len(calls) <= len(dispositions) else Ack()

    return handler, calls


async def test_a_short_retry_is_waited_out_in_place_without_another_receive() -> None:
    """Put back on the queue, each retry would spend a receive and one of the few a message
    has before the dead-letter queue; waited out here, the delivery tries again at once."""
    queue = FakeQueue()
    [delivery] = queue.send(1)
    handler, calls = scripted(Retry(1, "flaky"), Retry(1, "flaky"))

    config = ConsumerConfig(max_inflight=1, pollers=1, wait_time_s=0)
    with capture_logs() as logs:
        async with consuming(queue, handler, config):
            assert await eventually(lambda: queue.deleted == [delivery], timeout_s=10)
    assert calls == [delivery] * 3
    assert queue.released == []
    waits = [e for e in logs if e["event"] == "message_retried_in_place"]
    assert [(e["delay_s"], e["retries_left"]) for e in waits] == [(1, 1), (1, 0)]


async def test_a_retry_past_the_tries_in_place_goes_back_to_the_queue() -> None:
    queue = FakeQueue()
    [delivery] = queue.send(1)
    handler, calls = scripted(Retry(1, "flaky"), Retry(2, "flaky"))

    config = ConsumerConfig(max_inflight=1, pollers=1, wait_time_s=0, retries_in_place=1)
    with capture_logs():
        async with consuming(queue, handler, config):
            assert await eventually(lambda: bool(queue.released), timeout_s=10)
    assert calls == [delivery] * 2
    assert [(d, delay_s) for d, delay_s, _ in queue.released] == [(delivery, 2)]


@pytest.mark.parametrize(
    "retry",
    [
        Retry(1, "ThrottledError: slow down", throttled=True),  # the limit must hear of it
        Retry(IN_PLACE_RETRY_MAX_DELAY_S + 1, "a long backoff"),  # would hold a slot idle
    ],
    ids=["throttled", "long"],
)
async def test_a_throttled_or_long_retry_goes_back_to_the_queue_at_once(retry: Retry) -> None:
    queue = FakeQueue()
    [delivery] = queue.send(1)
    handler, calls = scripted(retry)

    config = ConsumerConfig(max_inflight=1, pollers=1, wait_time_s=0)
    with capture_logs():
        async with consuming(queue, handler, config):
            assert await eventually(lambda: bool(queue.released), timeout_s=5)
    assert calls == [delivery]
    assert [(d, delay_s) for d, delay_s, _ in queue.released] == [(delivery, retry.delay_s)]


@pytest.mark.parametrize(
    ("waiting", "released_s"),
    [(Retry(20, "flaky"), 20), (Defer(41.5, "busy"), 42)],
    ids=["retry", "defer"],
)
async def test_a_drain_ends_a_wait_in_place_and_puts_the_message_back_for_the_rest(
    waiting: Disposition, released_s: int
) -> None:
    """The drain need not sit out the wait, and the message must not come back before it
    ends (for a live claim: before the holder's lease runs out)."""
    queue = FakeQueue()
    [delivery] = queue.send(1)
    handler, calls = scripted(waiting)

    config = ConsumerConfig(max_inflight=1, pollers=1, wait_time_s=0, drain_timeout_s=25)
    with capture_logs() as logs:
        async with consuming(queue, handler, config):
            assert await eventually(lambda: len(calls) == 1)
    # The wait ended when the drain began: the job was not left to the drain's timeout.
    assert not [e for e in logs if e["event"] == "job_cancelled"]
    assert calls == [delivery]
    assert [(d, delay_s) for d, delay_s, _ in queue.released] == [(delivery, released_s)]
