"""The single entry point worker processes run: sniff the bytes, then image or PDF."""

import os

from pipelined.errors import CorruptFileError, PipelinedError, UnsupportedContentError
from pipelined.processing.images import process_image
from pipelined.processing.options import ProcessingOptions
from pipelined.processing.pdfs import process_pdf
from pipelined.processing.results import ProcessResult
from pipelined.processing.sanitize import describe_error
from pipelined.processing.sniff import HEAD_SIZE, describe_unknown, sniff


def process_file(source_path: str, out_dir: str, options: ProcessingOptions) -> ProcessResult:
    """Process one downloaded upload, writing artifacts into out_dir.

    The type comes from the content alone; the name the uploader chose is never consulted.
    Bad input raises UnsupportedContentError, CorruptFileError or LimitExceededError with a
    reason fit for the uploader. MemoryError and OSError (the machine failing: a full disk,
    an unreadable source_path) escape as they are, for the pool and the pipeline to handle.
    Anything else a library raises on these bytes becomes a CorruptFileError naming the
    exception: the same bytes would raise it again on every retry, so recording the upload
    as failed, with the exception in the reason, beats retrying it into the dead-letter
    queue with no outcome at all. Meant to run in a worker process: it is a top-level
    function, so it pickles by name, and it adjusts process-wide Pillow settings.
    """
    with open(source_path, "rb") as file:
        head = file.read(HEAD_SIZE)
    detected = sniff(head)
    if detected is None:
        raise UnsupportedContentError(describe_unknown(head))
    os.makedirs(out_dir, exist_ok=True)
    try:
        if detected.kind == "pdf":
            return process_pdf(source_path, out_dir, options)
        return process_image(source_path, out_dir, options, detected)
    except (PipelinedError, MemoryError, OSError):
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {describe_error(exc)}"
        raise CorruptFileError(f"{detected.label} could not be processed ({reason})") from exc
