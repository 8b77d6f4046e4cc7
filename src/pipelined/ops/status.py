"""``pipelined status s3://bucket/key``: what the ledger holds for one object, readably.

The item is read through the backend's own ledger store, as the daemon reads it, and shown as
its recorded outcome (the last version that finished) and the claim in progress, if any.
``--json`` prints the stored layout itself (``ledger/document.py``) with its revision.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import click

from pipelined.ops.common import (
    EXIT_FAILURE,
    EXIT_OK,
    OBJECT_URL,
    ObjectUrl,
    console,
    fail,
    json_option,
    print_json,
)

if TYPE_CHECKING:
    from pipelined.ledger.machine import Processing, Recorded
    from pipelined.ledger.store import Snapshot
    from pipelined.settings import Settings


@click.command(
    short_help="Show what the ledger holds for one object.",
    help="Show what the ledger holds for one object (s3://BUCKET/KEY or gs://BUCKET/KEY): its "
    "recorded outcome, artifacts and notification, and the claim in progress. Exit 1 when the "
    "ledger has no item for it (or not of --version).",
)
@click.argument("url", type=OBJECT_URL)
@click.option("--version", "version", help="only this version id (or ETag, or generation)")
@json_option
def status(url: ObjectUrl, version: str | None, as_json: bool) -> int:
    from pipelined.ops.common import load_backend_settings

    settings = load_backend_settings(url.backend)
    snapshot = asyncio.run(read_item(settings, url))
    found = snapshot.revision is not None and _has_version(snapshot, version)
    if as_json:
        print_json(_as_json(url, snapshot) if found else {"object": str(url), "item": None})
    elif found:
        _print_item(url, snapshot)
    if not found:
        wanted = f" at version {version}" if version else ""
        fail(f"the ledger has no item for {url}{wanted}")
        return EXIT_FAILURE
    return EXIT_OK


async def read_item(settings: Settings, url: ObjectUrl) -> Snapshot:
    """The object's ledger document, through the chosen backend's store."""
    async with AsyncExitStack() as stack:
        if settings.backend == "gcp":
            from pipelined.gcp.clients import open_clients as open_google_clients
            from pipelined.gcp.ledger import FirestoreLedgerStore

            resources = settings.gcp()
            google = await open_google_clients(
                stack, resources.project, resources.database, max_connections=1
            )
            return await FirestoreLedgerStore(google.firestore, resources.collection).read(
                url.bucket, url.key
            )
        from pipelined.aws.clients import open_clients
        from pipelined.aws.ledger import DynamoLedgerStore

        aws = await open_clients(stack, max_connections=1, region=settings.aws_region)
        return await DynamoLedgerStore(aws.dynamodb, settings.aws().table).read(url.bucket, url.key)


def _has_version(snapshot: Snapshot, version: str | None) -> bool:
    if version is None:
        return True
    state = snapshot.state
    versions = {part.version.id for part in (state.recorded, state.processing) if part}
    return version in versions


def _as_json(url: ObjectUrl, snapshot: Snapshot) -> dict[str, Any]:
    from pipelined.ledger.document import to_document

    return {
        "object": str(url),
        "revision": snapshot.revision,
        "item": to_document(snapshot.state, url.bucket, url.key),
    }


def _print_item(url: ObjectUrl, snapshot: Snapshot) -> None:
    from rich.text import Text

    rows = [("object", str(url)), ("revision", str(snapshot.revision))]
    state = snapshot.state
    rows += _recorded_rows(url, state.recorded) if state.recorded else [("recorded", "nothing yet")]
    rows += _claim_rows(state.processing) if state.processing else [("in progress", "no claim")]
    width = max(len(name) for name, _ in rows)
    out = console()
    for name, value in rows:
        # One line each, never folded: a key or a reason stays whole, to copy or grep.
        out.print(Text(name.ljust(width), style="bold") + "  " + Text(value), soft_wrap=True)


def _recorded_rows(url: ObjectUrl, recorded: Recorded) -> list[tuple[str, str]]:
    record = recorded.record
    rows = [
        ("version", recorded.version.id),
        ("status", f"{record.status} ({record.kind})"),
        ("rule", record.rule),
        ("attempts", str(record.attempts)),
        ("forced", "yes: a replay's --force reprocessed it" if recorded.forced else "no"),
        ("finished", f"{record.finished_at} ({record.duration_ms} ms)"),
    ]
    if record.error:
        rows.append(("reason", record.error))
    for artifact in record.artifacts:
        size = f"{artifact.width}x{artifact.height}, " if artifact.width else ""
        rows.append(
            (
                "artifact",
                f"{url.scheme}://{artifact.bucket}/{artifact.key} "
                f"({size}{artifact.size:,} bytes, {artifact.content_type})",
            )
        )
    rows.append(("notified", "yes" if recorded.notified else _not_notified(recorded)))
    return rows


def _not_notified(recorded: Recorded) -> str:
    if recorded.notifier is None:
        return "no"
    return f"no; being sent by {recorded.notifier} ({_lease(recorded.notify_lease_expires_at)})"


def _claim_rows(claim: Processing) -> list[tuple[str, str]]:
    detail = (
        f"version {claim.version.id} by {claim.owner}, {_lease(claim.lease_expires_at)}, "
        f"attempt {claim.attempts}"
    )
    if claim.worker_deaths:
        detail += f", {claim.worker_deaths} worker deaths"
    if claim.must_be_current:
        detail += ", only if still the current version"
    if claim.forced:
        detail += ", forced by a replay"
    return [("in progress", detail)]


def _lease(expires_at: float) -> str:
    left = expires_at - time.time()
    return f"lease {left:.0f} s left" if left >= 0 else f"lease ran out {-left:.0f} s ago"
