"""The Queue port on Pub/Sub, against the emulator: the contract every queue passes
(tests/integration/queue_contract.py), and what is Pub/Sub's own: attributes, bodies that are
not UTF-8, the dead-letter policy."""

from __future__ import annotations

import pytest

from pipelined.gcp.pubsub import PubSubQueue
from tests.gcp.conftest import PubSub
from tests.integration.queue_contract import (
    LONG_LEASE_S,
    QueueBackend,
    QueueContract,
    receive_first,
)

pytestmark = pytest.mark.timeout(60)

NAME = "jobs"


class TestPubSubQueue(QueueContract):
    # Pub/Sub counts delivery attempts only under a dead-letter policy: the contract runs on a
    # subscription with one and on one without.
    @pytest.fixture(params=[True, False], ids=["dead-lettered", "plain"])
    async def backend(self, pubsub_clients: PubSub, request: pytest.FixtureRequest) -> QueueBackend:
        dead_letter = bool(request.param)
        subscription = await pubsub_clients.pull_subscription(NAME, dead_letter=dead_letter)

        async def send(body: str) -> None:
            await pubsub_clients.publish(NAME, body.encode(), {})

        queue = PubSubQueue(pubsub_clients.subscriber, subscription)
        return QueueBackend(queue, send, counts_receives=dead_letter)


async def test_attributes_come_with_the_delivery_and_bodies_decode_leniently(
    pubsub_clients: PubSub,
) -> None:
    queue = PubSubQueue(pubsub_clients.subscriber, await pubsub_clients.pull_subscription(NAME))
    attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": "uploads", "objectId": "a/b.jpg"}
    await pubsub_clients.publish(NAME, b"caf\xc3\xa9 \xff", attributes)
    [delivery] = await receive_first(queue, LONG_LEASE_S)
    assert delivery.body == "café \ufffd"
    assert dict(delivery.attributes) == attributes
    assert delivery.receive_count == 1
    assert await queue.delete([delivery]) == []


async def test_the_dead_letter_policy_is_reported(pubsub_clients: PubSub) -> None:
    plain = await pubsub_clients.pull_subscription("plain")
    dead_lettered = await pubsub_clients.pull_subscription("guarded", dead_letter=True)
    assert await PubSubQueue(pubsub_clients.subscriber, plain).dead_letter_policy() is False
    assert await PubSubQueue(pubsub_clients.subscriber, dead_lettered).dead_letter_policy() is True
