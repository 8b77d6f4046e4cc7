"""``pipelined dlq stats|peek|redrive``: the dead letters of the daemon's queue.

The dead-letter queue is never a setting of its own: it is the one the queue's RedrivePolicy
names (on gcp, the dead-letter topic of the subscription's dead_letter_policy, read through
that topic's subscription). ``stats`` and ``peek`` consume nothing: what peek receives is made
visible again at once. ``redrive`` moves every dead letter back to the queue so that a crash
can duplicate a message but never drop one: SQS's own move task where the endpoint has it,
else a loop that sends each message to the queue before it deletes it from the dead letters.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from pipelined.errors import PipelinedError
from pipelined.ops.common import EXIT_FAILURE, EXIT_OK, console, json_option, print_json

if TYPE_CHECKING:
    from pipelined.settings import Settings

PEEK_DEFAULT = 10
PEEK_MAX = 100
MOVE_TASK_MAX_RATE = 500
"""SQS's ceiling for StartMessageMoveTask's MaxNumberOfMessagesPerSecond; the loop keeps it."""


class DeadLetterError(PipelinedError):
    """The dead letters cannot be found or moved: the reason says which and why (exit 1)."""


@dataclass(frozen=True)
class DeadLetterStats:
    queue: str
    dead_letters: str
    visible: int
    in_flight: int
    delayed: int | None = None  # SQS only


@dataclass(frozen=True)
class PeekedMessage:
    message_id: str
    sent_at: str | None
    receive_count: int | None
    objects: list[str]
    """What the body is about: ``s3://bucket/key (version)``, or why it names no object."""
    body: str


@dataclass
class RedriveSummary:
    source: str
    destination: str
    method: str  # "move-task" or "receive-send-delete" (or "pull-publish-ack" on gcp)
    moved: int = 0
    failed: list[str] = field(default_factory=list)
    remaining: int | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def describe_objects(body: str | bytes, attributes: dict[str, str] | None = None) -> list[str]:
    """The objects a message names, parsed as the daemon parses it (its backend's form)."""
    from pipelined.events import MalformedMessageError, ObjectEvent, parse_message
    from pipelined.gcp.events import parse_gcs_message

    try:
        if attributes is not None:
            records = parse_gcs_message(body, attributes)
        else:
            records = parse_message(body if isinstance(body, str) else body.decode())
    except (MalformedMessageError, UnicodeDecodeError) as error:
        return [f"malformed: {error}"]
    described = []
    for record in records:
        if isinstance(record, ObjectEvent):
            scheme = "gs" if attributes is not None else "s3"
            described.append(f"{scheme}://{record.bucket}/{record.key} ({record.version})")
        else:
            described.append(f"ignored: {record.reason}")
    return described


def iso_from_epoch(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@click.group(
    short_help="The dead letters of the daemon's queue: stats, peek, redrive.",
    help="The dead letters of the daemon's queue (the dead-letter queue its RedrivePolicy "
    "names; on gcp, the dead-letter topic of its subscription, read through that topic's "
    "subscription). stats and peek consume nothing; redrive moves every dead letter back.",
)
def dlq() -> None:
    pass


def _settings() -> Settings:
    from pipelined.ops.common import load_backend_settings

    return load_backend_settings()


@dlq.command(
    short_help="How many dead letters there are.",
    help="How many messages the dead-letter queue holds: visible, in flight (being peeked or "
    "redriven) and delayed. Consumes nothing. Exit 1 when the queue has no dead-letter queue.",
)
@json_option
def stats(as_json: bool) -> int:
    settings = _settings()
    if settings.backend == "gcp":
        from pipelined.ops.dlq_gcp import gcp_stats as run
    else:
        from pipelined.ops.dlq_aws import aws_stats as run
    found = asyncio.run(run(settings))
    if as_json:
        print_json(asdict(found))
        return EXIT_OK
    out = console()
    out.print(f"queue         {found.queue}", soft_wrap=True)
    out.print(f"dead letters  {found.dead_letters}", soft_wrap=True)
    held = f"{found.visible} visible, {found.in_flight} in flight"
    if found.delayed is not None:
        held += f", {found.delayed} delayed"
    out.print(f"messages      {held}", soft_wrap=True)
    return EXIT_OK


@dlq.command(
    short_help="Show the first dead letters, consuming none.",
    help="Show up to N dead letters: id, when sent, receive count and the object each names. "
    "They are received under a short lease and made visible again at once, in every case; "
    "the receive still counts in their receive count. On gcp a pull without an ack, then an "
    "ack deadline of 0.",
)
@click.option(
    "-n",
    "count",
    type=click.IntRange(1, PEEK_MAX),
    default=PEEK_DEFAULT,
    show_default=True,
    help="how many messages at most",
)
@json_option
def peek(count: int, as_json: bool) -> int:
    settings = _settings()
    if settings.backend == "gcp":
        from pipelined.ops.dlq_gcp import gcp_peek as run
    else:
        from pipelined.ops.dlq_aws import aws_peek as run
    messages = asyncio.run(run(settings, count))
    if as_json:
        print_json({"messages": [asdict(message) for message in messages]})
        return EXIT_OK
    _print_peeked(messages)
    return EXIT_OK


def _print_peeked(messages: list[PeekedMessage]) -> None:
    from rich.table import Table

    table = Table("message", "sent", "receives", "object")
    for message in messages:
        table.add_row(
            message.message_id,
            message.sent_at or "?",
            str(message.receive_count) if message.receive_count is not None else "?",
            "\n".join(message.objects),
        )
    out = console()
    out.print(table)
    out.print(f"{len(messages)} dead letters shown; none consumed")


@dlq.command(
    short_help="Move every dead letter back to the queue.",
    help="Move every dead letter back to the queue, none lost: with SQS's StartMessageMoveTask "
    "where the endpoint has it, else by receiving, sending to the queue and only then deleting "
    "(a crash can duplicate a message, never drop one). On gcp there is no move task: pull "
    "from the dead-letter topic's subscription, publish to the subscription's topic, ack once "
    "published. Progress goes to stderr. Exit 1 when any message could not be moved.",
)
@click.option(
    "--rate",
    type=click.IntRange(1, MOVE_TASK_MAX_RATE),
    help="at most this many messages per second (default: as fast as the queue allows)",
)
@json_option
def redrive(rate: int | None, as_json: bool) -> int:
    settings = _settings()
    if settings.backend == "gcp":
        from pipelined.ops.dlq_gcp import gcp_redrive as run
    else:
        from pipelined.ops.dlq_aws import aws_redrive as run
    summary = asyncio.run(run(settings, rate))
    if as_json:
        print_json(summary.as_json())
    else:
        remaining = "" if summary.remaining is None else f", {summary.remaining} left"
        console().print(
            f"moved {summary.moved} from {summary.source} to {summary.destination} "
            f"({summary.method}){remaining}, {len(summary.failed)} failed",
            soft_wrap=True,
        )
    for failure in summary.failed[:10]:
        click.echo(f"pipelined: {failure}", err=True)
    return EXIT_FAILURE if summary.failed else EXIT_OK


def redrive_progress() -> Any:
    """The bar, on stderr: stdout keeps the summary (and ``--json``) clean."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pipelined.ops.common import console as make_console

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=make_console(stderr=True),
    )
