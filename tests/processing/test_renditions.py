"""Image renditions: contain, cover and fill-down boxes, the attention crop, every format."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from pipelined.processing import ProcessingOptions, ProcessResult
from pipelined.processing import images as images_module
from pipelined.processing.options import Fit, Gravity, OutputFormatName, RenditionSpec

from .builders import artifact_image, run

GREY = (128, 128, 128)


def png_of(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def flat(width: int, height: int) -> bytes:
    return png_of(Image.new("RGB", (width, height), GREY))


def spec(
    name: str,
    width: int,
    height: int,
    fit: Fit = "contain",
    gravity: Gravity = "center",
    fmt: OutputFormatName = "png",
) -> RenditionSpec:
    return RenditionSpec(name, width, height, fit, gravity, fmt, 82)


def render(tmp_path: Path, body: bytes, *renditions: RenditionSpec) -> ProcessResult:
    return run(tmp_path, body, ProcessingOptions(renditions=renditions))


def sizes_of(result: ProcessResult) -> dict[str, tuple[int | None, int | None]]:
    return {artifact.name: (artifact.width, artifact.height) for artifact in result.artifacts}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # landscape, portrait, and smaller than every box: never upscaled
        (
            (800, 400),
            {
                "c.png": (200, 100),
                "cov.png": (200, 150),
                "fd.png": (200, 150),
                "sq.png": (100, 100),
            },
        ),
        (
            (400, 800),
            {
                "c.png": (100, 200),
                "cov.png": (200, 150),
                "fd.png": (200, 150),
                "sq.png": (100, 100),
            },
        ),
        (
            (120, 60),
            # contain: as it is; cover and fill-down: cut to the box's shape at source size
            {"c.png": (120, 60), "cov.png": (80, 60), "fd.png": (80, 60), "sq.png": (60, 60)},
        ),
    ],
)
def test_each_fit_gives_its_size(
    tmp_path: Path, source: tuple[int, int], expected: dict[str, tuple[int, int]]
) -> None:
    result = render(
        tmp_path,
        flat(*source),
        spec("c", 200, 200),
        spec("cov", 200, 150, "cover"),
        spec("fd", 200, 150, "fill-down"),
        spec("sq", 100, 100, "cover", "attention"),
    )
    assert sizes_of(result) == expected
    for artifact in result.artifacts:
        assert artifact_image(result, artifact.name).size == (artifact.width, artifact.height)


def test_a_box_that_only_one_side_overflows_is_cut_to_its_shape_not_upscaled(
    tmp_path: Path,
) -> None:
    # 300x100 against a 200x200 cover: the square window (100x100) is smaller than the box.
    result = render(tmp_path, flat(300, 100), spec("sq", 200, 200, "cover"))
    assert sizes_of(result) == {"sq.png": (100, 100)}


def detail_near_the_right_end() -> Image.Image:
    """A flat grey 600x200 picture with a 100x100 patch of noise 20 px from its right edge."""
    picture = Image.new("RGB", (600, 200), GREY)
    generator = random.Random(12)
    noise = bytes(generator.randrange(256) for _ in range(100 * 100 * 3))
    picture.paste(Image.frombytes("RGB", (100, 100), noise), (480, 50))
    return picture


def test_attention_cuts_the_window_with_the_detail_and_center_does_not(tmp_path: Path) -> None:
    result = render(
        tmp_path,
        png_of(detail_near_the_right_end()),
        spec("attention", 200, 200, "cover", "attention"),
        spec("center", 200, 200, "cover", "center"),
    )
    attention = artifact_image(result, "attention.png").convert("L")
    centre = artifact_image(result, "center.png").convert("L")
    assert attention.size == centre.size == (200, 200)
    # The whole patch (100x100 of 200x200) is inside: a quarter of the pixels are noise.
    noisy = sum(1 for value in attention.tobytes() if abs(value - GREY[0]) > 2)
    assert noisy > 0.2 * 200 * 200
    assert ImageStat.Stat(centre).stddev[0] < 1, "the centre window is flat grey"


FORMATS: list[tuple[OutputFormatName, str, str]] = [
    ("png", "PNG", "image/png"),
    ("jpeg", "JPEG", "image/jpeg"),
    ("webp", "WEBP", "image/webp"),
    ("avif", "AVIF", "image/avif"),
]


def test_every_format_opens_at_its_size(tmp_path: Path) -> None:
    if not images_module.AVIF_SUPPORTED:
        pytest.skip("this Pillow has no AVIF")
    renditions = [spec(f"r-{fmt}", 64, 48, "cover", fmt=fmt) for fmt, _, _ in FORMATS]
    result = render(tmp_path, png_of(detail_near_the_right_end()), *renditions)
    found = {artifact.name: artifact for artifact in result.artifacts}
    for fmt, pillow_format, content_type in FORMATS:
        extension = "jpg" if fmt == "jpeg" else fmt
        artifact = found[f"r-{fmt}.{extension}"]
        assert artifact.content_type == content_type
        with Image.open(artifact.path) as written:
            assert (written.format, written.size) == (pillow_format, (64, 48))


def test_png_is_lossless_and_keeps_alpha(tmp_path: Path) -> None:
    picture = Image.new("RGBA", (40, 40), (10, 200, 30, 0))
    picture.paste((250, 10, 10, 255), (0, 0, 20, 40))
    result = render(tmp_path, png_of(picture), spec("same", 40, 40))
    written = artifact_image(result, "same.png")
    assert written.mode == "RGBA"
    assert written.getpixel((5, 5)) == (250, 10, 10, 255)
    assert written.getpixel((35, 5)) == (10, 200, 30, 0)


def test_all_renditions_come_from_one_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes: list[Any] = []
    real_decode = images_module._decode

    def counting_decode(*args: Any) -> Any:
        decodes.append(args)
        return real_decode(*args)

    monkeypatch.setattr(images_module, "_decode", counting_decode)
    result = render(
        tmp_path,
        png_of(detail_near_the_right_end()),
        spec("a", 100, 100),
        spec("b", 50, 50, "cover", "attention", "webp"),
        spec("c", 300, 60, "fill-down", fmt="jpeg"),
    )
    assert [artifact.name for artifact in result.artifacts] == ["a.png", "b.webp", "c.jpg"]
    assert len(decodes) == 1


def test_a_jpeg_is_decoded_large_enough_for_its_most_demanding_box(tmp_path: Path) -> None:
    # A 128x128 cover of a 1600x400 photo needs the full 400 rows, scaled by 0.32: the
    # decoder may shrink it by 1/2 (800x200) but no further, or the crop would be upscaled.
    photo = Image.new("RGB", (1600, 400), GREY)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    result = render(tmp_path, buffer.getvalue(), spec("sq", 128, 128, "cover"), spec("w", 64, 64))
    assert sizes_of(result) == {"sq.png": (128, 128), "w.png": (64, 16)}


def test_the_default_thumbnails_are_renditions_too(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        flat(800, 400),
        ProcessingOptions(thumbnail_sizes=(100, 2000), thumbnail_format="jpeg"),
    )
    assert sizes_of(result) == {"thumb-100.jpg": (100, 50), "thumb-2000.jpg": (800, 400)}
