import pickle
import random

import pytest

from pipelined import errors
from pipelined.disposition import (
    IN_PLACE_RETRY_MAX_DELAY_S,
    Ack,
    BackoffPolicy,
    Defer,
    Disposition,
    JobOutcome,
    Reject,
    Retry,
    combine,
    decide,
    is_short_retry,
)
from pipelined.errors import ClaimBusyError, CorruptFileError, RetryableError, ThrottledError

POLICY = BackoffPolicy(base_delay_s=5, max_delay_s=300)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (JobOutcome.PROCESSED, Ack()),
        (JobOutcome.SKIPPED, Ack()),
        (JobOutcome.FAILED, Reject("permanent failure recorded")),
        (CorruptFileError("corrupt JPEG"), Reject("corrupt JPEG")),
    ],
)
def test_outcomes_and_permanent_errors(result: JobOutcome | Exception, expected: object) -> None:
    assert decide(result, 1, POLICY, random.Random(1)) == expected


@pytest.mark.parametrize("error", [RetryableError("s3 down"), ThrottledError("slow"), OSError("x")])
def test_transient_and_unknown_errors_are_retried(error: Exception) -> None:
    disposition = decide(error, 1, POLICY, random.Random(1))
    assert isinstance(disposition, Retry)
    assert type(error).__name__ in disposition.reason


def test_an_internal_error_is_retried_never_rejected() -> None:
    """A bug of ours must reach the dead-letter queue, to be replayed once it is fixed."""
    error = errors.InternalError("internal error in pipelined: TypeError: x", "Traceback ...")
    for attempt in (1, 5, 50):
        disposition = decide(error, attempt, POLICY, random.Random(1))
        assert isinstance(disposition, Retry)
        assert disposition.reason == "InternalError: internal error in pipelined: TypeError: x"
        assert not disposition.throttled


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 5), (2, 10), (3, 20), (4, 40), (10, 300), (50, 300)]:
        delays = {POLICY.delay_s(attempt, rng) for _ in range(200)}
        assert min(delays) >= max(1, round(ceiling / 2) - 1)
        assert max(delays) <= ceiling
        if ceiling >= 20:
            assert len(delays) > 3, "jitter must spread retries"


def test_a_message_is_retried_if_any_record_must_be() -> None:
    assert combine([Ack(), Retry(10, "a"), Retry(30, "b"), Reject("c")]) == Retry(30, "b")
    assert combine([Defer(50, "busy"), Retry(10, "a")]) == Retry(10, "a")
    assert combine([Ack(), Defer(5, "x"), Defer(9, "y"), Reject("c")]) == Defer(9, "y")
    assert combine([Ack(), Reject("bad")]) == Reject("bad")
    assert combine([Ack(), Ack()]) == Ack()


@pytest.mark.parametrize("attempt", [1, 2, 5, 50])
def test_a_busy_claim_waits_just_past_its_lease_keeping_the_message(attempt: int) -> None:
    """Hole g: never a Retry, which would spend a receive per lease until the DLQ."""
    disposition = decide(
        ClaimBusyError("busy", retry_after_s=42.3), attempt, POLICY, random.Random(1)
    )
    assert disposition == Defer(43.3, "ClaimBusyError: busy")


def test_throttling_is_marked_for_the_concurrency_limit() -> None:
    throttled = decide(ThrottledError("slow"), 1, POLICY, random.Random(1))
    assert isinstance(throttled, Retry)
    assert throttled.throttled


def test_errors_survive_the_trip_through_a_worker_process() -> None:
    error = pickle.loads(pickle.dumps(ClaimBusyError("busy", retry_after_s=7)))
    assert (str(error), error.retry_after_s) == ("busy", 7)


@pytest.mark.parametrize(
    ("disposition", "short"),
    [
        (Retry(IN_PLACE_RETRY_MAX_DELAY_S, "flaky"), True),
        (Retry(IN_PLACE_RETRY_MAX_DELAY_S + 1, "flaky"), False),
        (Retry(1, "ThrottledError: slow down", throttled=True), False),
        (Defer(1, "busy"), False),  # waited out in place too, but as a deferral
        (Ack(), False),
        (Reject("corrupt"), False),
    ],
)
def test_only_short_unthrottled_retries_are_waited_out_in_place(
    disposition: Disposition, short: bool
) -> None:
    assert is_short_retry(disposition) is short


def test_the_default_backoff_is_waited_out_in_place_for_three_or_four_receives() -> None:
    rng, policy = random.Random(11), BackoffPolicy()  # RETRY_BASE_DELAY_S 5, doubling

    def shares_short(receive: int) -> float:
        delays = [policy.delay_s(receive, rng) for _ in range(400)]
        return sum(is_short_retry(Retry(delay, "flaky")) for delay in delays) / len(delays)

    assert [shares_short(receive) for receive in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert 0.2 < shares_short(4) < 0.8  # 20 to 40 s: half of them within 30 s
    assert shares_short(5) == 0.0  # 40 to 80 s
