"""Where errors become dispositions: a bug is counted, logged once with its traceback, retried."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, MutableMapping
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from pipelined import errors, metrics
from pipelined.consumer import Delivery
from pipelined.disposition import BackoffPolicy, Disposition, JobOutcome, Retry
from pipelined.errors import RetryableError, ThrottledError
from pipelined.events import ObjectEvent
from pipelined.handler import MessageHandler
from pipelined.pipeline import Pipeline

BODY = json.dumps(
    {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "uploads"}, "object": {"key": "a.jpg", "size": 3}},
            }
        ]
    }
)


class RaisingPipeline:
    """A pipeline whose every job raises what ``fail`` raises."""

    def __init__(self, fail: Callable[[], None]) -> None:
        self._fail = fail

    def is_own_output(self, _: ObjectEvent) -> bool:
        return False

    async def handle(self, _: ObjectEvent) -> JobOutcome:
        self._fail()
        return JobOutcome.PROCESSED


def internal_errors_counted() -> float:
    return REGISTRY.get_sample_value("pipelined_internal_errors_total") or 0.0


async def handle(
    fail: Callable[[], None],
) -> tuple[Disposition, list[MutableMapping[str, Any]]]:
    handler = MessageHandler(cast(Pipeline, RaisingPipeline(fail)), BackoffPolicy())
    with capture_logs() as logs:
        disposition = await handler(Delivery("m-1", BODY, receive_count=1, lease="r"))
    return disposition, logs


def a_bug_in_the_pipeline() -> None:
    size: Any = None  # a value our code forgot could be missing
    _ = size + 1


async def test_a_bug_in_the_daemon_is_counted_logged_once_and_retried() -> None:
    before = internal_errors_counted()
    disposition, logs = await handle(a_bug_in_the_pipeline)
    assert isinstance(disposition, Retry)
    assert disposition.reason.startswith("InternalError: internal error in pipelined: TypeError")
    assert internal_errors_counted() == before + 1
    [logged] = [entry for entry in logs if entry["event"] == "internal_error"]
    assert logged["log_level"] == "error"
    assert "in a_bug_in_the_pipeline" in logged["traceback"]
    assert "TypeError" in logged["traceback"]
    assert not [entry for entry in logs if entry["event"] == "job_retryable"]


async def test_an_internal_error_from_a_worker_logs_the_workers_traceback() -> None:
    worker_traceback = 'Traceback (most recent call last):\n  File "x", in _shrink\nTypeError: x'

    def fail() -> None:
        raise errors.InternalError("internal error in pipelined: TypeError: x", worker_traceback)

    before = internal_errors_counted()
    disposition, logs = await handle(fail)
    assert isinstance(disposition, Retry)
    assert internal_errors_counted() == before + 1
    [logged] = [entry for entry in logs if entry["event"] == "internal_error"]
    assert logged["traceback"] == worker_traceback


@pytest.mark.parametrize(
    "error",
    [RetryableError("s3.GetObject failed (InternalError): x"), ThrottledError("slow"), OSError()],
)
async def test_other_retryable_failures_are_not_internal(error: Exception) -> None:
    def fail() -> None:
        raise error

    before = internal_errors_counted()
    disposition, logs = await handle(fail)
    assert isinstance(disposition, Retry)
    assert internal_errors_counted() == before
    assert [entry["event"] for entry in logs].count("job_retryable") == 1
    assert not [entry for entry in logs if entry["event"] == "internal_error"]


def test_the_jobs_counter_documents_the_outcomes_it_is_given() -> None:
    """pipeline.py labels jobs with a JobOutcome's value; nothing else."""
    documentation = metrics.JOBS._documentation
    listed = re.search(r"\(([a-z, ]+)\)", documentation)
    assert listed is not None, documentation
    assert set(listed.group(1).split(", ")) == {outcome.value for outcome in JobOutcome}
