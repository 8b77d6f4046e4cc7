"""Image renditions: from the one decoded picture, the window each rendition cuts, the size it
is resized to, and its encoding (fit contain, cover or fill-down; gravity center or attention).

Nothing here decodes: images.py hands over the upright 8-bit picture, shrunk by the decoder
only as far as long_edge_needed allows, and the size it has at full resolution.
"""

from dataclasses import dataclass

from PIL import Image

from pipelined.processing.encoding import (
    EncodedImage,
    Encoding,
    encode_as,
    fit_long_edge,
    write_encoded,
)
from pipelined.processing.options import Gravity, ProcessingOptions, RenditionSpec
from pipelined.processing.results import Artifact

# Downscale: shrink-on-load and reduce() by an integer factor first, then a bicubic pass over
# the last three-fold or less. Against a full-decode Lanczos resize (bench/images.py) this
# path scores 48-54 dB PSNR before encoding (Lanczos in the last pass: 50-55 dB), and the
# same after WebP q82 to within 0.05 dB (about 39-40 dB, the codec's loss), while the last
# pass costs two thirds of Lanczos's time: 31 ms instead of 46 ms for a 1024 px thumbnail
# from a 12 MP photo decoded at 1/2 scale.
RESAMPLE = Image.Resampling.BICUBIC
REDUCING_GAP = 3.0


def write_renditions(
    picture: Image.Image, upright_size: tuple[int, int], out_dir: str, options: ProcessingOptions
) -> tuple[Artifact, ...]:
    """One artifact per rendition, in the order they were configured.

    Each is cut and resized from the decoded picture rather than from another rendition, so
    small ones do not inherit a larger one's resampling and rounding. Renditions that come out
    the same (same window, size and encoding) are encoded once and written under each name.
    """
    encoded_by_plan: dict[_Plan, EncodedImage] = {}
    artifacts = []
    for rendition in options.image_renditions:
        plan = _plan(picture, upright_size, rendition, options)
        if plan not in encoded_by_plan:
            encoded_by_plan[plan] = encode_as(_rendered(picture, plan), plan.encoding)
        encoded = encoded_by_plan[plan]
        artifacts.append(write_encoded(encoded, out_dir, rendition.name, rendition.format))
    return tuple(artifacts)


@dataclass(frozen=True)
class _Plan:
    """How one rendition is made from the picture: cut the window, resize it, encode it."""

    window: tuple[int, int, int, int]  # left, top, right, bottom, in the picture's pixels
    target: tuple[int, int]
    encoding: Encoding


def _plan(
    picture: Image.Image,
    upright_size: tuple[int, int],
    rendition: RenditionSpec,
    options: ProcessingOptions,
) -> _Plan:
    """The window and size for rendition. Target sizes are worked out from the full-resolution
    size, so they do not depend on how much the decoder shrank the picture."""
    encoding = Encoding(rendition.format, rendition.quality, options.background_rgb, options.effort)
    box = (rendition.width, rendition.height)
    if rendition.fit == "contain":
        return _Plan((0, 0, *picture.size), _fitted(upright_size, rendition), encoding)
    # cover and fill-down: the largest window of the box's aspect ratio, shrunk to the box, or
    # left at the source's resolution when the source is smaller (never upscaled). With
    # nothing ever upscaled the two fits give the same picture.
    window_size = _aspect_window(picture.size, box)
    full_window = _aspect_window(upright_size, box)
    target = box if full_window[0] >= box[0] else full_window
    window = _place_window(picture, window_size, rendition.gravity)
    return _Plan(window, target, encoding)


def _fitted(size: tuple[int, int], rendition: RenditionSpec) -> tuple[int, int]:
    """The size rendition shrinks a source of size to, before any window is cut."""
    if rendition.fit == "contain" and rendition.width == rendition.height:
        # A long_edge rendition (every default thumbnail): the long-edge rule draft() uses too.
        return fit_long_edge(size, rendition.width)
    return _scaled(size, _scale(size, rendition))


def _scale(size: tuple[int, int], rendition: RenditionSpec) -> float:
    """How much rendition shrinks a source of size: contain fits it in the box, cover and
    fill-down fill the box; never above 1."""
    ratios = (rendition.width / size[0], rendition.height / size[1])
    return min(1.0, min(ratios) if rendition.fit == "contain" else max(ratios))


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    if scale >= 1.0:
        return size
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def long_edge_needed(size: tuple[int, int], renditions: tuple[RenditionSpec, ...]) -> int:
    """The long edge, in source pixels, the most demanding rendition needs from the decoder.

    Before decoding, whether the picture will be turned a quarter is not known for sure
    (Pillow turns TIFFs while loading, pillow-heif applies irot itself), and a cover box's
    demand depends on it: both ways are asked, which never gives a rendition too few pixels.
    """
    width, height = size
    return max(
        max(_fitted(oriented, rendition))
        for rendition in renditions
        for oriented in (size, (height, width))
    )


def _aspect_window(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest (width, height) inside size with the box's aspect ratio."""
    width, height = size
    if width * box[1] > height * box[0]:  # wider than the box: keep the full height
        return max(1, min(width, round(height * box[0] / box[1]))), height
    return width, max(1, min(height, round(width * box[1] / box[0])))


def _place_window(
    picture: Image.Image, window_size: tuple[int, int], gravity: Gravity
) -> tuple[int, int, int, int]:
    """Slide the window along the axis where it is shorter than the picture."""
    axis = 0 if window_size[0] < picture.width else 1
    slack = picture.size[axis] - window_size[axis]
    offset = slack // 2
    if slack > 0 and gravity == "attention":
        offset = _most_detailed_offset(picture, window_size, axis)
    left, top = (offset, 0) if axis == 0 else (0, offset)
    return left, top, left + window_size[0], top + window_size[1]


def _most_detailed_offset(picture: Image.Image, window_size: tuple[int, int], axis: int) -> int:
    """The window position, along axis, whose grey histogram has the highest entropy.

    A cheap saliency measure (what libvips's "entropy" crop uses too): flat background has
    one grey level, detail has many. It is worked out on a copy of at most _ATTENTION_EDGE
    pixels a side, at _ATTENTION_STEPS + 1 evenly spaced positions; ties go to the position
    nearest the centre, so a picture with no detail anywhere is cut as with gravity center.
    """
    scale = min(1.0, _ATTENTION_EDGE / max(picture.size))
    small = picture.resize(_scaled(picture.size, scale), Image.Resampling.BOX).convert("L")
    small_window = _scaled(window_size, scale)
    slack = max(0, small.size[axis] - small_window[axis])
    centre = slack / 2

    def detail(offset: int) -> tuple[float, float]:
        left, top = (offset, 0) if axis == 0 else (0, offset)
        crop = small.crop((left, top, left + small_window[0], top + small_window[1]))
        return crop.entropy(), -abs(offset - centre)

    offsets = {round(slack * step / _ATTENTION_STEPS) for step in range(_ATTENTION_STEPS + 1)}
    best = max(sorted(offsets), key=detail)
    full_slack = picture.size[axis] - window_size[axis]
    return min(full_slack, round(best / scale)) if slack else full_slack // 2


# The attention search's resolution: enough to tell a face from a wall, cheap to scan.
_ATTENTION_EDGE = 128
_ATTENTION_STEPS = 16


def _rendered(picture: Image.Image, plan: _Plan) -> Image.Image:
    left, top, right, bottom = plan.window
    if (right - left, bottom - top) == plan.target:
        return picture if plan.window == (0, 0, *picture.size) else picture.crop(plan.window)
    return picture.resize(plan.target, RESAMPLE, box=plan.window, reducing_gap=REDUCING_GAP)
