"""What a TIFF is compressed with, and whether this build can decode that compression.

A TIFF names its compression in tag 259 of each image directory. Pillow refuses compressions
it has no name for while opening the file (as "cannot identify image file"), and hands the
ones it knows to libtiff, which fails on any it was built without with nothing but "decoder
error -2", the same words it has for corrupt data. Neither tells an uploader anything, so when
a TIFF fails, the tag is read here and the reason names the compression.
"""

import functools
import io
import struct
from typing import IO

from PIL import Image, TiffImagePlugin

COMPRESSION_TAG = 259
_NO_COMPRESSION = 1

# Names as the TIFF specification and its registered extensions give them (Pillow's own are
# identifiers such as "tiff_adobe_deflate"). Numbers not listed are reported as numbers.
_NAMES = {
    1: "none",
    2: "CCITT RLE",
    3: "CCITT Group 3 fax",
    4: "CCITT Group 4 fax",
    5: "LZW",
    6: "old-style JPEG",
    7: "JPEG",
    8: "Deflate",
    32766: "NeXT",
    32771: "CCITT RLEW",
    32773: "PackBits",
    32809: "ThunderScan",
    32908: "Pixar film",
    32909: "Pixar log",
    32946: "Deflate",
    33003: "Aperio JPEG 2000",
    33005: "Aperio JPEG 2000",
    34661: "JBIG",
    34676: "SGI LogLuv",
    34677: "SGI LogLuv 24-bit",
    34712: "JPEG 2000",
    34715: "JBIG2",
    34887: "LERC",
    34892: "lossy JPEG",
    34925: "LZMA",
    50000: "Zstandard",
    50001: "WebP",
    50002: "JPEG XL",
}
# Codecs libtiff has only a decoder for (or only for special photometrics), so this build
# cannot be asked by encoding a sample. libtiff builds them in unless told otherwise.
_DECODE_ONLY = frozenset({6, 32766, 32809, 34676, 34677})
# The CCITT fax codecs encode bilevel pictures only.
_BILEVEL = frozenset({2, 3, 4, 32771})
_PROBE_SIZE = (8, 8)
_BIG_TIFF_VERSIONS = (b"\x2b\x00", b"\x00\x2b")  # 43, little- and big-endian


def describe(compression: int) -> str:
    """Name and number, as in "LZW (5)"; the bare number when the name is not known."""
    name = _NAMES.get(compression)
    return f"{name} ({compression})" if name else str(compression)


def data_description(compression: int) -> str:
    """How the image data is stored, for a reason: "no compression", "LZW compression"."""
    if compression == _NO_COMPRESSION:
        return "no compression"
    return f"{_NAMES.get(compression, f'compression {compression}')} compression"


def read_compression(file: IO[bytes]) -> int | None:
    """Tag 259 of the first image directory; None if absent or the header is unreadable."""
    position = file.tell()
    try:
        file.seek(0)
        return _first_directory_compression(file)
    except (OSError, SyntaxError, struct.error, ValueError):  # SyntaxError: not a TIFF header
        return None
    finally:
        file.seek(position)


def _first_directory_compression(file: IO[bytes]) -> int:
    # Pillow's own directory reader, which unlike Image.open stops at no compression it lacks.
    header = file.read(8)
    if header[2:4] in _BIG_TIFF_VERSIONS:  # BigTIFF's header is 16 bytes long
        header += file.read(8)
    directory = TiffImagePlugin.ImageFileDirectory_v2(header)
    file.seek(directory.next)
    directory.load(file)
    return int(directory.get(COMPRESSION_TAG, _NO_COMPRESSION))  # the specification's default


@functools.cache
def decodable(compression: int) -> bool:
    """Whether this Pillow and its libtiff can decode the compression at all.

    Asked by encoding and decoding a tiny picture once per process: libtiff has no other way
    to say which codecs it was built with through Pillow, and builds differ (Pillow's wheels
    lack WebP in TIFF; Debian's libtiff has it).
    """
    name = TiffImagePlugin.COMPRESSION_INFO.get(compression)
    if name is None:
        return False
    if compression == _NO_COMPRESSION or compression in _DECODE_ONLY:
        return True
    mode = "1" if compression in _BILEVEL else "RGB"
    buffer = io.BytesIO()
    try:
        Image.new(mode, _PROBE_SIZE).save(buffer, "TIFF", compression=name)
        buffer.seek(0)
        with Image.open(buffer, formats=["TIFF"]) as probe:
            probe.load()
    except (OSError, ValueError):
        return False
    return True
