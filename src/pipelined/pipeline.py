"""The data path for one object: claim, download, process, upload, record, notify.

Each cloud role is a small protocol declared here, where it is used; ``aws/`` implements them.
The ledger is ``pipelined.ledger``: its state machine over the backend's compare-and-set store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pipelined import metrics
from pipelined.disposition import JobOutcome
from pipelined.errors import (
    ClaimBusyError,
    LeaseLostError,
    LimitExceededError,
    PermanentError,
    PipelinedError,
    SourceGoneError,
    SourceOverwrittenError,
    WorkerDiedError,
)
from pipelined.events import ObjectEvent
from pipelined.layout import artifact_prefix, is_own_output
from pipelined.ledger.machine import Processing, Refusal, Refused
from pipelined.ledger.store import Hold, Ledger, NotifyGrant, ProcessGrant
from pipelined.logs import get_logger
from pipelined.processing import (
    ProcessingOptions,
    ProcessResult,
    process_file,
    sniff_kind,
)
from pipelined.records import JobRecord, SourceObject, StoredArtifact
from pipelined.rules import Rule, select
from pipelined.staging import JobFolders

log = get_logger(__name__)
T = TypeVar("T")

SNIFF_BYTES = 4096

WORKER_DEATHS_BEFORE_FAILING = 3
"""A file whose worker dies this many times (a crash in a native decoder, say) is recorded as
failed, not retried into the dead-letter queue. Kept below the usual maxReceiveCount of 5."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str | None
    content_type: str | None


class ObjectStore(Protocol):
    async def head(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo: ...

    async def download(
        self, event: ObjectEvent, destination: Path, max_bytes: int, *, current_only: bool = False
    ) -> ObjectInfo:
        """Fetch the version ``event`` names into ``destination``, written over in place
        (``staging.write_over``); with ``current_only``, only if it is still the object's
        current version (SourceOverwrittenError otherwise)."""
        ...

    async def upload(self, bucket: str, key: str, source: Path, content_type: str) -> int:
        """Store the file; return its size in bytes."""
        ...

    async def presign(self, bucket: str, key: str, ttl_s: int) -> str: ...


class Notifier(Protocol):
    async def publish(self, message: dict[str, Any], attributes: dict[str, str]) -> None: ...


class Runner(Protocol):
    async def run(self, function: Callable[..., T], *args: Any) -> T: ...


@dataclass(frozen=True)
class PipelineConfig:
    output_bucket: str
    output_prefix: str
    options: ProcessingOptions  # the default rule's; a matching rule changes some of them
    max_object_bytes: int
    claim_lease_s: int
    presign_ttl_s: int = 0
    rules: tuple[Rule, ...] = ()  # the rules file's, in order; none: the default rule only


class Pipeline:
    """Handles one ObjectEvent; raises only what should be retried."""

    def __init__(
        self,
        store: ObjectStore,
        ledger: Ledger,
        notifier: Notifier,
        runner: Runner,
        config: PipelineConfig,
        *,
        folders: JobFolders,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._notifier = notifier
        self._runner = runner
        self._config = config
        self._folders = folders

    def is_own_output(self, event: ObjectEvent) -> bool:
        """Artifacts written into a watched bucket must never be processed again."""
        config = self._config
        return is_own_output(config.output_bucket, config.output_prefix, event.bucket, event.key)

    async def handle(self, event: ObjectEvent) -> JobOutcome:
        """Process ``event``, to one record and one notification per object version."""
        grant = await self._ledger.claim(event, uuid.uuid4().hex, force=event.forced)
        if isinstance(grant, Refused):
            return self._refused(grant)
        if isinstance(grant, NotifyGrant):
            return await self._resend(grant, event)
        return await self._process(event, grant)

    def _refused(self, refused: Refused) -> JobOutcome:
        metrics.LEDGER_REFUSALS.labels(refused.reason.value).inc()
        if refused.reason is Refusal.BUSY:
            # Come back when the holder's lease has run out: by then it has finished (and this
            # delivery is a duplicate) or died (and this delivery takes over).
            raise ClaimBusyError(
                "another consumer holds a live claim on this object",
                refused.retry_after_s,
            )
        return self._skipped(refused.reason.value)

    def _skipped(self, reason: str) -> JobOutcome:
        metrics.JOBS.labels("unknown", "skipped").inc()
        log.info("job_skipped", reason=reason)
        return JobOutcome.SKIPPED

    async def _resend(self, grant: NotifyGrant, event: ObjectEvent) -> JobOutcome:
        """The job finished but its owner died before marking the notification sent: send it
        (again, perhaps: it carries the same notification_id)."""
        try:
            async with self._holding(grant.hold):
                await self._notify(grant.hold, grant.record, event)
        except BaseException as error:
            _count_lost(error)
            await asyncio.shield(self._ledger.release(grant.hold))
            raise
        return self._skipped("duplicate")

    async def _process(self, event: ObjectEvent, grant: ProcessGrant) -> JobOutcome:
        hold, claim = grant.hold, grant.claim
        started = time.monotonic()
        try:
            async with self._holding(hold):
                try:
                    record = await self._produce(event, claim, started)
                except (SourceOverwrittenError, SourceGoneError) as error:
                    # The version is not the current one: a newer event covers the object,
                    # and the record (if any) stays as it is.
                    await asyncio.shield(self._ledger.abandon(hold))
                    log.info("version_superseded", reason=str(error))
                    return self._skipped("stale")
                # Shielded: a shutdown must not cut the record write in half.
                recording = time.monotonic()
                await asyncio.shield(self._ledger.complete(hold, record))
                _stage_done(record.kind, "record", recording)
                outcome = _outcome_of(record)
                metrics.PROCESSING_SECONDS.labels(record.kind).observe(time.monotonic() - started)
                metrics.JOBS.labels(record.kind, outcome.value).inc()
                # Still holding: the lease, renewed, keeps a duplicate from publishing too.
                await self._notify(hold, record, event)
        except BaseException as error:
            _count_lost(error)
            # Retryable error or shutdown: free the claim so the redelivery need not wait.
            died = isinstance(error, WorkerDiedError)
            await asyncio.shield(self._ledger.release(hold, worker_died=died))
            raise
        log.info("job_finished", status=record.status, kind=record.kind, ms=record.duration_ms)
        return outcome

    async def _produce(self, event: ObjectEvent, claim: Processing, started: float) -> JobRecord:
        """Download, process and upload; bad input becomes a ``failed`` record, not an error."""
        record = JobRecord(
            source=SourceObject(event.bucket, event.key, event.etag, event.size, event.version_id),
            status="processed",
            kind="unknown",
            attempts=claim.attempts,
            forced=claim.forced,
            started_at=_now_iso(),
            finished_at="",
            duration_ms=0,
            # Until the kind is known, the rule that matches without one: a failed download
            # is still recorded under the rule its bucket and key lead to.
            rule=self._rule(event, None).name,
        )
        with self._folders.job_folder() as folder:
            try:
                stage_started = time.monotonic()
                info = await self._fetch(event, folder.source, claim)
                kind = sniff_kind(_read_head(folder.source))
                stage_started = _stage_done(kind or "unknown", "download", stage_started)
                metrics.DOWNLOADED_BYTES.inc(info.size)
                rule = self._rule(event, kind)
                record = replace(
                    record,
                    source=replace(record.source, etag=info.etag or event.etag, size=info.size),
                    kind=kind or "unknown",
                    rule=rule.name,
                )
                options = rule.options(self._config.options)
                result = await self._runner.run(
                    process_file, str(folder.source), str(folder.output), options
                )
                stage_started = _stage_done(record.kind, "process", stage_started)
                artifacts = await self._upload(event, result)
                _stage_done(record.kind, "upload", stage_started)
                record = replace(record, artifacts=artifacts, metadata=result.metadata)
            except WorkerDiedError as error:
                deaths = claim.worker_deaths + 1
                if deaths < WORKER_DEATHS_BEFORE_FAILING:
                    raise  # perhaps killed from outside: try again
                reason = f"{error}, on each of {deaths} attempts at this file"
                record = self._failed(record, reason, error)
            except PermanentError as error:
                if _is_stale(error, claim):
                    raise  # not a failed record: _process drops the claim
                record = self._failed(record, str(error), error)
        duration_ms = round((time.monotonic() - started) * 1000)
        return replace(record, finished_at=_now_iso(), duration_ms=duration_ms)

    def _rule(self, event: ObjectEvent, kind: str | None) -> Rule:
        return select(self._config.rules, event.bucket, event.key, kind)

    @staticmethod
    def _failed(record: JobRecord, reason: str, error: Exception) -> JobRecord:
        log.warning("job_failed", reason=reason, error_type=type(error).__name__)
        return replace(record, status="failed", error=reason)

    async def _fetch(self, event: ObjectEvent, destination: Path, claim: Processing) -> ObjectInfo:
        limit = self._config.max_object_bytes
        # An event the ledger could not order against the version it knows may only win if
        # its version is still the current one: anything else is a stale event.
        current_only = claim.must_be_current
        size = event.size
        if size is None:
            version_id = None if current_only else event.version_id
            size = (await self._store.head(event.bucket, event.key, version_id)).size
        if size > limit:
            raise LimitExceededError.of("object_too_large", size=size, limit=limit)
        return await self._store.download(event, destination, limit, current_only=current_only)

    async def _upload(
        self, event: ObjectEvent, result: ProcessResult
    ) -> tuple[StoredArtifact, ...]:
        prefix = artifact_prefix(self._config.output_prefix, event.bucket, event.key, event.version)
        bucket = self._config.output_bucket
        sizes = await asyncio.gather(
            *(
                self._store.upload(bucket, prefix + a.name, Path(a.path), a.content_type)
                for a in result.artifacts
            )
        )
        metrics.UPLOADED_BYTES.inc(sum(sizes))
        return tuple(
            StoredArtifact(
                bucket=bucket,
                key=prefix + artifact.name,
                content_type=artifact.content_type,
                size=size,
                width=artifact.width,
                height=artifact.height,
            )
            for artifact, size in zip(result.artifacts, sizes, strict=True)
        )

    async def _notify(self, hold: Hold, record: JobRecord, event: ObjectEvent) -> None:
        notifying = time.monotonic()
        if self._config.presign_ttl_s:
            record = replace(record, artifacts=await self._presigned(record.artifacts))
        await self._notifier.publish(record.notification(), record.notification_attributes())
        metrics.observe_end_to_end(record.kind, event.event_time)
        try:
            await self._ledger.mark_notified(hold)
        except PipelinedError as error:
            # The notification is out; retrying the message would send it a second time.
            log.warning("notified_mark_failed", error=str(error))
        _stage_done(record.kind, "notify", notifying)

    async def _presigned(self, artifacts: tuple[StoredArtifact, ...]) -> tuple[StoredArtifact, ...]:
        ttl = self._config.presign_ttl_s
        urls = await asyncio.gather(*(self._store.presign(a.bucket, a.key, ttl) for a in artifacts))
        return tuple(replace(a, url=url) for a, url in zip(artifacts, urls, strict=True))

    @asynccontextmanager
    async def _holding(self, hold: Hold) -> AsyncIterator[None]:
        """Keep the ledger lease alive while the job runs and until its notification is marked,
        so no one takes over live work or publishes a second time.

        If the lease is lost all the same (we were stalled past it and someone took over, or a
        newer version did), the job is cancelled and LeaseLostError raised.
        """
        job = asyncio.current_task()
        assert job is not None
        lost: list[LeaseLostError] = []

        async def renew_until_lost() -> None:
            lease_s = self._config.claim_lease_s
            while True:
                await asyncio.sleep(lease_s / 3)
                try:
                    await self._ledger.renew(hold)
                except LeaseLostError as error:
                    lost.append(error)
                    job.cancel()
                    return
                except Exception as error:  # a third of the lease is left: try again later
                    log.warning("claim_renewal_failed", error=str(error))

        renewer = asyncio.create_task(renew_until_lost())
        try:
            yield
        except asyncio.CancelledError:
            if lost and job.uncancel() == 0:
                raise lost[0] from None
            raise
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)


def _is_stale(error: PermanentError, claim: Processing) -> bool:
    """Does ``error`` say the claimed version is not the object's current one?

    Overwritten always does. Gone does only for a claim that had to prove its version current:
    an event that cannot be ordered must never replace a record, not even with "deleted".
    """
    if isinstance(error, SourceOverwrittenError):
        return True
    return isinstance(error, SourceGoneError) and claim.must_be_current


def _stage_done(kind: str, stage: str, started: float) -> float:
    """Observe a stage that began at ``started`` (monotonic); the time it ended, for the next."""
    now = time.monotonic()
    metrics.stage_seconds(kind, stage).observe(now - started)
    return now


def _count_lost(error: BaseException) -> None:
    if isinstance(error, LeaseLostError):  # the ledger refused a write of the claim we hold
        metrics.LEDGER_REFUSALS.labels("lost").inc()


def _outcome_of(record: JobRecord) -> JobOutcome:
    return JobOutcome.PROCESSED if record.status == "processed" else JobOutcome.FAILED


def _read_head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(SNIFF_BYTES)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
