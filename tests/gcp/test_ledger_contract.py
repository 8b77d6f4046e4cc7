"""The ledger over its Firestore store, against the emulator: the contract every store passes
(tests/integration/ledger_contract.py), and what is Firestore's own: document ids, revisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore
from proto.datetime_helpers import DatetimeWithNanoseconds

from pipelined.events import ObjectEvent
from pipelined.gcp.ledger import WRITE, FirestoreLedgerStore, document_id, revision_of
from pipelined.ledger.machine import ObjectState, Processing, Version
from pipelined.ledger.store import Ledger, ProcessGrant
from tests.integration.ledger_contract import Backend, LedgerContract, record

COLLECTION = "ledger"
CLAIMED = ObjectState(processing=Processing(Version("etag-1"), "owner-1", lease_expires_at=1.5))


@pytest.fixture
def store(firestore_client: firestore.AsyncClient) -> FirestoreLedgerStore:
    return FirestoreLedgerStore(firestore_client, COLLECTION)


class TestFirestoreLedger(LedgerContract):
    @pytest.fixture
    def backend(
        self, store: FirestoreLedgerStore, firestore_client: firestore.AsyncClient
    ) -> Backend:
        async def stored(bucket: str, key: str) -> dict[str, Any] | None:
            reference = firestore_client.collection(COLLECTION).document(document_id(bucket, key))
            found = await reference.get()
            return found.to_dict() if found.exists else None

        return Backend(store, stored, WRITE, frozenset({"write_id"}))


async def test_a_key_of_the_longest_kind_has_a_document(store: FirestoreLedgerStore) -> None:
    # 1,024 bytes of UTF-8 with slashes, dots and a percent: Firestore's ids allow none of "/",
    # and percent-encoding it would take over 2,600 bytes, past their limit of 1,500.
    key = ("ü/.%" * 205)[:-1]
    assert len(key.encode()) == 1024
    event = ObjectEvent(bucket="uploads", key=key, etag="etag-1", sequencer="00AA")
    ledger = Ledger(store, lease_s=60)
    grant = await ledger.claim(event, "owner-1")
    assert isinstance(grant, ProcessGrant)
    await ledger.complete(grant.hold, record(event))
    snapshot = await store.read("uploads", key)
    assert snapshot.state.recorded is not None
    assert snapshot.state.recorded.record == record(event)


async def test_the_condition_holds_to_the_microsecond(store: FirestoreLedgerStore) -> None:
    created = await store.write("uploads", "k", None, ObjectState(), "writer-1")
    assert created.revision is not None
    read = DatetimeWithNanoseconds.from_rfc3339(created.revision)
    assert revision_of(read) == created.revision, "the revision is its own round trip"
    # Update times come in whole microseconds, so one microsecond earlier is the nearest
    # other revision: refused, and the document found instead. (Not later: a precondition
    # newer than the document is refused as an invalid argument, finer than a microsecond
    # too.)
    bare = datetime(*_seconds(read), microsecond=read.microsecond, tzinfo=UTC)
    earlier = bare - timedelta(microseconds=1)
    nearly = DatetimeWithNanoseconds(
        *_seconds(earlier), nanosecond=earlier.microsecond * 1000, tzinfo=UTC
    )
    refused = await store.write("uploads", "k", revision_of(nearly), CLAIMED, "writer-2")
    assert refused == created
    written = await store.write("uploads", "k", created.revision, CLAIMED, "writer-3")
    assert (written.state, written.write_id) == (CLAIMED, "writer-3")
    assert written.revision not in (None, created.revision)


def _seconds(moment: datetime) -> tuple[int, int, int, int, int, int]:
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
