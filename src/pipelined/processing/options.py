"""Knobs for the CPU-bound processing layer.

The options travel to worker processes with every job, so they are a frozen, picklable
dataclass of plain values.
"""

from dataclasses import dataclass
from typing import Literal

from PIL import features

from pipelined.errors import ConfigError

ThumbnailFormat = Literal["webp", "jpeg", "avif"]

_THUMBNAIL_FORMATS: frozenset[str] = frozenset({"webp", "jpeg", "avif"})


@dataclass(frozen=True)
class ProcessingOptions:
    """How thumbnails, previews and limits are applied to every input."""

    thumbnail_sizes: tuple[int, ...] = (256, 1024)  # long edge, never upscaled
    thumbnail_format: ThumbnailFormat = "webp"
    thumbnail_quality: int = 82
    # Alpha is flattened onto this colour when the output format has no alpha channel (jpeg).
    background_rgb: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int = 100_000_000  # checked from the header, before decoding
    max_frames: int = 1_000
    max_pages: int = 2_000
    pdf_preview_size: int = 1024  # first-page preview, long edge
    # Rendering the preview runs in a child of the worker (see isolation.py); past this, the
    # child is killed and the PDF is processed without a preview (metadata preview_error).
    # Keep it under the job time limit, or the job limit strikes first and the text is lost.
    pdf_preview_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        # Bad values would otherwise surface much later as a confusing Pillow error on the
        # first upload, so refuse them where the settings are built.
        self._check_output()
        self._check_limits()

    def _check_output(self) -> None:
        if not self.thumbnail_sizes or any(size < 1 for size in self.thumbnail_sizes):
            raise ConfigError(f"thumbnail_sizes must be positive, got {self.thumbnail_sizes}")
        if self.thumbnail_format not in _THUMBNAIL_FORMATS:
            raise ConfigError(f"unknown thumbnail_format {self.thumbnail_format!r}")
        if self.thumbnail_format == "avif" and not features.check("avif"):
            raise ConfigError("thumbnail_format 'avif' needs a Pillow built with libavif")
        if not 1 <= self.thumbnail_quality <= 100:
            raise ConfigError(f"thumbnail_quality must be 1..100, got {self.thumbnail_quality}")
        if len(self.background_rgb) != 3 or any(not 0 <= c <= 255 for c in self.background_rgb):
            raise ConfigError(f"background_rgb must be three 0..255 values: {self.background_rgb}")

    def _check_limits(self) -> None:
        for name in ("max_pixels", "max_frames", "max_pages", "pdf_preview_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.pdf_preview_timeout_s > 0:
            raise ConfigError(
                f"pdf_preview_timeout_s must be positive, got {self.pdf_preview_timeout_s}"
            )
