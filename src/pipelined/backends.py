"""The four ports on one cloud, chosen by BACKEND: the only module that knows both clouds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from pipelined.concurrency import ThrottleSignal
from pipelined.consumer import Queue
from pipelined.handler import Parser
from pipelined.ledger.store import LedgerStore
from pipelined.pipeline import Notifier, ObjectStore
from pipelined.queuestats import QueueStatsSource
from pipelined.settings import Settings


@dataclass(frozen=True)
class Backend:
    queue: Queue
    parse: Parser | None
    """How the queue's messages carry events; None: S3's JSON in the body (the handler's)."""
    store: ObjectStore
    ledger_store: LedgerStore
    notifier: Notifier
    source: str
    """What the daemon consumes, for its start-up line: a queue URL, a subscription."""
    has_dead_letters: Callable[[], Awaitable[bool]]
    """Whether messages that keep failing are set aside (asked once, at start-up)."""
    dead_letter_hint: str
    """What to do about it when they are not."""
    queue_stats: QueueStatsSource | None = None
    """Where the queue's depth is read from; None where the queue tells none (Pub/Sub)."""


async def open_backend(
    settings: Settings, stack: AsyncExitStack, throttled: ThrottleSignal
) -> Backend:
    """Open the chosen cloud's clients on ``stack`` and build the ports on them."""
    max_connections = settings.max_inflight * 4 + 10
    # A cloud's libraries load only when it is chosen.
    if settings.backend == "gcp":
        from pipelined.gcp.backend import open_gcp_backend

        return await open_gcp_backend(settings, stack, max_connections, throttled)
    from pipelined.aws.backend import open_aws_backend

    return await open_aws_backend(settings, stack, max_connections, throttled)
