"""The queue gauges' rules: how the oldest message's age is approximated, for the main queue
from what was received and for the dead-letter queue from how long it has been non-empty."""

from __future__ import annotations

from prometheus_client import REGISTRY

from pipelined.queuestats import Depth, QueueStats, QueueStatsPoller, ReceivedAges

EMPTY = Depth(0, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Stats:
    """A queue whose attributes the test sets."""

    def __init__(self) -> None:
        self.answer = QueueStats(EMPTY, EMPTY)

    async def stats(self) -> QueueStats:
        return self.answer


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def age(queue: str) -> float | None:
    return gauge("pipelined_queue_oldest_message_age_seconds", queue=queue)


def test_received_ages_keep_the_oldest_and_start_afresh() -> None:
    ages = ReceivedAges()
    ages.note(2, 5.0)
    ages.note(1, 9.0)
    ages.note(1, None)
    assert ages.take() == (9.0, False)
    ages.note(0, None)
    assert ages.take() == (None, True)
    assert ages.take() == (None, False)


async def test_the_main_queue_age_follows_the_receives() -> None:
    clock, source, ages = Clock(), Stats(), ReceivedAges()
    poller = QueueStatsPoller(source, ages, clock=clock)
    source.answer = QueueStats(Depth(4, 2, 1), None)
    ages.note(3, 12.5)
    await poller.poll()
    assert age("main") == 12.5
    assert gauge("pipelined_queue_messages", queue="main", state="visible") == 4
    assert gauge("pipelined_queue_messages", queue="main", state="in_flight") == 2
    assert gauge("pipelined_queue_messages", queue="main", state="delayed") == 1
    assert gauge("pipelined_queue_stats_timestamp_seconds") == clock.now

    clock.now += 30  # nothing received, messages wait: the backlog ages
    await poller.poll()
    assert age("main") == 42.5

    clock.now += 30
    ages.note(0, None)  # an empty receive: nothing waits
    await poller.poll()
    assert age("main") == 0

    clock.now += 30
    source.answer = QueueStats(EMPTY, None)
    await poller.poll()
    assert age("main") == 0, "the queue says none are visible"


async def test_the_dead_letter_age_is_how_long_it_has_held_messages() -> None:
    clock, source = Clock(), Stats()
    poller = QueueStatsPoller(source, ReceivedAges(), clock=clock)
    await poller.poll()
    assert age("dlq") == 0
    source.answer = QueueStats(EMPTY, Depth(0, 1, 0))
    clock.now += 30
    await poller.poll()
    assert age("dlq") == 0, "seen non-empty just now"
    clock.now += 45
    await poller.poll()
    assert age("dlq") == 45
    assert gauge("pipelined_queue_messages", queue="dlq", state="in_flight") == 1
    source.answer = QueueStats(EMPTY, EMPTY)
    clock.now += 30
    await poller.poll()
    assert age("dlq") == 0

    source.answer = QueueStats(EMPTY, None)  # the redrive policy was removed
    await poller.poll()
    assert age("dlq") is None
    assert gauge("pipelined_queue_messages", queue="dlq", state="visible") is None


class Failing:
    async def stats(self) -> QueueStats:
        raise ConnectionError("the queue is unreachable")


async def test_a_failed_poll_keeps_the_gauges_and_the_timestamp() -> None:
    clock, source = Clock(), Stats()
    await QueueStatsPoller(source, ReceivedAges(), clock=clock).poll()
    stamped = gauge("pipelined_queue_stats_timestamp_seconds")
    clock.now += 30
    ages = ReceivedAges()
    ages.note(1, 3.0)
    await QueueStatsPoller(Failing(), ages, clock=clock).poll()
    assert gauge("pipelined_queue_stats_timestamp_seconds") == stamped
    assert age("main") == 3.0, "the receives still tell the main queue's age"


async def test_without_a_source_only_the_receives_are_shown() -> None:
    ages = ReceivedAges()
    ages.note(2, 7.0)
    await QueueStatsPoller(None, ages, clock=Clock()).poll()
    assert age("main") == 7.0
