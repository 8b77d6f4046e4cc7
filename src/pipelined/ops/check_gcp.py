"""``pipelined check`` on Google Cloud: credentials, Pub/Sub and its dead letters, Firestore,
the results topic, Cloud Storage."""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TypeVar

import google.auth
import google.auth.transport.requests
from google.pubsub_v1.types import Subscription

from pipelined.gcp.clients import (
    CLOUD_PLATFORM_SCOPE,
    FIRESTORE_EMULATOR,
    PUBSUB_EMULATOR,
    STORAGE_EMULATOR,
    GoogleClients,
    open_clients,
)
from pipelined.layout import probe_key
from pipelined.ops.checking import Check, CheckError, lease_fits, receives_fit
from pipelined.settings import ENV_PREFIX, Settings

T = TypeVar("T")

PROBE_DOCUMENT = "pipelined-check-probe"
"""A document id the ledger never uses (its ids are SHA-256 hex): read, never written."""
PROBE_BODY = b"pipelined check: a probe, deleted at once\n"
PUBSUB_DEFAULT_DELIVERY_ATTEMPTS = 5
"""What Pub/Sub takes a dead-letter policy's max_delivery_attempts of 0 to mean."""
_EMULATORS = (PUBSUB_EMULATOR, FIRESTORE_EMULATOR, STORAGE_EMULATOR)


async def gcp_checks(settings: Settings, stack: AsyncExitStack) -> list[Check]:
    resources = settings.gcp()
    clients = await open_clients(stack, resources.project, resources.database, max_connections=8)
    checks = GcpChecks(settings, clients)
    return [
        Check("identity", checks.identity),
        Check("subscription", checks.subscription),
        Check("dead-letter policy", checks.dead_letter_policy),
        Check("ack deadline", checks.ack_deadline),
        Check("dead-letter topic", checks.dead_letter_topic),
        Check("ledger collection", checks.ledger_collection),
        Check("topic", checks.topic),
        *checks.input_buckets(),
        Check("output probe", checks.output_probe),
    ]


class GcpChecks:
    def __init__(self, settings: Settings, clients: GoogleClients) -> None:
        self._settings = settings
        self._resources = settings.gcp()
        self._clients = clients

    async def identity(self) -> str:
        emulated = [name for name in _EMULATORS if os.environ.get(name)]
        if len(emulated) == len(_EMULATORS):
            return "anonymous: every service is an emulator"
        who = await asyncio.to_thread(_application_default_identity)
        return f"{who}; anonymous for {', '.join(emulated)}" if emulated else who

    async def subscription(self) -> str:
        found = await self._subscription()
        return f"{found.name}, of {found.topic}"

    async def dead_letter_policy(self) -> str:
        policy = (await self._subscription()).dead_letter_policy
        if not policy.dead_letter_topic:
            raise CheckError(
                "the subscription has no dead_letter_policy: messages that keep failing are "
                "retried until they expire; give it one with max_delivery_attempts"
            )
        limit = policy.max_delivery_attempts or PUBSUB_DEFAULT_DELIVERY_ATTEMPTS
        attempts = receives_fit(limit, "max_delivery_attempts")
        return f"to {policy.dead_letter_topic}, {attempts}"

    async def ack_deadline(self) -> str:
        deadline_s = (await self._subscription()).ack_deadline_seconds
        return lease_fits(self._settings, deadline_s, "the subscription's ack deadline")

    async def dead_letter_topic(self) -> str:
        name = (await self._subscription()).dead_letter_policy.dead_letter_topic
        if not name:
            raise CheckError("no dead_letter_policy: nothing to reach")
        await self._clients.publisher.get_topic(topic=name)
        return f"{name} exists"

    async def ledger_collection(self) -> str:
        collection = self._resources.collection
        probe = self._clients.firestore.collection(collection).document(PROBE_DOCUMENT)
        await probe.get()  # found or not, the database answered
        return f"{collection} in database {self._resources.database} readable"

    async def topic(self) -> str:
        await self._clients.publisher.get_topic(topic=self._resources.topic)
        return f"{self._resources.topic} exists"

    def input_buckets(self) -> list[Check]:
        if not self._settings.input_buckets:
            return [Check("input buckets", self._any_bucket)]
        return [
            Check(f"input bucket {bucket}", functools.partial(self._readable, bucket))
            for bucket in self._settings.input_buckets
        ]

    async def _any_bucket(self) -> str:
        return f"{ENV_PREFIX}INPUT_BUCKETS not set: events from any bucket are accepted"

    async def _readable(self, bucket: str) -> str:
        def first_name() -> list[str]:
            blobs = self._clients.storage.list_blobs(bucket, max_results=1)
            return [blob.name for blob in blobs]

        return "listed" if await self._storage(first_name) else "listed (empty)"

    async def output_probe(self) -> str:
        bucket = self._clients.storage.bucket(self._settings.output_bucket)
        name = probe_key(self._settings.output_prefix, uuid.uuid4().hex)
        blob = bucket.blob(name)
        await self._storage(functools.partial(blob.upload_from_string, PROBE_BODY))
        try:
            # By generation: on a versioned bucket a plain delete keeps a noncurrent copy.
            await self._storage(
                functools.partial(bucket.delete_blob, name, generation=blob.generation)
            )
        except Exception as error:
            url = f"gs://{bucket.name}/{name}"
            raise CheckError(f"wrote {url} but could not delete it: {error}") from None
        return f"wrote and deleted a probe under gs://{bucket.name}/{self._settings.output_prefix}"

    async def _subscription(self) -> Subscription:
        return await self._clients.subscriber.get_subscription(
            subscription=self._resources.subscription
        )

    async def _storage(self, call: Callable[[], T]) -> T:
        """google-cloud-storage is synchronous: its calls run on the clients' own threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._clients.storage_executor, call)


def _application_default_identity() -> str:
    """Who Application Default Credentials are, once a token was really fetched."""
    credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    who = getattr(credentials, "service_account_email", None) or type(credentials).__name__
    return f"{who} (project {project or 'not set'})"
