"""Google Cloud errors as pipelined's failures: what a source read means, and throttling
reported to the concurrency limit. (The general table is tested with the Firestore store.)"""

from __future__ import annotations

import pytest
from google.api_core import exceptions as api

from pipelined.errors import PipelinedError, RetryableError
from pipelined.gcp.errors import THROTTLED, translated


@pytest.mark.parametrize(
    ("error", "throttles"),
    [
        (api.TooManyRequests("slow down"), 1),
        (api.RetryError("Timeout", api.ResourceExhausted("quota")), 1),
        (api.ServiceUnavailable("down"), 0),
    ],
)
def test_a_throttled_call_is_reported_to_whoever_adapts(error: Exception, throttles: int) -> None:
    seen: list[None] = []

    def listener() -> None:
        seen.append(None)

    THROTTLED.subscribe(listener)
    try:
        with pytest.raises(RetryableError), translated("storage.objects.get"):
            raise error
    finally:
        THROTTLED.unsubscribe(listener)
    assert len(seen) == throttles


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (api.NotFound("no such generation"), "SourceGoneError"),
        (api.PreconditionFailed("generation changed"), "SourceOverwrittenError"),
    ],
)
def test_a_source_read_takes_gone_and_overwritten_as_the_objects_fate(
    error: Exception, failure: str
) -> None:
    with (
        pytest.raises(PipelinedError) as raised,
        translated("storage.objects.get", source_object=True),
    ):
        raise error
    assert type(raised.value).__name__ == failure
    # From any other call, the same answers are a cloud error, retried.
    with pytest.raises(RetryableError), translated("storage.objects.insert"):
        raise error
