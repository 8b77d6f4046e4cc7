"""The ledger state machine, transition by transition, and the Ledger over a CAS store."""

from __future__ import annotations

import pytest

from pipelined.errors import LeaseLostError, RetryableError
from pipelined.events import ObjectEvent
from pipelined.ledger import machine
from pipelined.ledger.machine import (
    ABSENT,
    ClaimRequest,
    Notify,
    ObjectState,
    Process,
    Refusal,
    Refused,
    Version,
)
from pipelined.ledger.store import Ledger, NotifyGrant, ProcessGrant
from pipelined.records import JobRecord, SourceObject
from tests.unit.memory_ledger import MemoryLedgerStore

V1 = Version("v1", "0001")
V2 = Version("v2", "0002")
LEASE_S = 60.0


def record(version: Version, attempts: int = 1) -> JobRecord:
    return JobRecord(
        source=SourceObject("uploads", "k", None, 10, version.id),
        status="processed",
        kind="image",
        attempts=attempts,
        started_at="2026-12-01T00:00:00Z",
        finished_at="2026-12-01T00:00:01Z",
        duration_ms=1000,
    )


def request(version: Version, owner: str, **extra: bool) -> ClaimRequest:
    return ClaimRequest(version, owner, LEASE_S, **extra)


def claimed(state: ObjectState, version: Version, owner: str, now: float = 0) -> ObjectState:
    decision = machine.claim(state, request(version, owner), now)
    assert isinstance(decision, Process), decision
    return decision.state


def finished(version: Version, owner: str = "a", *, notified: bool = True) -> ObjectState:
    state = claimed(ABSENT, version, owner)
    done = machine.complete(state, owner, version, record=record(version), lease_s=LEASE_S, now=1)
    assert isinstance(done, ObjectState)
    if notified:
        marked = machine.mark_notified(done, version)
        assert isinstance(marked, ObjectState)
        return marked
    return done


def test_a_new_object_is_claimed_for_its_first_attempt() -> None:
    decision = machine.claim(ABSENT, request(V1, "a"), now=0)
    assert isinstance(decision, Process)
    assert (decision.claim.owner, decision.claim.attempts, decision.claim.must_be_current) == (
        "a",
        1,
        False,
    )
    assert decision.claim.lease_expires_at == LEASE_S


def test_a_recorded_and_notified_version_is_a_duplicate_with_its_record() -> None:
    refused = machine.claim(finished(V1), request(V1, "b"), now=5)
    assert refused == Refused(Refusal.DUPLICATE, record=record(V1))


def test_a_live_claim_is_busy_until_its_lease_runs_out() -> None:
    state = claimed(ABSENT, V1, "a")
    busy = machine.claim(state, request(V1, "b"), now=10)
    assert busy == Refused(Refusal.BUSY, retry_after_s=LEASE_S - 10)


def test_an_expired_claim_is_taken_over_and_counts_an_attempt() -> None:
    state = claimed(ABSENT, V1, "a")
    decision = machine.claim(state, request(V1, "b"), now=LEASE_S + 1)
    assert isinstance(decision, Process)
    assert (decision.claim.owner, decision.claim.attempts) == ("b", 2)
    # The first owner's late writes are refused: no second effect.
    late = machine.complete(
        decision.state, "a", V1, record=record(V1), lease_s=LEASE_S, now=LEASE_S + 2
    )
    assert late == Refused(Refusal.LOST)
    assert machine.renew(decision.state, "a", V1, LEASE_S, LEASE_S + 2) == Refused(Refusal.LOST)


def test_a_newer_version_takes_over_a_live_claim_and_the_old_owner_cannot_record() -> None:
    state = claimed(ABSENT, V1, "a")
    decision = machine.claim(state, request(V2, "b"), now=1)
    assert isinstance(decision, Process)
    assert decision.claim.version == V2
    stale = machine.complete(decision.state, "a", V1, record=record(V1), lease_s=LEASE_S, now=2)
    assert stale == Refused(Refusal.LOST)


def test_an_older_version_is_stale_against_the_record_and_against_a_claim() -> None:
    assert machine.claim(finished(V2), request(V1, "b"), now=5) == Refused(Refusal.STALE)
    in_progress = claimed(ABSENT, V2, "a")
    assert machine.claim(in_progress, request(V1, "b"), now=5) == Refused(Refusal.STALE)


def test_an_unordered_event_never_replaces_the_record_until_proven_current() -> None:
    """Hole c: an event without a sequencer must not turn a newer record into a failure."""
    recorded = finished(V2)
    unordered = Version("v0", None)
    decision = machine.claim(recorded, request(unordered, "b"), now=5)
    assert isinstance(decision, Process)
    assert decision.claim.must_be_current
    assert decision.state.recorded == recorded.recorded, "the record is untouched by a claim"
    # The store says the version is not current: the claim is dropped, the record stays.
    abandoned = machine.abandon(decision.state, "b", unordered)
    assert abandoned == recorded


def test_an_unordered_event_waits_for_a_live_claim_of_another_version() -> None:
    # Two unordered versions taking a live claim from each other would never get as far as
    # checking which one is current; the one that came second waits.
    state = claimed(ABSENT, Version("v1", None), "a")
    busy = machine.claim(state, request(Version("v2", None), "b"), now=10)
    assert busy == Refused(Refusal.BUSY, retry_after_s=LEASE_S - 10)
    after = machine.claim(state, request(Version("v2", None), "b"), now=LEASE_S + 1)
    assert isinstance(after, Process)
    assert after.claim.must_be_current


def test_equal_sequencers_of_different_versions_do_not_order_them() -> None:
    # Some emulators send one fixed sequencer for every event.
    assert Version("a", "0F").compare(Version("b", "0F")) is machine.Order.UNKNOWN
    assert Version("a", "10").compare(Version("b", "0F")) is machine.Order.NEWER


def test_worker_deaths_are_counted_by_release_and_survive_a_take_over() -> None:
    """Hole f: deaths, not claims, decide when a file that kills workers is failed."""
    state = claimed(ABSENT, V1, "a")
    released = machine.release(state, "a", V1, now=1, worker_died=True)
    assert isinstance(released, ObjectState)
    assert released.processing is not None
    assert released.processing.worker_deaths == 1
    decision = machine.claim(released, request(V1, "b"), now=2)
    assert isinstance(decision, Process)
    assert (decision.claim.attempts, decision.claim.worker_deaths) == (2, 1)
    # A release for any other reason (shutdown, throttling) counts no death.
    again = machine.release(decision.state, "b", V1, now=3)
    assert isinstance(again, ObjectState)
    assert again.processing is not None
    assert again.processing.worker_deaths == 1


def test_the_notifier_holds_a_renewable_lease_until_it_marks() -> None:
    """Hole h: a slow publish keeps its lease, so a duplicate cannot publish too."""
    state = finished(V1, "a", notified=False)
    assert state.recorded is not None
    assert state.recorded.notifier == "a"
    renewed = machine.renew(state, "a", V1, LEASE_S, now=50)
    assert isinstance(renewed, ObjectState)
    # Past the first lease but inside the renewed one: nobody else may notify.
    busy = machine.claim(renewed, request(V1, "b"), now=LEASE_S + 5)
    assert isinstance(busy, Refused)
    assert busy.reason is Refusal.BUSY
    marked = machine.mark_notified(renewed, V1)
    assert isinstance(marked, ObjectState)
    assert marked.recorded is not None
    assert (marked.recorded.notified, marked.recorded.notifier) == (True, None)


def test_a_notification_whose_sender_died_is_taken_over() -> None:
    state = finished(V1, "a", notified=False)
    decision = machine.claim(state, request(V1, "b"), now=LEASE_S + 5)
    assert isinstance(decision, Notify)
    assert decision.record == record(V1)
    assert decision.state.recorded is not None
    assert decision.state.recorded.notifier == "b"


def test_a_newer_record_makes_marking_an_older_notification_a_no_op() -> None:
    state = finished(V1, "a", notified=False)
    newer = claimed(state, V2, "b")
    done = machine.complete(newer, "b", V2, record=record(V2), lease_s=LEASE_S, now=2)
    assert isinstance(done, ObjectState)
    assert machine.mark_notified(done, V1) == done


def test_transitions_repeated_by_their_owner_change_nothing() -> None:
    state = claimed(ABSENT, V1, "a")
    assert machine.claim(state, request(V1, "a"), now=1) == Process(state)
    done = machine.complete(state, "a", V1, record=record(V1), lease_s=LEASE_S, now=1)
    assert isinstance(done, ObjectState)
    assert machine.complete(done, "a", V1, record=record(V1), lease_s=LEASE_S, now=2) == done


def test_force_reclaims_a_recorded_version_for_a_replay() -> None:
    decision = machine.claim(finished(V1), request(V1, "b", force=True), now=5)
    assert isinstance(decision, Process)
    assert decision.claim.attempts == 2
    assert decision.state.recorded is not None, "the old record stays until the replay ends"
    assert decision.claim.forced, "the claim says it was forced"
    done = machine.complete(decision.state, "b", V1, record=record(V1), lease_s=LEASE_S, now=6)
    assert isinstance(done, ObjectState)
    assert done.recorded is not None
    assert done.recorded.forced, "and so does the record it leaves"


def test_force_on_a_version_never_recorded_is_no_forcing() -> None:
    decision = machine.claim(ABSENT, request(V1, "b", force=True), now=5)
    assert isinstance(decision, Process)
    assert not decision.claim.forced


EVENT = ObjectEvent(bucket="uploads", key="k", etag="v1", sequencer="0001")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_claim_whose_reply_was_lost_is_recognised_as_ours() -> None:
    """Hole b, claim: applied, answered by an error; the retry finds its own write."""
    store = MemoryLedgerStore()
    ledger = Ledger(store, LEASE_S, Clock())
    store.lost_replies = 1
    grant = await ledger.claim(EVENT, "a")
    assert isinstance(grant, ProcessGrant)
    assert store.state("uploads", "k").processing == grant.claim
    assert store.writes == 1, "no second claim was written"


async def test_a_notification_claim_whose_reply_was_lost_still_notifies() -> None:
    """Hole b: a lost reply on the notification take-over must not drop the notification."""
    store = MemoryLedgerStore()
    clock = Clock()
    ledger = Ledger(store, LEASE_S, clock)
    first = await ledger.claim(EVENT, "dies")
    assert isinstance(first, ProcessGrant)
    await ledger.complete(first.hold, record(V1))
    clock.now += LEASE_S + 1  # the owner died before marking the notification sent
    store.lost_replies = 1
    grant = await ledger.claim(EVENT, "b")
    assert isinstance(grant, NotifyGrant)
    await ledger.mark_notified(grant.hold)
    recorded = store.state("uploads", "k").recorded
    assert recorded is not None
    assert recorded.notified


async def test_an_unknown_outcome_that_cannot_be_checked_is_an_error() -> None:
    store = MemoryLedgerStore()
    ledger = Ledger(store, LEASE_S, Clock())
    store.lost_replies = 1
    store.failing_reads = True
    with pytest.raises(RetryableError, match="after the write"):
        await ledger.claim(EVENT, "a")


async def test_renewing_a_claim_that_was_taken_over_raises_lease_lost() -> None:
    store = MemoryLedgerStore()
    clock = Clock()
    ledger = Ledger(store, LEASE_S, clock)
    first = await ledger.claim(EVENT, "a")
    assert isinstance(first, ProcessGrant)
    clock.now += LEASE_S + 1
    second = await ledger.claim(EVENT, "b")
    assert isinstance(second, ProcessGrant)
    with pytest.raises(LeaseLostError):
        await ledger.renew(first.hold)
    with pytest.raises(LeaseLostError):
        await ledger.complete(first.hold, record(V1))
    await ledger.release(first.hold)  # a release of what is no longer ours changes nothing
    assert store.state("uploads", "k").processing == second.claim
