"""The single entry point worker processes run: sniff the bytes, then image or PDF."""

import os

from pipelined.errors import UnsupportedContentError
from pipelined.processing.images import process_image
from pipelined.processing.options import ProcessingOptions
from pipelined.processing.pdfs import process_pdf
from pipelined.processing.results import ProcessResult
from pipelined.processing.sniff import HEAD_SIZE, describe_unknown, sniff


def process_file(source_path: str, out_dir: str, options: ProcessingOptions) -> ProcessResult:
    """Process one downloaded upload, writing artifacts into out_dir.

    The type comes from the content alone; the name the uploader chose is never consulted.
    Bad input raises UnsupportedContentError, CorruptFileError or LimitExceededError with a
    reason fit for the uploader; anything else escaping is a bug (or the machine failing,
    e.g. an unreadable source_path). Meant to run in a worker process: it is a top-level
    function, so it pickles by name, and it adjusts process-wide Pillow settings.
    """
    with open(source_path, "rb") as file:
        head = file.read(HEAD_SIZE)
    detected = sniff(head)
    if detected is None:
        raise UnsupportedContentError(describe_unknown(head))
    os.makedirs(out_dir, exist_ok=True)
    if detected.kind == "pdf":
        return process_pdf(source_path, out_dir, options)
    return process_image(source_path, out_dir, options, detected)
