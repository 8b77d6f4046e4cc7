"""Image placeholders and the perceptual hash: their formats, their values, alpha, input modes,
and that they run in a real worker under the default memory cap."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

import blurhash  # type: ignore[import-untyped]
import pytest
from PIL import Image

from pipelined import samples
from pipelined.errors import ConfigError
from pipelined.pool import WorkerPool
from pipelined.processing import ProcessingOptions, ProcessResult, process_file
from pipelined.processing.images import IMAGE_METADATA_KEYS
from pipelined.processing.options import Placeholder
from pipelined.processing.placeholders import PLACEHOLDER_KEYS, placeholder_metadata
from pipelined.settings import Settings
from tests.processing.builders import encode, run

ALL: tuple[Placeholder, ...] = ("thumbhash", "dominant_color", "phash")
WITH_ALL = ProcessingOptions(thumbnail_sizes=(64,), placeholders=ALL)
HEX_COLOUR = re.compile(r"#[0-9a-f]{6}")
PHASH = re.compile(r"[0-9a-f]{16}")  # 64 bits
# BlurHash's base 83 alphabet; 4x3 components make 6 + 2 * 11 characters.
BLURHASH = re.compile(r"[0-9A-Za-z#$%*+,\-.:;=?@\[\]^_{|}~]{28}")
# Of 64 bits, unrelated pictures differ in about half; the same picture resized and
# recompressed in a few.
NEAR_DUPLICATE_BITS = 8
DIFFERENT_BITS = 20


def placeholders_of(
    tmp_path: Path, body: bytes, background_rgb: tuple[int, int, int] = (255, 255, 255)
) -> dict[str, object]:
    """The placeholders of body, processed as an upload with all three asked for."""
    result = run(folder(tmp_path), body, replace(WITH_ALL, background_rgb=background_rgb))
    return {key: result.metadata[key] for key in PLACEHOLDER_KEYS}


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def bits_apart(first: object, second: object) -> int:
    assert isinstance(first, str)
    assert isinstance(second, str)
    return (int(first, 16) ^ int(second, 16)).bit_count()


def blurred(placeholder: object, xy: tuple[int, int]) -> tuple[int, ...]:
    """A pixel of the picture a page would show for the BlurHash, 32 px a side."""
    assert isinstance(placeholder, str)
    picture: Image.Image = blurhash.decode(placeholder, 32, 32)
    colour = picture.getpixel(xy)
    assert isinstance(colour, tuple)
    return colour


def rgb(colour: object) -> tuple[int, int, int]:
    assert isinstance(colour, str)
    assert HEX_COLOUR.fullmatch(colour), colour
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def reddish(colour: tuple[int, ...]) -> bool:
    red, green, blue = colour[:3]
    return red > 150 and red > green + 80 and red > blue + 80


def recompressed(body: bytes, pillow_format: str, scale: float, quality: int) -> bytes:
    with Image.open(io.BytesIO(body)) as picture:
        size = (round(picture.width * scale), round(picture.height * scale))
        return encode(
            picture.resize(size, Image.Resampling.LANCZOS), pillow_format, quality=quality
        )


# -- what a rule asks for, and nothing else -----------------------------------------------


def test_each_placeholder_is_in_the_metadata_in_its_format(tmp_path: Path) -> None:
    result = run(tmp_path, samples.photo_jpeg(800, 600, orientation=1), WITH_ALL)
    assert set(result.metadata) == IMAGE_METADATA_KEYS | PLACEHOLDER_KEYS
    placeholder = result.metadata["blurhash"]
    assert isinstance(placeholder, str)
    assert BLURHASH.fullmatch(placeholder), placeholder
    assert blurhash.is_valid_blurhash(placeholder)
    assert HEX_COLOUR.fullmatch(str(result.metadata["dominant_color"]))
    assert PHASH.fullmatch(str(result.metadata["phash"]))


def test_without_placeholders_none_is_added_and_only_those_asked_are(tmp_path: Path) -> None:
    body = samples.photo_jpeg(400, 300, orientation=1)
    plain = run(folder(tmp_path / "plain"), body, ProcessingOptions(thumbnail_sizes=(64,)))
    assert not PLACEHOLDER_KEYS & set(plain.metadata)
    only_phash = ProcessingOptions(thumbnail_sizes=(64,), placeholders=("phash",))
    assert PLACEHOLDER_KEYS & set(run(folder(tmp_path / "one"), body, only_phash).metadata) == {
        "phash"
    }
    assert placeholder_metadata(Image.new("RGB", (8, 8)), (), (255, 255, 255)) == {}


def test_the_same_image_gives_the_same_values(tmp_path: Path) -> None:
    body = samples.transparent_png(320, 240)
    first = placeholders_of(tmp_path / "first", body)
    assert placeholders_of(tmp_path / "second", body) == first


def test_the_options_refuse_unknown_or_repeated_placeholders() -> None:
    with pytest.raises(ConfigError, match="placeholders must be distinct names"):
        ProcessingOptions(placeholders=("phash", "phash"))
    with pytest.raises(ConfigError, match="placeholders must be distinct names"):
        ProcessingOptions(placeholders=("blurhash",))  # type: ignore[arg-type]


# -- values that mean something -----------------------------------------------------------


def test_a_mostly_red_image_is_reddish_in_its_colour_and_its_placeholder(tmp_path: Path) -> None:
    picture = Image.new("RGB", (300, 200), (210, 25, 35))
    picture.paste((30, 60, 200), (0, 0, 60, 60))  # a blue corner: a fifth of the height
    found = placeholders_of(tmp_path, encode(picture, "JPEG", quality=90))
    assert reddish(rgb(found["dominant_color"]))
    assert reddish(blurred(found["blurhash"], (24, 24)))


def test_a_white_background_outweighs_the_object_on_it(tmp_path: Path) -> None:
    picture = Image.new("RGB", (400, 300), (245, 245, 245))
    picture.paste((200, 30, 40), (100, 75, 300, 225))  # a quarter of the picture
    red, green, blue = rgb(placeholders_of(tmp_path, encode(picture, "PNG"))["dominant_color"])
    assert min(red, green, blue) > 220


def test_near_duplicates_have_close_phashes_and_different_images_do_not(tmp_path: Path) -> None:
    original = samples.photo_jpeg(1200, 900, orientation=1)
    copies = {
        "half-size jpeg q40": recompressed(original, "JPEG", 0.5, 40),
        "webp q30": recompressed(original, "WEBP", 1.0, 30),
        "a third, png": recompressed(original, "PNG", 0.33, 0),
    }
    mandelbrot = Image.effect_mandelbrot((1200, 900), (-2.0, -1.2, 1.0, 1.2), 100).convert("RGB")
    different = {
        "mirrored": encode(
            Image.open(io.BytesIO(original)).transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            "JPEG",
            quality=90,
        ),
        "another picture": encode(mandelbrot, "JPEG", quality=90),
    }
    phash = placeholders_of(tmp_path / "original", original)["phash"]
    for name, body in copies.items():
        found = placeholders_of(tmp_path / name, body)["phash"]
        assert bits_apart(phash, found) <= NEAR_DUPLICATE_BITS, name
    for name, body in different.items():
        found = placeholders_of(tmp_path / name, body)["phash"]
        assert bits_apart(phash, found) >= DIFFERENT_BITS, name


# -- alpha --------------------------------------------------------------------------------


def logo(hidden_rgb: tuple[int, int, int]) -> bytes:
    """A green square on a transparent field whose invisible pixels hold hidden_rgb."""
    picture = Image.new("RGBA", (200, 200), (*hidden_rgb, 0))
    picture.paste((20, 150, 50, 255), (60, 60, 140, 140))
    return encode(picture, "PNG")


def test_transparent_pixels_count_for_nothing_but_the_background(tmp_path: Path) -> None:
    on_red = placeholders_of(tmp_path / "red", logo((255, 0, 0)))
    on_blue = placeholders_of(tmp_path / "blue", logo((0, 0, 255)))
    # Whatever colour the encoder left under alpha 0, nothing changes.
    assert on_red == on_blue
    red, green, blue = rgb(on_red["dominant_color"])
    assert green > max(red, blue) + 80  # the logo's colour, not its field's
    # BlurHash has no alpha: the field is shown on the background, white by default.
    assert min(blurred(on_red["blurhash"], (0, 0))) > 200
    on_black = placeholders_of(tmp_path / "black", logo((255, 0, 0)), background_rgb=(0, 0, 0))
    assert max(blurred(on_black["blurhash"], (0, 0))) < 60
    assert on_black["dominant_color"] == on_red["dominant_color"]


def test_a_fully_transparent_image_has_no_dominant_colour(tmp_path: Path) -> None:
    found = placeholders_of(tmp_path, encode(Image.new("RGBA", (64, 48), (9, 9, 9, 0)), "PNG"))
    assert found["dominant_color"] is None
    assert blurhash.is_valid_blurhash(found["blurhash"])
    assert PHASH.fullmatch(str(found["phash"]))


@pytest.mark.parametrize("size", [(1, 1), (2000, 1), (1, 2000), (3, 2)])
def test_a_tiny_or_one_pixel_thin_picture_gets_a_flat_placeholder(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    found = placeholders_of(tmp_path, encode(Image.new("RGB", size, (10, 200, 30)), "PNG"))
    assert rgb(found["dominant_color"]) == (10, 200, 30)
    assert isinstance(found["blurhash"], str)
    shown = blurhash.decode(found["blurhash"], 16, 16)
    # A flat colour decodes flat, give or take BlurHash's own quantization: no stripes.
    for (low, high), channel in zip(shown.getextrema(), (10, 200, 30), strict=True):
        assert channel - 16 <= low <= high <= channel + 16, shown.getextrema()


# -- input modes --------------------------------------------------------------------------


def test_grey_palette_and_cmyk_inputs(tmp_path: Path) -> None:
    grey = Image.linear_gradient("L").resize((256, 192))
    grey.paste(90, (0, 0, 256, 128))  # two thirds one grey
    red = Image.new("RGB", (240, 180), (200, 30, 40))
    red.paste((250, 250, 250), (0, 0, 40, 40))
    cmyk = Image.new("CMYK", (240, 180), (10, 220, 200, 20))
    bodies = {
        "grey": encode(grey, "PNG"),
        "palette": encode(red.quantize(16), "PNG"),
        "palette gif": encode(red.convert("P"), "GIF"),
        "cmyk jpeg": encode(cmyk, "JPEG", quality=90),
    }
    found = {name: placeholders_of(tmp_path / name, body) for name, body in bodies.items()}
    for name, values in found.items():
        assert blurhash.is_valid_blurhash(values["blurhash"]), name
        assert PHASH.fullmatch(str(values["phash"])), name
    red_level, green_level, blue_level = rgb(found["grey"]["dominant_color"])
    assert red_level == green_level == blue_level
    assert abs(red_level - 90) <= 8
    for name in ("palette", "palette gif", "cmyk jpeg"):
        assert reddish(rgb(found[name]["dominant_color"])), name


# -- in a real worker ---------------------------------------------------------------------


async def test_a_worker_under_the_default_memory_cap_makes_all_three(tmp_path: Path) -> None:
    """numpy and scipy load in the worker, under RLIMIT_AS, only when a phash is asked for."""
    source = tmp_path / "photo.jpg"
    source.write_bytes(samples.photo_jpeg(1600, 1200, orientation=1))
    memory_mb = Settings.model_fields["worker_memory_mb"].default
    pool = WorkerPool(workers=1, timeout_s=60, memory_mb=memory_mb, max_tasks=10)
    try:
        result: ProcessResult = await pool.run(
            process_file, str(source), str(tmp_path / "out"), WITH_ALL
        )
    finally:
        pool.close()
    in_process = run(folder(tmp_path / "here"), source.read_bytes(), WITH_ALL)
    assert {key: result.metadata[key] for key in PLACEHOLDER_KEYS} == {
        key: in_process.metadata[key] for key in PLACEHOLDER_KEYS
    }
