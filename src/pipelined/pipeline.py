"""The data path for one object: claim, download, process, upload, record, notify.

Each cloud role is a small protocol declared here, where it is used; ``aws/`` implements them.
"""

from __future__ import annotations

import asyncio
import tempfile
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
    WorkerDiedError,
)
from pipelined.events import ObjectEvent
from pipelined.logs import get_logger
from pipelined.processing import (
    ProcessingOptions,
    ProcessResult,
    process_file,
    sniff_kind,
)
from pipelined.records import JobRecord, SourceObject, StoredArtifact

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
        self, event: ObjectEvent, destination: Path, max_bytes: int
    ) -> ObjectInfo: ...

    async def upload(self, bucket: str, key: str, source: Path, content_type: str) -> int:
        """Store the file; return its size in bytes."""
        ...

    async def presign(self, bucket: str, key: str, ttl_s: int) -> str: ...


@dataclass(frozen=True)
class Claim:
    """The ledger's answer to "may I process this version?"."""

    granted: bool
    owner: str
    attempts: int = 0
    reason: str = ""  # why not granted: duplicate, stale, busy
    retry_after_s: float = 0.0  # for busy: until the holder's lease runs out
    existing: JobRecord | None = None  # the finished record, for a duplicate
    notified: bool = True

    @property
    def busy(self) -> bool:
        return self.reason == "busy"


class Ledger(Protocol):
    async def claim(self, event: ObjectEvent, owner: str, lease_s: int) -> Claim: ...

    async def renew(self, event: ObjectEvent, claim: Claim, lease_s: int) -> None: ...

    async def release(self, event: ObjectEvent, claim: Claim) -> None: ...

    async def complete(self, event: ObjectEvent, claim: Claim, record: JobRecord) -> None: ...

    async def claim_notification(self, event: ObjectEvent, owner: str, lease_s: int) -> bool: ...

    async def mark_notified(self, event: ObjectEvent) -> None: ...


class Notifier(Protocol):
    async def publish(self, message: dict[str, Any], attributes: dict[str, str]) -> None: ...


class Runner(Protocol):
    async def run(self, function: Callable[..., T], *args: Any) -> T: ...


@dataclass(frozen=True)
class PipelineConfig:
    output_bucket: str
    output_prefix: str
    options: ProcessingOptions
    max_object_bytes: int
    claim_lease_s: int
    presign_ttl_s: int = 0
    tmp_dir: str | None = None


class Pipeline:
    """Handles one ObjectEvent; raises only what should be retried."""

    def __init__(
        self,
        store: ObjectStore,
        ledger: Ledger,
        notifier: Notifier,
        runner: Runner,
        config: PipelineConfig,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._notifier = notifier
        self._runner = runner
        self._config = config

    def is_own_output(self, event: ObjectEvent) -> bool:
        """Artifacts written into a watched bucket must never be processed again."""
        return event.bucket == self._config.output_bucket and event.key.startswith(
            self._config.output_prefix
        )

    async def handle(self, event: ObjectEvent) -> JobOutcome:
        claim = await self._ledger.claim(event, uuid.uuid4().hex, self._config.claim_lease_s)
        if not claim.granted:
            return await self._not_claimed(event, claim)
        started = time.monotonic()
        try:
            async with self._renewing(event, claim):
                record = await self._produce(event, claim, started)
            await asyncio.shield(self._ledger.complete(event, claim, record))
        except BaseException:
            # Retryable error or shutdown: free the claim so the redelivery need not wait.
            await asyncio.shield(self._ledger.release(event, claim))
            raise
        outcome = JobOutcome.PROCESSED if record.status == "processed" else JobOutcome.FAILED
        metrics.PROCESSING_SECONDS.labels(record.kind).observe(time.monotonic() - started)
        metrics.JOBS.labels(record.kind, outcome.value).inc()
        await self._notify(event, record)
        log.info("job_finished", status=record.status, kind=record.kind, ms=record.duration_ms)
        return outcome

    async def _not_claimed(self, event: ObjectEvent, claim: Claim) -> JobOutcome:
        if claim.busy:
            # Come back when the holder's lease has run out: by then it has finished (and this
            # delivery is a duplicate) or died (and this delivery takes over).
            raise ClaimBusyError(
                "another consumer holds a live claim on this object version", claim.retry_after_s
            )
        if claim.existing is not None and not claim.notified:
            # The job finished but its owner died before marking the notification sent: send
            # it (again, perhaps; it carries the same notification_id), unless another
            # delivery has already taken that over.
            lease_s = self._config.claim_lease_s
            if await self._ledger.claim_notification(event, claim.owner, lease_s):
                await self._notify(event, claim.existing)
        metrics.JOBS.labels("unknown", "skipped").inc()
        log.info("job_skipped", reason=claim.reason)
        return JobOutcome.SKIPPED

    async def _produce(self, event: ObjectEvent, claim: Claim, started: float) -> JobRecord:
        """Download, process and upload; bad input becomes a ``failed`` record, not an error."""
        record = JobRecord(
            source=SourceObject(event.bucket, event.key, event.etag, event.size, event.version_id),
            status="processed",
            kind="unknown",
            attempts=claim.attempts,
            started_at=_now_iso(),
            finished_at="",
            duration_ms=0,
        )
        with tempfile.TemporaryDirectory(prefix="pipelined-", dir=self._config.tmp_dir) as work:
            source_path = Path(work) / "source"
            try:
                info = await self._fetch(event, source_path)
                record = replace(
                    record,
                    source=replace(record.source, etag=info.etag or event.etag, size=info.size),
                    kind=sniff_kind(_read_head(source_path)) or "unknown",
                )
                result = await self._runner.run(
                    process_file, str(source_path), work, self._config.options
                )
                artifacts = await self._upload(event, result)
                record = replace(record, artifacts=artifacts, metadata=result.metadata)
            except WorkerDiedError as error:
                if claim.attempts < WORKER_DEATHS_BEFORE_FAILING:
                    raise  # perhaps killed from outside: try again
                reason = f"{error} on each of {claim.attempts} attempts at this file"
                log.warning("job_failed", reason=reason, error_type=type(error).__name__)
                record = replace(record, status="failed", error=reason)
            except PermanentError as error:
                log.warning("job_failed", reason=str(error), error_type=type(error).__name__)
                record = replace(record, status="failed", error=str(error))
        duration_ms = round((time.monotonic() - started) * 1000)
        return replace(record, finished_at=_now_iso(), duration_ms=duration_ms)

    async def _fetch(self, event: ObjectEvent, destination: Path) -> ObjectInfo:
        limit = self._config.max_object_bytes
        size = event.size
        if size is None:
            size = (await self._store.head(event.bucket, event.key, event.version_id)).size
        if size > limit:
            raise LimitExceededError(
                f"object is {size} bytes, over the max_object_bytes limit of {limit}"
            )
        return await self._store.download(event, destination, limit)

    async def _upload(
        self, event: ObjectEvent, result: ProcessResult
    ) -> tuple[StoredArtifact, ...]:
        prefix = f"{self._config.output_prefix}{event.bucket}/{event.key}/"
        bucket = self._config.output_bucket

        sizes = await asyncio.gather(
            *(
                self._store.upload(bucket, prefix + a.name, Path(a.path), a.content_type)
                for a in result.artifacts
            )
        )
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

    async def _notify(self, event: ObjectEvent, record: JobRecord) -> None:
        if self._config.presign_ttl_s:
            record = replace(record, artifacts=await self._presigned(record.artifacts))
        await self._notifier.publish(record.notification(), record.notification_attributes())
        try:
            await self._ledger.mark_notified(event)
        except PipelinedError as error:
            # The notification is out; retrying the message would send it a second time.
            log.warning("notified_mark_failed", error=str(error))

    async def _presigned(self, artifacts: tuple[StoredArtifact, ...]) -> tuple[StoredArtifact, ...]:
        ttl = self._config.presign_ttl_s
        urls = await asyncio.gather(*(self._store.presign(a.bucket, a.key, ttl) for a in artifacts))
        return tuple(replace(a, url=url) for a, url in zip(artifacts, urls, strict=True))

    @asynccontextmanager
    async def _renewing(self, event: ObjectEvent, claim: Claim) -> AsyncIterator[None]:
        """Keep the ledger claim alive while the job runs, so no one takes over a live job.

        If the claim is lost all the same (we were stalled past its lease and someone took
        over), the job is cancelled and LeaseLostError raised: the new owner does the work.
        """
        job = asyncio.current_task()
        assert job is not None
        lost: list[LeaseLostError] = []

        async def renew_until_lost() -> None:
            lease_s = self._config.claim_lease_s
            while True:
                await asyncio.sleep(lease_s / 3)
                try:
                    await self._ledger.renew(event, claim, lease_s)
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


def _read_head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(SNIFF_BYTES)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
