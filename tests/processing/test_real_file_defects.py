"""Defects found by running pipelined over real files from public test suites (issue 12).

Each test builds, with Pillow or by hand, a file like the one that showed the defect:
orientation tags in every format that carries one, tRNS colour keys at every bit depth,
float and wide-integer TIFFs, TIFF compressions this build lacks, and PDFs whose streams need
a codec. Pictures are checked on decoded pixels, reasons on their exact words.
"""

import io
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from PIL import ExifTags, Image, PngImagePlugin
from pypdf import PdfReader, PdfWriter
from pypdf.errors import DependencyError
from pypdf.filters import BrotliDecode
from structlog.testing import capture_logs

from pipelined.errors import CorruptFileError, PermanentError, UnsupportedContentError
from pipelined.processing import ProcessingOptions, ProcessResult

from .builders import (
    artifact_image,
    close_to,
    encode,
    gif_without_colour_table,
    pdf_text,
    pdf_with_pages,
    pdf_with_xref_stream,
    png_from_samples,
    run,
    tiff_entries,
    tiff_with_compression_tag,
)

RED, GREEN, GREY = (220, 20, 20), (20, 200, 20), (128, 128, 128)
# What a reason shown to an uploader must never carry: advice for whoever installs the service.
OPERATOR_TEXT = re.compile(r"pip install|pypdf\[|deprecated|removed in|jbig2dec|binary", re.I)


def reason_of(call: Callable[[], object]) -> str:
    with pytest.raises(PermanentError) as raised:
        call()
    reason = str(raised.value)
    assert not OPERATOR_TEXT.search(reason), reason
    return reason


# -- orientation: every format, every orientation ------------------------------------------

# The upright picture: landscape 3:2, red top-left and green top-right corners on grey. The
# two corners tell all eight orientations apart, the aspect ratio tells a squashed picture.
UPRIGHT_SIZE = (120, 80)
CORNER = 20
# What a viewer does to the stored pixels for each orientation, undone to make them.
STORED_FROM_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright_picture() -> Image.Image:
    picture = Image.new("RGB", UPRIGHT_SIZE, GREY)
    picture.paste(RED, (0, 0, CORNER, CORNER))
    picture.paste(GREEN, (UPRIGHT_SIZE[0] - CORNER, 0, UPRIGHT_SIZE[0], CORNER))
    return picture


def stored_picture(orientation: int) -> Image.Image:
    undo = STORED_FROM_UPRIGHT.get(orientation)
    upright = upright_picture()
    return upright.transpose(undo) if undo is not None else upright


def orientation_exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return exif


def xmp_orientation(orientation: int) -> bytes:
    return (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF'
        b' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description'
        b' xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/></rdf:RDF>'
        b"</x:xmpmeta>" % orientation
    )


def imagemagick_png(picture: Image.Image, exif: Image.Exif) -> bytes:
    """A PNG with its EXIF as ImageMagick writes it: hex in a "Raw profile type exif" zTXt."""
    data = exif.tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(data):8}\n{data.hex()}\n", zip=True)
    return encode(picture, "PNG", pnginfo=info)


ORIENTED_FILES: dict[str, Callable[[Image.Image, int], bytes]] = {
    "jpeg-exif": lambda p, o: encode(p, "JPEG", quality=95, exif=orientation_exif(o)),
    # Pillow decodes uncompressed TIFFs itself and hands compressed ones to libtiff.
    "tiff-tag": lambda p, o: encode(p, "TIFF", exif=orientation_exif(o)),
    "tiff-lzw-tag": lambda p, o: encode(
        p, "TIFF", compression="tiff_lzw", exif=orientation_exif(o)
    ),
    "tiff-xmp": lambda p, o: encode(p, "TIFF", tiffinfo={700: xmp_orientation(o)}),
    "webp-exif": lambda p, o: encode(p, "WEBP", lossless=True, exif=orientation_exif(o)),
    "png-exif-chunk": lambda p, o: encode(p, "PNG", exif=orientation_exif(o)),
    "png-imagemagick-profile": lambda p, o: imagemagick_png(p, orientation_exif(o)),
    # pillow-heif and Pillow's AVIF plugin store the orientation as irot/imir boxes.
    "heif-irot": lambda p, o: encode(p, "HEIF", quality=95, exif=orientation_exif(o).tobytes()),
    "avif-irot": lambda p, o: encode(p, "AVIF", quality=95, exif=orientation_exif(o).tobytes()),
}


def corner_colours(thumbnail: Image.Image) -> dict[str, tuple[int, ...]]:
    rgb = thumbnail.convert("RGB")
    inset = 3  # inside the 10 px corner squares of the half-size thumbnail
    right, bottom = rgb.width - 1 - inset, rgb.height - 1 - inset
    spots = {
        "top-left": (inset, inset),
        "top-right": (right, inset),
        "bottom-left": (inset, bottom),
        "bottom-right": (right, bottom),
    }
    return {name: cast(tuple[int, ...], rgb.getpixel(xy)) for name, xy in spots.items()}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("kind", ORIENTED_FILES)
def test_every_format_shows_its_orientation_upright_and_in_proportion(
    tmp_path: Path, kind: str, orientation: int
) -> None:
    body = ORIENTED_FILES[kind](stored_picture(orientation), orientation)
    if kind.endswith("irot") and orientation != 1:
        assert b"irot" in body or b"imir" in body  # the container's own transform boxes

    result = run(tmp_path, body, ProcessingOptions(thumbnail_sizes=(60,)))
    thumbnail = artifact_image(result, "thumb-60.webp")

    assert (result.metadata["width"], result.metadata["height"]) == UPRIGHT_SIZE
    assert thumbnail.size == (60, 40)
    corners = corner_colours(thumbnail)
    assert close_to(corners["top-left"], RED), corners
    assert close_to(corners["top-right"], GREEN), corners
    assert close_to(corners["bottom-left"], GREY), corners
    assert close_to(corners["bottom-right"], GREY), corners


@pytest.mark.parametrize("kind", ["jpeg-exif", "tiff-tag", "tiff-xmp", "webp-exif", "heif-irot"])
def test_a_large_picture_is_upright_when_shrunk_before_turning(tmp_path: Path, kind: str) -> None:
    """Thumbnails far smaller than the picture: JPEG decodes at 1/8 scale (draft) and the
    others are block-averaged before being turned; the sizes still come from the file."""
    stored = stored_picture(6).resize((960, 1440), Image.Resampling.NEAREST)
    result = run(
        tmp_path, ORIENTED_FILES[kind](stored, 6), ProcessingOptions(thumbnail_sizes=(60,))
    )
    thumbnail = artifact_image(result, "thumb-60.webp")

    assert (result.metadata["width"], result.metadata["height"]) == (1440, 960)
    assert thumbnail.size == (60, 40)
    corners = corner_colours(thumbnail)
    assert close_to(corners["top-left"], RED), corners
    assert close_to(corners["top-right"], GREEN), corners


# -- tRNS colour keys -----------------------------------------------------------------------

# Each flavour: PNG colour type, bit depth, samples of the three 16 px columns (opaque A,
# opaque B, the key), and the RGB the two opaque columns must come out as. Wide greys are
# scaled by their range: 20000..60000 puts 20000 at black and 40000 at mid grey.
# (colour type, bit depth, the three columns' samples, the opaque columns' RGB)
KeyedPng = tuple[int, int, list[tuple[int, ...]], list[tuple[int, int, int]]]
KEYED_PNGS: dict[str, KeyedPng] = {
    "rgb-8": (2, 8, [(200, 30, 30), (30, 30, 200), (0, 255, 0)], [(200, 30, 30), (30, 30, 200)]),
    "rgb-16": (
        2,
        16,
        [(0xC800, 0x1E00, 0x1E00), (0x1E00, 0x1E00, 0xC800), (0x0000, 0xFFFF, 0x0000)],
        [(200, 30, 30), (30, 30, 200)],
    ),
    "grey-1": (0, 1, [(0,), (0,), (1,)], [(0, 0, 0), (0, 0, 0)]),
    "grey-2": (0, 2, [(1,), (2,), (3,)], [(85, 85, 85), (170, 170, 170)]),
    "grey-4": (0, 4, [(3,), (9,), (15,)], [(51, 51, 51), (153, 153, 153)]),
    "grey-8": (0, 8, [(60,), (120,), (200,)], [(60, 60, 60), (120, 120, 120)]),
    "grey-16": (0, 16, [(20000,), (40000,), (60000,)], [(0, 0, 0), (128, 128, 128)]),
}


def keyed_png(flavour: str, scale: int = 1) -> bytes:
    """48 x 16 px (times scale): two opaque columns, then one in the key colour."""
    colour_type, bit_depth, columns, _ = KEYED_PNGS[flavour]
    column_width = 16 * scale
    row = [sample for column in columns for _ in range(column_width) for sample in column]
    return png_from_samples(
        3 * column_width, 16 * scale, colour_type, bit_depth, row, transparent=columns[2]
    )


def column_pixels(thumbnail: Image.Image) -> list[tuple[int, ...]]:
    """The RGBA pixel in the middle of each of the three columns."""
    rgba = thumbnail.convert("RGBA")
    third = rgba.width // 3
    middle = rgba.height // 2
    return [
        cast(tuple[int, ...], rgba.getpixel((third * i + third // 2, middle))) for i in range(3)
    ]


@pytest.mark.parametrize("scale", [1, 20], ids=["small", "shrunk"])
@pytest.mark.parametrize("flavour", KEYED_PNGS)
def test_png_colour_key_becomes_transparency(tmp_path: Path, flavour: str, scale: int) -> None:
    # At scale 20 the picture is 960 px wide for a 96 px thumbnail: it is block-averaged, so
    # the key must have become alpha before any averaging.
    options = ProcessingOptions(thumbnail_sizes=(48 * min(scale, 2),))
    result = run(tmp_path, keyed_png(flavour, scale), options)
    name = options.thumbnail_sizes[0]
    first, second, key = column_pixels(artifact_image(result, f"thumb-{name}.webp"))
    expected_first, expected_second = KEYED_PNGS[flavour][3]

    assert result.metadata["has_alpha"] is True
    assert key[3] == 0
    assert first[3] == 255
    assert close_to(first[:3], expected_first), first
    assert second[3] == 255
    assert close_to(second[:3], expected_second), second


def test_colour_key_is_kept_in_avif(tmp_path: Path) -> None:
    options = ProcessingOptions(thumbnail_format="avif", thumbnail_sizes=(48,))
    first, _, key = column_pixels(
        artifact_image(run(tmp_path, keyed_png("rgb-8"), options), "thumb-48.avif")
    )
    assert key[3] < 8
    assert first[3] > 247


def test_colour_key_is_flattened_onto_the_background_in_jpeg(tmp_path: Path) -> None:
    options = ProcessingOptions(
        thumbnail_format="jpeg", thumbnail_sizes=(48,), background_rgb=(250, 250, 250)
    )
    result = run(tmp_path, keyed_png("rgb-8"), options)
    first, _, key = column_pixels(artifact_image(result, "thumb-48.jpg"))

    assert close_to(key[:3], (250, 250, 250))  # not the key's green
    assert close_to(first[:3], (200, 30, 30))
    assert result.metadata["has_alpha"] is True


def grey_columns() -> Image.Image:
    picture = Image.new("L", (48, 16), 60)
    picture.paste(120, (16, 0, 32, 16))
    picture.paste(200, (32, 0, 48, 16))
    return picture


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: encode(grey_columns(), "GIF", transparency=200), id="palette"),
        pytest.param(lambda: gif_without_colour_table(grey_columns(), 200), id="no-colour-table"),
    ],
)
def test_gif_transparent_index_becomes_transparency(
    tmp_path: Path, build: Callable[[], bytes]
) -> None:
    result = run(tmp_path, build(), ProcessingOptions(thumbnail_sizes=(48,)))
    first, second, key = column_pixels(artifact_image(result, "thumb-48.webp"))

    assert result.metadata["has_alpha"] is True
    assert key[3] == 0
    assert first[3] == 255
    assert close_to(first[:3], (60, 60, 60))
    assert second[3] == 255
    assert close_to(second[:3], (120, 120, 120))


# -- float and wide-integer data ------------------------------------------------------------


def ramp(mode: str, width: int, low: float, high: float, height: int = 8) -> Image.Image:
    """A left-to-right ramp from low to high in mode ("F", "I" or "I;16")."""
    step = (high - low) / (width - 1)
    values = [low + step * x for x in range(width)]
    picture = Image.new(mode, (width, height))
    picture.putdata(values * height if mode == "F" else [round(v) for v in values] * height)
    return picture


def grey_levels(thumbnail: Image.Image, count: int = 9) -> list[int]:
    grey = thumbnail.convert("L")
    xs = [round(i * (grey.width - 1) / (count - 1)) for i in range(count)]
    return [cast(int, grey.getpixel((x, grey.height // 2))) for x in xs]


def assert_full_ramp(levels: list[int]) -> None:
    expected = [round(i * 255 / (len(levels) - 1)) for i in range(len(levels))]
    assert all(abs(a - e) <= 8 for a, e in zip(levels, expected, strict=True)), levels


@pytest.mark.parametrize(
    ("mode", "low", "high"),
    [
        pytest.param("F", -math.pi, math.pi, id="float-phase"),
        pytest.param("F", 0.0, 1e-3, id="float-tiny"),
        pytest.param("I;16", 0, 4095, id="12-bit-in-16"),
        pytest.param("I", -2_000_000, 3_000_000, id="32-bit-signed"),
    ],
)
@pytest.mark.parametrize("width", [256, 1536], ids=["small", "shrunk"])
def test_wide_tiff_is_scaled_by_its_range(
    tmp_path: Path, mode: str, low: float, high: float, width: int
) -> None:
    body = encode(ramp(mode, width, low, high, height=width // 32), "TIFF")
    result = run(tmp_path, body, ProcessingOptions(thumbnail_sizes=(256,)))
    thumbnail = artifact_image(result, "thumb-256.webp")

    assert result.metadata["mode"] == mode
    assert thumbnail.size == (256, 8)
    assert_full_ramp(grey_levels(thumbnail))


@pytest.mark.parametrize(
    ("mode", "value", "grey"),
    [("F", 7.5, 128), ("F", -2.0, 128), ("F", 0.0, 0), ("I;16", 1000, 128), ("I", 0, 0)],
)
def test_a_wide_picture_of_one_value_is_mid_grey_or_black_for_zero(
    tmp_path: Path, mode: str, value: float, grey: int
) -> None:
    body = encode(Image.new(mode, (32, 16), value), "TIFF")
    thumbnail = artifact_image(run(tmp_path, body), "thumb-256.webp")
    assert all(abs(level - grey) <= 4 for level in grey_levels(thumbnail, 3))


@pytest.mark.parametrize("first", [math.nan, math.inf, -math.inf, 0.5])
def test_float_tiff_with_nan_and_infinity_is_scaled_by_its_finite_range(
    tmp_path: Path, first: float
) -> None:
    picture = ramp("F", 256, -1.0, 1.0)
    for x in range(256):  # a no-data band along the top, and a first sample of each kind
        picture.putpixel((x, 0), [math.nan, math.inf, -math.inf][x % 3])
    picture.putpixel((0, 0), first)
    body = encode(picture, "TIFF")
    thumbnail = artifact_image(
        run(tmp_path, body, ProcessingOptions(thumbnail_sizes=(256,))), "thumb-256.webp"
    )
    assert_full_ramp(grey_levels(thumbnail))


# -- reasons --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compression", "named"),
    [
        (34712, "JPEG 2000 (34712)"),
        (34661, "JBIG (34661)"),
        (50002, "JPEG XL (50002)"),
        (60000, "60000"),
    ],
)
def test_tiff_compression_pillow_lacks_is_named(
    tmp_path: Path, compression: int, named: str
) -> None:
    body = tiff_with_compression_tag(Image.new("RGB", (40, 30), RED), compression)
    with capture_logs() as logs:
        reason = reason_of(lambda: run(tmp_path, body))
    assert reason == f"unsupported TIFF compression {named}"
    assert {"event": "tiff_compression_refused", "compression": named}.items() <= logs[0].items()


def test_tiff_compression_libtiff_lacks_is_named_or_decoded(tmp_path: Path) -> None:
    """WebP inside TIFF: read where libtiff has the codec, named as missing where it has not
    (Pillow's wheels lack it), never "decoder error"."""
    picture = Image.new("RGB", (40, 30), RED)
    strip = encode(picture, "WEBP", lossless=True)
    body = tiff_with_compression_tag(picture, 50001, strip=strip)
    if pillow_decodes(body):
        result = run(tmp_path, body)
        assert close_to(artifact_image(result, "thumb-256.webp").getpixel((20, 15)), RED)
    else:
        with pytest.raises(UnsupportedContentError) as raised:
            run(tmp_path, body)
        assert str(raised.value) == "unsupported TIFF compression WebP (50001)"


def pillow_decodes(body: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(body)) as picture:
            picture.load()
    except OSError:
        return False
    return True


def test_corrupt_compressed_tiff_says_what_could_not_be_decoded(tmp_path: Path) -> None:
    body = bytearray(
        encode(Image.new("RGB", (64, 48), RED), "TIFF", compression="tiff_adobe_deflate")
    )
    _, strip_offset = tiff_entries(bytes(body))[273]
    body[strip_offset : strip_offset + 16] = b"\xff" * 16  # not a zlib stream any more
    reason = reason_of(lambda: run(tmp_path, bytes(body)))
    assert reason == "corrupt TIFF: cannot decode its image data (Deflate compression)"


def brotli_page(text: str) -> tuple[bytes, bytes]:
    return BrotliDecode.encode(pdf_text(text)), b"/Filter /BrotliDecode"


def text_pages(result: ProcessResult) -> list[str]:
    text_file = next(a for a in result.artifacts if a.name == "text.txt")
    return [page.strip() for page in Path(text_file.path).read_text(encoding="utf-8").split("\f")]


def test_brotli_compressed_pdf_text_is_extracted(tmp_path: Path) -> None:
    body = pdf_with_pages([(pdf_text("Plain page"), b""), brotli_page("Squeezed page")])
    result = run(tmp_path, body)
    assert text_pages(result) == ["Plain page", "Squeezed page"]
    assert "text_error" not in result.metadata


def hide_brotli(monkeypatch: pytest.MonkeyPatch) -> None:
    """pypdf as installed without its brotli extra: its own check raises its own words."""

    def brotli_missing() -> None:
        raise DependencyError(
            "brotli is required for BrotliDecode. Install it with: pip install pypdf[brotli]"
        )

    monkeypatch.setattr(BrotliDecode, "_check_brotli_available", staticmethod(brotli_missing))


def jbig2_page() -> tuple[bytes, bytes]:
    # pypdf decodes JBIG2 only by running jbig2dec, an external program, which pipelined never
    # does on uploads: a stream in JBIG2 stays undecodable whatever is installed.
    return b"\x97JB2\r\n\x1a\n", b"/Filter /JBIG2Decode"


@pytest.mark.parametrize(
    ("page", "feature"),
    [
        pytest.param(lambda: brotli_page("Squeezed page"), "Brotli compression", id="brotli"),
        pytest.param(jbig2_page, "JBIG2 image compression", id="jbig2"),
    ],
)
def test_a_missing_decoder_costs_only_that_pages_text(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    page: Callable[[], tuple[bytes, bytes]],
    feature: str,
) -> None:
    body = pdf_with_pages([(pdf_text("Plain page"), b""), page(), (pdf_text("Last page"), b"")])
    hide_brotli(monkeypatch)
    with capture_logs() as logs:
        result = run(tmp_path, body)

    assert text_pages(result) == ["Plain page", "", "Last page"]
    error = result.metadata["text_error"]
    assert (
        error
        == f"text of page 2 not extracted: PDF uses {feature}, which this service cannot decode"
    )
    assert not OPERATOR_TEXT.search(str(error))
    # The operator learns what would fix it, in pypdf's own words.
    skipped = [line for line in logs if line["event"] == "page_text_skipped"]
    assert [(line["page"], line["feature"]) for line in skipped] == [(2, feature)]
    assert "install" in skipped[0]["hint"] or "jbig2dec" in skipped[0]["hint"]


@pytest.mark.parametrize(
    ("encode_xref", "entries", "feature"),
    [
        pytest.param(
            BrotliDecode.encode, b"/Filter /BrotliDecode", "Brotli compression", id="brotli"
        ),
        pytest.param(bytes, b"/Filter /JBIG2Decode", "JBIG2 image compression", id="jbig2"),
    ],
)
def test_a_missing_decoder_needed_to_open_the_pdf_is_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    encode_xref: Callable[[bytes], bytes],
    entries: bytes,
    feature: str,
) -> None:
    """The cross-reference stream itself needs the codec: no page can even be found."""
    body = pdf_with_xref_stream([pdf_text("Hidden")], encode_xref, entries)
    hide_brotli(monkeypatch)
    with capture_logs() as logs:
        reason = reason_of(lambda: run(tmp_path, body))
    assert reason == f"PDF uses {feature}, which this service cannot decode"
    assert [line["feature"] for line in logs if line["event"] == "decoder_not_found"] == [feature]


def test_a_pdf_opened_through_a_brotli_cross_reference_stream(tmp_path: Path) -> None:
    body = pdf_with_xref_stream([pdf_text("Found")], BrotliDecode.encode, b"/Filter /BrotliDecode")
    assert text_pages(run(tmp_path, body)) == ["Found"]


def test_aes_without_its_cipher_is_named_not_called_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pypdf._encryption

    def cipher_missing(*args: object) -> bytes:
        raise DependencyError("cryptography>=3.1 is required for AES algorithm")

    # Owner password only: any reader opens it with the empty user password, given AES.
    writer = PdfWriter(
        clone_from=PdfReader(io.BytesIO(pdf_with_pages([(pdf_text("Sealed"), b"")])))
    )
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    body = buffer.getvalue()
    monkeypatch.setattr(pypdf._encryption, "aes_cbc_decrypt", cipher_missing)
    monkeypatch.setattr(pypdf._encryption, "aes_ecb_decrypt", cipher_missing)
    reason = reason_of(lambda: run(tmp_path, body))
    assert reason == "PDF uses AES encryption, which this service cannot decode"


def test_an_abbreviated_filter_name_is_a_corrupt_stream_in_plain_words(tmp_path: Path) -> None:
    import zlib

    body = pdf_with_pages([(zlib.compress(pdf_text("Short name")), b"/Filter /Fl")])
    reason = reason_of(lambda: run(tmp_path, body))
    assert reason == (
        "corrupt PDF: a stream names its filter /Fl, an abbreviation the PDF format allows"
        " only in inline images"
    )


def test_corrupt_reasons_of_images_carry_no_operator_text(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError) as raised:
        run(tmp_path, b"II*\x00" + b"\x00" * 60)
    assert not OPERATOR_TEXT.search(str(raised.value))
