"""The single entry point worker processes run: sniff the bytes, then image or PDF."""

import os

from pipelined.errors import (
    CorruptFileError,
    PermanentError,
    PipelinedError,
    UnsupportedContentError,
    internal_error,
    raised_in_pipelined,
)
from pipelined.processing.images import process_image
from pipelined.processing.options import ProcessingOptions
from pipelined.processing.pdfs import process_pdf
from pipelined.processing.results import ProcessResult
from pipelined.processing.sanitize import describe_error
from pipelined.processing.sniff import HEAD_SIZE, Detected, describe_unknown, sniff


def process_file(source_path: str, out_dir: str, options: ProcessingOptions) -> ProcessResult:
    """Process one downloaded upload, writing artifacts into out_dir.

    The type comes from the content alone; the name the uploader chose is never consulted.
    Bad input raises UnsupportedContentError, CorruptFileError or LimitExceededError with a
    reason fit for the uploader. MemoryError and OSError (the machine failing: a full disk,
    an unreadable source_path) escape as they are, for the pool and the pipeline to handle.
    A bug in pipelined's own code raises InternalError, which is retried: recorded as the
    file's failure, a regression would fail every upload with nothing left to replay.
    Anything else a library raises on these bytes becomes a CorruptFileError naming the
    exception: the same bytes would raise it again on every retry, so recording the upload
    as failed, with the exception in the reason, beats retrying it into the dead-letter
    queue with no outcome at all. Meant to run in a worker process: it is a top-level
    function, so it pickles by name, and it adjusts process-wide Pillow settings.
    """
    detected: Detected | None = None
    try:
        detected = _sniffed(source_path)
        os.makedirs(out_dir, exist_ok=True)
        if detected.kind == "pdf":
            return process_pdf(source_path, out_dir, options)
        return process_image(source_path, out_dir, options, detected)
    except (MemoryError, OSError):
        raise
    except Exception as exc:
        failure = _failure_for(exc, detected.label if detected else "file")
        if failure is exc:
            raise
        raise failure from exc


def _sniffed(source_path: str) -> Detected:
    with open(source_path, "rb") as file:
        head = file.read(HEAD_SIZE)
    detected = sniff(head)
    if detected is None:
        raise UnsupportedContentError(describe_unknown(head))
    return detected


def _failure_for(exc: Exception, label: str) -> Exception:
    """What process_file raises for exc: exc itself, an InternalError or a CorruptFileError."""
    if isinstance(exc, PermanentError):
        # The processors' nets catch broad types around library calls (pypdf raises
        # TypeError and AttributeError on bad bytes), so our own bug inside a net arrives
        # as a permanent failure: its cause tells.
        cause = exc.__cause__
        return internal_error(cause) if cause is not None and _is_our_bug(cause) else exc
    if isinstance(exc, PipelinedError):
        return exc
    if _is_our_bug(exc):
        return internal_error(exc)
    reason = f"could not be decoded ({type(exc).__name__}: {describe_error(exc)})"
    return CorruptFileError.of("corrupt", label=label, detail=reason)


def _is_our_bug(exc: BaseException) -> bool:
    # Running out of stack or memory strikes whichever frame runs at the time, often ours,
    # and says nothing about where the bug is: deep nesting in a file is the file's fault.
    # Our own errors are raised in our code on purpose.
    if isinstance(exc, RecursionError | MemoryError | PipelinedError):
        return False
    return raised_in_pipelined(exc)
