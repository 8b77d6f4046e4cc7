"""Image thumbnails and metadata, checked on decoded pixels."""

import io
from pathlib import Path
from typing import cast

import pytest
from PIL import ExifTags, Image
from PIL.JpegImagePlugin import JpegImageFile

from pipelined import samples
from pipelined.errors import CorruptFileError, LimitExceededError
from pipelined.processing import ProcessingOptions
from pipelined.processing.images import IMAGE_METADATA_KEYS

from .builders import (
    artifact_image,
    close_to,
    encode,
    jpeg_segments,
    png_header_only,
    riff_chunks,
    run,
    swapped_primaries_icc_profile,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def marker_corner(image: Image.Image) -> str | None:
    """Which corner of the picture holds the samples.MARKER_RGB square, if exactly one."""
    rgb = image.convert("RGB")
    inset = max(1, min(rgb.size) // 40)  # inside the marker, clear of codec ringing
    corners = {
        "top-left": (inset, inset),
        "top-right": (rgb.width - 1 - inset, inset),
        "bottom-left": (inset, rgb.height - 1 - inset),
        "bottom-right": (rgb.width - 1 - inset, rgb.height - 1 - inset),
    }
    marked = [
        name for name, xy in corners.items() if close_to(rgb.getpixel(xy), samples.MARKER_RGB)
    ]
    return marked[0] if len(marked) == 1 else None


# -- sizes ---------------------------------------------------------------------------------


def test_thumbnails_fit_the_long_edge_and_keep_the_aspect_ratio(tmp_path: Path) -> None:
    result = run(tmp_path, samples.photo_jpeg(1600, 1200, orientation=1))

    assert [a.name for a in result.artifacts] == ["thumb-256.webp", "thumb-1024.webp"]
    for artifact, expected in zip(result.artifacts, [(256, 192), (1024, 768)], strict=True):
        assert (artifact.width, artifact.height) == expected
        assert artifact.content_type == "image/webp"
        with Image.open(artifact.path) as written:
            assert written.format == "WEBP"
            assert written.size == expected
    assert (result.metadata["width"], result.metadata["height"]) == (1600, 1200)


def test_sizes_above_the_image_give_the_original_size_under_every_requested_name(
    tmp_path: Path,
) -> None:
    options = ProcessingOptions(thumbnail_sizes=(256, 1024, 2048))
    result = run(tmp_path, samples.photo_jpeg(300, 200, orientation=1), options)

    sizes = {a.name: (a.width, a.height) for a in result.artifacts}
    assert sizes == {
        "thumb-256.webp": (256, 171),
        "thumb-1024.webp": (300, 200),  # never upscaled
        "thumb-2048.webp": (300, 200),
    }
    by_name = {a.name: Path(a.path).read_bytes() for a in result.artifacts}
    # Encoded once: the two original-size thumbnails are the same bytes.
    assert by_name["thumb-1024.webp"] == by_name["thumb-2048.webp"]
    assert artifact_image(result, "thumb-2048.webp").size == (300, 200)


def test_a_size_requested_twice_gives_one_artifact(tmp_path: Path) -> None:
    options = ProcessingOptions(thumbnail_sizes=(64, 64))
    result = run(tmp_path, samples.photo_jpeg(320, 240, orientation=1), options)
    assert [a.name for a in result.artifacts] == ["thumb-64.webp"]


def test_jpeg_is_decoded_at_reduced_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_sizes: list[tuple[int, int]] = []
    original_load = JpegImageFile.load

    def recording_load(self: JpegImageFile) -> object:
        decoded_sizes.append(self.size)
        return original_load(self)

    monkeypatch.setattr(JpegImageFile, "load", recording_load)
    options = ProcessingOptions(thumbnail_sizes=(64, 256))
    result = run(tmp_path, samples.photo_jpeg(1600, 1200, orientation=1), options)

    # 1/4 scale is the smallest that still covers a 256 x 192 thumbnail.
    assert decoded_sizes[0] == (400, 300)
    assert artifact_image(result, "thumb-256.webp").size == (256, 192)


# -- orientation ---------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    body = samples.photo_jpeg(480, 320, orientation=orientation)
    result = run(tmp_path, body, ProcessingOptions(thumbnail_sizes=(240,)))

    thumbnail = artifact_image(result, "thumb-240.webp")
    assert marker_corner(thumbnail) == "top-left"
    upright = (320, 480) if orientation >= 5 else (480, 320)
    assert (result.metadata["width"], result.metadata["height"]) == upright
    assert thumbnail.size == ((160, 240) if orientation >= 5 else (240, 160))
    assert result.metadata["orientation"] == orientation


def test_image_without_exif_reports_no_orientation(tmp_path: Path) -> None:
    with Image.open(io.BytesIO(samples.photo_jpeg(480, 320, orientation=1))) as photo:
        body = encode(photo, "PNG")  # PNG written without the EXIF block
    result = run(tmp_path, body)
    assert marker_corner(artifact_image(result, "thumb-256.webp")) == "top-left"
    assert result.metadata["orientation"] is None


# -- metadata stripping --------------------------------------------------------------------


def photo_with_every_kind_of_metadata() -> bytes:
    with Image.open(io.BytesIO(samples.photo_jpeg(640, 480, gps=True))) as photo:
        return encode(
            photo,
            "JPEG",
            exif=photo.getexif(),
            xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret place</x:xmpmeta>',
            icc_profile=swapped_primaries_icc_profile(),
            comment=b"taken at home",
        )


def test_webp_outputs_carry_no_metadata_chunks(tmp_path: Path) -> None:
    result = run(tmp_path, photo_with_every_kind_of_metadata())
    for artifact in result.artifacts:
        data = Path(artifact.path).read_bytes()
        assert not {b"EXIF", b"XMP ", b"ICCP"} & set(riff_chunks(data))
        assert b"secret place" not in data
        with Image.open(artifact.path) as written:
            assert len(written.getexif()) == 0
            assert not {"exif", "xmp", "icc_profile"} & written.info.keys()


def test_jpeg_outputs_carry_no_app_segments_or_comments(tmp_path: Path) -> None:
    options = ProcessingOptions(thumbnail_format="jpeg")
    result = run(tmp_path, photo_with_every_kind_of_metadata(), options)
    for artifact in result.artifacts:
        data = Path(artifact.path).read_bytes()
        assert artifact.name.endswith(".jpg")
        assert artifact.content_type == "image/jpeg"
        markers = jpeg_segments(data)
        assert 0xE1 not in markers  # APP1: EXIF and XMP
        assert 0xE2 not in markers  # APP2: ICC
        assert 0xFE not in markers  # COM
        with Image.open(artifact.path) as written:
            assert len(written.getexif()) == 0


def test_avif_outputs_carry_no_metadata(tmp_path: Path) -> None:
    options = ProcessingOptions(thumbnail_format="avif", thumbnail_sizes=(128,))
    result = run(tmp_path, photo_with_every_kind_of_metadata(), options)
    (artifact,) = result.artifacts
    assert (artifact.name, artifact.content_type) == ("thumb-128.avif", "image/avif")
    data = Path(artifact.path).read_bytes()
    for marker in (b"Exif", b"xmpmeta", b"prof"):  # EXIF item, XMP packet, ICC colour box
        assert marker not in data
    with Image.open(artifact.path) as written:
        assert written.format == "AVIF"
        assert not {"exif", "xmp", "icc_profile"} & written.info.keys()


def test_metadata_reports_the_camera_but_never_the_location(tmp_path: Path) -> None:
    body = samples.photo_jpeg(640, 480, gps=True, make="Acme\x00", model=" Pocket 3 ")
    result = run(tmp_path, body)

    assert result.metadata["camera_make"] == "Acme"
    assert result.metadata["camera_model"] == "Pocket 3"
    assert result.metadata["format"] == "JPEG"
    assert result.metadata["mode"] == "RGB"
    assert result.metadata["animated"] is False
    assert result.metadata["frame_count"] == 1
    assert result.metadata["has_alpha"] is False
    assert set(result.metadata) == IMAGE_METADATA_KEYS


# -- colour --------------------------------------------------------------------------------


def half_and_half(mode: str, left: tuple[int, ...], right: tuple[int, ...]) -> Image.Image:
    image = Image.new(mode, (64, 32), left)
    image.paste(right, (32, 0, 64, 32))
    return image


def test_alpha_is_kept_in_webp(tmp_path: Path) -> None:
    result = run(tmp_path, samples.transparent_png(800, 600))
    thumbnail = artifact_image(result, "thumb-256.webp")

    assert thumbnail.mode == "RGBA"
    assert thumbnail.getpixel((250, 100))[3] == 0  # type: ignore[index]
    assert thumbnail.getpixel((10, 100))[3] == 255  # type: ignore[index]
    assert abs(thumbnail.getpixel((150, 100))[3] - 128) < 8  # type: ignore[index]
    assert result.metadata["has_alpha"] is True


def test_alpha_is_flattened_onto_the_background_for_jpeg(tmp_path: Path) -> None:
    options = ProcessingOptions(thumbnail_format="jpeg", background_rgb=(10, 200, 30))
    result = run(tmp_path, samples.transparent_png(800, 600), options)
    thumbnail = artifact_image(result, "thumb-256.jpg")

    assert thumbnail.mode == "RGB"
    assert close_to(thumbnail.getpixel((250, 100)), (10, 200, 30))
    assert marker_corner(thumbnail) == "top-left"  # the opaque part is untouched


def test_cmyk_jpeg_becomes_the_right_rgb(tmp_path: Path) -> None:
    cyan, red = (255, 0, 0, 0), (0, 255, 255, 0)
    result = run(tmp_path, encode(half_and_half("CMYK", cyan, red), "JPEG", quality=95))
    thumbnail = artifact_image(result, "thumb-256.webp")

    assert close_to(thumbnail.getpixel((8, 16)), (0, 255, 255))
    assert close_to(thumbnail.getpixel((56, 16)), RED)
    assert result.metadata["mode"] == "CMYK"


def test_embedded_icc_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    # Under the swapped profile, stored red means green and stored green means red.
    picture = half_and_half("RGB", RED, GREEN)
    body = encode(picture, "PNG", icc_profile=swapped_primaries_icc_profile())
    thumbnail = artifact_image(run(tmp_path, body), "thumb-256.webp")

    assert close_to(thumbnail.getpixel((8, 16)), GREEN)
    assert close_to(thumbnail.getpixel((56, 16)), RED)


def test_broken_icc_profile_is_ignored(tmp_path: Path) -> None:
    body = encode(half_and_half("RGB", RED, BLUE), "PNG", icc_profile=b"not a profile")
    thumbnail = artifact_image(run(tmp_path, body), "thumb-256.webp")
    assert close_to(thumbnail.getpixel((8, 16)), RED)


def test_sixteen_bit_grey_ramp_stays_a_ramp(tmp_path: Path) -> None:
    ramp = Image.new("I;16", (256, 16))
    ramp.putdata([x * 257 for x in range(256)] * 16)
    result = run(tmp_path, encode(ramp, "PNG"), ProcessingOptions(thumbnail_sizes=(256,)))
    row = artifact_image(result, "thumb-256.webp").convert("L")

    levels = [cast(int, row.getpixel((x, 8))) for x in range(8, 256, 16)]
    assert result.metadata["mode"] == "I;16"
    assert levels == sorted(levels)  # monotonic, no plateau at white
    assert all(abs(level - x) <= 6 for level, x in zip(levels, range(8, 256, 16), strict=True))


def test_palette_png_with_transparency_keeps_alpha(tmp_path: Path) -> None:
    palette_picture = half_and_half("RGB", RED, BLUE).quantize(colors=4)
    transparent_index = palette_picture.getpixel((56, 16))
    body = encode(palette_picture, "PNG", transparency=transparent_index)
    result = run(tmp_path, body)
    thumbnail = artifact_image(result, "thumb-256.webp")

    assert result.metadata["mode"] == "P"
    assert result.metadata["has_alpha"] is True
    assert close_to(thumbnail.getpixel((8, 16)), (*RED, 255))
    assert thumbnail.getpixel((56, 16))[3] == 0  # type: ignore[index]


# -- large pictures: shrunk before any conversion -------------------------------------------


def big_two_halves(mode: str) -> Image.Image:
    """1600 x 800 in mode, left half red (or dark), right half blue (or light); 256 px
    thumbnails are 6x smaller, so the picture is block-averaged by 2 before conversions."""
    if mode == "1":
        picture = Image.new("1", (1600, 800), 0)
        picture.paste(1, (800, 0, 1600, 800))
        return picture
    if mode == "I;16":
        picture = Image.new("I;16", (1600, 800), 1000)
        picture.paste(Image.new("I;16", (800, 800), 64000), (800, 0))  # a colour would clip
        return picture
    picture = Image.new("RGBA", (1600, 800), (*RED, 255))
    picture.paste((*BLUE, 255), (800, 0, 1600, 800))
    if mode == "P":
        return picture.convert("RGB").quantize(colors=4)
    return picture.convert(mode)


@pytest.mark.parametrize(
    ("mode", "left", "right"),
    [
        ("1", (0, 0, 0), (255, 255, 255)),
        ("L", (76, 76, 76), (29, 29, 29)),
        ("LA", (76, 76, 76), (29, 29, 29)),
        ("P", RED, BLUE),
        ("RGB", RED, BLUE),
        ("RGBA", RED, BLUE),
        ("CMYK", RED, BLUE),
        ("I;16", (4, 4, 4), (249, 249, 249)),
    ],
)
def test_large_pictures_of_every_mode_shrink_to_the_right_colours(
    tmp_path: Path, mode: str, left: tuple[int, int, int], right: tuple[int, int, int]
) -> None:
    pillow_format = "TIFF" if mode == "CMYK" else "PNG"
    body = encode(big_two_halves(mode), pillow_format)
    result = run(tmp_path, body, ProcessingOptions(thumbnail_sizes=(256,)))
    thumbnail = artifact_image(result, "thumb-256.webp").convert("RGB")

    assert thumbnail.size == (256, 128)
    assert result.metadata["mode"] == mode
    assert close_to(thumbnail.getpixel((32, 64)), left)
    assert close_to(thumbnail.getpixel((224, 64)), right)
    # The seam stays where it was: no shift from block averaging at the edge.
    assert close_to(thumbnail.getpixel((124, 64)), left)
    assert close_to(thumbnail.getpixel((132, 64)), right)


def test_alpha_is_averaged_premultiplied_when_shrinking(tmp_path: Path) -> None:
    """Invisible pixels' colour must not bleed into visible ones: an opaque red half next
    to a transparent half whose hidden colour is green stays red up to the seam."""
    picture = Image.new("RGBA", (1600, 800), (*RED, 255))
    picture.paste((*GREEN, 0), (800, 0, 1600, 800))
    result = run(tmp_path, encode(picture, "PNG"), ProcessingOptions(thumbnail_sizes=(256,)))
    thumbnail = artifact_image(result, "thumb-256.webp")

    red, green, _, alpha = cast(tuple[int, int, int, int], thumbnail.getpixel((127, 64)))
    assert alpha > 64
    assert red > 200
    assert green < 40


# -- animation and other formats -----------------------------------------------------------


def animation(pillow_format: str, colours: list[tuple[int, int, int]]) -> bytes:
    frames = [Image.new("RGB", (48, 32), colour) for colour in colours]
    return encode(frames[0], pillow_format, save_all=True, append_images=frames[1:], duration=80)


@pytest.mark.parametrize("pillow_format", ["GIF", "WEBP"])
def test_animated_image_thumbnails_the_first_frame(tmp_path: Path, pillow_format: str) -> None:
    result = run(tmp_path, animation(pillow_format, [RED, GREEN, BLUE]))

    assert close_to(artifact_image(result, "thumb-256.webp").getpixel((24, 16)), RED)
    assert result.metadata["animated"] is True
    assert result.metadata["frame_count"] == 3
    assert result.metadata["format"] == pillow_format


@pytest.mark.parametrize("pillow_format", ["GIF", "WEBP"])
def test_too_many_frames_is_a_limit(tmp_path: Path, pillow_format: str) -> None:
    body = animation(pillow_format, [RED, GREEN, BLUE])
    with pytest.raises(LimitExceededError, match=r"3 frames, over the max_frames limit of 2"):
        run(tmp_path, body, ProcessingOptions(max_frames=2))


def test_multi_page_tiff_is_not_called_animated(tmp_path: Path) -> None:
    result = run(tmp_path, animation("TIFF", [RED, GREEN]))
    assert result.metadata["animated"] is False
    assert result.metadata["frame_count"] == 2
    assert close_to(artifact_image(result, "thumb-256.webp").getpixel((24, 16)), RED)


@pytest.mark.parametrize("pillow_format", ["TIFF", "BMP", "GIF"])
def test_other_still_formats_are_thumbnailed(tmp_path: Path, pillow_format: str) -> None:
    with Image.open(io.BytesIO(samples.photo_jpeg(480, 320, orientation=1))) as p:
        body = encode(p.convert("RGB"), pillow_format)
    result = run(tmp_path, body)
    assert result.metadata["format"] == pillow_format
    assert marker_corner(artifact_image(result, "thumb-256.webp")) == "top-left"


@pytest.mark.parametrize("pillow_format", ["HEIF", "AVIF"])
def test_heif_and_avif_inputs_apply_their_orientation(tmp_path: Path, pillow_format: str) -> None:
    with Image.open(io.BytesIO(samples.photo_jpeg(480, 320, orientation=6))) as p:
        body = encode(p, pillow_format, exif=p.getexif().tobytes(), quality=80)
    result = run(tmp_path, body, ProcessingOptions(thumbnail_sizes=(240,)))

    assert result.metadata["format"] == pillow_format
    assert result.metadata["orientation"] == 6
    assert (result.metadata["width"], result.metadata["height"]) == (320, 480)
    assert marker_corner(artifact_image(result, "thumb-240.webp")) == "top-left"


# -- limits and corruption -----------------------------------------------------------------


def test_decompression_bomb_is_rejected_from_the_header(tmp_path: Path) -> None:
    # No pixel data at all: a decode attempt would fail as corrupt, not as a limit.
    with pytest.raises(LimitExceededError) as raised:
        run(tmp_path, png_header_only(30000, 30000))
    assert str(raised.value) == (
        "image has 900000000 pixels, over the max_pixels limit of 100000000"
    )


def test_max_pixels_is_exact(tmp_path: Path) -> None:
    body = samples.photo_jpeg(150, 100, orientation=1)  # 15000 pixels
    with pytest.raises(LimitExceededError, match="15000 pixels, over the max_pixels limit"):
        run(tmp_path, body, ProcessingOptions(max_pixels=14999))
    assert run(tmp_path, body, ProcessingOptions(max_pixels=15000)).metadata["width"] == 150


def test_pillow_guard_is_restored_after_processing(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    run(tmp_path, samples.photo_jpeg(150, 100), ProcessingOptions(max_pixels=20000))
    assert before == Image.MAX_IMAGE_PIXELS


def test_truncated_jpeg_is_corrupt(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match=r"^corrupt JPEG: image file is truncated"):
        run(tmp_path, samples.corrupt_jpeg())


def test_jpeg_header_alone_is_corrupt_and_the_reason_has_no_path(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError) as raised:
        run(tmp_path, b"\xff\xd8\xff\xe0" + b"\x00" * 64, name="secret-name.jpg")
    assert str(raised.value).startswith("corrupt JPEG:")
    assert "secret-name" not in str(raised.value)
    assert str(tmp_path) not in str(raised.value)


def test_truncated_png_is_corrupt(tmp_path: Path) -> None:
    body = samples.transparent_png(200, 150)
    with pytest.raises(CorruptFileError, match=r"^corrupt PNG: "):
        run(tmp_path, body[: len(body) // 2])


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_exif_tags_unreadable_by_pillow_do_not_fail_the_image(tmp_path: Path) -> None:
    body = samples.photo_jpeg(320, 240, orientation=1)
    # Point the first IFD past the end of the EXIF block; the pixels are intact.
    damaged = body.replace(
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08", b"Exif\x00\x00MM\x00*\xff\xff\x00\x00", 1
    )
    assert damaged != body
    result = run(tmp_path, damaged)
    assert result.metadata["orientation"] is None
    assert marker_corner(artifact_image(result, "thumb-256.webp")) == "top-left"


def test_exif_make_as_undecodable_bytes_is_coerced(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = b"\xff\xfeAcme"
    body = encode(Image.new("RGB", (32, 32), BLUE), "JPEG", exif=exif)
    make = run(tmp_path, body).metadata.get("camera_make")
    assert make is None or (isinstance(make, str) and "Acme" in make)
