"""Byte-level builders for hostile and awkward files: PNG, JPEG, GIF, TIFF, BMP and PDF.

Everything is written from the format specifications in a few lines each, so that a file can
lie (a header that claims more than the data holds, a cycle, a loop) in ways no well-behaved
encoder would produce. Nothing here reads a fixture from disk.
"""

import functools
import io
import struct
import zlib
from collections.abc import Iterable, Sequence

from PIL import Image, ImageDraw

# -- PNG -----------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_from_rows(
    width: int,
    height: int,
    bit_depth: int,
    colour_type: int,
    row: bytes,
    *,
    first_row: bytes | None = None,
    level: int = 9,
) -> bytes:
    """A PNG whose scanlines (filter byte included) are first_row, then row repeated.

    The same row repeated compresses to almost nothing, which is what makes a decompression
    bomb: the file is small, the declared picture is huge and the data really is all there.
    A first_row followed by rows of filter type 2 ("Up") and zeros repeats the first row
    all the way down, any picture that varies only across, at the same tiny cost.
    """
    compressor = zlib.compressobj(level)
    parts = []
    remaining = height
    if first_row is not None:
        parts.append(compressor.compress(first_row))
        remaining -= 1
    block = row * max(1, (1 << 20) // len(row))  # about 1 MiB of scanlines per call
    rows_per_block = len(block) // len(row)
    while remaining > 0:
        count = min(remaining, rows_per_block)
        parts.append(compressor.compress(block[: count * len(row)]))
        remaining -= count
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def png_repeating_first_row(
    first_row: bytes, height: int, bit_depth: int, colour_type: int, channels: int
) -> bytes:
    """A PNG of height copies of first_row (sample bytes only, no filter byte)."""
    bytes_per_pixel = channels * bit_depth // 8
    width = len(first_row) // bytes_per_pixel
    up = b"\x02" + bytes(len(first_row))  # filter Up, no change: the row above again
    return png_from_rows(width, height, bit_depth, colour_type, up, first_row=b"\x00" + first_row)


def blank_bilevel_png(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG of width x height black pixels, with all its pixel data."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter type None, then the packed bits
    return png_from_rows(width, height, 1, 0, row)


def png_with_chunk_before_idat(body: bytes, kind: bytes, data: bytes) -> bytes:
    """Insert a chunk right after IHDR (where iCCP, zTXt and friends may go)."""
    ihdr_end = 8 + 8 + 13 + 4
    return body[:ihdr_end] + png_chunk(kind, data) + body[ihdr_end:]


# -- JPEG ----------------------------------------------------------------------------------


def jpeg_header_claiming(width: int, height: int) -> bytes:
    """SOI, one quantisation table, a baseline SOF0 declaring width x height, EOI: no scan.

    Under 200 bytes, yet a decoder that trusts it would allocate width * height * 3 bytes.
    """
    quantisation = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(1, 65))
    frame = (
        b"\xff\xc0"
        + struct.pack(">HBHHB", 17, 8, height, width, 3)
        + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"  # three components, 1x1 sampling, table 0
    )
    return b"\xff\xd8" + quantisation + frame + b"\xff\xd9"


def jpeg_with_app1(body: bytes, payload: bytes) -> bytes:
    """Insert an APP1 segment (EXIF lives there) right after SOI."""
    return body[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + body[2:]


def looping_exif() -> bytes:
    """An EXIF block whose IFD0 links to itself as the next IFD and whose tag offsets point
    past the end: a parser that follows links naively never stops."""
    entries = [
        (0x0112, 3, 1, struct.pack("<HH", 6, 0)),  # Orientation = 6, inline
        (0x010F, 2, 4000, struct.pack("<I", 0x7FFFFFF0)),  # Make: ASCII far past the end
        (0x8825, 4, 1, struct.pack("<I", 8)),  # GPS IFD pointer back at IFD0
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value
    ifd += struct.pack("<I", 8)  # next IFD: IFD0 again
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def rgb_picture(size: tuple[int, int]) -> Image.Image:
    """Left half red, right half blue, a white disc in the middle: easy to check after
    resampling and lossy coding."""
    picture = Image.new("RGB", size, (220, 30, 30))
    width, height = size
    picture.paste((30, 30, 220), (width // 2, 0, width, height))
    radius = min(size) // 6
    ImageDraw.Draw(picture).ellipse(
        (width // 2 - radius, height // 2 - radius, width // 2 + radius, height // 2 + radius),
        fill=(255, 255, 255),
    )
    return picture


def encoded(image: Image.Image, pillow_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **params)
    return buffer.getvalue()


# -- GIF, TIFF, BMP ------------------------------------------------------------------------


def gif_with_frames(count: int, size: tuple[int, int] = (8, 8)) -> bytes:
    """An animated GIF of ``count`` frames that all differ (Pillow would merge equal ones)."""
    frames = []
    for index in range(count):
        frame = Image.new("P", size, 0)
        frame.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0] + [0, 0, 0] * 253)
        frame.putpixel((index % size[0], (index // size[0]) % size[1]), 1 + index % 2)
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(
        buffer, "GIF", save_all=True, append_images=frames[1:], duration=20, loop=0, optimize=False
    )
    return buffer.getvalue()


def gif_screen_claiming(width: int, height: int) -> bytes:
    """A GIF whose logical screen is width x height, holding one 1x1 frame."""
    palette = b"\x00" * 3 + b"\xff" * 3  # two colours: black and white
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + palette
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + image + b"\x3b"


def tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian TIFF declaring an 8-bit greyscale strip of width x height: 10 bytes of
    data behind a header that asks for gigabytes."""
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: BlackIsZero
        (273, 4, 1, 8 + 2 + 12 * 9 + 4),  # StripOffsets: right after the IFD
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, width * height & 0xFFFFFFFF),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(10)


def bmp_claiming(width: int, height: int) -> bytes:
    """A 24-bit BMP header declaring width x height over 16 bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    pixels = bytes(16)
    header = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return header + info + pixels


# -- PDF -----------------------------------------------------------------------------------


def pdf_objects(objects: Sequence[bytes], header: bytes = b"%PDF-1.7") -> tuple[bytes, list[int]]:
    """Header and numbered objects (from 1); returns the bytes and each object's offset."""
    output = bytearray(header + b"\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    return bytes(output), offsets


def xref_table(offsets: Sequence[int]) -> bytes:
    table = b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1)
    return table + b"".join(b"%010d 00000 n \n" % offset for offset in offsets)


def pdf(
    objects: Sequence[bytes],
    *,
    trailer_extra: bytes = b"",
    root: int = 1,
    header: bytes = b"%PDF-1.7",
) -> bytes:
    """A complete PDF: objects, one xref table, a trailer and startxref."""
    body, offsets = pdf_objects(objects, header)
    xref_offset = len(body)
    trailer = b"trailer\n<< /Size %d /Root %d 0 R %s>>\n" % (len(objects) + 1, root, trailer_extra)
    return body + xref_table(offsets) + trailer + b"startxref\n%d\n%%%%EOF\n" % xref_offset


def stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n%s\nendstream" % (len(data), extra, data)


def text_content(text: str, x: int = 72, y: int = 720) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"BT /F1 12 Tf %d %d Td (%s) Tj ET" % (x, y, escaped.encode("latin-1"))


FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def page(contents: int, parent: int = 2, extra: bytes = b"") -> bytes:
    return (
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R %s>>" % (parent, contents, extra)
    )


def simple_pdf(
    texts: Iterable[str],
    *,
    count: int | None = None,
    info: bytes | None = None,
    page_extra: bytes = b"",
) -> bytes:
    """Catalog 1, Pages 2, Font 3, then page/content pairs; /Count may be made to lie."""
    pages = list(texts)
    kids = b" ".join(b"%d 0 R" % (4 + 2 * index) for index in range(len(pages)))
    declared = len(pages) if count is None else count
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, declared),
        FONT,
    ]
    for index, text in enumerate(pages):
        objects.append(page(5 + 2 * index, extra=page_extra))
        objects.append(stream(text_content(text)))
    if info is None:
        return pdf(objects)
    objects.append(info)
    return pdf(objects, trailer_extra=b"/Info %d 0 R " % len(objects))


@functools.cache
def zlib_of_zeros(total_mib: int) -> bytes:
    """A zlib stream inflating to total_mib MiB of zero bytes, about 1 KiB per MiB.

    Compressing a gigabyte takes seconds; but after a full flush the compressor starts afresh,
    so the compressed form of one MiB, repeated, is a valid stream for any number of MiB.
    """
    mebibyte = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: framing added below
    block = compressor.compress(mebibyte) + compressor.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(total_mib):
        checksum = zlib.adler32(mebibyte, checksum)
    return b"\x78\xda" + block * total_mib + compressor.flush() + struct.pack(">I", checksum)
