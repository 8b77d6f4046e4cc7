"""Helpers for tests on the Google Cloud emulators: point the daemon at a stack, upload, read
results back; and a daemon process and a notification watcher for the process and chaos tests.

The GCP twins of tests/integration/helpers.py and tests/faults/daemon.py. Running the daemon in
this process is tests.integration.helpers.running_daemon's: it is cloud-neutral, loading the
settings from the environment that ``point_at`` sets. Everything here reads the emulators
directly, with clients of its own, never through the daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions
from google.cloud import firestore
from google.pubsub_v1 import types as pubsub
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber import SubscriberClient
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

from pipelined.gcp.clients import FIRESTORE_EMULATOR
from pipelined.gcp.ledger import document_id
from pipelined.gcp.local import ANONYMOUS, GcpStack
from pipelined.tools import take_messages
from tests.faults.daemon import (
    METRICS_ON_ANY_PORT,
    CollectedNotifications,
    Daemon,
    Notification,
)

if TYPE_CHECKING:  # pytest only for a type: bench/chaos.py runs this outside pytest too
    import pytest

PULL_TIMEOUT_S = 1.0
"""One pull's wait: the emulator answers an empty subscription after about a second."""
TAP_PULL_TIMEOUT_S = 0.3

# What the daemon under test must not inherit from this process: its own stack's variables
# come from GcpStack.daemon_environment, and no developer's cloud settings may leak in.
FOREIGN_PREFIXES = ("AWS_", "PIPELINED_", "GOOGLE_", "CLOUDSDK_")
FOREIGN_NAMES = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")


def point_at(stack: GcpStack, monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    """Point this process (the daemon of running_daemon, Google's clients) at ``stack``;
    ``settings`` override PIPELINED_* variables by their lower-case names."""
    for name, value in stack.daemon_environment().items():
        monkeypatch.setenv(name, value)
    for name, value in settings.items():
        monkeypatch.setenv(f"PIPELINED_{name.upper()}", value)


# --- Cloud Storage ----------------------------------------------------------------------------


def put(
    stack: GcpStack,
    key: str,
    body: bytes,
    content_type: str | None = None,
    bucket: str | None = None,
) -> str:
    """Upload ``body`` (to the input bucket unless told otherwise); return its generation."""
    blob = stack.storage_client().bucket(bucket or stack.input_bucket).blob(key)
    blob.upload_from_string(body, content_type=content_type or "application/octet-stream")
    return str(blob.generation)


def object_bytes(stack: GcpStack, bucket: str, key: str) -> bytes:
    body: bytes = stack.storage_client().bucket(bucket).blob(key).download_as_bytes()
    return body


def object_names(stack: GcpStack, bucket: str, prefix: str) -> list[str]:
    """The live objects under ``prefix`` (noncurrent generations are not listed)."""
    return [blob.name for blob in stack.storage_client().list_blobs(bucket, prefix=prefix)]


# --- Pub/Sub ----------------------------------------------------------------------------------


@contextmanager
def subscriber_of(stack: GcpStack) -> Iterator[SubscriberClient]:
    """A Pub/Sub client of the emulator, its channel closed after (a test makes many)."""
    channel = grpc.insecure_channel(stack.emulators.pubsub_host)
    try:
        yield SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
    finally:
        channel.close()


def pull(
    client: SubscriberClient, subscription: str, timeout_s: float = PULL_TIMEOUT_S
) -> list[pubsub.ReceivedMessage]:
    """One pull of up to ten messages; [] when none came within ``timeout_s``."""
    try:
        response = client.pull(subscription=subscription, max_messages=10, timeout=timeout_s)
    except exceptions.DeadlineExceeded:
        return []  # an empty pull may end so
    return list(response.received_messages)


def parsed_notification(message: pubsub.PubsubMessage) -> dict[str, Any]:
    """A notification's JSON, with its Pub/Sub attributes under ``_attributes``."""
    notification: dict[str, Any] = json.loads(message.data)
    notification["_attributes"] = dict(message.attributes)
    return notification


async def notifications(
    stack: GcpStack, count: int, timeout_s: float = 60, settle_s: float = 0.0
) -> list[dict[str, Any]]:
    """Read notifications until ``count`` arrived (and ``settle_s`` passed with no more)."""
    return await asyncio.to_thread(read_notifications, stack, count, timeout_s, settle_s)


def read_notifications(
    stack: GcpStack, count: int, timeout_s: float = 60, settle_s: float = 0.0
) -> list[dict[str, Any]]:
    """``notifications``, for a caller without an event loop. Each one read is acknowledged."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    quiet_until: float | None = None
    with subscriber_of(stack) as client:
        while time.monotonic() < deadline:
            if len(found) >= count:
                quiet_until = quiet_until or time.monotonic() + settle_s
                if time.monotonic() >= quiet_until:
                    break
            received = take_messages(client, stack.watch_subscription, PULL_TIMEOUT_S)
            found += [parsed_notification(message) for message in received]
    return found


def backlog(
    stack: GcpStack, subscription: str, window_s: float = 1.0, *, give_back: bool = True
) -> list[pubsub.PubsubMessage]:
    """Every message ``subscription`` delivers within ``window_s``: what is left on it.

    Pub/Sub tells no one how many messages a subscription holds; pulling is the only way to
    see them. A message leased by someone else shows only once its lease ran out, so the window
    must outlast the leases that count. ``give_back``: hand them back at once afterwards (a
    deadline of 0), for a consumer still to come; else they stay leased for the subscription's
    ack deadline. Each pull is a delivery attempt, which a dead-letter policy counts.
    """
    messages: list[pubsub.ReceivedMessage] = []
    deadline = time.monotonic() + window_s
    with subscriber_of(stack) as client:
        while time.monotonic() < deadline:
            messages += pull(client, subscription)
        if give_back and messages:
            client.modify_ack_deadline(
                subscription=subscription,
                ack_ids=[message.ack_id for message in messages],
                ack_deadline_seconds=0,
            )
    return [message.message for message in messages]


def object_ids(messages: Iterable[pubsub.PubsubMessage]) -> Counter[str]:
    """How many of the Cloud Storage notifications ``messages`` name each object."""
    return Counter(message.attributes.get("objectId", "") for message in messages)


def tap(stack: GcpStack, name: str = "tap") -> str:
    """A second subscription of the bucket's topic: a copy of every notification the bucket
    sends, for a test to read without taking it from the daemon."""
    tapped = f"{stack.subscription}-{name}"
    with subscriber_of(stack) as client:
        client.create_subscription(request=pubsub.Subscription(name=tapped, topic=stack.topic))
    return tapped


def drain_tap(stack: GcpStack, tapped: str, window_s: float = 5.0) -> list[pubsub.PubsubMessage]:
    """Take (and acknowledge) what is on a tap: pull until a pull brings nothing, for at most
    ``window_s``. Short pulls: what was published is there at once."""
    taken: list[pubsub.PubsubMessage] = []
    deadline = time.monotonic() + window_s
    with subscriber_of(stack) as client:
        while time.monotonic() < deadline:
            received = take_messages(client, tapped, TAP_PULL_TIMEOUT_S)
            if not received:
                break
            taken += received
    return taken


def republish(stack: GcpStack, originals: Iterable[pubsub.PubsubMessage], topic: str = "") -> int:
    """Publish copies (data and attributes) of real notifications onto the bucket's topic, as
    Cloud Storage's at-least-once delivery may; return how many."""
    copies = [
        pubsub.PubsubMessage(data=original.data, attributes=dict(original.attributes))
        for original in originals
    ]
    if not copies:
        return 0
    channel = grpc.insecure_channel(stack.emulators.pubsub_host)
    try:
        client = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        client.publish(topic=topic or stack.topic, messages=copies)
    finally:
        channel.close()
    return len(copies)


def create_results_topic(stack: GcpStack) -> None:
    """Create the stack's results topic and, at once, its watch subscription."""
    channel = grpc.insecure_channel(stack.emulators.pubsub_host)
    try:
        topics = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        topics.create_topic(name=stack.results_topic)
        subscriptions = SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
        subscriptions.create_subscription(
            request=pubsub.Subscription(name=stack.watch_subscription, topic=stack.results_topic)
        )
    finally:
        channel.close()


# --- Firestore --------------------------------------------------------------------------------


def firestore_client(stack: GcpStack) -> firestore.Client:
    """A client of the stack's Firestore emulator, with anonymous credentials.

    The client reads FIRESTORE_EMULATOR_HOST once, when it is made (it has no other way of
    being pointed at an emulator): the variable is set for that moment only, so this works
    whatever this process's environment points at.
    """
    before = os.environ.get(FIRESTORE_EMULATOR)
    os.environ[FIRESTORE_EMULATOR] = stack.emulators.firestore_host
    try:
        return firestore.Client(project=stack.project, credentials=ANONYMOUS)
    finally:
        if before is None:
            del os.environ[FIRESTORE_EMULATOR]
        else:
            os.environ[FIRESTORE_EMULATOR] = before


def ledger_document(stack: GcpStack, bucket: str, key: str) -> dict[str, Any] | None:
    """The ledger's document of one object, or None if it has none."""
    reference = (
        firestore_client(stack).collection(stack.collection).document(document_id(bucket, key))
    )
    found = reference.get()
    return found.to_dict() if found.exists else None


def ledger(stack: GcpStack) -> dict[str, dict[str, Any]]:
    """Every ledger document, by object key."""
    documents = firestore_client(stack).collection(stack.collection).stream()
    fields = (document.to_dict() or {} for document in documents)
    return {str(found["object_key"]): found for found in fields}


# --- the daemon as a process ------------------------------------------------------------------


def daemon_environment(stack: GcpStack, settings: Mapping[str, str]) -> dict[str, str]:
    """``pipelined run``'s environment on ``stack``: nothing of the caller's clouds leaks in."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(FOREIGN_PREFIXES) and name not in FOREIGN_NAMES
    }
    return {
        **inherited,
        **stack.daemon_environment(),
        **METRICS_ON_ANY_PORT,
        **{f"PIPELINED_{name.upper()}": value for name, value in settings.items()},
    }


class GcpDaemon(Daemon):
    """One ``python -m pipelined run`` on a GCP stack; its JSON log goes to ``log_path``.

    Signals, health, metrics and logs are Daemon's; only the environment differs. Daemon's own
    constructor wants an AWS stack and endpoint, which none of those methods use.
    """

    def __init__(self, stack: GcpStack, log_path: Path, **settings: str) -> None:
        self.gcp = stack
        self._prepare(log_path, settings)

    def environment(self) -> dict[str, str]:
        return daemon_environment(self.gcp, self.settings)


@dataclass
class GcpWatcher(CollectedNotifications):
    """Collects the notifications that arrive on the stack's watch subscription."""

    stack: GcpStack
    received: list[Notification] = field(default_factory=list)

    def poll(self) -> int:
        """One pull of the watch subscription; return how many notifications arrived."""
        with subscriber_of(self.stack) as client:
            messages = take_messages(client, self.stack.watch_subscription, PULL_TIMEOUT_S)
            for message in messages:
                body = json.loads(message.data)
                source = body.get("source")
                self.received.append(
                    Notification(
                        key=str(source.get("key")) if isinstance(source, dict) else "",
                        notification_id=str(body.get("notification_id")),
                        status=str(body.get("status")),
                        finished_at=str(body.get("finished_at")),
                        body=body,
                    )
                )
        return len(messages)


def service_account_key(path: Path, project: str) -> str:
    """Write a key file of no account, as IAM writes one, to ``path``; return its email.

    A throwaway RSA key: the emulator checks no signature, but a signed URL needs a signer,
    and only a service account's key signs without IAM's signBlob.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    email = f"pipelined-test@{project}.iam.gserviceaccount.com"
    fields = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "throwaway",
        "private_key": pem.decode(),
        "client_email": email,
        "client_id": "0",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(fields))
    return email
