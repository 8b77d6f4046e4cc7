"""Inputs the samples module does not cover, built in memory, and helpers to run and inspect."""

import io
import struct
import zlib
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
