"""The Google Cloud backend: Pub/Sub, Cloud Storage and Firestore."""

from __future__ import annotations

from contextlib import AsyncExitStack

from pipelined.backends import Backend
from pipelined.concurrency import ThrottleSignal
from pipelined.gcp.clients import open_clients
from pipelined.gcp.errors import THROTTLED
from pipelined.gcp.events import parse_gcs_message
from pipelined.gcp.ledger import FirestoreLedgerStore
from pipelined.gcp.notifier import PubSubNotifier
from pipelined.gcp.pubsub import PubSubQueue
from pipelined.gcp.storage import GcsStore
from pipelined.settings import Settings


async def open_gcp_backend(
    settings: Settings, stack: AsyncExitStack, max_connections: int, throttled: ThrottleSignal
) -> Backend:
    """The ports on this cloud, their clients opened on ``stack``."""
    resources = settings.gcp()
    THROTTLED.subscribe(throttled)
    stack.callback(THROTTLED.unsubscribe, throttled)
    clients = await open_clients(
        stack, resources.project, resources.database, max_connections=max_connections
    )
    queue = PubSubQueue(clients.subscriber, resources.subscription)
    return Backend(
        queue=queue,
        parse=lambda delivery: parse_gcs_message(delivery.body, delivery.attributes),
        store=GcsStore(clients.storage, clients.storage_executor, clients.signing_credentials),
        ledger_store=FirestoreLedgerStore(clients.firestore, resources.collection),
        notifier=PubSubNotifier(clients.publisher, resources.topic),
        source=resources.subscription,
        has_dead_letters=queue.dead_letter_policy,
        dead_letter_hint="without a dead-letter policy Pub/Sub neither counts delivery "
        "attempts nor sets aside messages that keep failing: they are retried until they "
        "expire; give the subscription a dead_letter_policy with max_delivery_attempts",
    )
