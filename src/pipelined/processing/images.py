"""Thumbnails and metadata for raster images, from a single decode per file.

The steps, in order: open (lazy, reads the header only), enforce the pixel and frame limits,
read EXIF facts, ask the JPEG decoder to shrink while decoding (draft), decode the first
frame, bring it to 8 bits (colour keys to alpha, wide data by its range) while averaging it
down by an integer factor when the thumbnails are much smaller (reduce), apply the
orientation the decoder left pending, convert to sRGB 8-bit RGB(A), then cut and resize once
per rendition straight from that picture, and encode without any metadata. Conversions run
strip by strip into the shrunk picture, so the decoded frame is the only full-size copy ever
held in memory.
"""

import contextlib
import io
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, cast

from PIL import ExifTags, Image, ImageCms, PngImagePlugin, UnidentifiedImageError, features
from pillow_heif import register_heif_opener

from pipelined.errors import (
    CorruptFileError,
    LimitExceededError,
    PermanentError,
    UnsupportedContentError,
)
from pipelined.logs import get_logger
from pipelined.processing import modes, tiff
from pipelined.processing.encoding import fit_long_edge
from pipelined.processing.options import ProcessingOptions
from pipelined.processing.placeholders import placeholder_metadata
from pipelined.processing.renditions import (
    REDUCING_GAP,
    long_edge_needed,
    write_renditions,
)
from pipelined.processing.results import JSONScalar, ProcessResult
from pipelined.processing.sanitize import clean_text, describe_error
from pipelined.processing.sniff import AVIF, PNG, TIFF, Detected

log = get_logger(__name__)

# Embedded HEIF thumbnails are off: draft() could otherwise pick one, and an edited photo's
# embedded thumbnail can still show what the edit removed (a crop, a redaction).
register_heif_opener(thumbnails=False)
# AVIF is decoded by Pillow itself (since Pillow 11.2) when it was built with libavif.
AVIF_SUPPORTED: bool = bool(features.check("avif"))

# What Pillow and its plugins raise for bytes they cannot decode. Only Pillow calls run
# under this net, so a bug in our own code is not silently turned into "corrupt file".
_DECODER_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # includes "image file is truncated" and codec errors
    SyntaxError,  # plugin header parsers
    ValueError,
    EOFError,  # frame tables that end early
    RuntimeError,  # libheif / libavif failures surfaced by their bindings
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    ZeroDivisionError,
)


# Every key an image's metadata may carry (docs/processing.md), besides the placeholders a rule
# asks for (placeholders.PLACEHOLDER_KEYS). Deliberately nothing else from EXIF: no GPS, no
# dates, no serial numbers.
IMAGE_METADATA_KEYS = frozenset(
    {
        "width",
        "height",
        "format",
        "mode",
        "animated",
        "frame_count",
        "has_alpha",
        "orientation",
        "camera_make",
        "camera_model",
    }
)

# Rows converted at a time when a mode conversion is needed: bounds the extra memory.
_STRIP_ROWS = 256
_PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}
# The transpose that makes a picture upright, per EXIF orientation (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_ANIMATION_FORMATS = frozenset({"GIF", "WEBP", "PNG", "AVIF"})
# What Pillow's PNG plugin says of a compressed text, XMP or ICC chunk that inflates past
# MAX_TEXT_CHUNK: a metadata decompression bomb, refused at open.
_TEXT_CHUNK_BOMB = "Decompressed data too large"
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_SRGB_PROFILE = ImageCms.createProfile("sRGB")
# IHDR is the first chunk; its bit depth sits after the signature, chunk header and size.
_PNG_BIT_DEPTH_OFFSET = 24
# libtiff's only words for a codec that failed, whatever the cause ("decoder error -2").
_OPAQUE_DECODER_ERROR = re.compile(r"^decoder error -?\d+$")


@dataclass(frozen=True)
class ImageFacts:
    """What the header and EXIF say, gathered before decoding."""

    format: str
    mode: str
    frame_count: int
    animated: bool
    orientation: int | None
    camera_make: str | None
    camera_model: str | None


@dataclass(frozen=True)
class Decoded:
    """The first frame, ready to resize, and the size everything is scaled from."""

    picture: Image.Image  # upright 8-bit sRGB "RGB" or "RGBA", shrunk when much too large
    size: tuple[int, int]  # the upright picture's size at full resolution


def process_image(
    source_path: str, out_dir: str, options: ProcessingOptions, detected: Detected
) -> ProcessResult:
    """Write one artifact per rendition (options.image_renditions) and describe the image,
    with the placeholders options.placeholders asks for (placeholders.py).

    Every rendition always yields an artifact "{name}.{ext}" (by default "thumb-{size}.{ext}",
    one per THUMBNAIL_SIZES), so the set of output keys depends on the settings only, never
    on the input. Nothing is ever upscaled: a box at or above the image's own size yields the
    image at its own (oriented) size, cut to the box's shape for cover and fill-down,
    re-encoded and stripped.
    """
    if detected is AVIF and not AVIF_SUPPORTED:
        raise UnsupportedContentError("unsupported content: this Pillow build cannot read AVIF")
    with _pillow_pixel_guard(options.max_pixels):
        facts, decoded = _read(source_path, options, detected)
    artifacts = write_renditions(decoded.picture, decoded.size, out_dir, options)
    placeholders = placeholder_metadata(
        decoded.picture, options.placeholders, options.background_rgb
    )
    return ProcessResult("image", artifacts, _metadata(facts, decoded) | placeholders)


def _read(
    source_path: str, options: ProcessingOptions, detected: Detected
) -> tuple[ImageFacts, Decoded]:
    """Facts from the header, then the picture ready for resizing.

    The full-size decoded frame belongs to this function's image object: when it returns,
    only the (usually much smaller) working picture is still referenced, so the full-size
    pixels are freed before any thumbnail is encoded.
    """
    with open(source_path, "rb") as file, _compression_named(file, detected):
        with _permanent_errors(detected.label, options.max_pixels):
            image = _open(file, detected)
        with image:
            facts = _inspect(image, detected, options)
            if detected is PNG:
                _rescale_png_colour_key(image, file)
            # Leaving this block closes the file only; decoded pixels stay usable.
            return facts, _decode(image, options, detected)


@contextlib.contextmanager
def _pillow_pixel_guard(max_pixels: int) -> Iterator[None]:
    """Make Pillow itself refuse anything over max_pixels: at open, per frame, per tile.

    This backs up the explicit header check for sizes only met while decoding (a GIF frame
    larger than its canvas, TIFF tiles). Pillow raises only above twice MAX_IMAGE_PIXELS and
    merely warns above it, so the warning is escalated to make the limit exact. Both are
    process-wide settings: fine, because a worker process handles one file at a time.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # Plugins warn about every oddity they tolerate (a tag past the end of the file,
            # a bad chunk): noise on the worker's stderr, thousands of lines for a hostile
            # file. Filters added later are checked first, so the bomb warning still raises.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


@contextlib.contextmanager
def _permanent_errors(label: str, max_pixels: int) -> Iterator[None]:
    """Turn what Pillow raises for bad bytes into PermanentError subclasses with a reason."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceededError(_pixel_limit_reason(_pixels_in(exc), max_pixels)) from exc
    except UnidentifiedImageError as exc:
        # Pillow's message embeds the file object's repr, a local path: keep it out.
        raise CorruptFileError(f"corrupt {label}: cannot identify image data") from exc
    except ValueError as exc:
        if _TEXT_CHUNK_BOMB in str(exc):
            raise LimitExceededError(
                f"{label} metadata chunk inflates past Pillow's limit of"
                f" {PngImagePlugin.MAX_TEXT_CHUNK} bytes (PngImagePlugin.MAX_TEXT_CHUNK)"
            ) from exc
        raise CorruptFileError(f"corrupt {label}: {describe_error(exc)}") from exc
    except _DECODER_ERRORS as exc:
        raise CorruptFileError(f"corrupt {label}: {describe_error(exc)}") from exc


@contextlib.contextmanager
def _compression_named(file: IO[bytes], detected: Detected) -> Iterator[None]:
    """Turn a TIFF's opaque decoding failure into one that names its compression (tiff.py)."""
    try:
        yield
    except CorruptFileError as exc:
        if detected is not TIFF or not isinstance(exc.__cause__, OSError):
            raise
        explained = _tiff_failure(file, exc.__cause__)
        if explained is None:
            raise
        raise explained from exc.__cause__


def _tiff_failure(file: IO[bytes], cause: OSError) -> PermanentError | None:
    """The failure a TIFF's compression explains, or None to keep the decoder's own words."""
    compression = tiff.read_compression(file)
    if compression is None:
        return None
    if not tiff.decodable(compression):
        # For operators: a Pillow (libtiff) built with this codec would read the file.
        log.warning("tiff_compression_refused", compression=tiff.describe(compression))
        return UnsupportedContentError.of(
            "unsupported_compression", label="TIFF", compression=tiff.describe(compression)
        )
    if _OPAQUE_DECODER_ERROR.match(str(cause)):
        detail = f"cannot decode its image data ({tiff.data_description(compression)})"
        return CorruptFileError.of("corrupt", label="TIFF", detail=detail)
    return None


def _open(file: IO[bytes], detected: Detected) -> Image.Image:
    assert detected.pillow_format is not None
    # Only the sniffed plugin may open the file: no fallback to some other decoder.
    return Image.open(file, formats=[detected.pillow_format])


def _inspect(image: Image.Image, detected: Detected, options: ProcessingOptions) -> ImageFacts:
    """Check the limits and read the facts, all from headers: nothing is decoded yet."""
    _check_pixels(image.size, options.max_pixels)
    with _permanent_errors(detected.label, options.max_pixels):
        frame_count = int(getattr(image, "n_frames", 1))
        exif = image.getexif()
    if frame_count > options.max_frames:
        raise LimitExceededError(
            f"image has {frame_count} frames, over the max_frames limit of {options.max_frames}"
        )
    orientation = _orientation(image, exif)
    return ImageFacts(
        format=str(image.format),
        mode=image.mode,
        frame_count=frame_count,
        animated=_is_animation(image),
        orientation=orientation,
        camera_make=clean_text(exif.get(ExifTags.Base.Make)),
        camera_model=clean_text(exif.get(ExifTags.Base.Model)),
    )


def _is_animation(image: Image.Image) -> bool:
    # Pillow also calls multi-page TIFFs, MPO stereo/depth JPEGs and HEIF bursts "animated";
    # only these formats have frames meant to be played in sequence.
    return image.format in _ANIMATION_FORMATS and bool(getattr(image, "is_animated", False))


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    pixels = size[0] * size[1]
    if pixels > max_pixels:
        raise LimitExceededError(_pixel_limit_reason(pixels, max_pixels))


def _pixel_limit_reason(pixels: int | None, max_pixels: int) -> str:
    if pixels is None:
        return f"image is over the max_pixels limit of {max_pixels}"
    return f"image has {pixels} pixels, over the max_pixels limit of {max_pixels}"


def _pixels_in(bomb: Exception) -> int | None:
    # Pillow's decompression-bomb messages read "Image size (N pixels) exceeds limit ...".
    match = re.search(r"\((\d+) pixels\)", str(bomb))
    return int(match.group(1)) if match else None


def _orientation(image: Image.Image, exif: Image.Exif) -> int | None:
    # pillow-heif applies the HEIF rotation itself and resets EXIF to 1, keeping the original.
    original = image.info.get("original_orientation")
    value = original if original is not None else exif.get(ExifTags.Base.Orientation)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _rescale_png_colour_key(image: Image.Image, file: IO[bytes]) -> None:
    """Express a PNG's tRNS colour key on the scale Pillow decodes the samples to.

    Pillow keeps the key as the file stores it: a 2- or 4-bit grey key stays 0..3 or 0..15
    while the pixels become 0..255, and a 16-bit colour key stays 16-bit while the pixels keep
    only their high bytes. Either way the key would match nothing, or the wrong colour.
    """
    key = image.info.get("transparency")
    if not modes.has_colour_key(image) or image.mode not in ("L", "RGB"):
        return
    position = file.tell()
    file.seek(_PNG_BIT_DEPTH_OFFSET)
    bit_depth = file.read(1)[0]
    file.seek(position)
    if image.mode == "L" and bit_depth < 8:
        image.info["transparency"] = cast(int, key) * 255 // (2**bit_depth - 1)
    elif image.mode == "RGB" and bit_depth == 16:
        # Colours within 1/256 of the key become transparent too: no eye tells them apart.
        image.info["transparency"] = tuple(sample >> 8 for sample in cast(tuple[int, ...], key))


def _decode(image: Image.Image, options: ProcessingOptions, detected: Detected) -> Decoded:
    """Decode the first frame, upright, as 8-bit sRGB "RGB" or "RGBA", no larger than needed.

    The order keeps memory near the size of the decoded frame: shrink first (on load for
    JPEG, then by block averaging, converting modes strip by strip on the way), and only then
    turn and colour-manage, which copy the picture.
    """
    full_size = image.size
    _request_shrink_on_load(image, options)
    shrunk_on_load = image.size != full_size
    with _permanent_errors(detected.label, options.max_pixels):
        image.load()
        pending = _pending_orientation(image)
    if not shrunk_on_load:
        # The decoded picture is the truth: Pillow (13) turns a TIFF upright while loading it,
        # one whose orientation is only in XMP included, and pillow-heif applies irot itself.
        full_size = image.size
    icc_profile = image.info.get("icc_profile")
    picture = _shrink(image, long_edge_needed(full_size, options.image_renditions))
    if pending is not None:
        picture = picture.transpose(_UPRIGHT[pending])
    upright_size = (full_size[1], full_size[0]) if pending in _SWAPS_AXES else full_size
    return Decoded(_to_srgb(picture, icc_profile), upright_size)


def _pending_orientation(image: Image.Image) -> int | None:
    """The EXIF (or XMP) orientation still to apply to the loaded picture, if it turns it.

    Decoders that turn the picture themselves drop the tag (Pillow for TIFF) or set it to 1
    (pillow-heif), so whatever is left here is applied exactly once.
    """
    value = image.getexif().get(ExifTags.Base.Orientation)
    return value if isinstance(value, int) and value in _UPRIGHT else None


def _request_shrink_on_load(image: Image.Image, options: ProcessingOptions) -> None:
    """Let the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding, when that is enough.

    draft() picks the largest reduction whose result still covers the requested box, so the
    biggest thumbnail is never made from fewer pixels than it has. Other formats ignore it.
    """
    largest = fit_long_edge(image.size, long_edge_needed(image.size, options.image_renditions))
    if largest != image.size:
        image.draft(None, largest)


def _shrink(image: Image.Image, long_edge: int) -> Image.Image:
    """The picture in an 8-bit mode reduce() averages, block-averaged by n when the biggest
    thumbnail is n or more times smaller.

    Pillow's resize with a reducing gap does exactly this block averaging (reduce) before
    its final resampling pass; doing it here, once, on the freshly decoded picture means that
    orientation, colour conversion and every thumbnail size work on a picture n² times
    smaller, and the biggest thumbnail comes out the same. Modes that need converting
    (modes.py) are converted strip by strip, so no second full-size copy is made.
    """
    target = fit_long_edge(image.size, long_edge)
    factor = max(1, int(max(image.size) / max(target) / REDUCING_GAP))
    convert = modes.working_conversion(image, _STRIP_ROWS)
    if convert is None and factor == 1:
        return image
    if convert is None and image.mode not in _PREMULTIPLIED:
        return image.reduce(factor)
    return _converted_in_strips(image, convert or _unchanged, factor)


def _converted_in_strips(image: Image.Image, convert: modes.Conversion, factor: int) -> Image.Image:
    width, height = image.size
    size = (-(-width // factor), -(-height // factor))
    rows = factor * max(1, _STRIP_ROWS // factor)  # whole blocks per strip
    result: Image.Image | None = None
    for top, strip in modes.strips(image, rows):
        converted = convert(strip)
        shrunk = converted if factor == 1 else _reduce_strip(converted, factor)
        if result is None:
            result = Image.new(shrunk.mode, size)
        result.paste(shrunk, (0, top // factor))
    assert result is not None  # a picture has at least one row
    return result


def _unchanged(strip: Image.Image) -> Image.Image:
    return strip


def _reduce_strip(strip: Image.Image, factor: int) -> Image.Image:
    # Averaging colour with alpha needs premultiplied values, or the colour of invisible
    # pixels bleeds into the edges of visible ones (Pillow's resize does the same).
    premultiplied = _PREMULTIPLIED.get(strip.mode)
    if premultiplied is None:
        return strip.reduce(factor)
    return strip.convert(premultiplied).reduce(factor).convert(strip.mode)


def _to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """8-bit sRGB "RGB" or "RGBA"; the input itself when it already is (no needless copy)."""
    working = _to_icc_mode(image)
    if icc_profile:
        converted = _apply_icc_profile(working, icc_profile)
        if converted is not None:
            return converted
    target_mode = "RGBA" if working.mode in _ALPHA_MODES else "RGB"
    return working if working.mode == target_mode else working.convert(target_mode)


def _to_icc_mode(image: Image.Image) -> Image.Image:
    """Bring an 8-bit working mode (modes.py) to one ImageCms and the encoders accept."""
    mode = image.mode
    if mode in _ALPHA_MODES:
        return image if mode == "RGBA" else image.convert("RGBA")
    if mode in ("RGB", "CMYK", "L"):
        return image
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise UnsupportedContentError.of("unsupported", detail=f"image mode {mode}") from exc


def _apply_icc_profile(image: Image.Image, icc_profile: bytes) -> Image.Image | None:
    """Convert from the embedded profile to sRGB; None if the profile is unusable.

    A broken or mismatched profile is not worth failing the upload for: the caller falls
    back to interpreting the pixels as sRGB, which is what browsers do too.
    """
    output_mode = "RGBA" if image.mode in _ALPHA_MODES else "RGB"
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        converted = ImageCms.profileToProfile(image, source, _SRGB_PROFILE, outputMode=output_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    return converted


def _metadata(facts: ImageFacts, decoded: Decoded) -> dict[str, JSONScalar]:
    width, height = decoded.size
    metadata: dict[str, JSONScalar] = {
        "width": width,
        "height": height,
        "format": facts.format,
        "mode": facts.mode,
        "animated": facts.animated,
        "frame_count": facts.frame_count,
        "has_alpha": decoded.picture.mode == "RGBA",
        "orientation": facts.orientation,
    }
    # The camera is named only when EXIF names it; nothing else of EXIF is kept.
    if facts.camera_make:
        metadata["camera_make"] = facts.camera_make
    if facts.camera_model:
        metadata["camera_model"] = facts.camera_model
    return metadata
