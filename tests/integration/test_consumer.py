"""The consumer contract against real SQS (the emulator): leases, back-pressure, deletes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from structlog.testing import capture_logs

from pipelined import metrics
from pipelined.aws.clients import open_clients
from pipelined.aws.sqs import SqsQueue
from pipelined.consumer import Consumer, ConsumerConfig, Delivery, Handler
from pipelined.disposition import Ack, Disposition, Retry
from pipelined.local import REGION, LocalStack
from tests.integration.helpers import eventually, queue_counts

pytestmark = [pytest.mark.timeout(60), pytest.mark.every_aws_emulator]


def send(stack: LocalStack, count: int) -> None:
    sqs = stack.client("sqs")
    for index in range(count):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=f'{{"n": {index}}}')


@pytest.fixture(autouse=True)
def no_test_event(stack: LocalStack) -> None:
    """Remove the s3:TestEvent the emulator queued when the notification was configured."""
    sqs = stack.client("sqs")
    while queue_counts(stack) != (0, 0):
        response = sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])


@asynccontextmanager
async def consuming(
    stack: LocalStack, handler: Handler, config: ConsumerConfig
) -> AsyncIterator[Consumer]:
    """A consumer on the stack's queue for the length of the block; leaving it is a shutdown."""
    async with AsyncExitStack() as exits:
        clients = await open_clients(exits, max_connections=20, region=REGION)
        consumer = Consumer(
            SqsQueue(clients.sqs, stack.queue_url), handler, config, metrics.Health()
        )
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            yield consumer
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def test_a_job_that_outlasts_the_visibility_timeout_is_extended_and_done_once(
    stack: LocalStack,
) -> None:
    calls: Counter[str] = Counter()
    done = asyncio.Event()

    async def slow_handler(delivery: Delivery) -> Disposition:
        calls[delivery.message_id] += 1
        await asyncio.sleep(7)  # well past the 2 s visibility timeout
        done.set()
        return Ack()

    extended_before = metrics.VISIBILITY_EXTENSIONS.labels("extended")._value.get()
    config = ConsumerConfig(
        max_inflight=4, pollers=2, wait_time_s=1, visibility_timeout_s=2, lease_renew_interval_s=1
    )
    send(stack, 1)
    async with consuming(stack, slow_handler, config):
        await asyncio.wait_for(done.wait(), 20)
        await asyncio.sleep(2.5)  # had the lease lapsed, a second poller would now receive it
    assert list(calls.values()) == [1]
    assert metrics.VISIBILITY_EXTENSIONS.labels("extended")._value.get() - extended_before >= 4
    assert queue_counts(stack) == (0, 0)


async def test_nothing_is_received_while_every_slot_is_busy(stack: LocalStack) -> None:
    started: list[str] = []
    release = asyncio.Event()

    async def blocking_handler(delivery: Delivery) -> Disposition:
        started.append(delivery.message_id)
        await release.wait()
        return Ack()

    config = ConsumerConfig(max_inflight=2, pollers=3, wait_time_s=1, visibility_timeout_s=30)
    send(stack, 5)
    async with consuming(stack, blocking_handler, config):
        await asyncio.sleep(4)  # several poll cycles
        assert len(started) == 2
        assert queue_counts(stack) == (3, 2), "the other three wait in SQS, not in a local buffer"
        release.set()
        assert await eventually(lambda: len(started) == 5)
    assert len(set(started)) == 5
    assert queue_counts(stack) == (0, 0)


async def test_a_short_retry_is_tried_again_in_place_within_the_same_receive(
    stack: LocalStack,
) -> None:
    seen: list[tuple[str, int]] = []

    async def flaky_handler(delivery: Delivery) -> Disposition:
        seen.append((delivery.message_id, delivery.receive_count))
        return Retry(1, "flaky") if len(seen) == 1 else Ack()

    config = ConsumerConfig(max_inflight=2, pollers=1, wait_time_s=1, visibility_timeout_s=30)
    send(stack, 1)
    async with consuming(stack, flaky_handler, config):
        assert await eventually(lambda: len(seen) == 2)
        assert await eventually(lambda: queue_counts(stack) == (0, 0))
    assert [count for _, count in seen] == [1, 1], "one receive"
    assert seen[0][0] == seen[1][0]


async def test_retry_goes_back_to_the_queue_after_its_tries_in_place(stack: LocalStack) -> None:
    seen: list[tuple[str, int]] = []

    async def flaky_handler(delivery: Delivery) -> Disposition:
        seen.append((delivery.message_id, delivery.receive_count))
        return Retry(1, "flaky") if len(seen) <= 2 else Ack()

    config = ConsumerConfig(
        max_inflight=2, pollers=1, wait_time_s=1, visibility_timeout_s=30, retries_in_place=1
    )
    send(stack, 1)
    async with consuming(stack, flaky_handler, config):
        assert await eventually(lambda: len(seen) == 3)
        assert await eventually(lambda: queue_counts(stack) == (0, 0))
    assert [count for _, count in seen] == [1, 1, 2]
    assert len({message_id for message_id, _ in seen}) == 1


async def test_shutdown_releases_unfinished_work_at_once(stack: LocalStack) -> None:
    started = asyncio.Event()

    async def endless_handler(delivery: Delivery) -> Disposition:
        started.set()
        await asyncio.sleep(3600)
        return Ack()

    # The drain outlasts the receive in progress: it ends within its long poll, not abandoned.
    config = ConsumerConfig(
        max_inflight=2, pollers=1, wait_time_s=1, visibility_timeout_s=300, drain_timeout_s=2
    )
    send(stack, 1)
    async with consuming(stack, endless_handler, config):
        await asyncio.wait_for(started.wait(), 10)
    # Released with visibility 0: visible again now, not in 300 s.
    assert queue_counts(stack) == (1, 0)


async def test_a_receive_abandoned_at_shutdown_cannot_hide_the_released_work(
    stack: LocalStack,
) -> None:
    """SQS goes on with a long poll whose client has gone, and would hand it the messages the
    drain released: they must come back when that poll has ended, not after 300 s."""
    started = asyncio.Event()

    async def endless_handler(delivery: Delivery) -> Disposition:
        started.set()
        await asyncio.sleep(3600)
        return Ack()

    wait_time_s = 3
    config = ConsumerConfig(
        max_inflight=2,
        pollers=1,
        wait_time_s=wait_time_s,
        visibility_timeout_s=300,
        drain_timeout_s=0.5,
    )
    send(stack, 1)
    with capture_logs() as logs:
        async with consuming(stack, endless_handler, config):
            await asyncio.wait_for(started.wait(), 10)
            await asyncio.sleep(0.2)  # the poller's next receive is under way
    assert [e for e in logs if e["event"] == "receive_abandoned"]
    await asyncio.sleep(wait_time_s + 3)  # the abandoned long poll has ended, on any clock
    assert queue_counts(stack) == (1, 0), "visible again, not taken by the abandoned receive"


async def test_throttling_lowers_concurrency_and_successes_raise_it_again(
    stack: LocalStack,
) -> None:
    throttles_left = 3
    peak_in_flight = 0
    in_flight = 0

    async def handler(delivery: Delivery) -> Disposition:
        nonlocal throttles_left, peak_in_flight, in_flight
        in_flight += 1
        peak_in_flight = max(peak_in_flight, in_flight)
        await asyncio.sleep(0.2)
        in_flight -= 1
        if throttles_left > 0:
            throttles_left -= 1
            return Retry(1, "ThrottledError: slow down", throttled=True)
        return Ack()

    config = ConsumerConfig(max_inflight=8, pollers=2, wait_time_s=1, visibility_timeout_s=30)
    with capture_logs() as logs:
        async with consuming(stack, handler, config) as consumer:
            send(stack, 48)
            assert await eventually(
                lambda: queue_counts(stack) == (0, 0) and consumer.in_flight == 0, timeout_s=30
            )
    limits = [(e["limit"], e["throttled"]) for e in logs if e["event"] == "concurrency_changed"]
    assert limits[0] == (4, True), "a throttled retry halves the limit (a burst counts once)"
    raised = [limit for limit, throttled in limits[1:] if not throttled]
    assert raised == list(range(5, 5 + len(raised))), "successes raise it one step at a time"
    assert raised, "successes raise it again"
    assert metrics.CONCURRENCY_LIMIT._value.get() == consumer.concurrency_limit


async def test_a_lost_lease_cancels_its_job_and_nothing_is_deleted_for_it(
    stack: LocalStack,
) -> None:
    started, cancelled, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def long_handler(delivery: Delivery) -> Disposition:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finished.set()
        return Ack()

    lost_before = metrics.MESSAGES.labels("lost")._value.get()
    config = ConsumerConfig(
        max_inflight=2, pollers=1, wait_time_s=1, visibility_timeout_s=3, lease_renew_interval_s=1
    )
    send(stack, 1)
    async with consuming(stack, long_handler, config):
        await asyncio.wait_for(started.wait(), 10)
        # Someone else took the message away: its receipt handle is no longer valid.
        stack.client("sqs").purge_queue(QueueUrl=stack.queue_url)
        await asyncio.wait_for(cancelled.wait(), 10)
    assert not finished.is_set()
    assert metrics.MESSAGES.labels("lost")._value.get() - lost_before == 1
