"""What a processor hands back: the files it wrote and what it learned about the input.

Results cross the process-pool boundary, so they hold plain values only.
"""

from dataclasses import dataclass
from typing import Literal

Kind = Literal["image", "pdf"]
JSONScalar = str | int | float | bool | None


@dataclass(frozen=True)
class Artifact:
    """One file a processor wrote."""

    name: str  # stable; becomes the last segment of the S3 output key, e.g. "thumb-256.webp"
    path: str  # local path of the written file (inside out_dir)
    content_type: str  # e.g. "image/webp", "text/plain; charset=utf-8"
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ProcessResult:
    """Everything produced from one input file."""

    kind: Kind
    artifacts: tuple[Artifact, ...]
    metadata: dict[str, JSONScalar]
