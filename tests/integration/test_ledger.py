"""The DynamoDB ledger's conditional writes, against the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from pipelined.aws.clients import open_clients
from pipelined.aws.ledger import DynamoLedger, normalise_sequencer
from pipelined.errors import LeaseLostError
from pipelined.events import ObjectEvent
from pipelined.local import REGION, LocalStack
from pipelined.records import JobRecord, SourceObject
from tests.integration.helpers import ledger_item

EVENT = ObjectEvent(bucket="uploads", key="a b.jpg", etag="etag-1", sequencer="00AA")


@pytest.fixture
async def ledger(stack: LocalStack) -> AsyncIterator[DynamoLedger]:
    async with AsyncExitStack() as exits:
        clients = await open_clients(exits, max_connections=10, region=REGION)
        yield DynamoLedger(clients.dynamodb, stack.table)


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
    ledger: DynamoLedger, stack: LocalStack
) -> None:
    claim = await ledger.claim(EVENT, "owner-1", 60)
    assert (claim.granted, claim.attempts) == (True, 1)
    await ledger.complete(EVENT, claim, record(EVENT))
    # Finished but not yet marked notified: the owner may be publishing right now.
    racing = await ledger.claim(EVENT, "owner-2", 60)
    assert racing.busy
    assert 50 < racing.retry_after_s <= 60
    await ledger.mark_notified(EVENT)
    again = await ledger.claim(EVENT, "owner-3", 60)
    assert (again.granted, again.reason, again.notified) == (False, "duplicate", True)
    assert again.existing == record(EVENT)
    item = ledger_item(stack, EVENT.bucket, EVENT.key)
    assert item is not None
    assert item["status"] == "processed"
    assert "lease_expires_at" not in item


async def test_a_notification_lost_with_its_owner_is_taken_over_once(
    ledger: DynamoLedger,
) -> None:
    claim = await ledger.claim(EVENT, "owner-who-dies", 1)
    await ledger.complete(EVENT, claim, record(EVENT))
    await asyncio.sleep(1.2)  # the owner died between completing and marking the notification
    duplicate = await ledger.claim(EVENT, "owner-2", 60)
    assert (duplicate.reason, duplicate.notified) == ("duplicate", False)
    assert await ledger.claim_notification(EVENT, "owner-2", 60)
    assert not await ledger.claim_notification(EVENT, "owner-3", 60), "only one re-sends it"


async def test_of_two_concurrent_claims_exactly_one_wins(ledger: DynamoLedger) -> None:
    claims = await asyncio.gather(*(ledger.claim(EVENT, f"owner-{n}", 60) for n in range(5)))
    assert sum(claim.granted for claim in claims) == 1
    assert {claim.reason for claim in claims if not claim.granted} == {"busy"}


async def test_a_claim_whose_lease_ran_out_is_taken_over(ledger: DynamoLedger) -> None:
    first = await ledger.claim(EVENT, "dead-owner", 1)
    assert first.granted
    busy = await ledger.claim(EVENT, "other", 60)
    assert busy.busy
    assert 0 < busy.retry_after_s <= 1
    await asyncio.sleep(1.2)
    second = await ledger.claim(EVENT, "other", 60)
    assert (second.granted, second.attempts) == (True, 2)
    # The dead owner's late writes are refused: no second effect.
    with pytest.raises(LeaseLostError):
        await ledger.complete(EVENT, first, record(EVENT))
    with pytest.raises(LeaseLostError):
        await ledger.renew(EVENT, first, 60)


async def test_a_released_claim_is_free_at_once(ledger: DynamoLedger) -> None:
    first = await ledger.claim(EVENT, "owner-1", 600)
    await ledger.release(EVENT, first)
    second = await ledger.claim(EVENT, "owner-2", 600)
    assert (second.granted, second.attempts) == (True, 2)


async def test_a_newer_version_is_claimed_and_an_older_event_is_stale(
    ledger: DynamoLedger,
) -> None:
    first = await ledger.claim(EVENT, "owner-1", 60)
    await ledger.complete(EVENT, first, record(EVENT))
    newer = ObjectEvent(bucket="uploads", key="a b.jpg", etag="etag-2", sequencer="00AB")
    claim = await ledger.claim(newer, "owner-2", 60)
    assert (claim.granted, claim.attempts) == (True, 1)
    await ledger.complete(newer, claim, record(newer))
    late = ObjectEvent(bucket="uploads", key="a b.jpg", etag="etag-0", sequencer="009F")
    refused = await ledger.claim(late, "owner-3", 60)
    assert (refused.granted, refused.reason) == (False, "stale")


def test_sequencers_compare_after_right_padding() -> None:
    # From S3's documentation: compare as hex strings after right-padding the shorter with zeros.
    assert normalise_sequencer("0055AED6DCD90281E5") > normalise_sequencer("0055AED6DCD9028")
    assert normalise_sequencer("00a1") == normalise_sequencer("00A100")
