"""Hypothesis drives consumers through the ledger protocol against written invariants.

Three consumers take messages from a modelled queue and run the steps of ``Pipeline.handle``
one at a time (claim, fetch, upload, complete, publish, mark, ack), through the real ``Ledger``
and state machine over an in-memory compare-and-set store. Between any two steps hypothesis may
upload a new version (its event with or without a sequencer, once or twice), resend an old
version's event by hand, let time pass, crash a consumer, lose a consumer's queue lease, lose
the reply of the next ledger write or of a publish, or kill the pool worker under a job.

Invariants, after every step:
- at most one live owner per object version;
- the record's version never goes back to an older one;
- every artifact key the record names holds that version's output;
- a version is notified more than once only inside the two windows docs/reliability.md names
  (a crash between publish and mark, a publish whose reply was lost);
- a file is failed for killing workers only after that many workers really died under it.
And at the end, once every fault stops and the queue drains: the newest version is recorded
and notified, and nothing is left claimed or queued (no version is stranded).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pipelined.errors import LeaseLostError
from pipelined.events import ObjectEvent
from pipelined.layout import artifact_prefix
from pipelined.ledger.machine import Processing, Refusal, Refused
from pipelined.ledger.store import Hold, Ledger, NotifyGrant, ProcessGrant
from pipelined.pipeline import WORKER_DEATHS_BEFORE_FAILING
from pipelined.records import JobRecord, SourceObject, StoredArtifact
from tests.unit.memory_ledger import MemoryLedgerStore

BUCKET, KEY, PREFIX = "uploads", "photo.jpg", "out/"
LEASE_S = 20.0
VISIBILITY_S = 30.0
CONSUMERS = 3
INFINITY = float("inf")
T = TypeVar("T")


@dataclass
class Message:
    id: str
    version_index: int
    sequencer: str | None
    visible_at: float = 0.0


@dataclass
class Job:
    message: Message
    owner: str
    step: str = "claim"
    hold: Hold | None = None
    claim: Processing | None = None
    record: JobRecord | None = None
    worker_dies: bool = False
    publish_reply_lost: bool = False


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """What the outside sees: the object's versions, artifacts and notifications."""

    versions: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)  # key -> version that wrote it
    notifications: Counter[str] = field(default_factory=Counter)
    excused: Counter[str] = field(default_factory=Counter)  # repeats a named window allows
    deaths: Counter[str] = field(default_factory=Counter)


class LedgerProtocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.store = MemoryLedgerStore()
        self.ledger = Ledger(self.store, LEASE_S, self.clock)
        self.world = World()
        self.queue: dict[str, Message] = {}
        self.jobs: dict[int, Job | None] = dict.fromkeys(range(CONSUMERS))
        self.ids = itertools.count()
        self.versioned = True
        self.highest_recorded = -1

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        try:
            self.drain()
        finally:
            self.loop.close()

    # The world -----------------------------------------------------------------------------

    @initialize(versioned=st.booleans())
    def bucket(self, versioned: bool) -> None:
        # Unversioned: only the current bytes can be fetched (S3 answers 412 for older ETags).
        self.versioned = versioned

    @rule(with_sequencer=st.booleans(), copies=st.integers(1, 2))
    def upload(self, with_sequencer: bool, copies: int) -> None:
        index = len(self.world.versions)
        self.world.versions.append(f"v{index}")
        for _ in range(copies):
            self.send(index, f"{index:04d}" if with_sequencer else None)

    @precondition(lambda self: self.world.versions)
    @rule(data=st.data(), with_sequencer=st.booleans())
    def resend_an_old_event(self, data: st.DataObject, with_sequencer: bool) -> None:
        index = data.draw(st.integers(0, len(self.world.versions) - 1))
        self.send(index, f"{index:04d}" if with_sequencer else None)

    def send(self, index: int, sequencer: str | None) -> None:
        message = Message(f"m{next(self.ids)}", index, sequencer, self.clock.now)
        self.queue[message.id] = message

    @rule(seconds=st.floats(0.5, 40))
    def time_passes(self, seconds: float) -> None:
        """Leases held by live consumers are renewed as the renewer task does, every third."""
        while seconds > 0:
            step = min(seconds, LEASE_S / 3)
            self.clock.now += step
            seconds -= step
            for consumer, job in self.jobs.items():
                if job is not None and job.hold is not None:
                    self.renew(consumer, job)

    @rule()
    def lose_the_next_ledger_reply(self) -> None:
        self.store.lost_replies += 1

    # Consumers -----------------------------------------------------------------------------

    def idle(self) -> list[int]:
        return [consumer for consumer, job in self.jobs.items() if job is None]

    def busy(self, *steps: str) -> list[int]:
        return [
            consumer
            for consumer, job in self.jobs.items()
            if job is not None and (not steps or job.step in steps)
        ]

    def visible(self) -> list[Message]:
        return [m for m in self.queue.values() if m.visible_at <= self.clock.now]

    @precondition(lambda self: self.idle() and self.visible())
    @rule(data=st.data())
    def receive(self, data: st.DataObject) -> None:
        consumer = data.draw(st.sampled_from(self.idle()), label="consumer")
        message = data.draw(st.sampled_from(self.visible()), label="message")
        self.start(consumer, message)

    def start(self, consumer: int, message: Message) -> None:
        message.visible_at = INFINITY  # in flight
        self.jobs[consumer] = Job(message, owner=f"c{consumer}-{next(self.ids)}")

    @precondition(lambda self: self.busy())
    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        self.advance(data.draw(st.sampled_from(self.busy()), label="consumer"))

    def advance(self, consumer: int) -> None:
        job = self.jobs[consumer]
        assert job is not None
        getattr(self, f"step_{job.step}")(consumer, job)

    @precondition(lambda self: self.busy())
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        consumer = data.draw(st.sampled_from(self.busy()), label="consumer")
        job = self.jobs[consumer]
        assert job is not None
        if job.step == "mark":
            self.world.excused[self.version_of(job)] += 1  # window 1: published, not marked
        self.jobs[consumer] = None
        if job.message.id in self.queue and job.message.visible_at == INFINITY:
            job.message.visible_at = self.clock.now + VISIBILITY_S

    @precondition(lambda self: self.busy())
    @rule(data=st.data())
    def lose_the_queue_lease(self, data: st.DataObject) -> None:
        """The lease keeper could not extend: the message is visible again, the job goes on."""
        job = self.jobs[data.draw(st.sampled_from(self.busy()), label="consumer")]
        assert job is not None
        if job.message.id in self.queue:
            job.message.visible_at = self.clock.now

    @precondition(lambda self: self.busy("fetch"))
    @rule(data=st.data())
    def kill_the_worker(self, data: st.DataObject) -> None:
        job = self.jobs[data.draw(st.sampled_from(self.busy("fetch")), label="consumer")]
        assert job is not None
        job.worker_dies = True

    @precondition(lambda self: self.busy("publish"))
    @rule(data=st.data())
    def lose_the_publish_reply(self, data: st.DataObject) -> None:
        job = self.jobs[data.draw(st.sampled_from(self.busy("publish")), label="consumer")]
        assert job is not None
        job.publish_reply_lost = True

    # The steps of Pipeline.handle ----------------------------------------------------------

    def event_of(self, message: Message) -> ObjectEvent:
        version = self.world.versions[message.version_index]
        return ObjectEvent(BUCKET, KEY, etag=version, sequencer=message.sequencer)

    def version_of(self, job: Job) -> str:
        return self.world.versions[job.message.version_index]

    def step_claim(self, consumer: int, job: Job) -> None:
        grant = self.run(self.ledger.claim(self.event_of(job.message), job.owner))
        if isinstance(grant, Refused):
            if grant.reason is Refusal.BUSY:
                return  # Defer: the consumer keeps the message and claims again later
            self.ack(consumer, job)
            return
        job.hold = grant.hold
        if isinstance(grant, NotifyGrant):
            job.record, job.step = grant.record, "publish"
            return
        assert isinstance(grant, ProcessGrant)
        job.claim, job.step = grant.claim, "fetch"

    def step_fetch(self, consumer: int, job: Job) -> None:
        assert job.hold is not None
        assert job.claim is not None
        current = self.world.versions[-1]
        fetchable = self.versioned and not job.claim.must_be_current
        if not fetchable and self.version_of(job) != current:
            self.run(self.ledger.abandon(job.hold))  # stale: the record stays as it is
            self.ack(consumer, job)
            return
        if job.worker_dies:
            self.world.deaths[self.version_of(job)] += 1
            if job.claim.worker_deaths + 1 < WORKER_DEATHS_BEFORE_FAILING:
                self.run(self.ledger.release(job.hold, worker_died=True))
                self.retry(consumer, job, delay_s=1)
                return
            job.record = self.job_record(job, status="failed")
            job.step = "complete"
            return
        job.step = "upload"

    def step_upload(self, consumer: int, job: Job) -> None:
        version = self.version_of(job)
        key = artifact_prefix(PREFIX, BUCKET, KEY, version) + "thumb.webp"
        self.world.artifacts[key] = version
        job.record = self.job_record(job, status="processed", artifact_key=key)
        job.step = "complete"

    def step_complete(self, consumer: int, job: Job) -> None:
        assert job.hold is not None
        assert job.record is not None
        try:
            self.run(self.ledger.complete(job.hold, job.record))
        except LeaseLostError:
            self.give_up(consumer, job)
            return
        job.step = "publish"

    def step_publish(self, consumer: int, job: Job) -> None:
        assert job.hold is not None
        assert job.record is not None
        version = job.record.source.etag
        assert version is not None
        self.world.notifications[version] += 1
        if job.publish_reply_lost:  # window 2: published, but the caller saw an error
            self.world.excused[version] += 1
            self.give_up(consumer, job)
            return
        job.step = "mark"

    def step_mark(self, consumer: int, job: Job) -> None:
        assert job.hold is not None
        self.run(self.ledger.mark_notified(job.hold))
        self.ack(consumer, job)

    def renew(self, consumer: int, job: Job) -> None:
        assert job.hold is not None
        try:
            self.run(self.ledger.renew(job.hold))
        except LeaseLostError:
            self.give_up(consumer, job)  # the renewer cancels the job

    def give_up(self, consumer: int, job: Job) -> None:
        """A retryable failure: release the hold, put the message back after a backoff."""
        assert job.hold is not None
        self.run(self.ledger.release(job.hold))
        self.retry(consumer, job, delay_s=1)

    def retry(self, consumer: int, job: Job, delay_s: float) -> None:
        self.jobs[consumer] = None
        if job.message.id in self.queue:
            job.message.visible_at = self.clock.now + delay_s

    def ack(self, consumer: int, job: Job) -> None:
        self.jobs[consumer] = None
        self.queue.pop(job.message.id, None)

    def job_record(self, job: Job, status: str, artifact_key: str | None = None) -> JobRecord:
        assert job.claim is not None
        version = self.version_of(job)
        artifacts: tuple[StoredArtifact, ...] = ()
        if artifact_key is not None:
            artifacts = (StoredArtifact(PREFIX, artifact_key, "image/webp", 1),)
        return JobRecord(
            source=SourceObject(BUCKET, KEY, version, 1),
            status=status,  # type: ignore[arg-type]
            kind="image",
            attempts=job.claim.attempts,
            started_at="",
            finished_at="",
            duration_ms=0,
            artifacts=artifacts,
        )

    # Invariants ----------------------------------------------------------------------------

    @invariant()
    def at_most_one_live_owner_per_version(self) -> None:
        live = Counter(
            self.version_of(job)
            for job in self.jobs.values()
            if job is not None
            and job.hold is not None
            and job.step in ("fetch", "upload", "complete")
            and self.owns_live_claim(job)
        )
        assert all(count <= 1 for count in live.values()), live

    def owns_live_claim(self, job: Job) -> bool:
        assert job.hold is not None
        claim = self.store.state(BUCKET, KEY).processing
        held = job.hold.snapshot.state.processing
        believed_live = held is not None and held.lease_expires_at > self.clock.now
        return believed_live and claim is not None and claim.owner == job.owner

    @invariant()
    def the_record_never_goes_back_to_an_older_version(self) -> None:
        recorded = self.store.state(BUCKET, KEY).recorded
        if recorded is None:
            return
        index = self.world.versions.index(recorded.version.id)
        assert index >= self.highest_recorded, (index, self.highest_recorded)
        self.highest_recorded = index

    @invariant()
    def recorded_artifacts_hold_their_version(self) -> None:
        recorded = self.store.state(BUCKET, KEY).recorded
        if recorded is None:
            return
        for artifact in recorded.record.artifacts:
            assert self.world.artifacts[artifact.key] == recorded.version.id

    @invariant()
    def notifications_repeat_only_inside_the_named_windows(self) -> None:
        for version, count in self.world.notifications.items():
            assert count <= 1 + self.world.excused[version], (version, count)

    @invariant()
    def only_real_worker_deaths_fail_a_file(self) -> None:
        recorded = self.store.state(BUCKET, KEY).recorded
        if recorded is not None and recorded.record.status == "failed":
            assert self.world.deaths[recorded.version.id] >= WORKER_DEATHS_BEFORE_FAILING

    # The end: no more faults, drain everything ----------------------------------------------

    def drain(self) -> None:
        self.store.lost_replies = 0
        for job in self.jobs.values():
            if job is not None:
                job.worker_dies = job.publish_reply_lost = False
        for _ in range(500):  # rounds: time passes, each consumer takes one step
            if not self.queue and not any(self.jobs.values()):
                break
            self.time_passes(LEASE_S / 2)
            for consumer in self.jobs:
                if self.jobs[consumer] is None and self.visible():
                    self.start(consumer, self.visible()[0])
                if self.jobs[consumer] is not None:
                    self.advance(consumer)
                    self.check_all_invariants()
        assert not self.queue, f"messages never finished: {self.queue}"
        state = self.store.state(BUCKET, KEY)
        if self.world.versions:
            newest = self.world.versions[-1]
            assert state.recorded is not None, "the newest version was never recorded"
            assert (state.recorded.version.id, state.recorded.notified) == (newest, True)
            assert self.world.notifications[newest] >= 1
        assert state.processing is None or state.processing.lease_expires_at <= self.clock.now

    def check_all_invariants(self) -> None:
        self.at_most_one_live_owner_per_version()
        self.the_record_never_goes_back_to_an_older_version()
        self.recorded_artifacts_hold_their_version()
        self.notifications_repeat_only_inside_the_named_windows()
        self.only_real_worker_deaths_fail_a_file()


LedgerProtocol.TestCase.settings = settings(
    max_examples=1000,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_ledger_protocol = LedgerProtocol.TestCase
