"""Translate botocore's errors into pipelined's error tree, so no one else imports botocore."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from pipelined import metrics
from pipelined.errors import PermanentError, RetryableError, ThrottledError

THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestTimeTooSkewed",
    }
)


def error_code(error: ClientError) -> str:
    return error_code_of(error.response)


def error_code_of(parsed_response: Mapping[str, Any]) -> str:
    error = parsed_response.get("Error") or {}
    return str(error.get("Code", "Unknown"))


@contextmanager
def translated(operation: str, permanent: Mapping[str, str] | None = None) -> Iterator[None]:
    """Re-raise cloud errors as Throttled/Retryable, or Permanent for the codes in ``permanent``.

    ``permanent`` maps an error code to the reason recorded for it (e.g. NoSuchKey: the source
    object was deleted before we got to it).
    """
    try:
        yield
    except ClientError as error:
        metrics.AWS_ERRORS.labels(operation).inc()
        code = error_code(error)
        if permanent and code in permanent:
            raise PermanentError(permanent[code]) from error
        if code in THROTTLING_CODES:
            raise ThrottledError(f"{operation} throttled ({code})") from error
        raise RetryableError(f"{operation} failed ({code}): {error}") from error
    except (BotoCoreError, aiohttp.ClientError, TimeoutError) as error:
        metrics.AWS_ERRORS.labels(operation).inc()
        raise RetryableError(f"{operation} failed: {error}") from error
