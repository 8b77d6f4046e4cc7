"""The error tree, and the one table that says what each failure means.

The classes say who handles a failure: a PermanentError is the file's fault (recorded as
failed, notified, deleted), a RetryableError is not (the message comes back after a backoff
and, if it keeps failing, reaches the dead-letter queue to be replayed). FAILURES names every
failure a job can end in, with its class (and so its permanence) and the reason it carries;
the code that detects a failure raises it with ``SomeError.of(kind, ...)``.

Every exception here takes a single message argument, or defines __reduce__, so that it
survives pickling across the process pool unchanged.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Literal, Self


class PipelinedError(Exception):
    """Root of every error pipelined raises on purpose."""

    @classmethod
    def of(cls, kind: FailureKind, **details: object) -> Self:
        """The error FAILURES lists for ``kind``, its reason filled in with ``details``.

        Called on the class the caller expects (``LimitExceededError.of("job_timeout")``),
        so a kind moved to another class in the table fails loudly at the call site.
        """
        failure = FAILURES[kind]
        if not issubclass(failure.error, cls):
            raise TypeError(f"{kind} is a {failure.error.__name__}, not a {cls.__name__}")
        return failure.error(failure.reason.format(**details))


class RetryableError(PipelinedError):
    """A transient failure: the message goes back to the queue after a backoff delay."""

    retry_after_s: float = 0.0
    """When known, the earliest a retry can succeed; the backoff is never shorter."""


class ClaimBusyError(RetryableError):
    """Another consumer holds a live claim on the same object version, for ``retry_after_s``
    more at least. Not a failure: the delivery waits for the claim, keeping its message."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[ClaimBusyError], tuple[str, float]]:
        return (type(self), (str(self), self.retry_after_s))


class ThrottledError(RetryableError):
    """The cloud asked us to slow down (SlowDown, ThrottlingException and friends)."""


class LeaseLostError(RetryableError):
    """The message's lease could not be extended; another consumer may own it now."""


class WorkerDiedError(RetryableError):
    """A pool worker died under a job (killed from outside, or a crash in native code)."""


class InternalError(RetryableError):
    """A bug in pipelined's own code. Retried, never recorded as the file's failure: with a
    regression every upload would fail, and the dead-letter queue keeps them for a replay
    once the bug is fixed. ``traceback_text`` is the formatted traceback, as text because a
    traceback object does not survive the trip from a worker process."""

    def __init__(self, message: str, traceback_text: str = "") -> None:
        super().__init__(message)
        self.traceback_text = traceback_text

    def __reduce__(self) -> tuple[type[InternalError], tuple[str, str]]:
        return (type(self), (str(self), self.traceback_text))


class PermanentError(PipelinedError):
    """Bad input: recorded as failed, notified and deleted; retrying cannot help."""


class UnsupportedContentError(PermanentError):
    """The bytes are not a type pipelined processes."""


class CorruptFileError(PermanentError):
    """The bytes claim a supported type but cannot be decoded."""


class LimitExceededError(PermanentError):
    """The input crosses a configured limit; the message names the limit and the value."""


class SourceGoneError(PermanentError):
    """The object (or the version) the event names no longer exists."""


class SourceOverwrittenError(PermanentError):
    """The object was overwritten after this event: a newer event covers the new content, so
    this one is stale rather than failed."""


class SourceArchivedError(PermanentError):
    """The object is in an archive storage class (Glacier, Deep Archive): unreadable until
    someone restores it, which this daemon never does on its own."""


class ConfigError(PipelinedError):
    """A setting is missing or invalid; start-up stops with exit code 2."""


# -- the table -----------------------------------------------------------------------------

FailureKind = Literal[
    "source_deleted",
    "source_version_deleted",
    "source_overwritten",
    "source_archived",
    "object_too_large",
    "unsupported",
    "unsupported_compression",
    "missing_decoder",
    "corrupt",
    "over_limit",
    "job_timeout",
    "memory_limit",
    "worker_died",
    "access_denied",
    "throttled",
    "cloud_error",
    "cloud_unreachable",
    "internal",
]


@dataclass(frozen=True)
class Failure:
    error: type[PipelinedError]
    reason: str
    """A str.format template. A permanent failure's reason is recorded and sent to the
    uploader, so it says what is wrong with the file in their words; operator detail (error
    codes, operations) belongs in logs. A retryable one only reaches logs and the DLQ."""

    @property
    def permanent(self) -> bool:
        return issubclass(self.error, PermanentError)


FAILURES: Mapping[FailureKind, Failure] = {
    # What S3 says about the event's object (aws/errors.CLOUD_CODES maps its codes here).
    "source_deleted": Failure(SourceGoneError, "the file was deleted before it could be processed"),
    "source_version_deleted": Failure(
        SourceGoneError, "this version of the file was deleted before it could be processed"
    ),
    "source_overwritten": Failure(
        SourceOverwrittenError,
        "the file was replaced by a newer upload before it could be processed;"
        " the newer upload is processed instead",
    ),
    "source_archived": Failure(
        SourceArchivedError,
        "the file is in an archive storage class (S3 Glacier or Deep Archive) and cannot be"
        " read; restore it first, then upload it again",
    ),
    # The bytes themselves. The processors compose the details (processing/images.py,
    # pdfs.py, sniff.py), as "corrupt JPEG: ...", "unsupported content: ...".
    "object_too_large": Failure(
        LimitExceededError, "object is {size} bytes, over the max_object_bytes limit of {limit}"
    ),
    "unsupported": Failure(UnsupportedContentError, "unsupported content: {detail}"),
    # A codec the file's format allows and this service's decoders lack (a TIFF in WebP or
    # JPEG 2000, a PDF stream in Brotli or JBIG2): not the file's fault, but no retry helps.
    # Which package or build would add it goes to the operator's log, never in the reason.
    "unsupported_compression": Failure(
        UnsupportedContentError, "unsupported {label} compression {compression}"
    ),
    "missing_decoder": Failure(
        UnsupportedContentError, "{label} uses {feature}, which this service cannot decode"
    ),
    "corrupt": Failure(CorruptFileError, "corrupt {label}: {detail}"),
    "over_limit": Failure(LimitExceededError, "{detail}"),  # the detail names limit and value
    # The worker pool (pool.py).
    "job_timeout": Failure(
        LimitExceededError,
        "the file took too long to process: it ran past the job_timeout_s limit of"
        " {limit_s} s; its worker was stopped",
    ),
    "memory_limit": Failure(
        LimitExceededError,
        "the file needs too much memory to process: more than the worker_memory_mb limit of"
        " {limit_mb} MB",
    ),
    # Retryable: perhaps killed from outside. The pipeline records it as failed only after
    # the same file killed its worker several times.
    "worker_died": Failure(
        WorkerDiedError, "processing crashed: worker process died (exit code {exit_code})"
    ),
    # The cloud (aws/errors.py). Retryable: nothing about the file is wrong.
    "access_denied": Failure(
        RetryableError,
        "{operation} was denied ({code}): the worker's role lacks a permission (IAM or KMS)",
    ),
    "throttled": Failure(ThrottledError, "{operation} throttled ({code})"),
    "cloud_error": Failure(RetryableError, "{operation} failed ({code}): {detail}"),
    "cloud_unreachable": Failure(RetryableError, "{operation} failed: {detail}"),
    # Our own bug (see internal_error).
    "internal": Failure(InternalError, "internal error in pipelined: {detail}"),
}
"""Not listed, on purpose: ClaimBusyError and LeaseLostError (consumers coordinating, not a
job failing), ConfigError (start-up), and exceptions outside this tree. An OSError is the
machine failing (a full disk) and is retried as it is; anything else is a bug, which the
handler turns into an InternalError."""


# -- telling our bugs from the file's faults ----------------------------------------------

_PACKAGE = __name__.partition(".")[0]
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def raised_in_pipelined(error: BaseException) -> bool:
    """True if the innermost frame of error's traceback runs pipelined's own code.

    That is where the exception was raised: in our code, it is our bug (a wrong type, an API
    of a library that changed under us), even when the call was about to hand the file's
    bytes to a library. Raised in a library's frames, it is what the library says of the
    bytes. A C function called straight from our code has no frame of its own, so its error
    counts as ours: our code should have guarded that call.
    """
    frame = _innermost_frame(error)
    return frame is not None and _is_ours(frame)


def _innermost_frame(error: BaseException) -> FrameType | None:
    tb = error.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame


def _is_ours(frame: FrameType) -> bool:
    # The module name is what the frame's code was imported as; the file is the backstop for
    # code run under another name (python -m pipelined runs __main__).
    module = frame.f_globals.get("__name__")
    if isinstance(module, str) and (module == _PACKAGE or module.startswith(_PACKAGE + ".")):
        return True
    filename = frame.f_code.co_filename
    if not os.path.isabs(filename):  # "<string>", "<frozen ...>": not a file of ours
        return False
    return os.path.commonpath([_PACKAGE_DIR, os.path.abspath(filename)]) == _PACKAGE_DIR


def internal_error(error: BaseException) -> InternalError:
    """The InternalError for a bug: a one-line summary naming where, and the traceback."""
    frame = _innermost_frame(error)
    where = f" (in {frame.f_globals.get('__name__', '?')}.{frame.f_code.co_name})" if frame else ""
    detail = f"{type(error).__name__}: {error}{where}"
    message = FAILURES["internal"].reason.format(detail=detail)
    return InternalError(message, "".join(traceback.format_exception(error)))
