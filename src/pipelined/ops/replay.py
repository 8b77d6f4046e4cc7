"""``pipelined replay s3://bucket[/prefix]``: object-created events for objects already stored.

The backfill after a processor or rules change: every current object under the prefix (those
the daemon wrote itself excepted) gets one synthetic event on the daemon's own queue (on gcp,
the topic of its subscription), shaped as the storage service's own, so the daemon handles it
like any upload. The ledger makes a replay of a version it has already recorded a duplicate;
``--force`` asks it to process that version again, through the marker ``events.REPLAY_FIELD``,
which the storage service never writes, and the ledger item then says ``forced``.

A synthetic event carries no S3 sequencer (a listing has none): the ledger orders it by its
version id (or ETag) only, and a version it does not know goes ahead only once the download
confirms it is still the current one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from pipelined.events import REPLAY_FIELD
from pipelined.layout import is_own_output
from pipelined.ops.common import (
    EXIT_FAILURE,
    EXIT_OK,
    SCHEMES,
    Scheme,
    console,
    fail,
    json_option,
    print_json,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from pipelined.settings import Settings

REPLAY_EVENT_NAME = "ObjectCreated:Replay"
"""The eventName of a synthetic S3 record: an object-created event, and visibly not S3's."""
GCS_FINALIZE = "OBJECT_FINALIZE"
SEND_BATCH = 10
"""Messages per SendMessageBatch (SQS's limit) and per Pub/Sub publish."""
SEND_ATTEMPTS = 3
"""Tries of a batch entry that SQS refused before the object counts as failed."""
HEAD_CONCURRENCY = 16
"""HeadObject calls at once on a versioned bucket (one per object, for its version id)."""


@dataclass(frozen=True)
class Location:
    """``s3://bucket[/prefix]`` or ``gs://bucket[/prefix]``; an empty prefix is the bucket."""

    scheme: Scheme
    bucket: str
    prefix: str

    @property
    def backend(self) -> str:
        return SCHEMES[self.scheme]

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}"


def parse_location(text: str) -> Location:
    scheme, separator, rest = text.partition("://")
    if not separator or scheme not in SCHEMES:
        raise ValueError(f"{text!r} is not an s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX] URL")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{text!r} names no bucket")
    return Location("gs" if scheme == "gs" else "s3", bucket, prefix)


class LocationType(click.ParamType[Location, object]):
    name = "URL"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Location:
        if isinstance(value, Location):
            return value
        try:
            return parse_location(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


def parse_since(text: str) -> datetime:
    """An ISO 8601 date or date and time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date or date-time (2026-11-28, 2026-11-28T05:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SinceType(click.ParamType[datetime, object]):
    name = "DATE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_since(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


# --- what is replayed -------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    """One current object as a listing (and, on a versioned bucket, its HEAD) shows it."""

    bucket: str
    key: str
    size: int
    etag: str | None
    last_modified: datetime
    version_id: str | None = None
    resource: dict[str, Any] | None = None  # gcs: the object's JSON API resource

    def as_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "version_id": self.version_id,
            "last_modified": self.last_modified.isoformat(),
        }


def replay_marker(force: bool) -> dict[str, bool]:
    """The member REPLAY_FIELD of a synthetic event: it marks the event as ours, and carries
    the force that only a replay may ask for."""
    return {"force": force}


def s3_event_body(stored: StoredObject, *, force: bool, now: datetime) -> str:
    """One S3 notification (a direct one, as S3 puts on SQS) for ``stored``.

    The key is URL-encoded form-style, as S3 encodes it; the ETag without quotes, as in S3's
    events, so the ledger knows it for the version it recorded. ``eventTime`` is the replay's
    own time: the event is new, and the daemon's end-to-end time is measured from it.
    """
    from urllib.parse import quote_plus

    obj: dict[str, Any] = {"key": quote_plus(stored.key, safe="/"), "size": stored.size}
    if stored.etag:
        obj["eTag"] = stored.etag
    if stored.version_id:
        obj["versionId"] = stored.version_id
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": _iso(now),
        "eventName": REPLAY_EVENT_NAME,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": stored.bucket}, "object": obj},
        REPLAY_FIELD: replay_marker(force),
    }
    return json.dumps({"Records": [record]})


def gcs_event_message(
    stored: StoredObject, *, force: bool, now: datetime
) -> tuple[bytes, dict[str, str]]:
    """One Cloud Storage notification (JSON_API_V1) for ``stored``: data and attributes.

    The marker is a member of the data's top level, beside the object resource's own fields:
    the resource's custom metadata (an uploader's to set) is nested under ``metadata``, and a
    notification config's custom attributes are attributes, so neither can forge it.
    """
    generation = stored.version_id or ""
    resource = dict(stored.resource or {})
    resource.setdefault("bucket", stored.bucket)
    resource.setdefault("name", stored.key)
    resource.setdefault("generation", generation)
    resource.setdefault("size", str(stored.size))
    resource[REPLAY_FIELD] = replay_marker(force)
    attributes = {
        "eventType": GCS_FINALIZE,
        "bucketId": stored.bucket,
        "objectId": stored.key,
        "objectGeneration": generation,
        "payloadFormat": "JSON_API_V1",
        "eventTime": _iso(now),
    }
    return json.dumps(resource).encode(), attributes


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Summary:
    """What a replay did, object by object."""

    source: str
    target: str
    dry_run: bool
    force: bool
    listed: int = 0
    sent: int = 0
    skipped_own_output: int = 0
    skipped_before_since: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)  # a dry run's

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "force": self.force,
            "listed": self.listed,
            "sent": self.sent,
            "skipped": {
                "own_output": self.skipped_own_output,
                "before_since": self.skipped_before_since,
            },
            "failed": self.failed,
        }
        if self.dry_run:
            document["objects"] = self.objects
        return document


class Selection:
    """Which listed objects are replayed: not the daemon's own outputs, not older than since."""

    def __init__(self, settings: Settings, since: datetime | None, summary: Summary) -> None:
        self._settings = settings
        self._since = since
        self._summary = summary

    def keep(self, bucket: str, key: str, last_modified: datetime) -> bool:
        self._summary.listed += 1
        if is_own_output(self._settings.output_bucket, self._settings.output_prefix, bucket, key):
            self._summary.skipped_own_output += 1
            return False
        if self._since is not None and last_modified < self._since:
            self._summary.skipped_before_since += 1
            return False
        return True


class Pacer:
    """At most ``rate`` messages a second, on average from the start (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self._rate = rate
        self._started = time.monotonic()
        self._granted = 0

    async def wait(self, count: int) -> None:
        if self._rate is not None:
            due = self._started + self._granted / self._rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        self._granted += count


def batches(items: Iterable[StoredObject], size: int = SEND_BATCH) -> Iterator[list[StoredObject]]:
    batch: list[StoredObject] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- the command ------------------------------------------------------------------------------


@click.command(
    short_help="Enqueue object-created events for objects already stored (a backfill).",
    help="Enqueue one synthetic object-created event for every current object under "
    "s3://BUCKET[/PREFIX] (or gs://), on the daemon's own queue (on gcp, the topic of its "
    "subscription): the backfill after a processor change. Objects under the output prefix "
    "of the output bucket are skipped. Versions the ledger has already recorded are "
    "duplicates the daemon skips, unless --force. A progress bar goes to stderr; the summary "
    "(listed, sent, skipped) to stdout. Exit 0 when every event was sent, 1 when any could "
    "not be, 2 for a bad argument or setting.",
)
@click.argument("location", metavar="URL", type=LocationType())
@click.option(
    "--since",
    type=SinceType(),
    help="only objects last modified at or after this ISO 8601 date or date-time (UTC unless "
    "it names a zone)",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="at most this many events per second (default: as fast as the queue takes them)",
)
@click.option("--dry-run", is_flag=True, help="list what would be sent; send nothing")
@click.option(
    "--force",
    is_flag=True,
    help="reprocess versions the ledger has already recorded; their items then say forced",
)
@json_option
def replay(  # click passes every parameter by name
    *,
    location: Location,
    since: datetime | None,
    rate: float | None,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> int:
    from pipelined.ops.common import load_backend_settings

    settings = load_backend_settings(location.backend)
    if settings.input_buckets and location.bucket not in settings.input_buckets:
        raise click.UsageError(
            f"bucket {location.bucket!r} is not one of PIPELINED_INPUT_BUCKETS: the daemon "
            "would reject every event replayed from it"
        )
    if location.scheme == "gs":
        from pipelined.ops.replay_gcp import replay_gcs as run
    else:
        from pipelined.ops.replay_aws import replay_s3 as run
    summary = asyncio.run(run(settings, location, since, rate, dry_run=dry_run, force=force))
    if as_json:
        print_json(summary.as_json())
    else:
        _print_summary(summary)
    for failure in summary.failed[:10]:
        fail(f"could not send {failure['object']}: {failure['error']}")
    return EXIT_FAILURE if summary.failed else EXIT_OK


def progress() -> Progress:
    """The bar, on stderr: stdout keeps the summary (and ``--json``) clean."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        console=console(stderr=True),
        transient=False,
    )


def advance(bar: Progress, task: TaskID, summary: Summary, sent: int) -> None:
    skipped = summary.skipped_own_output + summary.skipped_before_since
    bar.update(
        task,
        advance=sent,
        total=summary.listed - skipped,
        note=f"listed {summary.listed}, skipped {skipped}",
    )


def _print_summary(summary: Summary) -> None:
    out = console()
    if summary.dry_run:
        for found in summary.objects:
            version = found["version_id"] or found["etag"]
            out.print(
                f"would send {summary.source.split('://')[0]}://{found['bucket']}/"
                f"{found['key']} ({version}, {found['size']:,} bytes)",
                soft_wrap=True,
            )
    verb = "would send" if summary.dry_run else "sent"
    count = len(summary.objects) if summary.dry_run else summary.sent
    forced = " forced" if summary.force else ""
    out.print(
        f"{summary.source}: listed {summary.listed}, {verb} {count}{forced} to "
        f"{summary.target}, skipped {summary.skipped_own_output} own outputs and "
        f"{summary.skipped_before_since} older than --since, {len(summary.failed)} failed",
        soft_wrap=True,
    )
