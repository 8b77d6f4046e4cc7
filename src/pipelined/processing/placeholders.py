"""Placeholders and a fingerprint of an image, from the picture its renditions are cut from.

A rule asks for them (image.placeholders, docs/processing.md "Rules"); each one it asks for
adds one key to the image's metadata:

- ``thumbhash``, the compact blurred placeholder, is filled by BlurHash (Wolt's
  blurhash-python, the reference C encoder), under the key ``blurhash``: no ThumbHash library
  for Python was fit to depend on (see the docs), and a value is never labelled with an
  algorithm that did not make it;
- ``dominant_color``: ``#rrggbb``, the most common colour of what is visible, or None when
  nothing is (a fully transparent picture);
- ``phash``: the 64-bit DCT perceptual hash of imagehash, as 16 hex digits. Near-duplicates
  (resized, recompressed) differ in a few bits; compare pipelined's hashes with each other.

Flat keys, because metadata values are JSON scalars (results.py): the ledger and the
notification carry them as they are. All three are worked out on one small copy of the
decoded picture (upright, 8-bit sRGB): never a second decode, and a cost that does not grow
with the upload.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import blurhash  # type: ignore[import-untyped]  # (no type information; a small C extension)
from PIL import Image

from pipelined.processing.encoding import fit_long_edge
from pipelined.processing.options import Placeholder
from pipelined.processing.results import JSONScalar

# The metadata key each placeholder a rule asks for is recorded under: the algorithm's name.
METADATA_KEYS: Final[dict[Placeholder, str]] = {
    "thumbhash": "blurhash",
    "dominant_color": "dominant_color",
    "phash": "phash",
}
PLACEHOLDER_KEYS: Final = frozenset(METADATA_KEYS.values())

# The small copy's long edge. BlurHash keeps only the lowest frequencies, imagehash shrinks to
# 32x32 before its DCT, and 4096 pixels are plenty to count colours: more would cost time and
# tell nothing more.
SMALL_EDGE: Final = 64
# BlurHash's components along the long and the short edge: its authors' suggested 4x3, which
# encodes to 28 characters; a portrait picture gets 3x4.
BLURHASH_COMPONENTS: Final = (4, 3)
BLURHASH_MIN_SIDE: Final = 32  # see _blurhash
_GETDATA_DEPRECATED: Final = r"Image\.Image\.getdata is deprecated"
# The fast-octree palette the dominant colour is picked from (see _dominant_color).
DOMINANT_PALETTE_SIZE: Final = 32
# A pixel at least half opaque is visible, and counts towards the dominant colour.
_VISIBLE_FROM_ALPHA: Final = 128


@dataclass(frozen=True)
class _Copies:
    """The small copy, and the same on the background (for the placeholders without alpha)."""

    small: Image.Image  # RGB or RGBA
    flat: Image.Image  # RGB


def placeholder_metadata(
    picture: Image.Image, asked: tuple[Placeholder, ...], background_rgb: tuple[int, int, int]
) -> dict[str, JSONScalar]:
    """The metadata for the placeholders asked for (none: an empty dict, and no work).

    picture is the decoded, upright sRGB picture, RGB or RGBA (any mode is converted). Alpha:
    BlurHash and the perceptual hash have no alpha channel, so they describe the picture as
    shown on background_rgb, as the JPEG renditions are; the dominant colour counts only
    visible pixels, so a logo on a transparent background gets the logo's colour.
    """
    if not asked:
        return {}
    copies = _small_copies(picture, background_rgb)
    return {METADATA_KEYS[name]: _MAKERS[name](copies) for name in asked}


def _small_copies(picture: Image.Image, background_rgb: tuple[int, int, int]) -> _Copies:
    mode = "RGBA" if picture.has_transparency_data else "RGB"
    working = picture if picture.mode == mode else picture.convert(mode)
    # BOX: each small pixel is the mean of the pixels it covers (premultiplied by alpha, as
    # Pillow resizes RGBA), which is what a blurred placeholder and a colour count want.
    small = working.resize(fit_long_edge(working.size, SMALL_EDGE), Image.Resampling.BOX)
    if small.mode == "RGB":
        return _Copies(small, small)
    flat = Image.new("RGB", small.size, background_rgb)
    flat.paste(small, mask=small.getchannel("A"))
    return _Copies(small, flat)


def _blurhash(copies: _Copies) -> str:
    width, height = copies.flat.size
    along_long, along_short = BLURHASH_COMPONENTS
    x, y = (along_long, along_short) if width >= height else (along_short, along_long)
    # BlurHash samples its cosines at pixel edges, not centres, so along a side of n pixels a
    # flat picture still shows a component of 2/n of its colour: a picture one pixel thin
    # would decode to stripes. A BlurHash has no shape of its own (the page decodes it into the
    # image's box), so a thin side is stretched to where that error is small.
    sampled = copies.flat.resize(
        (max(width, BLURHASH_MIN_SIDE), max(height, BLURHASH_MIN_SIDE)), Image.Resampling.BOX
    )
    with warnings.catch_warnings():
        # blurhash-python 1.2.2 reads pixels with Image.getdata, deprecated in Pillow 13 and
        # gone in 14: fine under the pin (pillow<14); test_placeholders.py fails on 14.
        warnings.filterwarnings("ignore", _GETDATA_DEPRECATED, DeprecationWarning)
        # encode() closes the image it is given, which is this function's own.
        return str(blurhash.encode(sampled, x_components=x, y_components=y))


def _dominant_color(copies: _Copies) -> str | None:
    """The colour of the most populous cell of Pillow's fast-octree palette, over visible pixels.

    Fast octree counts pixels in fixed cells of the colour cube, so the winner is the colour
    family most of the picture is: a product on a white sweep is white, a logo its ink. (Median
    cut, Pillow's default, splits the colours into boxes of equal population: its most
    populous box is a near-tie.) With a palette this large every cell is counted as it is;
    smaller ones lump the leftover cells into a few entries and inflate their counts. Ties go
    to the lowest palette index: the same picture, the same answer.
    """
    visible = _visible_pixels(copies.small)
    if visible is None:
        return None
    quantized = visible.quantize(DOMINANT_PALETTE_SIZE, Image.Quantize.FASTOCTREE)
    counts = quantized.histogram()
    index = max(range(len(counts)), key=counts.__getitem__)
    palette = quantized.getpalette("RGB")
    assert palette is not None  # quantize() always makes a palette
    red, green, blue = palette[3 * index : 3 * index + 3]
    return f"#{red:02x}{green:02x}{blue:02x}"


def _visible_pixels(small: Image.Image) -> Image.Image | None:
    """small's pixels at least half opaque, as one RGB row; None if there are none.

    The transparent ones are left out before quantizing, not merely uncounted after: their
    colour is whatever the encoder left there, and would pull a cluster towards it.
    """
    if small.mode == "RGB":
        return small
    data = small.tobytes()
    kept = b"".join(
        data[start : start + 3]
        for start in range(0, len(data), 4)
        if data[start + 3] >= _VISIBLE_FROM_ALPHA
    )
    return Image.frombytes("RGB", (len(kept) // 3, 1), kept) if kept else None


def _phash(copies: _Copies) -> str:
    one_blas_thread()
    # numpy and scipy (under imagehash) load in a worker only when a rule asks for a phash.
    import imagehash  # noqa: PLC0415

    return str(imagehash.phash(copies.flat))


def one_blas_thread() -> None:
    """Keep numpy's and scipy's OpenBLAS to one thread; read when they load, so set first.

    Each OpenBLAS starts a thread per core at import, each reserving some 40 MB of address
    space: on a host with a dozen cores or more that alone passes the worker's memory cap
    (RLIMIT_AS, WORKER_MEMORY_MB), and the import fails. The DCT of a 32x32 picture needs no
    BLAS at all, nor does pytesseract (ocr.py), which imports numpy too. An operator's own
    setting is kept.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


_MAKERS: Final[dict[Placeholder, Callable[[_Copies], JSONScalar]]] = {
    "thumbhash": _blurhash,
    "dominant_color": _dominant_color,
    "phash": _phash,
}
