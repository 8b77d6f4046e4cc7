"""The life of one source object in the ledger, as a pure state machine: no I/O, no clock.

An object's state has two independent parts:

- ``recorded``: the outcome of the last version that finished (processed or failed), and
  whether its notification is out. Only a finished job replaces it.
- ``processing``: the version being worked on now, by one owner under a lease.

Keeping them apart means a newer version in progress never hides the last outcome, and a claim
that turns out to be stale can be dropped without touching the record.

Every transition is a function ``(state, request, now) -> next state | Refused``. Backends
store the state with a compare-and-set (see ``store.py``); they decide nothing. Transitions are
idempotent for their owner: repeating a write whose reply was lost gives the same state, so a
retry recognises its own earlier success.

Versions are ordered by their sequencer (S3's) when both sides have one. When they cannot be
ordered (no sequencer: emulators, replays, and Cloud Storage, whose generations are unique but
not guaranteed to increase), a claim may go ahead only if the store confirms the event's
version is the current one (``must_be_current``); otherwise it is dropped as stale.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from pipelined.records import JobRecord


class Order(enum.Enum):
    SAME = "same"
    NEWER = "newer"
    OLDER = "older"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Version:
    """One version of one object: its id (version id or ETag) and, if known, its sequencer."""

    id: str
    sequencer: str | None = None

    def compare(self, known: Version) -> Order:
        """How this version stands against ``known``: sequencers decide when both have one."""
        if self.id == known.id:
            return Order.SAME
        if self.sequencer and known.sequencer and self.sequencer != known.sequencer:
            return Order.NEWER if self.sequencer > known.sequencer else Order.OLDER
        return Order.UNKNOWN


@dataclass(frozen=True)
class Processing:
    """A claim: ``owner`` works on ``version`` until ``lease_expires_at`` (epoch seconds)."""

    version: Version
    owner: str
    lease_expires_at: float
    attempts: int = 1  # claims of this version, take-overs included
    worker_deaths: int = 0  # pool workers that died under this version
    must_be_current: bool = False  # the store must confirm the version is still current
    forced: bool = False  # a replay's force reclaimed a version that was already recorded


@dataclass(frozen=True)
class Recorded:
    """The outcome of the last finished version, and who holds its notification."""

    version: Version
    record: JobRecord
    recorded_by: str
    notified: bool = False
    notifier: str | None = None  # holds the notification lease until it is marked sent
    notify_lease_expires_at: float = 0.0

    @property
    def forced(self) -> bool:
        """This outcome replaced a record of the same version, by force (the record says)."""
        return self.record.forced


@dataclass(frozen=True)
class ObjectState:
    recorded: Recorded | None = None
    processing: Processing | None = None


ABSENT = ObjectState()


class Refusal(enum.Enum):
    """Why a transition was refused."""

    DUPLICATE = "duplicate"  # this version is recorded (and notified, or being notified)
    STALE = "stale"  # an older version than one already known
    BUSY = "busy"  # another owner holds a live lease this request must wait for
    LOST = "lost"  # the caller no longer owns what it tried to change


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    retry_after_s: float = 0.0  # for BUSY: until the holder's lease runs out
    record: JobRecord | None = None  # for DUPLICATE: the recorded outcome


@dataclass(frozen=True)
class ClaimRequest:
    version: Version
    owner: str
    lease_s: float
    force: bool = False  # reprocess a version that is already recorded (replay)


@dataclass(frozen=True)
class Process:
    """Granted: the caller processes ``state.processing.version``."""

    state: ObjectState

    @property
    def claim(self) -> Processing:
        assert self.state.processing is not None
        return self.state.processing


@dataclass(frozen=True)
class Notify:
    """Granted: the version is recorded but not notified, and the caller now sends it."""

    state: ObjectState

    @property
    def record(self) -> JobRecord:
        assert self.state.recorded is not None
        return self.state.recorded.record


ClaimDecision = Process | Notify | Refused
Transition = ObjectState | Refused


def claim(state: ObjectState, request: ClaimRequest, now: float) -> ClaimDecision:
    """May ``request.owner`` process (or notify) ``request.version``?"""
    current = state.processing
    if current is not None and current.version.id == request.version.id:
        return _claim_held_version(state, current, request, now)
    recorded = state.recorded
    if recorded is not None and recorded.version.id == request.version.id and not request.force:
        return _claim_recorded_version(state, recorded, request, now)
    return _claim_other_version(state, request, now)


def _claim_held_version(
    state: ObjectState, current: Processing, request: ClaimRequest, now: float
) -> ClaimDecision:
    if current.owner == request.owner:
        return Process(state)  # our own claim, written before a reply was lost
    if current.lease_expires_at > now:
        return _busy(current.lease_expires_at - now)
    taken_over = replace(
        current,
        owner=request.owner,
        lease_expires_at=now + request.lease_s,
        attempts=current.attempts + 1,
    )
    return Process(replace(state, processing=taken_over))


def _claim_recorded_version(
    state: ObjectState, recorded: Recorded, request: ClaimRequest, now: float
) -> ClaimDecision:
    if recorded.notified:
        return Refused(Refusal.DUPLICATE, record=recorded.record)
    if recorded.notifier == request.owner:
        return Notify(state)
    if recorded.notify_lease_expires_at > now:
        remaining = recorded.notify_lease_expires_at - now
        return _busy(remaining)
    # The notifier died before marking the notification sent: this delivery sends it.
    notifying = replace(
        recorded, notifier=request.owner, notify_lease_expires_at=now + request.lease_s
    )
    return Notify(replace(state, recorded=notifying))


def _claim_other_version(state: ObjectState, request: ClaimRequest, now: float) -> ClaimDecision:
    known = [part.version for part in (state.processing, state.recorded) if part is not None]
    orders = {request.version.compare(version) for version in known}
    if Order.OLDER in orders:
        return Refused(Refusal.STALE)
    current = state.processing
    if current is not None and not _may_take_over(current, request.version, now):
        return _busy(current.lease_expires_at - now)
    attempts = 1
    # Forced only when the force changed something: the version was recorded already.
    forced = request.force and state.recorded is not None and Order.SAME in orders
    if forced:
        assert state.recorded is not None
        attempts = state.recorded.record.attempts + 1
    # A version that cannot be ordered against one the ledger knows goes on only once the
    # store confirms it is current, so a stale event never replaces a newer record.
    claimed = Processing(
        version=request.version,
        owner=request.owner,
        lease_expires_at=now + request.lease_s,
        attempts=attempts,
        must_be_current=Order.UNKNOWN in orders,
        forced=forced,
    )
    return Process(replace(state, processing=claimed))


def _may_take_over(current: Processing, version: Version, now: float) -> bool:
    """May a claim of ``version`` replace ``current``, the claim of another version?

    Once its lease has run out, yes. While it is live, only if ``version`` is known to be
    newer: that work is superseded, and its owner finds out at its next write. A version that
    cannot be ordered waits: were it allowed to, two such versions would take the claim from
    each other for ever, and neither would get as far as checking which one is current.
    """
    return current.lease_expires_at <= now or version.compare(current.version) is Order.NEWER


def _busy(lease_remaining_s: float) -> Refused:
    # Come back when the lease has run out: by then the holder has finished (the delivery is a
    # duplicate), died (it takes over) or renewed (it waits again).
    return Refused(Refusal.BUSY, retry_after_s=max(0.0, lease_remaining_s))


def renew(
    state: ObjectState, owner: str, version: Version, lease_s: float, now: float
) -> Transition:
    """Extend whichever lease ``owner`` holds on ``version``: the claim, or the notification."""
    current = state.processing
    if current is not None and current.owner == owner and current.version.id == version.id:
        return replace(state, processing=replace(current, lease_expires_at=now + lease_s))
    recorded = state.recorded
    if _is_notifier(recorded, owner, version):
        assert recorded is not None
        return replace(state, recorded=replace(recorded, notify_lease_expires_at=now + lease_s))
    return Refused(Refusal.LOST)


def release(
    state: ObjectState, owner: str, version: Version, now: float, *, worker_died: bool = False
) -> Transition:
    """Give up ``owner``'s lease at once, so a redelivery need not wait for it to run out."""
    current = state.processing
    if current is not None and current.owner == owner and current.version.id == version.id:
        deaths = current.worker_deaths + (1 if worker_died else 0)
        released = replace(current, lease_expires_at=now, worker_deaths=deaths)
        return replace(state, processing=released)
    recorded = state.recorded
    if _is_notifier(recorded, owner, version):
        assert recorded is not None
        return replace(state, recorded=replace(recorded, notify_lease_expires_at=now))
    return state  # nothing of ours to release


def abandon(state: ObjectState, owner: str, version: Version) -> Transition:
    """Drop ``owner``'s claim without a record: the version turned out not to be current."""
    current = state.processing
    if current is not None and current.owner == owner and current.version.id == version.id:
        return replace(state, processing=None)
    return state


def complete(
    state: ObjectState,
    owner: str,
    version: Version,
    *,
    record: JobRecord,
    lease_s: float,
    now: float,
) -> Transition:
    """Record the outcome of ``owner``'s claim; ``owner`` keeps the notification lease."""
    recorded = state.recorded
    if recorded is not None and recorded.recorded_by == owner and recorded.version.id == version.id:
        return state  # our own write, made before a reply was lost
    current = state.processing
    if current is None or current.owner != owner or current.version.id != version.id:
        return Refused(Refusal.LOST)
    outcome = Recorded(
        version=current.version,
        # The claim knows whether a replay forced it; the record, and so the notification, say so.
        record=replace(record, forced=current.forced),
        recorded_by=owner,
        notifier=owner,
        notify_lease_expires_at=now + lease_s,
    )
    return ObjectState(recorded=outcome, processing=None)


def mark_notified(state: ObjectState, version: Version) -> Transition:
    """The notification of ``version`` is out. Whoever sent it may mark it: it is a fact."""
    recorded = state.recorded
    if recorded is None or recorded.version.id != version.id or recorded.notified:
        return state  # already marked, or superseded by a newer record
    marked = replace(recorded, notified=True, notifier=None, notify_lease_expires_at=0)
    return replace(state, recorded=marked)


def _is_notifier(recorded: Recorded | None, owner: str, version: Version) -> bool:
    return (
        recorded is not None
        and not recorded.notified
        and recorded.notifier == owner
        and recorded.version.id == version.id
    )
