"""Bringing a decoded picture to an 8-bit mode that block averaging and the encoders take.

Everything here works on strips of rows (images.py hands them over one at a time), so no
full-size copy is ever made. Three kinds of picture need more than Pillow's convert():

- a colour key (PNG tRNS, a GIF's transparent index in a picture without palette): the key
  becomes an alpha channel while the pixels are still the file's own, before any averaging
  blurs them away from the key;
- wide data (16- and 32-bit integers, 32-bit floats): mapped linearly from the picture's own
  range onto 0..255, because neither the type's full range (12-bit data in a 16-bit file comes
  out nearly black) nor Pillow's convert("L") (it clips everything above 255, and every float
  between -1 and 1 becomes black) shows what is there;
- the rest (palettes, bilevel, odd modes): Pillow's convert() to L, RGB or their alpha forms.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from PIL import Image, ImageMath

Conversion = Callable[[Image.Image], Image.Image]

# Modes whose bands Image.reduce() averages as they are (it refuses "1", "P" and "I;16").
_AVERAGEABLE_MODES = frozenset(
    {"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
)
_WIDE_MODES = frozenset({"I", "F"})
# Keys Pillow's convert() turns into alpha itself, by mode: a grey level, or a colour.
_KEYED_TARGETS = {"1": "LA", "L": "LA", "RGB": "RGBA"}
_FLOAT32_MAX = 3.4028234663852886e38
_MID_GREY = 128


def strips(image: Image.Image, rows: int) -> Iterator[tuple[int, Image.Image]]:
    """(top row, strip) for consecutive strips of ``rows`` rows covering the picture."""
    width, height = image.size
    for top in range(0, height, rows):
        yield top, image.crop((0, top, width, min(height, top + rows)))


def working_conversion(image: Image.Image, strip_rows: int) -> Conversion | None:
    """How to convert strips of image to an averageable 8-bit mode; None if it is one."""
    if image.mode in _WIDE_MODES or image.mode.startswith("I;16"):
        return _wide_to_grey(image, strip_rows)
    target = _eight_bit_mode(image)
    if target == image.mode:
        return None
    return lambda strip: strip.convert(target)


def _eight_bit_mode(image: Image.Image) -> str:
    mode = image.mode
    if mode in _KEYED_TARGETS and has_colour_key(image):
        return _KEYED_TARGETS[mode]
    if mode == "1":
        return "L"
    if mode == "P":
        return "RGBA" if "transparency" in image.info else "RGB"
    if mode == "PA":
        return "RGBA"
    if mode in _AVERAGEABLE_MODES:
        return mode
    return "RGBA" if "A" in mode else "RGB"


def has_colour_key(image: Image.Image) -> bool:
    """True if info["transparency"] is a colour key for image's mode (not a palette index)."""
    key = image.info.get("transparency")
    if image.mode == "RGB":
        return isinstance(key, tuple) and len(key) == 3
    return image.mode in {"1", "L", "I", "I;16"} and isinstance(key, int)


# -- wide data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Levels:
    """The linear map from a picture's sample values onto 0..255.

    ``low`` becomes black and ``high`` white; NaN becomes black and infinities the nearest
    end, so no sample can make the arithmetic fail. A picture of one value has no range to
    stretch: it is black if that value is 0, mid grey otherwise, never a division by zero.
    """

    low: float
    high: float

    @property
    def scale(self) -> float:
        return 255.0 / (self.high - self.low) if self.high > self.low else 0.0

    @property
    def offset(self) -> float:
        if self.high > self.low:
            return 0.5 - self.low * self.scale  # + 0.5: convert("L") truncates, this rounds
        return 0.0 if self.low == 0 else float(_MID_GREY)


def levels_of(image: Image.Image, strip_rows: int) -> Levels:
    """The range of image's finite samples, read strip by strip (no full-size copy)."""
    low, high = math.inf, -math.inf
    for _, strip in strips(image, strip_rows):
        strip_low, strip_high = _finite_extrema(strip.convert("F"))
        low, high = min(low, strip_low), max(high, strip_high)
    if low > high:  # not one finite sample: nothing to show
        return Levels(_MID_GREY, _MID_GREY)
    return Levels(low, high)


def _finite_extrema(samples: Image.Image) -> tuple[float, float]:
    """Lowest and highest finite value of an "F" picture; (inf, -inf) if it has none.

    getextrema() skips NaN unless the first sample is one, and counts infinities, which
    scientific data uses for "no data" as often as NaN; so when it sees either, every
    non-finite sample is first made NaN (x + (x - x)) and then pushed past the far end of
    the float range by min()/max(), which pick their second operand over a NaN.
    """
    low, high = cast(tuple[float, float], samples.getextrema())
    if math.isfinite(low) and math.isfinite(high):
        return low, high
    as_nan = ImageMath.lambda_eval(lambda args: args["x"] + (args["x"] - args["x"]), x=samples)
    lows = ImageMath.lambda_eval(lambda args: args["min"](args["x"], _FLOAT32_MAX), x=as_nan)
    highs = ImageMath.lambda_eval(lambda args: args["max"](args["x"], -_FLOAT32_MAX), x=as_nan)
    low = cast(tuple[float, float], lows.getextrema())[0]
    high = cast(tuple[float, float], highs.getextrema())[1]
    if low == _FLOAT32_MAX:
        return math.inf, -math.inf
    return low, high


def _wide_to_grey(image: Image.Image, strip_rows: int) -> Conversion:
    """Strips of 16/32-bit or float samples to "L" by the picture's range; "LA" if keyed."""
    levels = levels_of(image, strip_rows)
    key = cast(int, image.info["transparency"]) if has_colour_key(image) else None

    def convert(strip: Image.Image) -> Image.Image:
        grey = _to_grey(strip, levels)
        if key is None:
            return grey
        return Image.merge("LA", (grey, _opaque_unless(strip, key)))

    return convert


def _to_grey(strip: Image.Image, levels: Levels) -> Image.Image:
    # Clamping first pins NaN to low (max() prefers its second operand over a NaN) and
    # infinities to the ends, so the linear map below only ever sees finite values.
    clamped = ImageMath.lambda_eval(
        lambda args: args["min"](args["max"](args["x"], levels.low), levels.high),
        x=strip.convert("F"),
    )
    scaled = clamped.point(lambda value: value * levels.scale + levels.offset)
    return cast(Image.Image, scaled.convert("L"))


def _opaque_unless(strip: Image.Image, key: int) -> Image.Image:
    """Alpha for a keyed grey strip: 0 where the sample is exactly the key, 255 elsewhere.

    Pillow's own keyed conversion clips 16-bit samples to 8 bits before comparing, which
    makes every sample of 255 and above match a key of 255 and above.
    """
    mask = ImageMath.lambda_eval(lambda args: (args["x"] != key) * 255, x=strip.convert("I"))
    return cast(Image.Image, mask.convert("L"))
