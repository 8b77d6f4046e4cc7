"""The consumer contract against real SQS (the emulator): leases, back-pressure, deletes."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import pytest

from pipelined import metrics
from pipelined.aws.clients import open_clients
from pipelined.aws.sqs import SqsQueue
from pipelined.consumer import Consumer, ConsumerConfig, Delivery, Handler
from pipelined.disposition import Ack, Disposition, Retry
from pipelined.local import REGION, LocalStack
from tests.integration.helpers import queue_counts

pytestmark = pytest.mark.timeout(60)


def send(stack: LocalStack, count: int) -> None:
    sqs = stack.client("sqs")
    for index in range(count):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=f'{{"n": {index}}}')


def drain_test_event(stack: LocalStack) -> None:
    """Remove the s3:TestEvent the emulator queued when the notification was configured."""
    stack.client("sqs").purge_queue(QueueUrl=stack.queue_url)
    assert queue_counts(stack) == (0, 0)


async def run_consumer(
    stack: LocalStack, handler: Handler, config: ConsumerConfig, until: asyncio.Event
) -> None:
    async with AsyncExitStack() as exits:
        clients = await open_clients(exits, max_connections=20, region=REGION)
        queue = SqsQueue(clients.sqs, stack.queue_url)
        consumer = Consumer(queue, handler, config, metrics.Health())
        await consumer.run(until)


async def test_a_job_that_outlasts_the_visibility_timeout_is_extended_and_done_once(
    stack: LocalStack,
) -> None:
    drain_test_event(stack)
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
    stop = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(stack, slow_handler, config, stop))
    await asyncio.wait_for(done.wait(), 20)
    await asyncio.sleep(2.5)  # had the lease lapsed, a second poller would now receive it again
    stop.set()
    await consumer
    assert list(calls.values()) == [1]
    assert metrics.VISIBILITY_EXTENSIONS.labels("extended")._value.get() - extended_before >= 4
    assert queue_counts(stack) == (0, 0)


async def test_nothing_is_received_while_every_slot_is_busy(stack: LocalStack) -> None:
    drain_test_event(stack)
    started: list[str] = []
    release = asyncio.Event()

    async def blocking_handler(delivery: Delivery) -> Disposition:
        started.append(delivery.message_id)
        await release.wait()
        return Ack()

    config = ConsumerConfig(max_inflight=2, pollers=3, wait_time_s=1, visibility_timeout_s=30)
    send(stack, 5)
    stop = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(stack, blocking_handler, config, stop))
    await asyncio.sleep(4)  # several poll cycles
    assert len(started) == 2
    assert queue_counts(stack) == (3, 2), "the other three wait in SQS, not in a local buffer"
    release.set()
    for _ in range(100):
        if len(started) == 5:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await consumer
    assert len(set(started)) == 5
    assert queue_counts(stack) == (0, 0)


async def test_retry_goes_back_to_the_queue_after_its_delay(stack: LocalStack) -> None:
    drain_test_event(stack)
    seen: list[tuple[str, int]] = []

    async def flaky_handler(delivery: Delivery) -> Disposition:
        seen.append((delivery.message_id, delivery.receive_count))
        return Retry(1, "flaky") if len(seen) == 1 else Ack()

    config = ConsumerConfig(max_inflight=2, pollers=1, wait_time_s=1, visibility_timeout_s=30)
    send(stack, 1)
    stop = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(stack, flaky_handler, config, stop))
    for _ in range(100):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await consumer
    assert [count for _, count in seen] == [1, 2]
    assert seen[0][0] == seen[1][0]
    assert queue_counts(stack) == (0, 0)


async def test_shutdown_releases_unfinished_work_at_once(stack: LocalStack) -> None:
    drain_test_event(stack)
    started = asyncio.Event()

    async def endless_handler(delivery: Delivery) -> Disposition:
        started.set()
        await asyncio.sleep(3600)
        return Ack()

    config = ConsumerConfig(
        max_inflight=2, pollers=1, wait_time_s=1, visibility_timeout_s=300, drain_timeout_s=0.5
    )
    send(stack, 1)
    stop = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(stack, endless_handler, config, stop))
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.wait_for(consumer, 10)
    # Released with visibility 0: visible again now, not in 300 s.
    assert queue_counts(stack) == (1, 0)
