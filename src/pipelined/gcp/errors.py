"""Translate Google Cloud client errors into pipelined's error tree, so no one else imports them.

GOOGLE_ERRORS says which failure (pipelined.errors.FAILURES) an error of google.api_core is; a
class it does not list (ServiceUnavailable, DeadlineExceeded, InternalServerError, Aborted and
the rest) is a retryable ``cloud_error``. An answer the caller asked for, such as a refused
precondition, is the caller's to catch inside the ``translated`` block: the call counts as ok.
Every call through ``translated`` is counted in pipelined_cloud_calls_total and timed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.cloud.storage import exceptions as media

from pipelined import metrics
from pipelined.concurrency import ThrottleSignal
from pipelined.errors import FailureKind, PipelinedError, RetryableError, ThrottledError

GOOGLE_ERRORS: Mapping[type[api.GoogleAPICallError], FailureKind] = {
    # The cloud asks us to slow down (HTTP 429; gRPC's RESOURCE_EXHAUSTED is a subclass).
    api.TooManyRequests: "throttled",
    # A missing IAM role, or credentials that are not accepted: the operator's to fix, so
    # retried while the dead-letter queue keeps the message.
    api.PermissionDenied: "access_denied",
    api.Unauthenticated: "access_denied",
}


THROTTLED = ThrottleSignal()
"""Every Google call that ended throttled. The Google clients give no hook into their own
retries (botocore's needs-retry event is how AWS's are seen), so a throttle is seen here, once
those retries are spent; the backend subscribes the daemon's signal for as long as it runs."""

SOURCE_ERRORS: Mapping[type[api.GoogleAPICallError], FailureKind] = {
    # Cloud Storage about the event's own object, from a call that reads it: a generation
    # that is gone (or an object, for a read of the live one), or one no longer live.
    api.NotFound: "source_version_deleted",
    api.PreconditionFailed: "source_overwritten",
}


def failure_kind(error: api.GoogleAPICallError, *, source_object: bool = False) -> FailureKind:
    """The failure ``error`` is: that of the nearest class GOOGLE_ERRORS (or, for a read of
    the event's object, SOURCE_ERRORS) lists."""
    tables = (SOURCE_ERRORS, GOOGLE_ERRORS) if source_object else (GOOGLE_ERRORS,)
    for cls in type(error).__mro__:
        for table in tables:
            kind = table.get(cls)
            if kind is not None:
                return kind
    return "cloud_error"


SERVICES: Mapping[str, str] = {"storage": "gcs"}
"""The service label of an operation's prefix, where the two differ."""

_ANSWERS = (api.PreconditionFailed,)
"""Refusals of a precondition the request set (a generation match): answers, counted as ok."""


@functools.cache
def _series(operation: str) -> metrics.CallSeries:
    """The series of an operation: pubsub.Pull counts as service pubsub, operation Pull;
    storage.objects.get as service gcs, operation objects.get."""
    prefix, _, name = operation.partition(".")
    return metrics.cloud_call(SERVICES.get(prefix, prefix), name)


@contextmanager
def translated(
    operation: str, *, source_object: bool = False, counted: bool = True
) -> Iterator[None]:
    """Re-raise Google Cloud errors as the failures GOOGLE_ERRORS names, and count the call.

    ``source_object``: the call reads the event's source object, so errors saying it is gone
    or overwritten are that object's permanent failures (SOURCE_ERRORS). ``counted``: the
    block makes a call to the cloud (a URL signed with a local key makes none). A call is
    counted when it returns or fails with a cloud error, each call once: the Google clients
    give no view of their own retries. An exception of pipelined's own (a download over its
    cap) or a cancellation leaves it uncounted.
    """
    started = time.monotonic()
    try:
        yield
    except Exception as error:
        cause = _cause(error)
        failure = _translation(operation, error, cause, source_object=source_object)
        if failure is None:
            raise
        if counted:
            _series(operation).record(_outcome(cause, failure), time.monotonic() - started)
        raise failure from error
    if counted:
        _series(operation).record("ok", time.monotonic() - started)


def _cause(error: Exception) -> Exception:
    """The error that says what went wrong: for a retry chain that ran out, the last one."""
    if isinstance(error, api.RetryError) and isinstance(error.cause, api.GoogleAPICallError):
        return error.cause
    return error


def _outcome(cause: Exception, failure: PipelinedError) -> str:
    if isinstance(failure, ThrottledError):
        return "throttled"
    return "ok" if isinstance(cause, _ANSWERS) else "error"


def _translation(
    operation: str, error: Exception, cause: Exception, *, source_object: bool
) -> PipelinedError | None:
    """The failure ``error`` is; None for an error that is not the cloud's."""
    if isinstance(cause, api.GoogleAPICallError):
        return _failure(operation, cause, source_object=source_object)
    if isinstance(error, api.RetryError):
        return RetryableError.of("cloud_unreachable", operation=operation, detail=error)
    if isinstance(error, auth.RefreshError):
        # No token for the credentials found: a service account key revoked, a metadata
        # server refusing, a workload identity misconfigured.
        return RetryableError.of("access_denied", operation=operation, code=type(error).__name__)
    if isinstance(error, (auth.TransportError, TimeoutError, requests.RequestException)):
        # Cloud Storage's client speaks HTTP through requests: no connection, or no answer.
        return RetryableError.of("cloud_unreachable", operation=operation, detail=error)
    if isinstance(error, (media.InvalidResponse, media.DataCorruption)):
        # A download cut short or failing its checksum: the bytes are fine, the transfer not.
        return RetryableError.of(
            "cloud_error", operation=operation, code=type(error).__name__, detail=error
        )
    return None


def _failure(
    operation: str, error: api.GoogleAPICallError, *, source_object: bool = False
) -> PipelinedError:
    # The class name is the code an operator searches for (PermissionDenied, Aborted, ...).
    code = type(error).__name__
    kind = failure_kind(error, source_object=source_object)
    if kind == "throttled":
        THROTTLED()
    return PipelinedError.of(kind, operation=operation, code=code, detail=error)
