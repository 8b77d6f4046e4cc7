"""Translate botocore's errors into pipelined's error tree, so no one else imports botocore.

CLOUD_CODES says which failure (pipelined.errors.FAILURES) each AWS error code is; a code it
does not list is a retryable ``cloud_error``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from pipelined.errors import FAILURES, FailureKind, PipelinedError, RetryableError
from pipelined.logs import get_logger

log = get_logger(__name__)

CLOUD_CODES: Mapping[str, FailureKind] = {
    # S3 about the event's own object. Only calls that read it (source_object=True) take
    # them as that object's fate; from any other call they are a retryable cloud_error.
    "NoSuchKey": "source_deleted",
    "404": "source_deleted",  # HeadObject answers have no body: the status is the code
    "NoSuchVersion": "source_version_deleted",
    "PreconditionFailed": "source_overwritten",  # GetObject's If-Match: the etag changed
    "412": "source_overwritten",
    "InvalidObjectState": "source_archived",  # GetObject on Glacier or Deep Archive
    # A missing permission is the operator's to fix: retried, the DLQ keeps the message.
    "AccessDenied": "access_denied",
    "AccessDeniedException": "access_denied",
    "403": "access_denied",
    # The cloud asks us to slow down; the consumer lowers its concurrency on these.
    "SlowDown": "throttled",
    "Throttling": "throttled",
    "ThrottlingException": "throttled",
    "ThrottledException": "throttled",
    "RequestThrottled": "throttled",
    "RequestThrottledException": "throttled",
    "TooManyRequestsException": "throttled",
    "ProvisionedThroughputExceededException": "throttled",
    "RequestLimitExceeded": "throttled",
    "RequestTimeTooSkewed": "throttled",
}

THROTTLING_CODES = frozenset(code for code, kind in CLOUD_CODES.items() if kind == "throttled")
"""For clients.py's call listener, which sees botocore's parsed responses before we do."""

ANSWER_CODES = frozenset({"ConditionalCheckFailedException", "PreconditionFailed", "412"})
"""Refusals of a condition the request itself set (a ledger write's revision, a download's
If-Match): answers, so clients.py counts those calls as ok, not as errors."""

_SOURCE_KINDS: frozenset[FailureKind] = frozenset(
    {"source_deleted", "source_version_deleted", "source_overwritten", "source_archived"}
)


def error_code(error: ClientError) -> str:
    return error_code_of(error.response)


def error_code_of(parsed_response: Mapping[str, Any]) -> str:
    error = parsed_response.get("Error") or {}
    return str(error.get("Code", "Unknown"))


@contextmanager
def translated(
    operation: str, *, source_object: bool = False, expected: frozenset[str] = frozenset()
) -> Iterator[None]:
    """Re-raise cloud errors as the failures CLOUD_CODES names.

    ``source_object``: the call reads the event's source object, so codes saying it is gone,
    overwritten or archived are that object's permanent failures. ``expected``: codes that
    are an answer the caller asked for, such as ConditionalCheckFailedException for a
    conditional write; they are re-raised as the original ClientError. (Calls are counted,
    attempt by attempt, by the listener clients.py registers, not here.)
    """
    try:
        yield
    except ClientError as error:
        code = error_code(error)
        if code in expected:
            raise
        raise _failure(operation, code, error, source_object=source_object) from error
    except (BotoCoreError, aiohttp.ClientError, TimeoutError) as error:
        raise RetryableError.of("cloud_unreachable", operation=operation, detail=error) from error


def _failure(
    operation: str, code: str, error: ClientError, *, source_object: bool
) -> PipelinedError:
    kind = CLOUD_CODES.get(code, "cloud_error")
    if kind in _SOURCE_KINDS and not source_object:
        kind = "cloud_error"
    if FAILURES[kind].permanent:
        # The uploader's reason names no code or call; the operator finds them here.
        log.info("source_read_refused", operation=operation, code=code, failure=kind)
    return PipelinedError.of(kind, operation=operation, code=code, detail=error)
