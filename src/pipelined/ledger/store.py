"""The ledger as the pipeline uses it: the state machine run over a compare-and-set store.

A backend's store does two things only: read an object's document, and write a new one if the
stored revision is still the one the writer read. Every decision is the machine's. A write that
finds the document changed re-runs the transition on what it found, so concurrent consumers
serialise on the document without locks or condition expressions of their own.

Each write carries a fresh ``write_id``, stored with the document. When a reply is lost (the
client resends and the resend's condition fails, or the call errors out after it was applied),
the writer recognises its own write by that id: in the document the failed condition returns,
or in a read made after the error. Because transitions are idempotent for their owner, even a
write that lands late does no harm.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pipelined.errors import LeaseLostError, RetryableError
from pipelined.events import ObjectEvent
from pipelined.ledger import machine
from pipelined.ledger.machine import (
    ABSENT,
    ClaimRequest,
    Notify,
    ObjectState,
    Process,
    Processing,
    Refusal,
    Refused,
    Version,
)
from pipelined.logs import get_logger
from pipelined.records import JobRecord

log = get_logger(__name__)

MAX_CONFLICTS = 10
"""Writes in a row that may find the document changed before the ledger gives up (retryable)."""


@dataclass(frozen=True)
class Snapshot:
    """A document as read or written: its state, its revision (None: no document), its writer."""

    state: ObjectState
    revision: str | None = None
    write_id: str | None = None


class LedgerStore(Protocol):
    """What a backend provides: a consistent read, and a compare-and-set write."""

    async def read(self, bucket: str, key: str) -> Snapshot: ...

    async def write(
        self, bucket: str, key: str, expected: str | None, state: ObjectState, write_id: str
    ) -> Snapshot:
        """Store ``state`` if the revision is still ``expected`` (None: only if no document).

        Returns the snapshot written (carrying ``write_id``) or, if the revision had changed,
        the snapshot found instead. Raises RetryableError when the outcome is unknown.
        """
        ...


@dataclass(eq=False)
class Hold:
    """What one owner holds on one object: a claim, or then the notification lease."""

    bucket: str
    key: str
    version: Version
    owner: str
    snapshot: Snapshot
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class ProcessGrant:
    hold: Hold
    claim: Processing


@dataclass(frozen=True)
class NotifyGrant:
    hold: Hold
    record: JobRecord


ClaimOutcome = ProcessGrant | NotifyGrant | Refused
Transition = Callable[[ObjectState, float], ObjectState | Process | Notify | Refused]


def version_of(event: ObjectEvent) -> Version:
    return Version(event.version, event.sequencer)


class Ledger:
    """The pipeline's ledger: one document per source object, driven by ``machine``."""

    def __init__(
        self, store: LedgerStore, lease_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._lease_s = lease_s
        self._clock = clock

    async def claim(self, event: ObjectEvent, owner: str, *, force: bool = False) -> ClaimOutcome:
        """Claim ``event``'s version for processing, or for its pending notification."""
        request = ClaimRequest(version_of(event), owner, self._lease_s, force)
        hold = Hold(event.bucket, event.key, request.version, owner, Snapshot(ABSENT))
        # Start by assuming there is no document: a new object then costs one write.
        decision = await self._settle(hold, lambda state, now: machine.claim(state, request, now))
        if isinstance(decision, Process):
            return ProcessGrant(hold, decision.claim)
        if isinstance(decision, Notify):
            return NotifyGrant(hold, decision.record)
        assert isinstance(decision, Refused)
        return decision

    async def renew(self, hold: Hold) -> None:
        """Extend the claim or notification lease; LeaseLostError if it is no longer ours."""
        lease_s = self._lease_s
        await self._owned(
            hold, lambda state, now: machine.renew(state, hold.owner, hold.version, lease_s, now)
        )

    async def complete(self, hold: Hold, record: JobRecord) -> None:
        """Record the outcome; the owner keeps the lease, now on the notification."""
        lease_s = self._lease_s
        await self._owned(
            hold,
            lambda state, now: machine.complete(
                state, hold.owner, hold.version, record=record, lease_s=lease_s, now=now
            ),
        )

    async def release(self, hold: Hold, *, worker_died: bool = False) -> None:
        """Let a redelivery take over at once; count the worker death if there was one."""
        await self._settle(
            hold,
            lambda state, now: machine.release(
                state, hold.owner, hold.version, now, worker_died=worker_died
            ),
        )

    async def abandon(self, hold: Hold) -> None:
        """Drop the claim, keeping the record: the version is not the current one."""
        await self._settle(hold, lambda state, _: machine.abandon(state, hold.owner, hold.version))

    async def mark_notified(self, hold: Hold) -> None:
        await self._settle(hold, lambda state, _: machine.mark_notified(state, hold.version))

    async def _owned(self, hold: Hold, transition: Transition) -> None:
        result = await self._settle(hold, transition)
        if isinstance(result, Refused) and result.reason is Refusal.LOST:
            raise LeaseLostError("the ledger claim was taken over by another consumer")

    async def _settle(
        self, hold: Hold, transition: Transition
    ) -> ObjectState | Process | Notify | Refused:
        """Apply ``transition`` to the stored state until a write sticks or it is refused."""
        async with hold.lock:
            for _ in range(MAX_CONFLICTS):
                snapshot = hold.snapshot
                result = transition(snapshot.state, self._clock())
                if isinstance(result, Refused):
                    return result
                wanted = result if isinstance(result, ObjectState) else result.state
                if wanted == snapshot.state:
                    return result  # nothing to change (a repeat of an earlier write)
                hold.snapshot = await self._write(hold, snapshot, wanted)
                if hold.snapshot.state == wanted:
                    return result
            raise RetryableError(f"the ledger item changed {MAX_CONFLICTS} times in a row")

    async def _write(self, hold: Hold, snapshot: Snapshot, wanted: ObjectState) -> Snapshot:
        """Write ``wanted``; return what is stored afterwards, ours or another writer's."""
        write_id = uuid.uuid4().hex
        try:
            found = await self._store.write(
                hold.bucket, hold.key, snapshot.revision, wanted, write_id
            )
        except RetryableError as error:
            # The write may have been applied and only its answer lost: look before deciding.
            # Not applied, the error stands; applied, it is a success like any other.
            try:
                found = await self._store.read(hold.bucket, hold.key)
            except RetryableError:
                raise error from None
            if found.write_id != write_id:
                raise
            log.info("ledger_write_recognised")
        if found.write_id == write_id:
            return Snapshot(wanted, found.revision, write_id)
        return found
