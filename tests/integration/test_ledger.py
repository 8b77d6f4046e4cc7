"""The ledger over its DynamoDB store, against the emulator: what the machine decides, stored.

The decisions themselves are tested without any cloud (tests/unit/test_ledger_machine.py and
the model in test_ledger_model.py); here, that the store's compare-and-set holds up on the
wire: one winner among concurrent writers, the found item returned by a failed condition, a
resent write recognised as ours, and items written before items had a revision.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from pipelined import metrics
from pipelined.aws.clients import open_clients
from pipelined.aws.ledger import DynamoLedgerStore, item_key
from pipelined.errors import LeaseLostError
from pipelined.events import ObjectEvent
from pipelined.ledger.machine import ObjectState, Refusal, Refused
from pipelined.ledger.store import Ledger, NotifyGrant, ProcessGrant, Snapshot
from pipelined.local import REGION, LocalStack
from pipelined.records import JobRecord, SourceObject
from tests.integration.helpers import ledger_item

EVENT = ObjectEvent(bucket="uploads", key="a b.jpg", etag="etag-1", sequencer="00AA")


@pytest.fixture
async def store(stack: LocalStack) -> AsyncIterator[DynamoLedgerStore]:
    async with AsyncExitStack() as exits:
        clients = await open_clients(exits, max_connections=10, region=REGION)
        yield DynamoLedgerStore(clients.dynamodb, stack.table)


def record(event: ObjectEvent, attempts: int = 1) -> JobRecord:
    return JobRecord(
        source=SourceObject(event.bucket, event.key, event.etag, 10),
        status="processed",
        kind="image",
        attempts=attempts,
        started_at="2026-11-28T00:00:00Z",
        finished_at="2026-11-28T00:00:01Z",
        duration_ms=1000,
        metadata={"width": 10, "ratio": 1.5, "missing": None},
    )


async def test_a_finished_version_is_a_duplicate_and_its_record_comes_back(
    store: DynamoLedgerStore, stack: LocalStack
) -> None:
    ledger = Ledger(store, lease_s=60)
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
    item = ledger_item(stack, EVENT.bucket, EVENT.key)
    assert item is not None
    assert (item["status"], item["notified"], item["version"]) == ("processed", True, "etag-1")
    assert "claim" not in item
    assert "notifier" not in item


async def test_a_notification_lost_with_its_owner_is_taken_over_once(
    store: DynamoLedgerStore,
) -> None:
    ledger = Ledger(store, lease_s=1)
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


async def test_of_concurrent_claims_exactly_one_wins(store: DynamoLedgerStore) -> None:
    ledger = Ledger(store, lease_s=60)
    claims = await asyncio.gather(*(ledger.claim(EVENT, f"owner-{n}") for n in range(5)))
    assert sum(isinstance(claim, ProcessGrant) for claim in claims) == 1
    refused = [claim for claim in claims if not isinstance(claim, ProcessGrant)]
    assert {claim.reason for claim in refused if isinstance(claim, Refused)} == {Refusal.BUSY}


async def test_a_claim_whose_lease_ran_out_is_taken_over(store: DynamoLedgerStore) -> None:
    ledger = Ledger(store, lease_s=1)
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


async def test_a_released_claim_is_free_at_once(store: DynamoLedgerStore) -> None:
    ledger = Ledger(store, lease_s=600)
    first = await ledger.claim(EVENT, "owner-1")
    assert isinstance(first, ProcessGrant)
    await ledger.release(first.hold)
    second = await ledger.claim(EVENT, "owner-2")
    assert isinstance(second, ProcessGrant)
    assert second.claim.attempts == 2


async def test_a_newer_version_is_claimed_and_an_older_event_is_stale(
    store: DynamoLedgerStore,
) -> None:
    ledger = Ledger(store, lease_s=60)
    first = await ledger.claim(EVENT, "owner-1")
    assert isinstance(first, ProcessGrant)
    await ledger.complete(first.hold, record(EVENT))
    newer = ObjectEvent(bucket="uploads", key="a b.jpg", etag="etag-2", sequencer="00AB")
    claim = await ledger.claim(newer, "owner-2")
    assert isinstance(claim, ProcessGrant)
    assert (claim.claim.attempts, claim.claim.must_be_current) == (1, False)
    await ledger.complete(claim.hold, record(newer))
    late = ObjectEvent(bucket="uploads", key="a b.jpg", etag="etag-0", sequencer="009F")
    assert await ledger.claim(late, "owner-3") == Refused(Refusal.STALE)


async def test_a_failed_condition_returns_the_item_found_and_is_not_an_aws_error(
    store: DynamoLedgerStore,
) -> None:
    errors_before = metrics.AWS_ERRORS.labels("dynamodb.PutItem")._value.get()
    written = await store.write("uploads", "k", None, ObjectState(), "writer-1")
    assert written == Snapshot(ObjectState(), "1", "writer-1")
    found = await store.write("uploads", "k", None, ObjectState(), "writer-2")
    assert found == written, "the item found, from the failed condition's own answer"
    stale = await store.write("uploads", "k", "7", ObjectState(), "writer-3")
    assert stale == written
    assert metrics.AWS_ERRORS.labels("dynamodb.PutItem")._value.get() == errors_before


class ResendingStore:
    """The DynamoDB store, but every write is sent twice, as botocore resends a request whose
    answer was lost: the first is applied, the second's condition fails."""

    def __init__(self, store: DynamoLedgerStore) -> None:
        self._store = store

    async def read(self, bucket: str, key: str) -> Snapshot:
        return await self._store.read(bucket, key)

    async def write(
        self, bucket: str, key: str, expected: str | None, state: ObjectState, write_id: str
    ) -> Snapshot:
        await self._store.write(bucket, key, expected, state, write_id)
        return await self._store.write(bucket, key, expected, state, write_id)


async def test_every_write_recognises_its_own_earlier_success(store: DynamoLedgerStore) -> None:
    """Hole b: claim, complete, the notification take-over and the mark, each resent."""
    ledger = Ledger(ResendingStore(store), lease_s=1)
    grant = await ledger.claim(EVENT, "owner-who-dies")
    assert isinstance(grant, ProcessGrant), grant
    await ledger.complete(grant.hold, record(EVENT))
    await asyncio.sleep(1.2)
    taken = await ledger.claim(EVENT, "owner-2")
    assert isinstance(taken, NotifyGrant), taken
    await ledger.mark_notified(taken.hold)
    snapshot = await store.read(EVENT.bucket, EVENT.key)
    assert snapshot.state.recorded is not None
    assert snapshot.state.recorded.notified


async def test_an_item_of_the_previous_layout_is_taken_over(
    store: DynamoLedgerStore, stack: LocalStack
) -> None:
    # Written by the version before revisions: a flat claim, no rev, no write id.
    stack.client("dynamodb").put_item(
        TableName=stack.table,
        Item={
            "pk": {"S": item_key(EVENT.bucket, EVENT.key)},
            "status": {"S": "processing"},
            "version": {"S": "etag-1"},
            "owner": {"S": "old-daemon"},
            "lease_expires_at": {"N": "1"},
        },
    )
    ledger = Ledger(store, lease_s=60)
    grant = await ledger.claim(EVENT, "owner-1")
    assert isinstance(grant, ProcessGrant)
    await ledger.complete(grant.hold, record(EVENT))
    item = ledger_item(stack, EVENT.bucket, EVENT.key)
    assert item is not None
    assert (item["status"], item["rev"]) == ("processed", 2)
    assert "owner" not in item, "the whole item is rewritten in the current layout"
