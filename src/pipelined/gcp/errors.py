"""Translate Google Cloud client errors into pipelined's error tree, so no one else imports them.

GOOGLE_ERRORS says which failure (pipelined.errors.FAILURES) an error of google.api_core is; a
class it does not list (ServiceUnavailable, DeadlineExceeded, InternalServerError, Aborted and
the rest) is a retryable ``cloud_error``. An answer the caller asked for, such as a refused
precondition, is the caller's to catch inside the ``translated`` block: it is not counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from google.api_core import exceptions as api
from google.auth import exceptions as auth

from pipelined import metrics
from pipelined.errors import FailureKind, PipelinedError, RetryableError

GOOGLE_ERRORS: Mapping[type[api.GoogleAPICallError], FailureKind] = {
    # The cloud asks us to slow down (HTTP 429; gRPC's RESOURCE_EXHAUSTED is a subclass).
    api.TooManyRequests: "throttled",
    # A missing IAM role, or credentials that are not accepted: the operator's to fix, so
    # retried while the dead-letter queue keeps the message.
    api.PermissionDenied: "access_denied",
    api.Unauthenticated: "access_denied",
}


def failure_kind(error: api.GoogleAPICallError) -> FailureKind:
    """The failure ``error`` is: that of the nearest class GOOGLE_ERRORS lists."""
    for cls in type(error).__mro__:
        kind = GOOGLE_ERRORS.get(cls)
        if kind is not None:
            return kind
    return "cloud_error"


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Re-raise Google Cloud errors as the failures GOOGLE_ERRORS names, counting each one."""
    try:
        yield
    except api.RetryError as error:
        # The client's own retries ran out: the last error it met says what went wrong.
        metrics.AWS_ERRORS.labels(operation).inc()
        cause = error.cause
        if isinstance(cause, api.GoogleAPICallError):
            raise _failure(operation, cause) from error
        raise RetryableError.of("cloud_unreachable", operation=operation, detail=error) from error
    except api.GoogleAPICallError as error:
        metrics.AWS_ERRORS.labels(operation).inc()
        raise _failure(operation, error) from error
    except auth.RefreshError as error:
        # No token for the credentials found: a service account key revoked, a metadata
        # server refusing, a workload identity misconfigured.
        metrics.AWS_ERRORS.labels(operation).inc()
        raise RetryableError.of(
            "access_denied", operation=operation, code=type(error).__name__
        ) from error
    except (auth.TransportError, TimeoutError) as error:
        metrics.AWS_ERRORS.labels(operation).inc()
        raise RetryableError.of("cloud_unreachable", operation=operation, detail=error) from error


def _failure(operation: str, error: api.GoogleAPICallError) -> PipelinedError:
    # The class name is the code an operator searches for (PermissionDenied, Aborted, ...).
    code = type(error).__name__
    return PipelinedError.of(failure_kind(error), operation=operation, code=code, detail=error)
