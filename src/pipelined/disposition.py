"""What the consumer does with a message once its job has ended. Pure: no I/O."""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import TypeGuard

from pipelined.errors import ClaimBusyError, PermanentError, RetryableError, ThrottledError
from pipelined.quotas import SQS_MAX_VISIBILITY_TIMEOUT_S

BUSY_MARGIN_S = 1.0
"""How long past a busy claim's lease a waiting delivery tries again."""

IN_PLACE_RETRY_MAX_DELAY_S = 30
"""The longest retry delay a delivery waits out in place, holding its slot; a longer backoff
(a message that has come back several times already) goes back to the queue."""

DEFAULT_RETRIES_IN_PLACE = 2
"""Short retries one delivery waits out before it goes back to the queue (RETRIES_IN_PLACE).
With the default backoff: three tries for each of a message's first three or four receives."""


class JobOutcome(enum.Enum):
    """How a job that did not raise ended."""

    PROCESSED = "processed"
    FAILED = "failed"  # a permanent failure, already recorded and notified
    SKIPPED = "skipped"  # a duplicate, a stale event, or nothing to do


@dataclass(frozen=True)
class Ack:
    """Done: delete the message."""


@dataclass(frozen=True)
class Retry:
    """Try again later: make the message visible again after ``delay_s``."""

    delay_s: int
    reason: str
    throttled: bool = False  # the cloud asked us to slow down: the consumer lowers concurrency


@dataclass(frozen=True)
class Defer:
    """Not yet: keep the message (its lease kept) and run the handler again after ``delay_s``.

    For a delivery that meets another consumer's live claim. Put back on the queue instead, it
    would spend a receive each lease period behind a long job and reach the dead-letter queue
    while the holder is alive and well; kept here, it waits as long as the job may take
    (MAX_JOB_TIME_S) at the cost of a slot, and takes over as soon as the holder's lease runs
    out if the holder died.
    """

    delay_s: float
    reason: str


@dataclass(frozen=True)
class Reject:
    """Bad input: delete the message, retrying cannot help."""

    reason: str


Disposition = Ack | Retry | Defer | Reject


def is_short_retry(disposition: Disposition) -> TypeGuard[Retry]:
    """A retry the consumer may wait out in place, the message kept, rather than spend a
    receive on: short, and not throttled (the concurrency limit must hear of that, and a
    throttled service is better left alone a while)."""
    return (
        isinstance(disposition, Retry)
        and not disposition.throttled
        and disposition.delay_s <= IN_PLACE_RETRY_MAX_DELAY_S
    )


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with jitter, applied through the visibility timeout."""

    base_delay_s: float = 5.0
    max_delay_s: float = 900.0

    def delay_s(self, attempt: int, rng: random.Random) -> int:
        """Delay before attempt ``attempt + 1``: half fixed, half random ("equal jitter").

        The fixed half keeps a retry from coming back at once; the random half spreads a burst
        of failures so they do not return together.
        """
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempt - 1))
        delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
        return max(1, min(int(delay + 0.5), SQS_MAX_VISIBILITY_TIMEOUT_S))


def decide(
    result: JobOutcome | BaseException,
    attempt: int,
    policy: BackoffPolicy,
    rng: random.Random,
) -> Disposition:
    """Map a job's outcome (or the error it raised) and its attempt number to a disposition."""
    if isinstance(result, JobOutcome):
        if result is JobOutcome.FAILED:
            return Reject("permanent failure recorded")
        return Ack()
    # Permanence is the error's class (errors.FAILURES says which failure has which): only a
    # PermanentError is rejected; anything else, a bug included, is retried.
    if isinstance(result, PermanentError):
        return Reject(str(result) or type(result).__name__)
    reason = f"{type(result).__name__}: {result}"
    if isinstance(result, ClaimBusyError):
        # Just past the holder's lease: a small margin for clocks and the write in flight.
        return Defer(result.retry_after_s + BUSY_MARGIN_S, reason)
    throttled = isinstance(result, ThrottledError)
    delay = policy.delay_s(attempt, rng)
    if isinstance(result, RetryableError) and result.retry_after_s > delay:
        delay = min(math.ceil(result.retry_after_s) + 1, SQS_MAX_VISIBILITY_TIMEOUT_S)
    return Retry(delay, reason, throttled=throttled)


def combine(dispositions: list[Disposition]) -> Disposition:
    """One message may carry several records: retry it if any record must be retried, else
    wait if any must wait.

    Records that already succeeded are no-ops on redelivery (the ledger skips them).
    """
    retries = [d for d in dispositions if isinstance(d, Retry)]
    if retries:
        return max(retries, key=lambda retry: retry.delay_s)
    waits = [d for d in dispositions if isinstance(d, Defer)]
    if waits:
        return max(waits, key=lambda wait: wait.delay_s)
    rejects = [d for d in dispositions if isinstance(d, Reject)]
    if rejects:
        return Reject("; ".join(r.reason for r in rejects))
    return Ack()
