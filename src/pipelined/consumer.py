"""The SQS-facing engine: receive for free slots, keep leases, apply dispositions, drain.

The consumer knows nothing of thumbnails; it hands each delivery to a handler and does what the
returned disposition says. It knows nothing of SQS either: the queue is a small port.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pipelined import metrics
from pipelined.concurrency import AimdLimit
from pipelined.disposition import Ack, BackoffPolicy, Disposition, Reject, Retry
from pipelined.errors import ThrottledError
from pipelined.logs import get_logger
from pipelined.metrics import Health
from pipelined.quotas import SQS_MAX_BATCH

log = get_logger(__name__)


@dataclass(frozen=True, eq=False)
class Delivery:
    """One received message. ``lease`` is opaque: a receipt handle on SQS."""

    message_id: str
    body: str
    receive_count: int
    lease: str


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
    max_job_time_s: int = 900
    drain_timeout_s: float = 30.0
    delete_flush_s: float = 0.1
    lease_renew_interval_s: float = 20.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)


@dataclass(eq=False)
class _Job:
    delivery: Delivery
    started_at: float
    lease_expires_at: float
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None


class Slots:
    """Counts free processing slots under an adaptive limit; pollers reserve before receiving."""

    def __init__(self, limit: AimdLimit) -> None:
        self.limit = limit
        self.used = 0
        self.closed = False
        self.closed_event = asyncio.Event()
        self._freed = asyncio.Event()
        metrics.CONCURRENCY_LIMIT.set(limit.current)

    async def reserve_up_to(self, wanted: int) -> int:
        """Wait for at least one free slot, then take up to ``wanted``; 0 once closed."""
        while self.used >= self.limit.current and not self.closed:
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
    """Collects deletions and sends them ten at a time, or after a short flush interval."""

    MAX_ATTEMPTS = 5

    def __init__(self, queue: Queue, flush_interval_s: float) -> None:
        self._queue = queue
        self._flush_interval_s = flush_interval_s
        self._pending: list[tuple[Delivery, int]] = []
        self._wakeup = asyncio.Event()

    def add(self, delivery: Delivery) -> None:
        self._pending.append((delivery, 1))
        self._wakeup.set()

    async def run(self) -> None:
        """Flush forever; cancel it, then call ``flush`` to send what is left."""
        while True:
            await self._wakeup.wait()
            if len(self._pending) < SQS_MAX_BATCH:
                await asyncio.sleep(self._flush_interval_s)
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send every pending deletion, retrying partial failures with a short backoff."""
        while self._pending:
            batch, self._pending = self._pending[:SQS_MAX_BATCH], self._pending[SQS_MAX_BATCH:]
            retry = await self._send(batch)
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
    """Runs pollers, the lease keeper and the delete batcher until ``stop`` is set, then drains."""

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
        self._slots = Slots(AimdLimit(config.max_inflight))
        # Keyed by delivery, not message id: a message redelivered while an earlier delivery of
        # it is still running here is a second job with its own lease.
        self._jobs: dict[Delivery, _Job] = {}
        self._deleter = DeleteBatcher(queue, config.delete_flush_s)
        self.on_ready: Callable[[], None] | None = None
        self.on_draining: Callable[[], None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    @property
    def concurrency_limit(self) -> int:
        return self._slots.limit.current

    def note_throttle(self) -> None:
        """A cloud call was throttled somewhere: take fewer messages for a while."""
        self._slots.record(throttled=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; return once everything is drained or released."""
        keeper = asyncio.create_task(self._keep_leases(), name="lease-keeper")
        deleter = asyncio.create_task(self._deleter.run(), name="delete-batcher")
        pollers = [
            asyncio.create_task(self._poll(), name=f"poller-{index}")
            for index in range(self._config.pollers)
        ]
        log.info("consumer_started", pollers=len(pollers), max_inflight=self._config.max_inflight)
        try:
            await stop.wait()
        finally:
            await self._drain(pollers, keeper, deleter)

    async def _poll(self) -> None:
        """Receive for free slots until the slots close.

        A receive in progress is never cancelled: SQS may already have handed its messages
        over, and they would stay invisible for a whole visibility timeout. It is let finish
        (a long poll lasts at most ``wait_time_s``) and what it brings after the stop is
        released at once.
        """
        failures = 0
        while wanted := await self._slots.reserve_up_to(SQS_MAX_BATCH):
            try:
                deliveries = await self._queue.receive(
                    wanted, self._config.wait_time_s, self._config.visibility_timeout_s
                )
            except Exception as error:
                self._slots.give_back(wanted)
                self._slots.record(throttled=isinstance(error, ThrottledError))
                failures += 1
                self._health.set_ready(False, f"receive failing: {error}")
                log.warning("receive_failed", error=str(error), consecutive=failures)
                await self._pause(min(30.0, 0.5 * 2**failures) * self._rng.uniform(0.5, 1.0))
                continue
            self._slots.give_back(wanted - len(deliveries))
            if self._slots.closed:
                self._slots.give_back(len(deliveries))
                await self._release([(delivery, 0) for delivery in deliveries])
                metrics.MESSAGES.labels("released").inc(len(deliveries))
                return
            if failures or not self._health.ready:
                self._mark_ready()
            failures = 0
            for delivery in deliveries:
                self._start_job(delivery)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake as soon as the consumer stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slots.closed_event.wait(), seconds)

    def _mark_ready(self) -> None:
        self._health.set_ready(True, "")
        if self.on_ready is not None:
            self.on_ready()
            self.on_ready = None

    def _start_job(self, delivery: Delivery) -> None:
        now = self._clock()
        job = _Job(delivery, now, now + self._config.visibility_timeout_s)
        self._jobs[delivery] = job
        metrics.IN_FLIGHT.set(len(self._jobs))
        log.debug(
            "message_received", message_id=delivery.message_id, receives=delivery.receive_count
        )
        job.task = asyncio.create_task(self._run_job(job), name=f"job-{delivery.message_id}")

    async def _run_job(self, job: _Job) -> None:
        disposition: Disposition | None = None
        try:
            disposition = await self._handler(job.delivery)
        except asyncio.CancelledError:
            if job.cancel_reason is None:
                raise
        except Exception as error:  # the handler maps errors itself; this is a last resort
            log.exception("handler_crashed", message_id=job.delivery.message_id)
            attempt = job.delivery.receive_count
            disposition = Retry(self._config.backoff.delay_s(attempt, self._rng), str(error))
        finally:
            self._finish(job)
        if job.cancel_reason is not None:
            await asyncio.shield(self._after_cancel(job))
        elif disposition is not None:
            await asyncio.shield(self._apply(job.delivery, disposition))

    def _finish(self, job: _Job) -> None:
        self._jobs.pop(job.delivery, None)
        self._slots.give_back()
        metrics.IN_FLIGHT.set(len(self._jobs))

    async def _apply(self, delivery: Delivery, disposition: Disposition) -> None:
        self._slots.record(throttled=isinstance(disposition, Retry) and disposition.throttled)
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
        await self._release([(delivery, disposition.delay_s)])

    async def _after_cancel(self, job: _Job) -> None:
        if job.cancel_reason == "lease_lost":
            metrics.MESSAGES.labels("lost").inc()
            return  # the message is no longer ours to touch
        if job.cancel_reason == "max_job_time":
            delay = self._config.backoff.delay_s(job.delivery.receive_count, self._rng)
            metrics.MESSAGES.labels("retry").inc()
            await self._release([(job.delivery, delay)])

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
        """One task for every lease: extend in batches of ten before they run out."""
        interval = self._config.lease_renew_interval_s
        tick = min(1.0, interval / 4)
        while True:
            await asyncio.sleep(tick)
            self._health.tick()
            await self._extend_due_leases(interval)

    async def _extend_due_leases(self, interval: float) -> None:
        now = self._clock()
        threshold = self._config.visibility_timeout_s - interval
        due = [
            job
            for job in self._jobs.values()
            if job.cancel_reason is None and job.lease_expires_at - now <= threshold
        ]
        to_extend = []
        for job in due:
            if now - job.started_at >= self._config.max_job_time_s:
                self._cancel(job, "max_job_time")
            else:
                to_extend.append(job)
        for start in range(0, len(to_extend), SQS_MAX_BATCH):
            await self._extend(to_extend[start : start + SQS_MAX_BATCH], now)

    async def _extend(self, jobs: list[_Job], now: float) -> None:
        timeout = self._config.visibility_timeout_s
        try:
            failures = await self._queue.extend([job.delivery for job in jobs], timeout)
        except Exception as error:
            # Nothing is lost yet: the leases still have a third of their time to run.
            metrics.VISIBILITY_EXTENSIONS.labels("failed").inc(len(jobs))
            log.warning("lease_extension_failed", error=str(error), count=len(jobs))
            return
        failed = {failure.delivery: failure for failure in failures}
        for job in jobs:
            failure = failed.get(job.delivery)
            if failure is None:
                job.lease_expires_at = now + timeout
                metrics.VISIBILITY_EXTENSIONS.labels("extended").inc()
            elif not failure.retryable:
                metrics.VISIBILITY_EXTENSIONS.labels("failed").inc()
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
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        log.info("drain_started", in_flight=len(tasks), timeout_s=self._config.drain_timeout_s)
        # Jobs finish and receives in progress end (within their long poll) side by side.
        _, pending = await asyncio.wait([*tasks, *pollers], timeout=self._config.drain_timeout_s)
        stuck = [poller for poller in pollers if poller in pending]
        if stuck:
            log.warning("receive_abandoned", pollers=len(stuck))  # back after their timeout
        for poller in stuck:
            poller.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        unfinished = list(self._jobs.values())
        for job in unfinished:
            self._cancel(job, "shutdown")
        await asyncio.gather(*(job.task for job in unfinished if job.task), return_exceptions=True)
        await self._release([(job.delivery, 0) for job in unfinished])
        metrics.MESSAGES.labels("released").inc(len(unfinished))
        keeper.cancel()
        deleter.cancel()
        await asyncio.gather(keeper, deleter, return_exceptions=True)
        await self._deleter.flush()
        log.info("drain_finished", released=len(unfinished))
