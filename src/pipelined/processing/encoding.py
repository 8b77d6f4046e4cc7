"""Writing thumbnails and previews: one place that knows the output formats."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from pipelined.processing.options import EncoderEffort, OutputFormatName, ProcessingOptions
from pipelined.processing.results import Artifact


@dataclass(frozen=True)
class OutputFormat:
    pillow_format: str
    extension: str
    content_type: str
    supports_alpha: bool


OUTPUT_FORMATS: dict[OutputFormatName, OutputFormat] = {
    "webp": OutputFormat("WEBP", "webp", "image/webp", supports_alpha=True),
    "jpeg": OutputFormat("JPEG", "jpg", "image/jpeg", supports_alpha=False),
    "avif": OutputFormat("AVIF", "avif", "image/avif", supports_alpha=True),
    "png": OutputFormat("PNG", "png", "image/png", supports_alpha=True),  # lossless
}


@dataclass(frozen=True)
class Encoding:
    """How one output is written: the format, its quality (ignored by PNG), the background, and
    the encoder's effort."""

    format: OutputFormatName
    quality: int
    background_rgb: tuple[int, int, int]
    effort: EncoderEffort = field(default_factory=EncoderEffort)

    @classmethod
    def of_thumbnails(cls, options: ProcessingOptions) -> Encoding:
        """The THUMBNAIL_FORMAT encoding, which PDF previews use."""
        return cls(
            options.thumbnail_format,
            options.thumbnail_quality,
            options.background_rgb,
            options.effort,
        )


def artifact_name(stem: str, fmt: OutputFormatName) -> str:
    """The one rule for naming an image artifact: "{stem}.{extension}", e.g. "w400.webp"."""
    return f"{stem}.{OUTPUT_FORMATS[fmt].extension}"


def fit_long_edge(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    """Scale (width, height) so the longer side is long_edge, keeping the aspect ratio.

    Never upscales: a long_edge at or above the current one returns the size unchanged.
    """
    width, height = size
    current = max(width, height)
    if long_edge >= current:
        return size
    scale = long_edge / current
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_for_output(image: Image.Image, encoding: Encoding) -> Image.Image:
    """Return a copy ready to save: RGB or RGBA, alpha flattened if the format lacks it."""
    if image.mode in ("RGB", "RGBA"):
        image = image.copy()
    else:
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    if image.mode == "RGBA" and not OUTPUT_FORMATS[encoding.format].supports_alpha:
        flat = Image.new("RGB", image.size, encoding.background_rgb)
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    # resize()/convert() copy the source's info dict (EXIF, XMP, ICC, comments). Saving
    # from a clean dict guarantees none of it reaches the output, whatever a plugin's
    # defaults are in this or a later Pillow.
    image.info = {}
    return image


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    width: int
    height: int


def encode_as(image: Image.Image, encoding: Encoding) -> EncodedImage:
    """Encode image as encoding says, with no metadata at all."""
    fmt = OUTPUT_FORMATS[encoding.format]
    clean = prepare_for_output(image, encoding)
    buffer = io.BytesIO()
    clean.save(buffer, format=fmt.pillow_format, **_save_parameters(fmt, encoding))
    return EncodedImage(buffer.getvalue(), clean.width, clean.height)


def write_encoded(
    encoded: EncodedImage, out_dir: str, stem: str, fmt_name: OutputFormatName
) -> Artifact:
    """Write bytes encoded as fmt_name under artifact_name(stem, fmt_name) and describe it."""
    name = artifact_name(stem, fmt_name)
    path = os.path.join(out_dir, name)
    with open(path, "wb") as file:
        file.write(encoded.data)
    content_type = OUTPUT_FORMATS[fmt_name].content_type
    return Artifact(name, path, content_type, width=encoded.width, height=encoded.height)


def _save_parameters(fmt: OutputFormat, encoding: Encoding) -> dict[str, Any]:
    if fmt.pillow_format == "PNG":
        # Lossless: quality means nothing. Level 6 is zlib's usual size/speed balance.
        return {"compress_level": 6}
    parameters: dict[str, Any] = {"quality": encoding.quality}
    if fmt.pillow_format == "JPEG":
        # Thumbnails are small; Huffman optimisation is cheap and saves a few percent.
        parameters["optimize"] = True
    elif fmt.pillow_format == "WEBP":
        parameters["method"] = encoding.effort.webp_method
    elif fmt.pillow_format == "AVIF":
        parameters["speed"] = encoding.effort.avif_speed
    return parameters
