"""Knobs for the CPU-bound processing layer.

The options travel to worker processes with every job, so they are a frozen, picklable
dataclass of plain values.
"""

import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from PIL import features

from pipelined.errors import ConfigError

ThumbnailFormat = Literal["webp", "jpeg", "avif"]
# Renditions may also be PNG (lossless); THUMBNAIL_FORMAT stays with the three lossy formats.
OutputFormatName = Literal["webp", "jpeg", "avif", "png"]
Fit = Literal["contain", "cover", "fill-down"]
Gravity = Literal["center", "attention"]
# What a rule may ask to be added to an image's metadata (placeholders.py).
Placeholder = Literal["thumbhash", "dominant_color", "phash"]

_THUMBNAIL_FORMATS: frozenset[str] = frozenset({"webp", "jpeg", "avif"})
_OUTPUT_FORMATS: frozenset[str] = frozenset({"webp", "jpeg", "avif", "png"})
_PLACEHOLDERS: frozenset[str] = frozenset(get_args(Placeholder))
DEFAULT_QUALITY = 82
# A rendition's name is the start of a file name in the output directory and of an S3 key.
RENDITION_NAME = re.compile(r"[a-z0-9._-]{1,100}")
# Tesseract's language names, as eng, deu or chi_sim: also what the traineddata file is called.
OCR_LANGUAGE = re.compile(r"[a-z_]{3,}")


# The encoders' speed/size trade-offs, measured on 12 MP photos cut to 256 and 1024 px
# (bench/encoders.py, docs/performance.md "Encoder effort"):
# - libwebp's method, 0 (fastest) to 6, Pillow's default 4: method 2 costs a third to a half
#   of 3 and 4 for about 2% more bytes at the same PSNR and SSIM; 0 and 1 add 8-29% bytes.
# - libavif's speed, 0 (slowest) to 10, Pillow's default 6: speed 7 makes the same bytes and
#   quality in about 55-60% of the CPU; 8 halves it again for 7-10% more bytes.
DEFAULT_WEBP_METHOD = 2
DEFAULT_AVIF_SPEED = 7
WEBP_METHODS = range(7)
AVIF_SPEEDS = range(11)


@dataclass(frozen=True)
class EncoderEffort:
    """How hard the lossy encoders work (WEBP_METHOD, AVIF_SPEED); JPEG and PNG have no knob."""

    webp_method: int = DEFAULT_WEBP_METHOD
    avif_speed: int = DEFAULT_AVIF_SPEED

    def __post_init__(self) -> None:
        if self.webp_method not in WEBP_METHODS:
            raise ConfigError(f"webp_method must be 0..6, got {self.webp_method}")
        if self.avif_speed not in AVIF_SPEEDS:
            raise ConfigError(f"avif_speed must be 0..10, got {self.avif_speed}")


@dataclass(frozen=True)
class RenditionSpec:
    """One image output, as the worker makes it: its artifact is "{name}.{extension}".

    The box is width x height. contain fits the picture inside it; cover and fill-down fill it
    and crop what sticks out, where gravity says. Nothing is ever upscaled (images.py).
    """

    name: str
    width: int
    height: int
    fit: Fit = "contain"
    gravity: Gravity = "center"
    format: OutputFormatName = "webp"
    quality: int = DEFAULT_QUALITY


def default_renditions(
    sizes: tuple[int, ...], fmt: OutputFormatName, quality: int
) -> tuple[RenditionSpec, ...]:
    """Today's thumbnails as renditions: "thumb-{size}", long edge size, contain.

    The one place THUMBNAIL_SIZES and THUMBNAIL_FORMAT turn into renditions; the default rule
    (rules.py) is whatever this returns.
    """
    return tuple(
        RenditionSpec(f"thumb-{size}", size, size, "contain", "center", fmt, quality)
        for size in dict.fromkeys(sizes)
    )


@dataclass(frozen=True)
class ProcessingOptions:
    """How thumbnails, previews and limits are applied to every input."""

    thumbnail_sizes: tuple[int, ...] = (256, 1024)  # long edge, never upscaled
    thumbnail_format: ThumbnailFormat = "webp"
    thumbnail_quality: int = DEFAULT_QUALITY
    # A rule's image renditions; None means the default ones, from the three settings above.
    renditions: tuple[RenditionSpec, ...] | None = None
    # A rule's image placeholders, each a key of the image's metadata; none by default.
    placeholders: tuple[Placeholder, ...] = ()
    effort: EncoderEffort = field(default_factory=EncoderEffort)
    # Alpha is flattened onto this colour when the output format has no alpha channel (jpeg).
    background_rgb: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int = 100_000_000  # checked from the header, before decoding
    max_frames: int = 1_000
    max_pages: int = 2_000
    pdf_preview_size: int = 1024  # long edge of the previews
    # None: the default's one preview of page 1, "preview-{size}"; a number: a rule's previews
    # of that many first pages, "preview-{size}-p{n}" (pdfs.preview_stem decides).
    pdf_preview_pages: int | None = None
    # Rendering the previews runs in a child of the worker (see isolation.py); past this, the
    # child is killed and the PDF is processed without previews (metadata preview_error).
    # Keep it under the job time limit, or the job limit strikes first and the text is lost.
    pdf_preview_timeout_s: float = 10.0
    pdf_text: bool = True  # False: no text.txt, and no text extracted
    # Tesseract languages for pages without a text layer ("eng", "deu"); empty: no OCR.
    pdf_ocr_languages: tuple[str, ...] = ()
    # The pool's limit for a whole job (JOB_TIMEOUT_S): OCR takes only what is left of it.
    job_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        # Bad values would otherwise surface much later as a confusing Pillow error on the
        # first upload, so refuse them where the settings are built.
        self._check_output()
        self._check_limits()
        self._check_pdf()

    @property
    def image_renditions(self) -> tuple[RenditionSpec, ...]:
        """What an image becomes: the rule's renditions, or the default thumbnails."""
        if self.renditions is not None:
            return self.renditions
        return default_renditions(
            self.thumbnail_sizes, self.thumbnail_format, self.thumbnail_quality
        )

    def _check_output(self) -> None:
        if not self.thumbnail_sizes or any(size < 1 for size in self.thumbnail_sizes):
            raise ConfigError(f"thumbnail_sizes must be positive, got {self.thumbnail_sizes}")
        if self.thumbnail_format not in _THUMBNAIL_FORMATS:
            raise ConfigError(f"unknown thumbnail_format {self.thumbnail_format!r}")
        if self.thumbnail_format == "avif" and not features.check("avif"):
            raise ConfigError("thumbnail_format 'avif' needs a Pillow built with libavif")
        if not 1 <= self.thumbnail_quality <= 100:
            raise ConfigError(f"thumbnail_quality must be 1..100, got {self.thumbnail_quality}")
        if self.renditions is not None:
            _check_renditions(self.renditions)
        _check_placeholders(self.placeholders)
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

    def _check_pdf(self) -> None:
        if self.pdf_preview_pages is not None and self.pdf_preview_pages < 1:
            raise ConfigError(f"pdf_preview_pages must be positive, got {self.pdf_preview_pages}")
        bad = [name for name in self.pdf_ocr_languages if not OCR_LANGUAGE.fullmatch(name)]
        if bad:
            raise ConfigError(f"pdf_ocr_languages must be Tesseract language names: {bad}")
        if not self.job_timeout_s > 0:
            raise ConfigError(f"job_timeout_s must be positive, got {self.job_timeout_s}")


def _check_placeholders(placeholders: tuple[Placeholder, ...]) -> None:
    unknown = [name for name in placeholders if name not in _PLACEHOLDERS]
    if unknown or len(set(placeholders)) != len(placeholders):
        raise ConfigError(
            f"placeholders must be distinct names of {sorted(_PLACEHOLDERS)}: {placeholders}"
        )


def _check_renditions(renditions: tuple[RenditionSpec, ...]) -> None:
    # rules.py explains these to the operator; this guards callers that build options directly.
    names = [rendition.name for rendition in renditions]
    if not renditions or len(set(names)) != len(names):
        raise ConfigError(f"renditions must be a non-empty list of distinct names: {names}")
    for rendition in renditions:
        if not RENDITION_NAME.fullmatch(rendition.name):
            raise ConfigError(f"rendition name {rendition.name!r} is not [a-z0-9._-]")
        if rendition.width < 1 or rendition.height < 1:
            raise ConfigError(f"rendition {rendition.name!r} needs a positive width and height")
        if rendition.format not in _OUTPUT_FORMATS:
            raise ConfigError(f"rendition {rendition.name!r}: unknown format {rendition.format!r}")
        if rendition.format == "avif" and not features.check("avif"):
            raise ConfigError(f"rendition {rendition.name!r}: avif needs a Pillow with libavif")
        if not 1 <= rendition.quality <= 100:
            raise ConfigError(f"rendition {rendition.name!r}: quality must be 1..100")
