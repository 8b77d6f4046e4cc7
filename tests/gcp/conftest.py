"""The Google Cloud emulators, one of each Java one per session, and clients of them in a
project of their own per test.

How the emulators are found and run is pipelined.gcp.local's, shared with ``pipelined demo
--backend gcp``. Without java or an emulator's jar, the tests that need it are skipped, saying
what is missing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.pubsub_v1 import types as pubsub
from google.pubsub_v1.services.publisher import PublisherAsyncClient
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient

from pipelined.gcp.local import (
    EmulatorUnavailableError,
    GcpStack,
    firestore_command,
    gcp_stack,
    pubsub_command,
    running,
)
from pipelined.local import free_port

SUBSCRIPTION_ACK_DEADLINE_S = 10  # the least a subscription may have; receives set their own
MAX_DELIVERY_ATTEMPTS = 5


def _emulator(command_of: Callable[[int], list[str]], log: Path) -> Iterator[str]:
    port = free_port()
    try:
        command = command_of(port)
    except EmulatorUnavailableError as missing:
        pytest.skip(str(missing))
    with running(command, f"http://127.0.0.1:{port}/", log):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run the emulator on 127.0.0.1 and a free port; yield its host:port."""
    log = tmp_path_factory.mktemp("firestore-emulator") / "emulator.log"
    yield from _emulator(firestore_command, log)


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run the Pub/Sub emulator on 127.0.0.1 and a free port; yield its host:port."""
    log = tmp_path_factory.mktemp("pubsub-emulator") / "emulator.log"
    yield from _emulator(pubsub_command, log)


@pytest.fixture
def gcp(pubsub_emulator: str, firestore_emulator: str, tmp_path: Path) -> Iterator[GcpStack]:
    """A stack of this test's own on the session's emulators, with a Cloud Storage emulator of
    its own (its notification is set by flags), provisioned like production but without the
    retry policy: with one, the emulator stops redelivering after a third lease expiry."""
    name = f"t{uuid.uuid4().hex[:10]}"
    with gcp_stack(
        name,
        java_hosts=(pubsub_emulator, firestore_emulator),
        retry_policy=False,
        log_dir=tmp_path,
    ) as stack:
        yield stack


@pytest.fixture
def firestore_client(
    firestore_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> firestore.AsyncClient:
    """A client of the emulator, in a fresh project: no test sees another's documents.

    Anonymous credentials, so no developer's or machine's Google credentials are ever looked
    up, let alone sent.
    """
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
    project = f"pipelined-test-{uuid.uuid4().hex[:12]}"
    return firestore.AsyncClient(project=project, credentials=AnonymousCredentials())


@dataclass(frozen=True)
class PubSub:
    """Clients of the Pub/Sub emulator in a project of this test's own."""

    project: str
    publisher: PublisherAsyncClient
    subscriber: SubscriberAsyncClient

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    async def pull_subscription(self, name: str, *, dead_letter: bool = False) -> str:
        """A topic and a pull subscription of it, both called ``name`` (3 characters or more).

        With ``dead_letter``, messages go after MAX_DELIVERY_ATTEMPTS to the topic
        ``name``-dead, which a subscription of its own keeps. No retry policy: with one, the
        emulator (0.8.20) stops redelivering after the third expiry.
        """
        topic = (await self.publisher.create_topic(name=self.topic(name))).name
        subscription = pubsub.Subscription(
            name=self.subscription(name),
            topic=topic,
            ack_deadline_seconds=SUBSCRIPTION_ACK_DEADLINE_S,
        )
        if dead_letter:
            dead = (await self.publisher.create_topic(name=self.topic(f"{name}-dead"))).name
            await self.subscriber.create_subscription(
                request=pubsub.Subscription(name=self.subscription(f"{name}-dead"), topic=dead)
            )
            subscription.dead_letter_policy = pubsub.DeadLetterPolicy(
                dead_letter_topic=dead, max_delivery_attempts=MAX_DELIVERY_ATTEMPTS
            )
        return (await self.subscriber.create_subscription(request=subscription)).name

    async def publish(self, name: str, body: bytes, attributes: dict[str, str]) -> None:
        message = pubsub.PubsubMessage(data=body, attributes=attributes)
        await self.publisher.publish(topic=self.topic(name), messages=[message])


@pytest.fixture
async def pubsub_clients(
    pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PubSub]:
    """Clients of the emulator, in a fresh project: no test sees another's topics.

    Anonymous credentials, as for Firestore: no real Google credentials are looked up.
    """
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    project = f"pipelined-test-{uuid.uuid4().hex[:12]}"
    publisher = PublisherAsyncClient(credentials=AnonymousCredentials())
    subscriber = SubscriberAsyncClient(credentials=AnonymousCredentials())
    try:
        yield PubSub(project, publisher, subscriber)
    finally:
        await publisher.transport.close()
        await subscriber.transport.close()
