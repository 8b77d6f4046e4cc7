"""What every ledger store must do on the wire, written once and run against each backend.

The decisions themselves are tested without any cloud (tests/unit/test_ledger_machine.py and
the model in test_ledger_model.py); here, that a store's compare-and-set holds up against its
emulator: one winner among concurrent writers, the found document returned by a failed
condition, a resent write recognised as ours, a write replacing the whole document.

A backend's test module subclasses LedgerContract (pytest collects the subclass, named Test...)
and gives it a ``backend`` fixture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pipelined import metrics
from pipelined.errors import LeaseLostError
from pipelined.events import ObjectEvent
from pipelined.ledger.document import FIELDS, to_document
from pipelined.ledger.machine import (
    ABSENT,
    ObjectState,
    Processing,
    Recorded,
    Refusal,
    Refused,
    Version,
)
from pipelined.ledger.store import Ledger, LedgerStore, NotifyGrant, ProcessGrant, Snapshot
from pipelined.records import JobRecord, SourceObject

# A "/" in the key: a backend whose ids may not contain one (Firestore) must cope.
EVENT = ObjectEvent(bucket="uploads", key="photos/a b+é.jpg", etag="etag-1", sequencer="00AA")


@dataclass(frozen=True)
class Backend:
    store: LedgerStore
    stored: Callable[[str, str], Awaitable[dict[str, Any] | None]]
    """The object's document as the backend holds it, read past the store."""
    write_operation: str
    """The operation the store's writes count their calls under, as service.Operation
    (pipelined_cloud_calls_total)."""
    own_fields: frozenset[str]
    """Fields the backend stores besides the neutral document's."""


def record(event: ObjectEvent, attempts: int = 1, error: str | None = None) -> JobRecord:
    return JobRecord(
        source=SourceObject(event.bucket, event.key, event.etag, 10),
        status="processed" if error is None else "failed",
        kind="image",
        attempts=attempts,
        started_at="2026-11-28T00:00:00Z",
        finished_at="2026-11-28T00:00:01Z",
        duration_ms=1000,
        # A float, an int and a None in a map: each must come back as it went in.
        metadata={"width": 10, "ratio": 1.5, "missing": None},
        error=error,
    )


class ResendingStore:
    """A store whose every write is sent twice, as a client resends a request whose answer was
    lost: the first is applied, the second's condition fails."""

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    async def read(self, bucket: str, key: str) -> Snapshot:
        return await self._store.read(bucket, key)

    async def write(
        self, bucket: str, key: str, expected: str | None, state: ObjectState, write_id: str
    ) -> Snapshot:
        await self._store.write(bucket, key, expected, state, write_id)
        return await self._store.write(bucket, key, expected, state, write_id)


def write_errors(backend: Backend) -> float:
    service, operation = backend.write_operation.split(".", 1)
    return float(metrics.CLOUD_CALLS.labels(service, operation, "error")._value.get())


# Every field of the layout set: a recorded outcome, its notification lease, and a claim.
FULL_STATE = ObjectState(
    recorded=Recorded(
        version=Version("etag-1", "00AA"),
        record=JobRecord(
            source=SourceObject(EVENT.bucket, EVENT.key, "etag-1", 10, "v1"),
            status="failed",
            kind="image",
            attempts=2,
            started_at="2026-11-28T00:00:00Z",
            finished_at="2026-11-28T00:00:01Z",
            duration_ms=1000,
            error="corrupt JPEG: truncated",
            forced=True,
        ),
        recorded_by="owner-1",
        notifier="owner-1",
        notify_lease_expires_at=1.5,
    ),
    processing=Processing(Version("etag-2", "00AB"), "owner-2", lease_expires_at=2.5),
)


class LedgerContract:
    async def test_a_finished_version_is_a_duplicate_and_its_record_comes_back(
        self, backend: Backend
    ) -> None:
        ledger = Ledger(backend.store, lease_s=60)
        grant = await ledger.claim(EVENT, "owner-1")
        assert isinstance(grant, ProcessGrant)
        assert grant.claim.attempts == 1
        await ledger.complete(grant.hold, record(EVENT))
        # Finished but not yet marked notified: the owner may be publishing right now.
        racing = await ledger.claim(EVENT, "owner-2")
        assert isinstance(racing, Refused)
        assert racing.reason is Refusal.BUSY
        assert 50 < racing.retry_after_s <= 60
        await ledger.mark_notified(grant.hold)
        again = await ledger.claim(EVENT, "owner-3")
        assert again == Refused(Refusal.DUPLICATE, record=record(EVENT))
        stored = await backend.stored(EVENT.bucket, EVENT.key)
        assert stored is not None
        assert (stored["status"], stored["notified"], stored["version"]) == (
            "processed",
            True,
            "etag-1",
        )
        assert (stored["bucket"], stored["object_key"]) == (EVENT.bucket, EVENT.key)
        assert "claim" not in stored
        assert "notifier" not in stored

    async def test_a_notification_lost_with_its_owner_is_taken_over_once(
        self, backend: Backend
    ) -> None:
        ledger = Ledger(backend.store, lease_s=1)
        grant = await ledger.claim(EVENT, "owner-who-dies")
        assert isinstance(grant, ProcessGrant)
        await ledger.complete(grant.hold, record(EVENT))
        await asyncio.sleep(1.2)  # the owner died between completing and marking the notification
        taken = await ledger.claim(EVENT, "owner-2")
        assert isinstance(taken, NotifyGrant)
        assert taken.record == record(EVENT)
        again = await ledger.claim(EVENT, "owner-3")
        assert isinstance(again, Refused)
        assert again.reason is Refusal.BUSY, "only one re-sends it"

    async def test_of_concurrent_claims_exactly_one_wins(self, backend: Backend) -> None:
        ledger = Ledger(backend.store, lease_s=60)
        claims = await asyncio.gather(*(ledger.claim(EVENT, f"owner-{n}") for n in range(5)))
        assert sum(isinstance(claim, ProcessGrant) for claim in claims) == 1
        refused = [claim for claim in claims if not isinstance(claim, ProcessGrant)]
        assert {claim.reason for claim in refused if isinstance(claim, Refused)} == {Refusal.BUSY}

    async def test_a_claim_whose_lease_ran_out_is_taken_over(self, backend: Backend) -> None:
        ledger = Ledger(backend.store, lease_s=1)
        first = await ledger.claim(EVENT, "dead-owner")
        assert isinstance(first, ProcessGrant)
        busy = await ledger.claim(EVENT, "other")
        assert isinstance(busy, Refused)
        assert busy.reason is Refusal.BUSY
        assert 0 < busy.retry_after_s <= 1
        await asyncio.sleep(1.2)
        second = await ledger.claim(EVENT, "other")
        assert isinstance(second, ProcessGrant)
        assert second.claim.attempts == 2
        # The dead owner's late writes are refused: no second effect.
        with pytest.raises(LeaseLostError):
            await ledger.complete(first.hold, record(EVENT))
        with pytest.raises(LeaseLostError):
            await ledger.renew(first.hold)

    async def test_a_released_claim_is_free_at_once(self, backend: Backend) -> None:
        ledger = Ledger(backend.store, lease_s=600)
        first = await ledger.claim(EVENT, "owner-1")
        assert isinstance(first, ProcessGrant)
        await ledger.release(first.hold)
        second = await ledger.claim(EVENT, "owner-2")
        assert isinstance(second, ProcessGrant)
        assert second.claim.attempts == 2

    async def test_a_newer_version_is_claimed_and_an_older_event_is_stale(
        self, backend: Backend
    ) -> None:
        ledger = Ledger(backend.store, lease_s=60)
        first = await ledger.claim(EVENT, "owner-1")
        assert isinstance(first, ProcessGrant)
        await ledger.complete(first.hold, record(EVENT))
        newer = ObjectEvent(bucket=EVENT.bucket, key=EVENT.key, etag="etag-2", sequencer="00AB")
        claim = await ledger.claim(newer, "owner-2")
        assert isinstance(claim, ProcessGrant)
        assert (claim.claim.attempts, claim.claim.must_be_current) == (1, False)
        await ledger.complete(claim.hold, record(newer))
        late = ObjectEvent(bucket=EVENT.bucket, key=EVENT.key, etag="etag-0", sequencer="009F")
        assert await ledger.claim(late, "owner-3") == Refused(Refusal.STALE)

    async def test_a_failed_condition_returns_the_document_found_and_is_not_an_error(
        self, backend: Backend
    ) -> None:
        store, errors_before = backend.store, write_errors(backend)
        created = await store.write(EVENT.bucket, EVENT.key, None, ObjectState(), "writer-1")
        assert (created.state, created.write_id) == (ObjectState(), "writer-1")
        assert created.revision is not None
        assert await store.read(EVENT.bucket, EVENT.key) == created, "the same revision, read"
        found = await store.write(EVENT.bucket, EVENT.key, None, ObjectState(), "writer-2")
        assert found == created, "a second create finds the first"
        replaced = await store.write(
            EVENT.bucket, EVENT.key, created.revision, FULL_STATE, "writer-3"
        )
        assert replaced.revision not in (None, created.revision)
        assert replaced == Snapshot(FULL_STATE, replaced.revision, "writer-3")
        stale = await store.write(EVENT.bucket, EVENT.key, created.revision, ABSENT, "writer-4")
        assert stale == replaced, "a write from a stale revision finds the newer document"
        assert write_errors(backend) == errors_before

    async def test_a_write_replaces_the_whole_document(self, backend: Backend) -> None:
        assert set(to_document(FULL_STATE, EVENT.bucket, EVENT.key)) == FIELDS, "all of them"
        store = backend.store
        full = await store.write(EVENT.bucket, EVENT.key, None, FULL_STATE, "writer-1")
        sparse = ObjectState(processing=Processing(Version("etag-3"), "owner-3", 3.5))
        written = await store.write(EVENT.bucket, EVENT.key, full.revision, sparse, "writer-2")
        assert written.state == sparse
        assert await store.read(EVENT.bucket, EVENT.key) == written
        stored = await backend.stored(EVENT.bucket, EVENT.key)
        assert stored is not None
        assert set(stored) == {"bucket", "object_key", "claim", *backend.own_fields}
        assert stored["claim"] == {
            "version": "etag-3",
            "owner": "owner-3",
            "lease_expires_at": 3.5,
            "attempts": 1,
            "worker_deaths": 0,
            "must_be_current": False,
        }, "the claim replaced as a whole: no sequencer left of the one before"

    async def test_every_write_recognises_its_own_earlier_success(self, backend: Backend) -> None:
        """Hole b: claim, complete, the notification take-over and the mark, each resent."""
        ledger = Ledger(ResendingStore(backend.store), lease_s=1)
        grant = await ledger.claim(EVENT, "owner-who-dies")
        assert isinstance(grant, ProcessGrant), grant
        await ledger.complete(grant.hold, record(EVENT))
        await asyncio.sleep(1.2)
        taken = await ledger.claim(EVENT, "owner-2")
        assert isinstance(taken, NotifyGrant), taken
        await ledger.mark_notified(taken.hold)
        snapshot = await backend.store.read(EVENT.bucket, EVENT.key)
        assert snapshot.state.recorded is not None
        assert snapshot.state.recorded.notified

    async def test_a_forced_claim_reprocesses_a_recorded_version_and_says_so(
        self, backend: Backend
    ) -> None:
        ledger = Ledger(backend.store, lease_s=60)
        first = await ledger.claim(EVENT, "owner-1")
        assert isinstance(first, ProcessGrant)
        await ledger.complete(first.hold, record(EVENT))
        await ledger.mark_notified(first.hold)
        assert isinstance(await ledger.claim(EVENT, "owner-2"), Refused), "a duplicate"
        forced = await ledger.claim(EVENT, "owner-3", force=True)
        assert isinstance(forced, ProcessGrant), forced
        assert (forced.claim.forced, forced.claim.attempts) == (True, 2)
        claimed = await backend.stored(EVENT.bucket, EVENT.key)
        assert claimed is not None
        assert claimed["claim"]["forced"] is True
        assert "forced" not in claimed, "the old record was not forced"
        await ledger.complete(forced.hold, record(EVENT, attempts=2))
        stored = await backend.stored(EVENT.bucket, EVENT.key)
        assert stored is not None
        assert (stored["forced"], stored["attempts"]) == (True, 2)
        snapshot = await backend.store.read(EVENT.bucket, EVENT.key)
        assert snapshot.state.recorded is not None
        assert snapshot.state.recorded.forced

    async def test_force_on_a_new_version_is_an_ordinary_claim(self, backend: Backend) -> None:
        ledger = Ledger(backend.store, lease_s=60)
        grant = await ledger.claim(EVENT, "owner-1", force=True)
        assert isinstance(grant, ProcessGrant)
        assert grant.claim.forced is False, "nothing was recorded to force past"
        stored = await backend.stored(EVENT.bucket, EVENT.key)
        assert stored is not None
        assert "forced" not in stored["claim"]
