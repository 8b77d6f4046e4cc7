"""``pipelined replay s3://...``: list with ListObjectsV2, send with SendMessageBatch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pipelined.aws.clients import Clients, open_clients
from pipelined.aws.errors import translated
from pipelined.errors import SourceGoneError
from pipelined.ops.replay import (
    HEAD_CONCURRENCY,
    SEND_ATTEMPTS,
    Location,
    Pacer,
    Selection,
    StoredObject,
    Summary,
    advance,
    batches,
    progress,
    s3_event_body,
)
from pipelined.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3.type_defs import ObjectTypeDef

VERSIONED = frozenset({"Enabled", "Suspended"})
"""Bucket versioning states in which objects carry version ids (S3's events name them)."""


async def replay_s3(
    settings: Settings,
    location: Location,
    since: datetime | None,
    rate: float | None,
    *,
    dry_run: bool,
    force: bool,
) -> Summary:
    queue_url = settings.aws().queue_url
    summary = Summary(str(location), queue_url, dry_run=dry_run, force=force)
    selection = Selection(settings, since, summary)
    pacer = Pacer(rate)
    async with AsyncExitStack() as stack:
        clients = await open_clients(
            stack, max_connections=HEAD_CONCURRENCY + 2, region=settings.aws_region
        )
        versioned = await _is_versioned(clients, location.bucket)
        with progress() as bar:
            task = bar.add_task("replaying" if not dry_run else "listing", total=None, note="")
            async for page in _pages(clients, location, selection, versioned=versioned):
                if dry_run:
                    summary.objects += [found.as_json() for found in page]
                    advance(bar, task, summary, len(page))
                    continue
                for batch in batches(page):
                    await pacer.wait(len(batch))
                    sent = await _send(clients, queue_url, batch, summary, force=force)
                    advance(bar, task, summary, sent)
            advance(bar, task, summary, 0)
    return summary


async def _is_versioned(clients: Clients, bucket: str) -> bool:
    with translated("s3.GetBucketVersioning"):
        answer = await clients.s3.get_bucket_versioning(Bucket=bucket)
    return answer.get("Status") in VERSIONED


async def _pages(
    clients: Clients, location: Location, selection: Selection, *, versioned: bool
) -> AsyncIterator[list[StoredObject]]:
    """The objects to replay, a listing page at a time (so memory stays bounded)."""
    paginator = clients.s3.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=location.bucket, Prefix=location.prefix)
    with translated("s3.ListObjectsV2"):
        async for page in pages:
            listed = [
                entry
                for entry in page.get("Contents", [])
                if selection.keep(location.bucket, entry["Key"], entry["LastModified"])
            ]
            if versioned:
                yield await _with_versions(clients, location.bucket, listed)
            else:
                yield [_stored(location.bucket, entry) for entry in listed]


def _stored(bucket: str, entry: ObjectTypeDef, version_id: str | None = None) -> StoredObject:
    return StoredObject(
        bucket=bucket,
        key=entry["Key"],
        size=entry.get("Size", 0),
        etag=_unquoted(entry.get("ETag")),
        last_modified=entry["LastModified"].astimezone(UTC),
        version_id=version_id,
    )


async def _with_versions(
    clients: Clients, bucket: str, listed: list[ObjectTypeDef]
) -> list[StoredObject]:
    """A listing names no version: HeadObject tells the current one's, as S3's event would.

    An object deleted since it was listed is left out: there is nothing to replay.
    """
    limit = asyncio.Semaphore(HEAD_CONCURRENCY)

    async def head(entry: ObjectTypeDef) -> StoredObject | None:
        async with limit:
            try:
                with translated("s3.HeadObject", source_object=True):
                    found = await clients.s3.head_object(Bucket=bucket, Key=entry["Key"])
            except SourceGoneError:
                return None
        version = found.get("VersionId")
        # "null": written while versioning was off or suspended; its S3 event names none.
        version_id = version if version and version != "null" else None
        head_entry: ObjectTypeDef = {
            "Key": entry["Key"],
            "Size": found["ContentLength"],
            "ETag": found.get("ETag", entry.get("ETag", "")),
            "LastModified": found.get("LastModified", entry["LastModified"]),
        }
        return _stored(bucket, head_entry, version_id)

    heads = await asyncio.gather(*(head(entry) for entry in listed))
    return [found for found in heads if found is not None]


async def _send(
    clients: Clients, queue_url: str, batch: list[StoredObject], summary: Summary, *, force: bool
) -> int:
    """Send one event per object; an entry SQS refuses is tried again, then counted failed."""
    now = datetime.now(UTC)
    pending = {str(index): found for index, found in enumerate(batch)}
    errors: dict[str, str] = {}
    for _ in range(SEND_ATTEMPTS):
        if not pending:
            break
        with translated("sqs.SendMessageBatch"):
            answer = await clients.sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": id_, "MessageBody": s3_event_body(found, force=force, now=now)}
                    for id_, found in pending.items()
                ],
            )
        for entry in answer.get("Successful", []):
            pending.pop(entry["Id"], None)
            summary.sent += 1
        errors = {e["Id"]: f"{e['Code']}: {e.get('Message', '')}" for e in answer.get("Failed", [])}
    for id_, found in pending.items():
        summary.failed.append(
            {"object": f"s3://{found.bucket}/{found.key}", "error": errors.get(id_, "not sent")}
        )
    return len(batch) - len(pending)


def _unquoted(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None
