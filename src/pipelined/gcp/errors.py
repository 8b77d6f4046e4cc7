"""Translate Google Cloud client errors into pipelined's error tree, so no one else imports them.

GOOGLE_ERRORS says which failure (pipelined.errors.FAILURES) an error of google.api_core is; a
class it does not list (ServiceUnavailable, DeadlineExceeded, InternalServerError, Aborted and
the rest) is a retryable ``cloud_error``. An answer the caller asked for, such as a refused
precondition, is the caller's to catch inside the ``translated`` block: it is not counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.cloud.storage import exceptions as media

from pipelined import metrics
from pipelined.concurrency import ThrottleSignal
from pipelined.errors import FailureKind, PipelinedError, RetryableError

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


@contextmanager
def translated(operation: str, *, source_object: bool = False) -> Iterator[None]:
    """Re-raise Google Cloud errors as the failures GOOGLE_ERRORS names, counting each one.

    ``source_object``: the call reads the event's source object, so errors saying it is gone
    or overwritten are that object's permanent failures (SOURCE_ERRORS).
    """
    try:
        yield
    except api.RetryError as error:
        # The client's own retries ran out: the last error it met says what went wrong.
        metrics.AWS_ERRORS.labels(operation).inc()
        cause = error.cause
        if isinstance(cause, api.GoogleAPICallError):
            raise _failure(operation, cause, source_object=source_object) from error
        raise RetryableError.of("cloud_unreachable", operation=operation, detail=error) from error
    except api.GoogleAPICallError as error:
        metrics.AWS_ERRORS.labels(operation).inc()
        raise _failure(operation, error, source_object=source_object) from error
    except auth.RefreshError as error:
        # No token for the credentials found: a service account key revoked, a metadata
        # server refusing, a workload identity misconfigured.
        metrics.AWS_ERRORS.labels(operation).inc()
        raise RetryableError.of(
            "access_denied", operation=operation, code=type(error).__name__
        ) from error
    except (auth.TransportError, TimeoutError, requests.RequestException) as error:
        # Cloud Storage's client speaks HTTP through requests: no connection, or no answer.
        metrics.AWS_ERRORS.labels(operation).inc()
        raise RetryableError.of("cloud_unreachable", operation=operation, detail=error) from error
    except (media.InvalidResponse, media.DataCorruption) as error:
        # A download cut short or failing its checksum: the bytes are fine, the transfer not.
        metrics.AWS_ERRORS.labels(operation).inc()
        raise RetryableError.of(
            "cloud_error", operation=operation, code=type(error).__name__, detail=error
        ) from error


def _failure(
    operation: str, error: api.GoogleAPICallError, *, source_object: bool = False
) -> PipelinedError:
    # The class name is the code an operator searches for (PermissionDenied, Aborted, ...).
    code = type(error).__name__
    kind = failure_kind(error, source_object=source_object)
    if kind == "throttled":
        THROTTLED()
    return PipelinedError.of(kind, operation=operation, code=code, detail=error)
