"""``pipelined dlq`` on Pub/Sub: the dead-letter topic of the daemon's subscription, read
through the one subscription that topic has (Pub/Sub keeps a topic's messages only for its
subscriptions). Pub/Sub has no move task and keeps no count a client can read cheaply (Cloud
Monitoring's num_undelivered_messages is another API): stats counts by pulling, and gives back.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass

from google.api_core import exceptions as api
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
from google.pubsub_v1.types import PubsubMessage, ReceivedMessage

from pipelined.gcp.clients import GoogleClients, open_clients
from pipelined.gcp.errors import translated
from pipelined.ops.dlq import (
    DeadLetterError,
    DeadLetterStats,
    PeekedMessage,
    RedriveSummary,
    describe_objects,
    redrive_progress,
)
from pipelined.ops.replay import Pacer
from pipelined.settings import Settings

PULL_BATCH = 10
PULL_TIMEOUT_S = 2.0
PEEK_DEADLINE_S = 30
"""The ack deadline of a pulled dead letter: longer than a peek or a publish takes."""
STATS_PULL_MAX = 1000
"""stats counts at most this many dead letters (each pull is a delivery attempt)."""
EMPTY_PULLS = 3
"""Empty pulls in a row after which the dead letters are taken to be all seen."""


@dataclass(frozen=True)
class DeadLetters:
    subscription: str
    topic: str  # the subscription's: where a redriven message goes
    dead_letter_topic: str
    dead_letter_subscription: str


async def locate(clients: GoogleClients, subscription: str) -> DeadLetters:
    with translated("pubsub.GetSubscription"):
        found = await clients.subscriber.get_subscription(subscription=subscription)
    topic = found.dead_letter_policy.dead_letter_topic
    if not topic:
        raise DeadLetterError(
            f"the subscription {subscription} has no dead_letter_policy: it has no dead letters"
        )
    with translated("pubsub.ListTopicSubscriptions"):
        pager = await clients.publisher.list_topic_subscriptions(topic=topic)
        names = [name async for name in pager]
    if len(names) != 1:
        held = ", ".join(names) or "none"
        raise DeadLetterError(
            f"the dead-letter topic {topic} must have exactly one subscription to keep its "
            f"messages; it has {held}"
        )
    return DeadLetters(subscription, found.topic, topic, names[0])


async def _pull(
    subscriber: SubscriberAsyncClient, subscription: str, count: int = PULL_BATCH
) -> list[ReceivedMessage]:
    with translated("pubsub.Pull"):
        try:
            answer = await subscriber.pull(
                subscription=subscription,
                max_messages=count,
                retry=None,
                timeout=PULL_TIMEOUT_S,
            )
        except api.DeadlineExceeded:
            return []
    return list(answer.received_messages)


async def _pull_all(
    subscriber: SubscriberAsyncClient,
    subscription: str,
    limit: int,
    received: list[ReceivedMessage],
) -> None:
    """Pull until ``limit`` messages, or EMPTY_PULLS pulls in a row bring none (a pull may
    come back empty while messages wait), into ``received``, so that whoever gives them back
    has every one even after an error; each is held PEEK_DEADLINE_S."""
    empty = 0
    while len(received) < limit and empty < EMPTY_PULLS:
        batch = await _pull(subscriber, subscription, min(PULL_BATCH, limit - len(received)))
        if not batch:
            empty += 1
            continue
        empty = 0
        received += batch
        await _set_deadline(subscriber, subscription, batch, PEEK_DEADLINE_S)


async def _set_deadline(
    subscriber: SubscriberAsyncClient,
    subscription: str,
    messages: list[ReceivedMessage],
    seconds: int,
) -> None:
    if not messages:
        return
    with translated("pubsub.ModifyAckDeadline"):
        await subscriber.modify_ack_deadline(
            subscription=subscription,
            ack_ids=[message.ack_id for message in messages],
            ack_deadline_seconds=seconds,
        )


async def _open(stack: AsyncExitStack, settings: Settings) -> tuple[GoogleClients, DeadLetters]:
    resources = settings.gcp()
    clients = await open_clients(stack, resources.project, resources.database, max_connections=2)
    return clients, await locate(clients, resources.subscription)


async def gcp_stats(settings: Settings) -> DeadLetterStats:
    async with AsyncExitStack() as stack:
        clients, found = await _open(stack, settings)
        subscriber, name = clients.subscriber, found.dead_letter_subscription
        received: list[ReceivedMessage] = []
        try:
            await _pull_all(subscriber, name, STATS_PULL_MAX, received)
        finally:
            await asyncio.shield(_set_deadline(subscriber, name, received, 0))
    return DeadLetterStats(
        queue=found.subscription,
        dead_letters=name,
        visible=len(received),
        in_flight=0,
    )


async def gcp_peek(settings: Settings, count: int) -> list[PeekedMessage]:
    async with AsyncExitStack() as stack:
        clients, found = await _open(stack, settings)
        subscriber, name = clients.subscriber, found.dead_letter_subscription
        received: list[ReceivedMessage] = []
        try:
            await _pull_all(subscriber, name, count, received)
        finally:
            # Every message pulled goes back at once.
            await asyncio.shield(_set_deadline(subscriber, name, received, 0))
    return [_peeked(message) for message in received]


def _peeked(received: ReceivedMessage) -> PeekedMessage:
    message = received.message
    published = message.publish_time
    attributes = dict(message.attributes)
    data = bytes(message.data)
    return PeekedMessage(
        message_id=message.message_id,
        sent_at=published.isoformat() if published is not None else None,
        receive_count=received.delivery_attempt or None,
        objects=describe_objects(data, attributes),
        body=data.decode("utf-8", errors="replace"),
    )


async def gcp_redrive(settings: Settings, rate: int | None) -> RedriveSummary:
    """Pull from the dead letters, publish copies to the subscription's topic, and only then
    acknowledge: a crash between the two duplicates a message, never drops it."""
    async with AsyncExitStack() as stack:
        clients, found = await _open(stack, settings)
        subscriber, name = clients.subscriber, found.dead_letter_subscription
        summary = RedriveSummary(name, found.topic, "pull-publish-ack")
        pacer = Pacer(rate)
        empty = 0
        with redrive_progress() as bar:
            task = bar.add_task("moving", total=None)
            while empty < EMPTY_PULLS:
                received = await _pull(subscriber, name)
                if not received:
                    empty += 1
                    continue
                empty = 0
                await pacer.wait(len(received))
                copies = [
                    PubsubMessage(data=r.message.data, attributes=dict(r.message.attributes))
                    for r in received
                ]
                try:
                    with translated("pubsub.Publish"):
                        await clients.publisher.publish(topic=found.topic, messages=copies)
                except Exception:
                    await asyncio.shield(_set_deadline(subscriber, name, received, 0))
                    raise
                with translated("pubsub.Acknowledge"):
                    await subscriber.acknowledge(
                        subscription=name, ack_ids=[r.ack_id for r in received]
                    )
                summary.moved += len(received)
                bar.update(task, advance=len(received))
    return summary
