"""The CPU-bound processing layer: thumbnails, PDF text and metadata, run in worker processes.

process_file is the entry point; everything it needs travels as plain, picklable values.
"""

from pipelined.processing.dispatch import process_file
from pipelined.processing.options import ProcessingOptions
from pipelined.processing.results import Artifact, JSONScalar, Kind, ProcessResult
from pipelined.processing.sniff import sniff_kind

__all__ = [
    "Artifact",
    "JSONScalar",
    "Kind",
    "ProcessResult",
    "ProcessingOptions",
    "process_file",
    "sniff_kind",
]
