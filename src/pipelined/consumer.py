"""The SQS-facing engine: receive for free slots, keep leases, apply dispositions, drain.

The consumer knows nothing of thumbnails; it hands each delivery to a handler and does what the
returned disposition says. It knows nothing of SQS either: the queue is a small port.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pipelined import jobclock, metrics
from pipelined.concurrency import AimdLimit
from pipelined.disposition import (
    DEFAULT_RETRIES_IN_PLACE,
    Ack,
    BackoffPolicy,
    Defer,
    Disposition,
    Reject,
    Retry,
    is_short_retry,
)
from pipelined.errors import ThrottledError
from pipelined.logs import get_logger
from pipelined.metrics import Health
from pipelined.quotas import SQS_MAX_BATCH, SQS_MAX_VISIBILITY_TIMEOUT_S

log = get_logger(__name__)

VISIBILITY_LIMIT_MARGIN_S = 60
"""Kept clear of the twelve hours a message can be held: a visibility change reaches SQS some
time after it is computed (botocore may even retry it), and SQS refuses one that passes them."""

ABANDONED_RECEIVE_MARGIN_S = 1.0
"""Added to the long poll of a receive given up at shutdown: the queue counts its wait from the
request's arrival, a little after the consumer sent it."""

MIN_EXTENSION_DEADLINE_S = 0.5
"""The shortest time an extension call is given, even for a lease that has (nearly) run out:
SQS still extends it if nobody else has received the message meanwhile."""


@dataclass(frozen=True, eq=False)
class Delivery:
    """One received message. ``lease`` is opaque: a receipt handle on SQS, an ack id on Pub/Sub.

    ``attributes`` are the message's own (Pub/Sub's carry what a GCS notification is about);
    SQS's are not read, so they stay empty. ``sent_at``: Unix time the message was first sent
    (SQS SentTimestamp, Pub/Sub publish_time), None when the queue did not say.
    """

    message_id: str
    body: str
    receive_count: int
    lease: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    sent_at: float | None = None


@dataclass(frozen=True)
class BatchFailure:
    """A delivery a batch call could not act on."""

    delivery: Delivery
    code: str
    retryable: bool


class Queue(Protocol):
    """What the consumer needs from a queue; batches are at most ``SQS_MAX_BATCH`` long."""

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Delivery]: ...

    async def extend(
        self, deliveries: Sequence[Delivery], visibility_timeout_s: int
    ) -> list[BatchFailure]: ...

    async def release(self, entries: Sequence[tuple[Delivery, int]]) -> list[BatchFailure]: ...

    async def delete(self, deliveries: Sequence[Delivery]) -> list[BatchFailure]: ...


Handler = Callable[[Delivery], Awaitable[Disposition]]


@dataclass(frozen=True)
class ConsumerConfig:
    max_inflight: int = 8
    pollers: int = 2
    wait_time_s: int = 20
    visibility_timeout_s: int = 60
    max_job_time_s: int = 900  # of the job's own time: waiting for a worker does not count
    drain_timeout_s: float = 30.0
    delete_flush_s: float = 1.0
    lease_renew_interval_s: float = 20.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    retries_in_place: int = DEFAULT_RETRIES_IN_PLACE
    # The pool's workers: their share of the slots is refilled as each frees (Slots).
    workers: int = 0


@dataclass(eq=False)
class _Job:
    delivery: Delivery
    budget: jobclock.JobClock
    lease_expires_at: float
    held_until: float  # no visibility may pass this: receive + twelve hours, less a margin
    task: asyncio.Task[None] | None = None
    extension: asyncio.Task[None] | None = None  # the extension of this lease in flight
    cancel_reason: str | None = None


class Slots:
    """Counts free processing slots under an adaptive limit; pollers reserve before receiving."""

    def __init__(self, limit: AimdLimit, workers: int = 0) -> None:
        self.limit = limit
        self.workers = workers
        self.used = 0
        self.closed = False
        self.closed_event = asyncio.Event()
        self._freed = asyncio.Event()
        metrics.CONCURRENCY_LIMIT.set(limit.current)

    def receive_floor(self) -> int:
        """How many slots must be free before a poller receives.

        Under load slots free one at a time, and receiving as each frees costs a receive per
        message: SQS bills every call, and each costs the daemon a millisecond or more of CPU.
        The slots beyond the workers' keep downloads and uploads going while the workers
        process; a receive waits until half of those are free, so it brings several messages
        while the other half and the workers' share stay busy. With no slots beyond the
        workers' (or a limit lowered under throttling), one free slot is enough.
        """
        return max(1, min(SQS_MAX_BATCH, (self.limit.current - self.workers) // 2))

    async def reserve_up_to(self, wanted: int) -> int:
        """Wait for ``receive_floor()`` free slots, then take up to ``wanted``; 0 once closed."""
        while self.limit.current - self.used < self.receive_floor() and not self.closed:
            self._freed.clear()
            await self._freed.wait()
        if self.closed:
            return 0
        taken = min(wanted, self.limit.current - self.used)
        self.used += taken
        return taken

    def give_back(self, count: int = 1) -> None:
        self.used -= count
        self._freed.set()

    def close(self) -> None:
        """No more reservations: wakes every waiting poller so it can stop."""
        self.closed = True
        self.closed_event.set()
        self._freed.set()

    def record(self, *, throttled: bool) -> None:
        """Feed the outcome of a call or job to the limit (AIMD)."""
        changed = self.limit.on_throttle() if throttled else self.limit.on_success()
        if changed:
            metrics.CONCURRENCY_LIMIT.set(self.limit.current)
            log.info("concurrency_changed", limit=self.limit.current, throttled=throttled)
            self._freed.set()


class DeleteBatcher:
    """Collects deletions and sends them ten at a time, or after a flush interval."""

    MAX_ATTEMPTS = 5

    def __init__(self, queue: Queue, flush_interval_s: float) -> None:
        self._queue = queue
        self._flush_interval_s = flush_interval_s
        self._pending: list[tuple[Delivery, int]] = []
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()

    def add(self, delivery: Delivery) -> None:
        self._pending.append((delivery, 1))
        self._wakeup.set()
        if len(self._pending) >= SQS_MAX_BATCH:
            self._full.set()

    async def run(self) -> None:
        """Flush forever; cancel it, then call ``flush`` to send what is left."""
        while True:
            await self._wakeup.wait()
            # A full batch goes at once; a partial one waits out the interval for company.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._flush_interval_s)
            self._wakeup.clear()
            self._full.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send every pending deletion, retrying partial failures with a short backoff."""
        while self._pending:
            batch, self._pending = self._pending[:SQS_MAX_BATCH], self._pending[SQS_MAX_BATCH:]
            try:
                retry = await self._send(batch)
            except asyncio.CancelledError:
                # Cancelled mid-call (the drain stops ``run`` this way): whether SQS got the
                # call or not, the final flush sends the batch again. A second delete of a
                # message is harmless; a delete never sent leaves it to be done twice.
                self._pending[:0] = batch
                raise
            if retry:
                self._pending.extend(retry)
                await asyncio.sleep(0.2 * max(attempt for _, attempt in retry))

    async def _send(self, batch: list[tuple[Delivery, int]]) -> list[tuple[Delivery, int]]:
        attempts = {entry[0]: entry[1] for entry in batch}
        try:
            failures = await self._queue.delete([delivery for delivery, _ in batch])
        except Exception as error:
            log.warning("delete_failed", error=str(error), count=len(batch))
            failures = [BatchFailure(d, type(error).__name__, True) for d, _ in batch]
        metrics.DELETES.labels("deleted").inc(len(batch) - len(failures))
        retry: list[tuple[Delivery, int]] = []
        for failure in failures:
            attempt = attempts[failure.delivery]
            if failure.retryable and attempt < self.MAX_ATTEMPTS:
                retry.append((failure.delivery, attempt + 1))
                continue
            # The message will come back after its visibility timeout; the ledger makes that
            # redelivery a no-op, so this costs a little work, never a second effect.
            metrics.DELETES.labels("failed").inc()
            log.warning(
                "delete_abandoned", message_id=failure.delivery.message_id, code=failure.code
            )
        return retry


class Consumer:
    """Runs pollers, the lease keeper and the delete batcher until ``stop`` is set, then drains.

    A message is held for at most twelve hours since its receive (SQS's limit): no visibility
    the consumer asks for passes that point, and a job still running near it is given up.
    """

    def __init__(
        self,
        queue: Queue,
        handler: Handler,
        config: ConsumerConfig,
        health: Health,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._queue = queue
        self._handler = handler
        self._config = config
        self._health = health
        self._clock = clock
        self._rng = rng or random.Random()
        self._slots = Slots(AimdLimit(config.max_inflight), config.workers)
        # Keyed by delivery, not message id: a message redelivered while an earlier delivery of
        # it is still running here is a second job with its own lease.
        self._jobs: dict[Delivery, _Job] = {}
        # Every job task until it is done, disposition applied: a job leaves ``_jobs`` before
        # that, and the drain must still wait for it.
        self._tasks: set[asyncio.Task[None]] = set()
        self._extensions: set[asyncio.Task[None]] = set()
        # Per poller, when its receive in progress was sent (none: not receiving).
        self._receive_sent_at: dict[int, float] = {}
        self._deleter = DeleteBatcher(queue, config.delete_flush_s)
        self.on_ready: Callable[[], None] | None = None
        self.on_draining: Callable[[], None] | None = None
        # After each receive: how many came, and the oldest one's age (None: none known).
        self.on_received: Callable[[int, float | None], None] | None = None
        self._show_load()

    def _record(self, *, throttled: bool) -> None:
        self._slots.record(throttled=throttled)
        self._show_load()

    def _show_load(self) -> None:
        """Jobs in flight, slots free for more (a receive under way holds none of them), and
        how many must be free before a poller receives."""
        metrics.IN_FLIGHT.set(len(self._jobs))
        metrics.FREE_SLOTS.set(max(0, self._slots.limit.current - len(self._jobs)))
        metrics.RECEIVE_FLOOR.set(self._slots.receive_floor())

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    @property
    def concurrency_limit(self) -> int:
        return self._slots.limit.current

    def note_throttle(self) -> None:
        """A cloud call was throttled somewhere: take fewer messages for a while."""
        self._record(throttled=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; return once everything is drained or released."""
        keeper = asyncio.create_task(self._keep_leases(), name="lease-keeper")
        deleter = asyncio.create_task(self._deleter.run(), name="delete-batcher")
        pollers = [
            asyncio.create_task(self._poll(index), name=f"poller-{index}")
            for index in range(self._config.pollers)
        ]
        log.info("consumer_started", pollers=len(pollers), max_inflight=self._config.max_inflight)
        try:
            await stop.wait()
        finally:
            await self._drain(pollers, keeper, deleter)

    async def _poll(self, index: int) -> None:
        """Receive for free slots until the slots close.

        A receive in progress is not cancelled at the stop: SQS may already have handed its
        messages over, and they would stay invisible for a whole visibility timeout. It is let
        finish (a long poll lasts at most ``wait_time_s``) and what it brings after the stop is
        released at once. Only a drain whose time runs out first gives it up (``_drain``).
        """
        failures = 0
        while wanted := await self._slots.reserve_up_to(SQS_MAX_BATCH):
            # SQS counts a message's twelve hours from its receive, which is no earlier than now.
            asked_at = self._clock()
            self._receive_sent_at[index] = asked_at
            try:
                deliveries = await self._queue.receive(
                    wanted, self._config.wait_time_s, self._config.visibility_timeout_s
                )
            except Exception as error:
                del self._receive_sent_at[index]
                self._slots.give_back(wanted)
                if isinstance(error, ThrottledError):
                    # Any other failure says nothing of the load the cloud takes: no success.
                    self._record(throttled=True)
                failures += 1
                self._health.set_ready(False, f"receive failing: {error}")
                log.warning("receive_failed", error=str(error), consecutive=failures)
                await self._pause(min(30.0, 0.5 * 2**failures) * self._rng.uniform(0.5, 1.0))
                continue
            del self._receive_sent_at[index]
            self._slots.give_back(wanted - len(deliveries))
            self._received(deliveries)
            if self._slots.closed:
                self._slots.give_back(len(deliveries))
                await self._release([(delivery, 0) for delivery in deliveries])
                metrics.MESSAGES.labels("released").inc(len(deliveries))
                return
            if failures or not self._health.ready:
                self._mark_ready()
            failures = 0
            for delivery in deliveries:
                self._start_job(delivery, asked_at)

    def _received(self, deliveries: Sequence[Delivery]) -> None:
        """Count a successful receive, and the age of what it brought."""
        now = time.time()  # ages are on the queue's clock: wall time, not the monotonic one
        metrics.LAST_RECEIVE_TIMESTAMP.set(now)
        oldest_s: float | None = None
        if deliveries:
            metrics.MESSAGES_RECEIVED.inc(len(deliveries))
            for delivery in deliveries:
                if delivery.sent_at is not None:
                    age_s = max(0.0, now - delivery.sent_at)
                    metrics.MESSAGE_AGE_SECONDS.observe(age_s)
                    oldest_s = age_s if oldest_s is None else max(oldest_s, age_s)
        if self.on_received is not None:
            self.on_received(len(deliveries), oldest_s)

    async def _pause(self, seconds: float) -> float:
        """Sleep, but wake as soon as the consumer stops; the seconds the sleep had left."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slots.closed_event.wait(), seconds)
        return max(0.0, until - loop.time())

    def _mark_ready(self) -> None:
        self._health.set_ready(True, "")
        if self.on_ready is not None:
            self.on_ready()
            self.on_ready = None

    def _start_job(self, delivery: Delivery, received_at: float) -> None:
        now = self._clock()
        held_until = received_at + SQS_MAX_VISIBILITY_TIMEOUT_S - VISIBILITY_LIMIT_MARGIN_S
        job = _Job(
            delivery,
            jobclock.JobClock(self._clock),
            now + self._config.visibility_timeout_s,
            held_until,
        )
        self._jobs[delivery] = job
        self._show_load()
        log.debug(
            "message_received", message_id=delivery.message_id, receives=delivery.receive_count
        )
        job.task = self._track(
            asyncio.create_task(self._run_job(job), name=f"job-{delivery.message_id}")
        )

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run_job(self, job: _Job) -> None:
        jobclock.bind(job.budget)  # the pool pauses it while the job waits for a worker
        disposition: Ack | Retry | Reject | None = None
        try:
            disposition = await self._handled(job.delivery)
        except asyncio.CancelledError:
            if job.cancel_reason is None:
                raise
        except Exception as error:  # the handler maps errors itself; this is a last resort
            log.exception("handler_crashed", message_id=job.delivery.message_id)
            attempt = job.delivery.receive_count
            disposition = Retry(self._config.backoff.delay_s(attempt, self._rng), str(error))
        finally:
            self._finish(job)
        # Shielded: a cancel arriving now must not cut a delete or a release short. Tracked:
        # should this task be cancelled all the same, the drain still waits for the settling.
        settling = asyncio.create_task(self._settle(job, disposition))
        await asyncio.shield(self._track(settling))

    async def _handled(self, delivery: Delivery) -> Ack | Retry | Reject:
        """The handler's disposition; while it says Defer, or a short Retry with tries in place
        left, wait and ask again.

        The message stays ours meanwhile: the lease keeper extends it and MAX_JOB_TIME_S bounds
        the wait. Put back on the queue instead, each retry would spend a receive, one of the
        few a message has before the dead-letter queue. A drain ends the wait at once: the
        message goes back, visible again when the wait would have ended.
        """
        retries_left = self._config.retries_in_place
        while True:
            disposition = await self._handler(delivery)
            if isinstance(disposition, Defer):
                metrics.MESSAGES.labels("deferred").inc()
                log.info(
                    "message_deferred",
                    message_id=delivery.message_id,
                    delay_s=round(disposition.delay_s, 1),
                    reason=disposition.reason,
                )
            elif retries_left > 0 and is_short_retry(disposition):
                retries_left -= 1
                metrics.MESSAGES.labels("retry_in_place").inc()
                log.info(
                    "message_retried_in_place",
                    message_id=delivery.message_id,
                    delay_s=disposition.delay_s,
                    retries_left=retries_left,
                    reason=disposition.reason,
                )
            else:
                return disposition
            left_s = await self._pause(disposition.delay_s)
            if self._slots.closed:
                return Retry(math.ceil(left_s), disposition.reason)

    def _finish(self, job: _Job) -> None:
        self._jobs.pop(job.delivery, None)
        self._slots.give_back()
        self._show_load()

    async def _settle(self, job: _Job, disposition: Ack | Retry | Reject | None) -> None:
        if job.cancel_reason is not None:
            await self._after_cancel(job)
        elif disposition is not None:
            await self._apply(job, disposition)

    async def _apply(self, job: _Job, disposition: Ack | Retry | Reject) -> None:
        delivery = job.delivery
        self._record(throttled=isinstance(disposition, Retry) and disposition.throttled)
        if isinstance(disposition, Ack | Reject):
            self._deleter.add(delivery)
            outcome = "ack" if isinstance(disposition, Ack) else "reject"
            metrics.MESSAGES.labels(outcome).inc()
            if isinstance(disposition, Reject):
                log.info(
                    "message_rejected", message_id=delivery.message_id, reason=disposition.reason
                )
            return
        metrics.MESSAGES.labels("retry").inc()
        log.info(
            "message_retried",
            message_id=delivery.message_id,
            delay_s=disposition.delay_s,
            reason=disposition.reason,
        )
        await self._release_job(job, disposition.delay_s)

    async def _after_cancel(self, job: _Job) -> None:
        if job.cancel_reason == "lease_lost":
            metrics.MESSAGES.labels("lost").inc()
            return  # the message is no longer ours to touch
        if job.cancel_reason in ("max_job_time", "held_too_long"):
            delay = self._config.backoff.delay_s(job.delivery.receive_count, self._rng)
            metrics.MESSAGES.labels("retry").inc()
            await self._release_job(job, delay)

    async def _release_job(self, job: _Job, delay_s: int) -> None:
        """Make the message visible again after ``delay_s``, or sooner if its time is up."""
        if job.extension is not None:
            # An extension landing after the release would hide the message for a whole lease.
            await asyncio.wait({job.extension})
        await self._release([(job.delivery, self._within_limit(job, delay_s, self._clock()))])

    def _within_limit(self, job: _Job, visibility_s: int, now: float) -> int:
        """``visibility_s``, cut so that it ends before the message's twelve hours do."""
        return max(0, min(visibility_s, math.floor(job.held_until - now)))

    async def _release(self, entries: Sequence[tuple[Delivery, int]]) -> None:
        for start in range(0, len(entries), SQS_MAX_BATCH):
            chunk = entries[start : start + SQS_MAX_BATCH]
            try:
                failures = await self._queue.release(chunk)
            except Exception as error:
                log.warning("release_failed", error=str(error), count=len(chunk))
                continue
            for failure in failures:
                log.warning(
                    "release_failed", message_id=failure.delivery.message_id, code=failure.code
                )

    async def _keep_leases(self) -> None:
        """Every tick: show that the loop turns, then send the extensions that are due.

        Each batch of ten goes out as a task of its own under a deadline, so one stuck call
        holds up neither the other leases nor the tick that /healthz watches.
        """
        tick = min(1.0, self._config.lease_renew_interval_s / 4)
        try:
            while True:
                await asyncio.sleep(tick)
                self._health.tick()
                self._extend_due_leases()
        finally:
            for extension in self._extensions:
                extension.cancel()
            await asyncio.gather(*self._extensions, return_exceptions=True)

    def _extend_due_leases(self) -> None:
        now = self._clock()
        by_visibility: dict[int, list[_Job]] = {}
        for job in self._due_jobs(now):
            visibility_s = self._extension_s(job, now)
            if job.budget.used_s() >= self._config.max_job_time_s:
                self._cancel(job, "max_job_time")
            elif not visibility_s:
                # Its twelve hours are nearly up: give it up while the lease can be released.
                self._cancel(job, "held_too_long")
            else:
                by_visibility.setdefault(visibility_s, []).append(job)
        # A batch asks for one visibility: near their twelve hours, jobs need shorter ones.
        for visibility_s, jobs in by_visibility.items():
            for start in range(0, len(jobs), SQS_MAX_BATCH):
                self._start_extension(jobs[start : start + SQS_MAX_BATCH], visibility_s, now)

    def _due_jobs(self, now: float) -> list[_Job]:
        """Jobs whose lease must be extended now; one being extended waits for that call."""
        threshold = self._config.visibility_timeout_s - self._config.lease_renew_interval_s
        return [
            job
            for job in self._jobs.values()
            if job.cancel_reason is None
            and job.extension is None
            and job.lease_expires_at - now <= threshold
        ]

    def _extension_s(self, job: _Job, now: float) -> int:
        """The visibility to extend ``job`` with; 0 when no extension would gain it time."""
        visibility_s = self._within_limit(job, self._config.visibility_timeout_s, now)
        return visibility_s if now + visibility_s > job.lease_expires_at else 0

    def _start_extension(self, jobs: list[_Job], visibility_s: int, now: float) -> None:
        extension = asyncio.create_task(self._extend(jobs, visibility_s, now), name="extension")
        self._extensions.add(extension)
        for job in jobs:
            job.extension = extension

        def ended(_: asyncio.Task[None]) -> None:
            self._extensions.discard(extension)
            for job in jobs:
                job.extension = None

        extension.add_done_callback(ended)

    async def _extend(self, jobs: list[_Job], visibility_s: int, now: float) -> None:
        # Half the shortest lease left: a call given up at its deadline leaves time to retry.
        lease_left_s = min(job.lease_expires_at for job in jobs) - now
        deadline_s = max(lease_left_s / 2, MIN_EXTENSION_DEADLINE_S)
        try:
            async with asyncio.timeout(deadline_s):
                failures = await self._queue.extend([job.delivery for job in jobs], visibility_s)
        except Exception as error:  # TimeoutError at the deadline included
            # Nothing is lost yet: the leases still have time, and a later tick tries again.
            metrics.VISIBILITY_EXTENSIONS.labels("failed").inc(len(jobs))
            reason = str(error) or type(error).__name__
            log.warning("lease_extension_failed", error=reason, count=len(jobs))
            return
        failed = {failure.delivery: failure for failure in failures}
        for job in jobs:
            failure = failed.get(job.delivery)
            if failure is None:
                job.lease_expires_at = now + visibility_s
                metrics.VISIBILITY_EXTENSIONS.labels("extended").inc()
                continue
            metrics.VISIBILITY_EXTENSIONS.labels("failed").inc()
            if not failure.retryable:
                metrics.LEASES_LOST.inc()
            # A job that ended meanwhile is settling its message: nothing left to cancel.
            if not failure.retryable and self._jobs.get(job.delivery) is job:
                self._cancel(job, "lease_lost")
                log.warning("lease_lost", message_id=job.delivery.message_id, code=failure.code)

    def _cancel(self, job: _Job, reason: str) -> None:
        job.cancel_reason = reason
        if job.task is not None:
            job.task.cancel()
        log.warning("job_cancelled", message_id=job.delivery.message_id, reason=reason)

    async def _drain(
        self,
        pollers: list[asyncio.Task[None]],
        keeper: asyncio.Task[None],
        deleter: asyncio.Task[None],
    ) -> None:
        """Stop receiving at once, let in-flight work finish with leases kept, release the rest."""
        self._slots.close()
        self._health.set_ready(False, "draining")
        if self.on_draining is not None:
            self.on_draining()
        log.info("drain_started", in_flight=len(self._jobs), timeout_s=self._config.drain_timeout_s)
        # Jobs finish (dispositions applied) and receives in progress end (within their long
        # poll) side by side.
        _, pending = await asyncio.wait(
            [*self._tasks, *pollers], timeout=self._config.drain_timeout_s
        )
        stuck = [index for index, poller in enumerate(pollers) if poller in pending]
        release_after_s = self._until_abandoned_receives_end(stuck)
        if stuck:
            # What they take from now on stays hidden at the queue for a visibility timeout.
            log.warning("receive_abandoned", pollers=len(stuck), release_after_s=release_after_s)
        for index in stuck:
            pollers[index].cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        unfinished = list(self._jobs.values())
        for job in unfinished:
            self._cancel(job, "shutdown")
        await self._wait_for_jobs()
        await self._release_unfinished(unfinished, release_after_s)
        metrics.MESSAGES.labels("released").inc(len(unfinished))
        keeper.cancel()
        deleter.cancel()
        await asyncio.gather(keeper, deleter, return_exceptions=True)
        await self._deleter.flush()
        log.info("drain_finished", released=len(unfinished))

    async def _wait_for_jobs(self) -> None:
        """Wait for every job task, also those still applying their disposition."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _until_abandoned_receives_end(self, pollers: Sequence[int]) -> int:
        """Whole seconds until the receives of ``pollers`` have surely ended at the queue.

        The queue goes on with a long poll whose client has gone (SQS cannot tell), and hides
        what that poll takes for the visibility timeout it asked for: a message released
        before then could be taken by it and stay hidden for a whole timeout. Released with
        this delay, it comes back just after those polls have ended.
        """
        now = self._clock()
        ends = [
            self._receive_sent_at[index] + self._config.wait_time_s + ABANDONED_RECEIVE_MARGIN_S
            for index in pollers
            if index in self._receive_sent_at
        ]
        return max(0, math.ceil(max(ends, default=now) - now))

    async def _release_unfinished(self, jobs: list[_Job], after_s: int) -> None:
        """Give ``jobs``' messages back, visible again in ``after_s`` seconds."""
        extensions = {job.extension for job in jobs if job.extension is not None}
        if extensions:
            # Let them land first, or they would hide the released messages again.
            await asyncio.wait(extensions)
        await self._release([(job.delivery, after_s) for job in jobs])
