"""The Firestore store's pure parts: revisions, document ids, and the errors it raises."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.api_core import datetime_helpers as api_core_datetimes
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.cloud import firestore
from google.cloud.firestore_v1.types import Write
from proto.datetime_helpers import DatetimeWithNanoseconds

from pipelined import metrics
from pipelined.errors import RetryableError, ThrottledError
from pipelined.gcp.errors import translated
from pipelined.gcp.ledger import document_id, revision_of, update_time_of

UPDATED = DatetimeWithNanoseconds(2026, 12, 1, 22, 5, 7, nanosecond=123456789, tzinfo=UTC)


def test_a_revision_keeps_the_nanoseconds_into_the_precondition() -> None:
    revision = revision_of(UPDATED)
    assert revision == "2026-12-01T22:05:07.123456789Z"
    write = Write()
    firestore.AsyncClient.write_option(last_update_time=update_time_of(revision)).modify_write(
        write
    )
    sent = write.current_document.update_time
    assert (sent, sent.nanosecond) == (UPDATED, 123456789)


@pytest.mark.parametrize("nanosecond", [0, 1, 999_999_999, 120_000_000])
def test_a_revision_is_its_own_round_trip(nanosecond: int) -> None:
    updated = DatetimeWithNanoseconds(2026, 12, 1, 22, 5, 7, nanosecond=nanosecond, tzinfo=UTC)
    revision = revision_of(updated)
    assert update_time_of(revision).nanosecond == nanosecond
    assert revision_of(update_time_of(revision)) == revision


@pytest.mark.parametrize(
    "update_time",
    [
        datetime(2026, 12, 1, tzinfo=UTC),
        # The same name in google.api_core: the client would send it without its nanoseconds.
        api_core_datetimes.DatetimeWithNanoseconds(2026, 12, 1, nanosecond=1, tzinfo=UTC),
    ],
)
def test_an_update_time_the_client_would_truncate_is_refused(update_time: datetime) -> None:
    with pytest.raises(TypeError):
        revision_of(update_time)


def test_document_ids_are_fixed_length_and_free_of_slashes() -> None:
    ids = {document_id("uploads", key) for key in ("a/b", "a%2Fb", "a b", "a" * 1024)}
    assert len(ids) == 4
    assert all(len(id_) == 64 and "/" not in id_ for id_ in ids)
    assert document_id("uploads", "a/b") == document_id("uploads", "a/b")


@pytest.mark.parametrize(
    ("error", "expected", "words"),
    [
        (api.ResourceExhausted("quota"), ThrottledError, "throttled (ResourceExhausted)"),
        (api.TooManyRequests("slow down"), ThrottledError, "throttled (TooManyRequests)"),
        (api.PermissionDenied("no"), RetryableError, "was denied (PermissionDenied)"),
        (api.Unauthenticated("who"), RetryableError, "was denied (Unauthenticated)"),
        (api.ServiceUnavailable("down"), RetryableError, "failed (ServiceUnavailable): 503 down"),
        (api.DeadlineExceeded("slow"), RetryableError, "failed (DeadlineExceeded)"),
        (api.InternalServerError("oops"), RetryableError, "failed (InternalServerError)"),
        (api.Aborted("contention"), RetryableError, "failed (Aborted)"),
        (
            api.RetryError("Timeout of 60.0s exceeded", api.ResourceExhausted("quota")),
            ThrottledError,
            "throttled (ResourceExhausted)",
        ),
        (api.RetryError("Timeout", ValueError("?")), RetryableError, "failed: Timeout"),
        (auth.RefreshError("revoked"), RetryableError, "was denied (RefreshError)"),
        (auth.TransportError("no route"), RetryableError, "failed: no route"),
    ],
)
def test_google_errors_become_pipelined_failures(
    error: Exception, expected: type[RetryableError], words: str
) -> None:
    outcome = "throttled" if expected is ThrottledError else "error"
    counted = metrics.CLOUD_CALLS.labels("firestore", "Test", outcome)
    before = counted._value.get()
    with pytest.raises(RetryableError) as raised, translated("firestore.Test"):
        raise error
    assert type(raised.value) is expected
    assert str(raised.value).startswith("firestore.Test ")
    assert words in str(raised.value)
    assert counted._value.get() == before + 1
