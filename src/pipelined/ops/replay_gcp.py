"""``pipelined replay gs://...``: list the live objects, publish notifications to the topic of
the daemon's subscription, shaped as Cloud Storage's JSON_API_V1 ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.pubsub_v1.types import PubsubMessage

from pipelined.gcp.clients import GoogleClients, open_clients
from pipelined.ops.replay import (
    SEND_BATCH,
    Location,
    Pacer,
    Selection,
    StoredObject,
    Summary,
    advance,
    batches,
    gcs_event_message,
    progress,
)
from pipelined.settings import Settings

T = TypeVar("T")

LIST_PAGE = 1000


async def replay_gcs(
    settings: Settings,
    location: Location,
    since: datetime | None,
    rate: float | None,
    *,
    dry_run: bool,
    force: bool,
) -> Summary:
    resources = settings.gcp()
    async with AsyncExitStack() as stack:
        clients = await open_clients(
            stack, resources.project, resources.database, max_connections=4
        )
        subscription = await clients.subscriber.get_subscription(
            subscription=resources.subscription
        )
        topic = subscription.topic
        summary = Summary(str(location), topic, dry_run=dry_run, force=force)
        selection = Selection(settings, since, summary)
        pacer = Pacer(rate)
        listed = await _in_thread(clients, lambda: _list(clients, location))
        with progress() as bar:
            task = bar.add_task("replaying" if not dry_run else "listing", total=None, note="")
            chosen = [
                found
                for found in listed
                if selection.keep(found.bucket, found.key, found.last_modified)
            ]
            if dry_run:
                summary.objects = [found.as_json() for found in chosen]
                advance(bar, task, summary, len(chosen))
                return summary
            for batch in batches(chosen, SEND_BATCH):
                await pacer.wait(len(batch))
                sent = await _publish(clients, topic, batch, summary, force=force)
                advance(bar, task, summary, sent)
            advance(bar, task, summary, 0)
    return summary


def _list(clients: GoogleClients, location: Location) -> list[StoredObject]:
    """The live generation of every object under the prefix (noncurrent ones are not listed)."""
    blobs = clients.storage.list_blobs(
        location.bucket, prefix=location.prefix or None, page_size=LIST_PAGE
    )
    return [_stored(location.bucket, blob) for blob in blobs]


def _stored(bucket: str, blob: Any) -> StoredObject:
    created: datetime = blob.time_created or datetime.now(UTC)
    resource: dict[str, Any] = {
        "kind": "storage#object",
        "bucket": bucket,
        "name": blob.name,
        "generation": str(blob.generation),
        "size": str(blob.size or 0),
    }
    optional = {
        "metageneration": blob.metageneration,
        "etag": blob.etag,
        "md5Hash": blob.md5_hash,
        "contentType": blob.content_type,
        "updated": _iso(blob.updated),
    }
    # No timeCreated: the parser would take the event's time from it, and the daemon measure
    # its end-to-end time from an upload long past; the attributes' eventTime is the replay's.
    resource.update({name: str(value) for name, value in optional.items() if value is not None})
    return StoredObject(
        bucket=bucket,
        key=blob.name,
        size=int(blob.size or 0),
        etag=blob.etag,
        last_modified=created.astimezone(UTC),
        version_id=str(blob.generation),
        resource=resource,
    )


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _publish(
    clients: GoogleClients, topic: str, batch: list[StoredObject], summary: Summary, *, force: bool
) -> int:
    """Publish one notification per object; a refused publish fails the whole batch."""
    now = datetime.now(UTC)
    messages = []
    for found in batch:
        data, attributes = gcs_event_message(found, force=force, now=now)
        messages.append(PubsubMessage(data=data, attributes=attributes))
    try:
        await clients.publisher.publish(topic=topic, messages=messages)
    except Exception as error:  # the clients' errors carry their reason; say it per object
        for found in batch:
            summary.failed.append(
                {"object": f"gs://{found.bucket}/{found.key}", "error": str(error)}
            )
        return 0
    summary.sent += len(batch)
    return len(batch)


async def _in_thread(clients: GoogleClients, call: Callable[[], T]) -> T:
    """google-cloud-storage is synchronous: its calls run on the clients' own threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(clients.storage_executor, call)
