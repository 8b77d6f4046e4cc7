"""From one queue delivery to one disposition: parse, run each record, decide."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection

import structlog

from pipelined import metrics
from pipelined.consumer import Delivery
from pipelined.disposition import (
    Ack,
    BackoffPolicy,
    Disposition,
    JobOutcome,
    Reject,
    combine,
    decide,
)
from pipelined.errors import InternalError, PermanentError, PipelinedError, internal_error
from pipelined.events import (
    IgnoredRecord,
    MalformedMessageError,
    ObjectEvent,
    ParsedRecord,
    parse_message,
)
from pipelined.logs import get_logger
from pipelined.pipeline import Pipeline

log = get_logger(__name__)

Parser = Callable[[Delivery], list[ParsedRecord]]
"""How a queue's messages carry object events: each backend has its own."""

FOREIGN_BUCKET_REASON = "bucket {bucket!r} is not one of PIPELINED_INPUT_BUCKETS"
"""Why an event from a bucket the settings do not list is rejected (deleted, never retried)."""

_MACHINE_ERRORS = (OSError, MemoryError)
"""Not pipelined's errors, not bugs either: the machine failing (a full disk), retried."""


class MessageHandler:
    """The consumer's handler: every error becomes a disposition here, nowhere else."""

    def __init__(
        self,
        pipeline: Pipeline,
        backoff: BackoffPolicy,
        rng: random.Random | None = None,
        parse: Parser | None = None,
        input_buckets: Collection[str] = (),
    ) -> None:
        self._pipeline = pipeline
        self._backoff = backoff
        self._rng = rng or random.Random()
        # How the queue's messages carry events: S3's JSON in the body unless told otherwise.
        self._parse = parse or _s3_records
        # INPUT_BUCKETS: the buckets events may come from; empty, any bucket.
        self._input_buckets = frozenset(input_buckets)

    async def __call__(self, delivery: Delivery) -> Disposition:
        with structlog.contextvars.bound_contextvars(message_id=delivery.message_id):
            try:
                records = self._parse(delivery)
            except MalformedMessageError as error:
                log.warning("message_malformed", reason=str(error))
                return Reject(f"malformed message: {error}")
            dispositions: list[Disposition] = []
            for record in records:
                if isinstance(record, IgnoredRecord):
                    log.info("record_ignored", reason=record.reason)
                    dispositions.append(Ack())
                    continue
                dispositions.append(await self._run(record, delivery))
            return combine(dispositions)

    async def _run(self, event: ObjectEvent, delivery: Delivery) -> Disposition:
        with structlog.contextvars.bound_contextvars(bucket=event.bucket, key=event.key):
            if self._pipeline.is_own_output(event):
                log.info("record_ignored", reason="key is under the output prefix")
                return Ack()
            if self._input_buckets and event.bucket not in self._input_buckets:
                # Nothing of it is read or recorded: it may not be ours to see at all.
                reason = FOREIGN_BUCKET_REASON.format(bucket=event.bucket)
                log.warning("record_rejected", reason=reason)
                return Reject(reason)
            result: JobOutcome | Exception
            try:
                result = await self._pipeline.handle(event)
            except Exception as error:
                result = _logged(error)
            return decide(result, delivery.receive_count, self._backoff, self._rng)


def _s3_records(delivery: Delivery) -> list[ParsedRecord]:
    return parse_message(delivery.body)


def _logged(error: Exception) -> Exception:
    """Log the error that ended a job, once; a bug comes back as the InternalError to retry.

    Every layer below lets errors through unlogged, so this is the one line per failure.
    """
    if isinstance(error, InternalError):  # from a worker, its traceback formatted there
        return _logged_internal(error)
    if isinstance(error, PermanentError):
        log.warning("job_rejected", error=str(error), error_type=type(error).__name__)
        return error
    if isinstance(error, (PipelinedError, *_MACHINE_ERRORS)):
        log.warning("job_retryable", error=str(error), error_type=type(error).__name__)
        return error
    # Not an error anyone raised on purpose: a bug in the daemon's own code, or a library
    # misbehaving under it. Retried all the same: the DLQ keeps the message for a replay.
    return _logged_internal(internal_error(error))


def _logged_internal(error: InternalError) -> InternalError:
    metrics.INTERNAL_ERRORS.inc()
    log.error("internal_error", error=str(error), traceback=error.traceback_text)
    return error
