"""The failure table: one place says which failures are permanent and what the uploader reads."""

from __future__ import annotations

import pickle
import re
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from pipelined import errors
from pipelined.aws import errors as aws_errors
from pipelined.aws.errors import THROTTLING_CODES, translated
from pipelined.aws.s3 import S3Store
from pipelined.errors import (
    ClaimBusyError,
    CorruptFileError,
    LeaseLostError,
    LimitExceededError,
    PermanentError,
    PipelinedError,
    RetryableError,
    ThrottledError,
    UnsupportedContentError,
    WorkerDiedError,
)
from pipelined.events import ObjectEvent

# -- the table -----------------------------------------------------------------------------

EXPECTED_ROWS: dict[str, tuple[str, bool]] = {
    # kind: (class name, permanent)
    "source_deleted": ("SourceGoneError", True),
    "source_version_deleted": ("SourceGoneError", True),
    "source_overwritten": ("SourceOverwrittenError", True),
    "source_archived": ("SourceArchivedError", True),
    "object_too_large": ("LimitExceededError", True),
    "unsupported": ("UnsupportedContentError", True),
    "unsupported_compression": ("UnsupportedContentError", True),
    "missing_decoder": ("UnsupportedContentError", True),
    "corrupt": ("CorruptFileError", True),
    "over_limit": ("LimitExceededError", True),
    "job_timeout": ("LimitExceededError", True),
    "memory_limit": ("LimitExceededError", True),
    "worker_died": ("WorkerDiedError", False),
    "access_denied": ("RetryableError", False),
    "throttled": ("ThrottledError", False),
    "cloud_error": ("RetryableError", False),
    "cloud_unreachable": ("RetryableError", False),
    "internal": ("InternalError", False),
}


def test_the_table_has_one_row_per_kind() -> None:
    assert set(typing.get_args(errors.FailureKind)) == set(errors.FAILURES) == set(EXPECTED_ROWS)


@pytest.mark.parametrize(("kind", "row"), EXPECTED_ROWS.items())
def test_each_kind_has_its_class_and_the_class_says_its_permanence(
    kind: errors.FailureKind, row: tuple[str, bool]
) -> None:
    class_name, permanent = row
    failure = errors.FAILURES[kind]
    assert failure.error.__name__ == class_name
    assert failure.permanent is permanent
    assert issubclass(failure.error, PermanentError) is permanent
    assert issubclass(failure.error, RetryableError) is not permanent


@pytest.mark.parametrize(
    "kind", ["source_deleted", "source_version_deleted", "source_overwritten", "source_archived"]
)
def test_source_reasons_tell_the_uploader_what_happened_to_the_file(
    kind: errors.FailureKind,
) -> None:
    reason = str(PipelinedError.of(kind))
    assert re.match(r"^(the|this version of the) file ", reason), reason
    # No error codes (NoSuchKey, 412) or operations: those go to the operator's log.
    assert not re.search(r"[a-z][A-Z]|\b\d{3}\b|s3\.", reason), reason


def test_of_builds_the_tables_class_with_its_reason() -> None:
    error = LimitExceededError.of("job_timeout", limit_s="2.5")
    assert type(error) is LimitExceededError
    assert str(error) == (
        "the file took too long to process: it ran past the job_timeout_s limit of 2.5 s;"
        " its worker was stopped"
    )
    died = WorkerDiedError.of("worker_died", exit_code=-9)
    assert str(died) == "processing crashed: worker process died (exit code -9)"
    assert type(PipelinedError.of("source_deleted")) is errors.SourceGoneError


def test_of_refuses_a_kind_of_another_class() -> None:
    with pytest.raises(TypeError, match="job_timeout"):
        WorkerDiedError.of("job_timeout", limit_s=1)


def error_classes(root: type[PipelinedError] = PipelinedError) -> Iterator[type[PipelinedError]]:
    for cls in root.__subclasses__():
        yield cls
        yield from error_classes(cls)


@pytest.mark.parametrize("cls", sorted(set(error_classes()), key=str))
def test_every_error_survives_the_trip_through_a_worker_process(
    cls: type[PipelinedError],
) -> None:
    copy = pickle.loads(pickle.dumps(cls("a reason")))
    assert type(copy) is cls
    assert str(copy) == "a reason"


def test_an_internal_error_keeps_its_traceback_across_the_pool() -> None:
    error = errors.InternalError("internal error in pipelined: TypeError: x", "Traceback ...")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.traceback_text) == (str(error), "Traceback ...")


def test_the_names_other_modules_import_are_kept() -> None:
    retryable: list[type[PipelinedError]] = [
        ClaimBusyError,
        LeaseLostError,
        ThrottledError,
        WorkerDiedError,
    ]
    assert all(issubclass(cls, RetryableError) for cls in retryable)
    permanent: list[type[PipelinedError]] = [
        CorruptFileError,
        UnsupportedContentError,
        LimitExceededError,
    ]
    assert all(issubclass(cls, PermanentError) for cls in permanent)
    for name in ("translated", "error_code", "error_code_of", "THROTTLING_CODES"):
        assert hasattr(aws_errors, name)


# -- cloud codes ---------------------------------------------------------------------------


def client_error(code: str, operation: str = "GetObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "an answer"}}, operation)


SOURCE_CODES = {
    "NoSuchKey": "SourceGoneError",
    "404": "SourceGoneError",
    "NoSuchVersion": "SourceGoneError",
    "PreconditionFailed": "SourceOverwrittenError",
    "412": "SourceOverwrittenError",
    "InvalidObjectState": "SourceArchivedError",
}


@pytest.mark.parametrize(("code", "class_name"), SOURCE_CODES.items())
def test_source_codes_are_the_sources_permanent_failures(code: str, class_name: str) -> None:
    answer = client_error(code)
    with pytest.raises(PermanentError) as raised, translated("s3.GetObject", source_object=True):
        raise answer
    assert type(raised.value).__name__ == class_name
    assert raised.value.__cause__ is answer


@pytest.mark.parametrize("code", SOURCE_CODES)
def test_source_codes_from_other_calls_are_retried(code: str) -> None:
    with pytest.raises(RetryableError), translated("s3.PutObject"):
        raise client_error(code, "PutObject")


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES))
def test_throttling_codes_come_from_the_code_table(code: str) -> None:
    assert aws_errors.CLOUD_CODES[code] == "throttled"
    throttled = rf"^sqs.ReceiveMessage throttled \({code}\)$"
    with pytest.raises(ThrottledError, match=throttled), translated("sqs.ReceiveMessage"):
        raise client_error(code, "ReceiveMessage")


def test_an_unknown_code_is_retried_naming_it() -> None:
    unknown = r"^sns.Publish failed \(InternalError\): "
    with pytest.raises(RetryableError, match=unknown), translated("sns.Publish"):
        raise client_error("InternalError", "Publish")


def test_an_expected_answer_is_re_raised_as_it_is() -> None:
    """ConditionalCheckFailedException is how a conditional write says no: not an error."""
    operation = "dynamodb.UpdateItem"
    refused = frozenset({"ConditionalCheckFailedException"})
    answer = client_error("ConditionalCheckFailedException", "UpdateItem")
    with pytest.raises(ClientError) as raised, translated(operation, expected=refused):
        raise answer
    assert raised.value is answer
    with pytest.raises(RetryableError), translated(operation, expected=refused):
        raise client_error("InternalServerError", "UpdateItem")


# -- the S3 store --------------------------------------------------------------------------


class RefusingS3:
    """An S3 client whose reads all answer with one error code."""

    def __init__(self, code: str) -> None:
        self._code = code

    async def get_object(self, **_: object) -> dict[str, Any]:
        raise client_error(self._code, "GetObject")

    async def head_object(self, **_: object) -> dict[str, Any]:
        raise client_error(self._code, "HeadObject")


EVENT = ObjectEvent("uploads", "photos/cold.jpg", size=10, etag="abc", version_id="v1")


def store_answering(code: str) -> S3Store:
    return S3Store(cast(Any, RefusingS3(code)))


async def test_an_archived_source_is_a_permanent_failure_saying_restore_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(PermanentError) as raised:
        await store_answering("InvalidObjectState").download(EVENT, tmp_path / "source", 100)
    assert type(raised.value).__name__ == "SourceArchivedError"
    assert re.search(r"archive.*restore it", str(raised.value)), str(raised.value)


@pytest.mark.parametrize(("code", "class_name"), SOURCE_CODES.items())
async def test_a_download_names_what_happened_to_the_source(
    code: str, class_name: str, tmp_path: Path
) -> None:
    with pytest.raises(PermanentError) as raised:
        await store_answering(code).download(EVENT, tmp_path / "source", 100)
    assert type(raised.value).__name__ == class_name


async def test_a_head_of_a_deleted_source_says_so() -> None:
    with pytest.raises(PermanentError) as raised:
        await store_answering("404").head("uploads", "photos/gone.jpg", None)
    assert type(raised.value).__name__ == "SourceGoneError"
    assert str(raised.value) == "the file was deleted before it could be processed"


async def test_a_denied_download_is_retried(tmp_path: Path) -> None:
    """A missing permission is the operator's to fix; the message waits in the DLQ."""
    with pytest.raises(RetryableError, match=r"^s3.GetObject was denied \(AccessDenied\)"):
        await store_answering("AccessDenied").download(EVENT, tmp_path / "source", 100)


def test_the_code_behind_a_source_failure_goes_to_the_log() -> None:
    archived = translated("s3.GetObject", source_object=True)
    with capture_logs() as logs, pytest.raises(PermanentError), archived:
        raise client_error("InvalidObjectState")
    assert {
        "event": "source_read_refused",
        "operation": "s3.GetObject",
        "code": "InvalidObjectState",
        "failure": "source_archived",
    }.items() <= logs[0].items()


class Body:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.closed = False

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(self._data), size):
            yield self._data[start : start + size]

    def close(self) -> None:
        self.closed = True


class CurrentVersionS3:
    """An S3 client whose current version of every key is ``version_id``."""

    def __init__(self, version_id: str, data: bytes = b"bytes") -> None:
        self.body = Body(data)
        self.requests: list[dict[str, object]] = []
        self._version_id = version_id

    async def get_object(self, **request: object) -> dict[str, Any]:
        self.requests.append(request)
        return {
            "Body": self.body,
            "ContentLength": len(self.body._data),
            "ETag": '"abc"',
            "VersionId": self._version_id,
        }


async def test_current_only_reads_the_current_version_if_it_is_the_events(
    tmp_path: Path,
) -> None:
    client = CurrentVersionS3("v1")
    info = await S3Store(cast(Any, client)).download(
        EVENT, tmp_path / "source", 100, current_only=True
    )
    assert (tmp_path / "source").read_bytes() == b"bytes"
    assert (info.size, info.etag) == (5, "abc")
    [request] = client.requests
    assert "VersionId" not in request
    assert request["IfMatch"] == '"abc"'


async def test_current_only_refuses_a_newer_version_with_the_same_bytes(tmp_path: Path) -> None:
    client = CurrentVersionS3("v2")
    with pytest.raises(PermanentError) as raised:
        await S3Store(cast(Any, client)).download(
            EVENT, tmp_path / "source", 100, current_only=True
        )
    assert type(raised.value).__name__ == "SourceOverwrittenError"
    assert client.body.closed


async def test_a_download_past_the_limit_names_it(tmp_path: Path) -> None:
    client = CurrentVersionS3("v1", data=b"x" * 101)
    with pytest.raises(LimitExceededError) as raised:
        await S3Store(cast(Any, client)).download(EVENT, tmp_path / "source", 100)
    assert str(raised.value) == "object is 101 bytes, over the max_object_bytes limit of 100"
    assert client.body.closed
    assert client.requests == [{"Bucket": "uploads", "Key": "photos/cold.jpg", "VersionId": "v1"}]
