"""Generated inputs for the demo command and the tests: pure functions that return bytes.

Everything is drawn in memory, so the demo needs no fixture files and every test input is
reproducible from a line of code.
"""

import io
from dataclasses import dataclass
from typing import Literal

from PIL import ExifTags, Image, ImageDraw

# The upright picture from photo_jpeg() has a square of this colour in its top-left corner,
# so a test can tell from pixels alone whether the orientation was applied.
MARKER_RGB = (230, 25, 25)
# transparent_png(): everything right of this fraction of the width is fully transparent.
TRANSPARENT_FROM = 2 / 3
# text_pdf() stamps this creation date; 2024-01-02T03:04:05+01:00 in ISO 8601.
SAMPLE_PDF_DATE = "D:20240102030405+01'00'"

# What a viewer must do to stored pixels for each EXIF orientation, undone here: the
# stored picture is the upright one with the inverse transform applied.
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # the viewer rotates 90 degrees clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # the viewer rotates 90 degrees counter-clockwise
}


@dataclass(frozen=True)
class Sample:
    """One demo upload and what the pipeline is expected to make of it."""

    key: str
    body: bytes
    content_type: str
    expect: Literal["processed", "failed"]


def photo_jpeg(  # noqa: PLR0917  (the signature is part of the demo contract)
    width: int = 1600,
    height: int = 1200,
    orientation: int = 6,
    gps: bool = False,
    make: str = "Pipelined",
    model: str = "Demo Cam",
) -> bytes:
    """A JPEG as a camera writes it: width x height stored pixels and an EXIF Orientation.

    Like a phone held upright, the stored pixels are the picture turned so that applying
    the orientation makes it upright; the upright picture (height x width for orientations
    5-8) has a MARKER_RGB square in its top-left corner. Make and Model are always written;
    gps=True adds a GPS IFD (a latitude and longitude) that outputs must not carry.
    """
    swaps_axes = orientation in (5, 6, 7, 8)
    upright = _scene((height, width) if swaps_axes else (width, height))
    undo = _UNDO_ORIENTATION.get(orientation)
    stored = upright.transpose(undo) if undo is not None else upright
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=85, exif=_camera_exif(orientation, make, model, gps))
    return buffer.getvalue()


def transparent_png(width: int = 800, height: int = 600) -> bytes:
    """An RGBA PNG: an opaque gradient with a disc, a half-transparent band, then nothing.

    Columns right of TRANSPARENT_FROM * width are fully transparent (alpha 0).
    """
    picture = _scene((width, height)).convert("RGBA")
    alpha = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(alpha)
    band_start = int(width * 0.5)
    clear_start = int(width * TRANSPARENT_FROM)
    draw.rectangle((band_start, 0, clear_start - 1, height), fill=128)
    draw.rectangle((clear_start, 0, width, height), fill=0)
    picture.putalpha(alpha)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def text_pdf(
    pages: list[str], title: str = "Pipelined sample", author: str = "Pipelined demo"
) -> bytes:
    """A valid PDF with one page per string, each line drawn in Helvetica.

    Written by hand (not with a PDF library) so the bytes are deterministic and small, and
    so tests can doctor known structures (/Count, /Kids) in place. Text is encoded with
    WinAnsiEncoding: characters outside it become "?". Lines are not wrapped.
    """
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        _page_tree(len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        _info_dictionary(title, author),
    ]
    for index, text in enumerate(pages):
        contents_number = 6 + 2 * index
        objects.append(_page_object(contents_number))
        objects.append(_stream_object(_text_content(text)))
    return _assemble_pdf(objects)


def corrupt_jpeg() -> bytes:
    """The header of a real JPEG followed by only half of its compressed data."""
    buffer = io.BytesIO()
    _scene((320, 240)).save(buffer, "JPEG", quality=85)
    whole = buffer.getvalue()
    start_of_scan = whole.index(b"\xff\xda")
    return whole[: start_of_scan + (len(whole) - start_of_scan) // 2]


def demo_samples() -> list[Sample]:
    """A small set of uploads covering the main paths, about 0.5 MB in total.

    The photo's key has a space and a plus on purpose: S3 event notifications URL-encode
    keys, and a plus is where a decoder that treats it as a space goes wrong.
    """
    report_pages = [
        "Quarterly report\nPage one: the summary.",
        "Page two: the numbers (all of them).",
        "Page three: the outlook \\ next steps.",
    ]
    return [
        Sample("photos/beach trip+1.jpg", photo_jpeg(), "image/jpeg", "processed"),
        Sample("logos/logo.png", transparent_png(), "image/png", "processed"),
        Sample("docs/report.pdf", text_pdf(report_pages), "application/pdf", "processed"),
        Sample("photos/broken.jpg", corrupt_jpeg(), "image/jpeg", "failed"),
    ]


def _scene(size: tuple[int, int]) -> Image.Image:
    """A colourful, non-uniform RGB picture with a MARKER_RGB square top-left.

    Green grows left to right, blue top to bottom, and red stays low, so no corner but the
    marked one is red. A disc, stripes and a grid add edges for the codecs to work on.
    """
    width, height = size
    left_to_right = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90)
    red = Image.radial_gradient("L").resize(size).point(lambda value: value * 0.3)
    green = left_to_right.resize(size)
    blue = Image.linear_gradient("L").resize(size)
    picture = Image.merge("RGB", (red, green, blue))
    _draw_details(ImageDraw.Draw(picture), width, height)
    marker = max(4, min(width, height) // 8)
    picture.paste(MARKER_RGB, (0, 0, marker, marker))
    return picture


def _draw_details(draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    short = min(width, height)
    centre_x, centre_y = width // 2, height // 2
    radius = short // 4
    draw.ellipse(
        (centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius),
        fill=(250, 200, 40),
        outline=(20, 20, 120),
        width=max(1, short // 100),
    )
    step = max(4, short // 30)
    for x in range(width // 4, 3 * width // 4, step):
        draw.line((x, height // 8, x + step // 2, height // 5), fill=(255, 255, 255), width=1)
    for y in range(3 * height // 4, 7 * height // 8, step):
        draw.line((width // 3, y, 2 * width // 3, y), fill=(40, 40, 40), width=1)


def _camera_exif(orientation: int, make: str, model: str, gps: bool) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = make
    exif[ExifTags.Base.Model] = model
    if gps:
        location = exif.get_ifd(ExifTags.IFD.GPSInfo)
        location[ExifTags.GPS.GPSLatitudeRef] = "N"
        location[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
        location[ExifTags.GPS.GPSLongitudeRef] = "E"
        location[ExifTags.GPS.GPSLongitude] = (2.0, 21.0, 7.0)
    return exif


def _page_tree(page_count: int) -> bytes:
    kids = " ".join(f"{5 + 2 * index} 0 R" for index in range(page_count))
    return f"<< /Type /Pages /Kids [{kids}] /Count {page_count} >>".encode("ascii")


def _page_object(contents_number: int) -> bytes:
    return (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 3 0 R >> >>"
        b" /Contents " + str(contents_number).encode("ascii") + b" 0 R >>"
    )


def _info_dictionary(title: str, author: str) -> bytes:
    return (
        b"<< /Title " + _pdf_text_string(title) + b" /Author " + _pdf_text_string(author)
        + b" /Producer (pipelined.samples) /Creator (pipelined)"
        + b" /CreationDate (" + SAMPLE_PDF_DATE.encode("ascii") + b") >>"
    )  # fmt: skip


def _text_content(text: str) -> bytes:
    # 12 pt Helvetica, 14 pt leading, from one inch below the top-left of a Letter page.
    shown = b" T* ".join(_pdf_literal(line) + b" Tj" for line in text.split("\n"))
    return b"BT /F1 12 Tf 14 TL 72 720 Td " + shown + b" ET"


def _pdf_text_string(text: str) -> bytes:
    """A PDF text string: literal if plain ASCII, else UTF-16BE with a byte order mark."""
    if text.isascii():
        return _pdf_literal(text)
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def _pdf_literal(text: str) -> bytes:
    """A (literal string) in WinAnsiEncoding, escaping what the PDF syntax reserves."""
    escaped = bytearray(b"(")
    for byte in text.encode("cp1252", errors="replace"):
        if byte in b"()\\":
            escaped += b"\\" + bytes([byte])
        elif 32 <= byte < 127:
            escaped.append(byte)
        else:
            escaped += f"\\{byte:03o}".encode("ascii")
    return bytes(escaped + b")")


def _stream_object(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data)


def _assemble_pdf(objects: list[bytes]) -> bytes:
    """Number the objects from 1 and write the header, bodies, xref table and trailer."""
    output = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_offset = len(output)
    output += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        output += b"%010d 00000 n \n" % offset
    output += b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\n" % (len(objects) + 1)
    output += b"startxref\n%d\n%%%%EOF\n" % xref_offset
    return bytes(output)
