"""From one queue delivery to one disposition: parse, run each record, decide."""

from __future__ import annotations

import random

import structlog

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
from pipelined.events import IgnoredRecord, MalformedMessageError, ObjectEvent, parse_message
from pipelined.logs import get_logger
from pipelined.pipeline import Pipeline

log = get_logger(__name__)


class MessageHandler:
    """The consumer's handler: every error becomes a disposition here, nowhere else."""

    def __init__(
        self, pipeline: Pipeline, backoff: BackoffPolicy, rng: random.Random | None = None
    ) -> None:
        self._pipeline = pipeline
        self._backoff = backoff
        self._rng = rng or random.Random()

    async def __call__(self, delivery: Delivery) -> Disposition:
        with structlog.contextvars.bound_contextvars(message_id=delivery.message_id):
            try:
                records = parse_message(delivery.body)
            except MalformedMessageError as error:
                log.warning("message_malformed", reason=str(error))
                return Reject(f"malformed message: {error}")
            dispositions: list[Disposition] = []
            for record in records:
                if isinstance(record, IgnoredRecord):
                    log.info("record_ignored", reason=record.reason)
                    dispositions.append(Ack())
                    continue
                dispositions.append(await self._run(record, delivery.receive_count))
            return combine(dispositions)

    async def _run(self, event: ObjectEvent, attempt: int) -> Disposition:
        with structlog.contextvars.bound_contextvars(bucket=event.bucket, key=event.key):
            if self._pipeline.is_own_output(event):
                log.info("record_ignored", reason="key is under the output prefix")
                return Ack()
            result: JobOutcome | Exception
            try:
                result = await self._pipeline.handle(event)
            except Exception as error:
                log.warning("job_retryable", error=str(error), error_type=type(error).__name__)
                result = error
            return decide(result, attempt, self._backoff, self._rng)
