"""Inputs the samples module does not cover, built in memory, and helpers to run and inspect."""

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from pipelined.processing import ProcessingOptions, ProcessResult, process_file

# Tests decode thumbnails that went through a lossy codec; colours may move this much.
CODEC_TOLERANCE = 24


def run(
    tmp_path: Path,
    body: bytes,
    options: ProcessingOptions | None = None,
    name: str = "upload.bin",
) -> ProcessResult:
    """Process body as if it had been downloaded to tmp_path/name."""
    source = tmp_path / name
    source.write_bytes(body)
    return process_file(str(source), str(tmp_path / "out"), options or ProcessingOptions())


def artifact_image(result: ProcessResult, name: str) -> Image.Image:
    """Open the named artifact, loaded, so the file can go away."""
    artifact = next(artifact for artifact in result.artifacts if artifact.name == name)
    with Image.open(artifact.path) as image:
        image.load()
        return image


def encode(image: Image.Image, pillow_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **params)
    return buffer.getvalue()


def close_to(actual: object, expected: tuple[int, ...], tolerance: int = CODEC_TOLERANCE) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries no pixel data at all.

    Getting a limit error rather than a decoding error for it proves the size was checked
    from the header, before any decoding.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def jpeg_segments(data: bytes) -> list[int]:
    """The marker bytes of a JPEG's segments up to the start of scan (0xE1 = APP1/EXIF...)."""
    markers = []
    offset = 2  # after SOI
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        offset += 2 + length
    return markers


def riff_chunks(data: bytes) -> list[bytes]:
    """The chunk ids of a WebP file (VP8/VP8L/VP8X/ALPH/EXIF/XMP /ICCP...)."""
    chunks = []
    offset = 12
    while offset + 8 <= len(data):
        kind = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        chunks.append(kind)
        offset += 8 + size + (size & 1)
    return chunks


def swapped_primaries_icc_profile() -> bytes:
    """A minimal ICC v2 RGB display profile whose red and green primaries are swapped.

    Under it a stored (255, 0, 0) means sRGB green, so a correct sRGB conversion visibly
    changes colours: the test can see the profile was applied, not just tolerated.
    """
    # D50-adapted sRGB colorants, as found in every sRGB ICC profile; red and green swapped.
    srgb_red, srgb_green = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971)
    tags = [
        (b"desc", _icc_description("swapped red and green")),
        (b"wtpt", _icc_xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", _icc_xyz(srgb_green)),
        (b"gXYZ", _icc_xyz(srgb_red)),
        (b"bXYZ", _icc_xyz((0.1431, 0.0606, 0.7141))),
        (b"rTRC", _icc_gamma(2.2)),
        (b"gTRC", _icc_gamma(2.2)),
        (b"bTRC", _icc_gamma(2.2)),
        (b"cprt", b"text\x00\x00\x00\x00public domain\x00"),
    ]
    return _icc_assemble(tags)


def _icc_assemble(tags: list[tuple[bytes, bytes]]) -> bytes:
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    bodies = b""
    for signature, body in tags:
        padded = body + b"\x00" * (-len(body) % 4)  # tag data is 4-byte aligned
        table += signature + struct.pack(">II", offset, len(body))
        bodies += padded
        offset += len(padded)
    total = 128 + table_size + len(bodies)
    header = (
        struct.pack(">I", total)
        + b"\x00" * 4  # preferred CMM
        + struct.pack(">I", 0x02100000)  # version 2.1
        + b"mntrRGB XYZ "  # display class, RGB data, XYZ connection space
        + b"\x00" * 12  # creation date
        + b"acsp"
        + b"\x00" * 24  # platform, flags, manufacturer, model, attributes
        + struct.pack(">I", 0)  # perceptual intent
        + _s15_fixed16((0.9642, 1.0, 0.8249))  # D50 illuminant
        + b"\x00" * 48  # creator, profile id, reserved
    )
    assert len(header) == 128
    return header + table + bodies


def _s15_fixed16(values: tuple[float, float, float]) -> bytes:
    return b"".join(struct.pack(">i", round(value * 65536)) for value in values)


def _icc_xyz(values: tuple[float, float, float]) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15_fixed16(values)


def _icc_gamma(gamma: float) -> bytes:
    return b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256))


def _icc_description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\x00"
    return (
        b"desc\x00\x00\x00\x00"
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + b"\x00" * 8  # no Unicode description
        + b"\x00" * 3  # no ScriptCode description
        + b"\x00" * 67
    )


# -- files like the real ones that showed defects ---------------------------------------------


def png_from_samples(
    width: int,
    height: int,
    colour_type: int,
    bit_depth: int,
    row: list[int],
    transparent: tuple[int, ...] | None = None,
) -> bytes:
    """A PNG of any colour type and bit depth, every scanline the same samples.

    ``row`` holds width x channels sample values at bit_depth; ``transparent`` is the tRNS
    colour key as the file stores it (one grey sample, or red, green and blue), at the same
    depth: the chunk Pillow cannot write for 2-, 4- and 16-bit pictures.
    """
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    scanline = b"\x00" + _packed_samples(row, bit_depth)  # filter type 0: the bytes as they are
    chunks = _png_chunk(b"IHDR", header)
    if transparent is not None:
        chunks += _png_chunk(b"tRNS", struct.pack(f">{len(transparent)}H", *transparent))
    chunks += _png_chunk(b"IDAT", zlib.compress(scanline * height))
    return b"\x89PNG\r\n\x1a\n" + chunks + _png_chunk(b"IEND", b"")


def _packed_samples(samples: list[int], bit_depth: int) -> bytes:
    if bit_depth == 16:
        return struct.pack(f">{len(samples)}H", *samples)
    if bit_depth == 8:
        return bytes(samples)
    per_byte = 8 // bit_depth
    packed = bytearray()
    for start in range(0, len(samples), per_byte):
        byte = 0
        for index, sample in enumerate(samples[start : start + per_byte]):
            byte |= sample << (8 - bit_depth * (index + 1))
        packed.append(byte)
    return bytes(packed)


def gif_without_colour_table(picture: Image.Image, transparent_grey: int) -> bytes:
    """A GIF with no colour table at all, whose indices are therefore grey levels.

    Pillow opens such a GIF as mode L, with the transparent index as a grey colour key. It is
    made from Pillow's own GIF of an L picture (an identity grey palette, indices = levels) with
    the global table cut out and its flag cleared.
    """
    data = encode(picture.convert("L"), "GIF", optimize=False, transparency=transparent_grey)
    flags = data[10]
    assert flags & 0x80, "Pillow wrote a global colour table"
    table_size = 3 * 2 ** ((flags & 0x07) + 1)
    return data[:10] + bytes([flags & 0x78]) + data[11:13] + data[13 + table_size :]


def tiff_entries(data: bytes) -> dict[int, tuple[int, int]]:
    """Tag -> (offset of the entry's value field, its first value) in a little-endian TIFF's
    first IFD, as Pillow writes them: enough to patch a tag in place."""
    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    entries = {}
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, kind = struct.unpack_from("<HH", data, entry)
        value = struct.unpack_from("<H" if kind == 3 else "<I", data, entry + 8)[0]
        entries[tag] = (entry + 8, value)
    return entries


def tiff_with_compression_tag(picture: Image.Image, compression: int, strip: bytes = b"") -> bytes:
    """An uncompressed TIFF of picture relabelled as using ``compression`` (tag 259).

    ``strip``, if given, replaces the pixel data (same length or shorter, padded): a stream in
    that compression, for a decoder that has it.
    """
    data = bytearray(encode(picture, "TIFF"))
    entries = tiff_entries(bytes(data))
    value_at, _ = entries[259]
    struct.pack_into("<H", data, value_at, compression)
    if strip:
        _, offset = entries[273]
        count_at, count = entries[279]
        assert len(strip) <= count, "the strip must fit where the pixels were"
        data[offset : offset + count] = strip.ljust(count, b"\x00")
        struct.pack_into("<I", data, count_at, len(strip))
    return bytes(data)


def pdf_with_pages(contents: list[tuple[bytes, bytes]]) -> bytes:
    """A PDF with one page per (content stream bytes, extra stream dictionary entries).

    The extra entries name the stream's filter (b"/Filter /BrotliDecode") for bytes already
    encoded with it. Catalog 1, Pages 2, Font 3, then a page and its content per entry.
    """
    kids = b" ".join(b"%d 0 R" % (4 + 2 * index) for index in range(len(contents)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(contents)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index, (content, stream_entries) in enumerate(contents):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * index)
        )
        objects.append(pdf_stream(content, stream_entries))
    body, offsets = pdf_body(objects)
    xref = b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    xref += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    return body + xref + trailer + b"startxref\n%d\n%%%%EOF\n" % len(body)


def pdf_body(objects: list[bytes]) -> tuple[bytes, list[int]]:
    """The header and the objects numbered from 1; returns the bytes and each one's offset."""
    output = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    return bytes(output), offsets


def pdf_stream(data: bytes, entries: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n%s\nendstream" % (len(data), entries, data)


def pdf_text(text: str) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text.encode("ascii")


def pdf_with_xref_stream(
    pages: list[bytes], encode_xref: Callable[[bytes], bytes], entries: bytes
) -> bytes:
    """A PDF 1.5 whose cross-reference table is a stream, encoded by ``encode_xref`` and
    described by ``entries`` (b"/Filter /BrotliDecode"): a reader must decode it to find
    any object at all."""
    kids = b" ".join(b"%d 0 R" % (4 + 2 * index) for index in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index, content in enumerate(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * index)
        )
        objects.append(pdf_stream(content))
    body, offsets = pdf_body(objects)
    xref_number = len(objects) + 1
    rows = [struct.pack(">BIH", 0, 0, 65535)]
    rows += [struct.pack(">BIH", 1, offset, 0) for offset in [*offsets, len(body)]]
    encoded = encode_xref(b"".join(rows))
    xref = b"<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Length %d %s >>" % (
        xref_number + 1,
        len(encoded),
        entries,
    )
    xref_object = b"%d 0 obj\n%s\nstream\n%s\nendstream\nendobj\n" % (xref_number, xref, encoded)
    return body + xref_object + b"startxref\n%d\n%%%%EOF\n" % len(body)
