"""Decide what an upload is from its first bytes, never from its name.

A short signature table instead of a library (python-magic, filetype, puremagic): the set of
types we accept is small and fixed, a table is easy to audit, and a libmagic binding would add
a C dependency whose answers depend on the version of its database. Each entry also names the
Pillow plugin allowed to open the file, so a file sniffed as PNG can never be handed to some
other, less hardened, decoder.
"""

from dataclasses import dataclass

from pipelined.processing.results import Kind

# The caller reads this many bytes for sniffing; the PDF marker may sit after some junk.
HEAD_SIZE = 4096
PDF_MARKER_WINDOW = 1024


@dataclass(frozen=True)
class Detected:
    """A recognised type: a label for messages and the Pillow format allowed to open it."""

    label: str  # human name used in error reasons: "corrupt JPEG: ..."
    kind: Kind
    pillow_format: str | None  # None for PDFs


JPEG = Detected("JPEG", "image", "JPEG")
PNG = Detected("PNG", "image", "PNG")
GIF = Detected("GIF", "image", "GIF")
WEBP = Detected("WebP", "image", "WEBP")
TIFF = Detected("TIFF", "image", "TIFF")
BMP = Detected("BMP", "image", "BMP")
HEIF = Detected("HEIF", "image", "HEIF")
AVIF = Detected("AVIF", "image", "AVIF")
PDF = Detected("PDF", "pdf", None)

_PREFIXES: tuple[tuple[bytes, Detected], ...] = (
    (b"\xff\xd8\xff", JPEG),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"GIF87a", GIF),
    (b"GIF89a", GIF),
    (b"II*\x00", TIFF),  # little-endian ("Intel")
    (b"MM\x00*", TIFF),  # big-endian ("Motorola")
    (b"II+\x00", TIFF),  # BigTIFF, little-endian
    (b"MM\x00+", TIFF),  # BigTIFF, big-endian
)

# "BM" alone matches plain text too, so also require a known DIB header size at offset 14.
_BMP_DIB_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

# ISO-BMFF major brands, limited to those the decoders (Pillow's AVIF plugin, pillow-heif)
# accept. The generic still-image brands "mif1"/"msf1" are used by both families, so for
# them the compatible brands decide.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_GENERIC_BRANDS = frozenset({b"mif1", b"msf1"})


def sniff_kind(head: bytes) -> Kind | None:
    """Return "image" or "pdf" for the types pipelined processes, None for anything else."""
    detected = sniff(head)
    return None if detected is None else detected.kind


def sniff(head: bytes) -> Detected | None:
    """Identify the exact type from the first bytes of a file (pass at least HEAD_SIZE)."""
    for prefix, detected in _PREFIXES:
        if head.startswith(prefix):
            return detected
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if _looks_like_bmp(head):
        return BMP
    if head[4:8] == b"ftyp":
        return _sniff_iso_bmff(head)
    if b"%PDF-" in head[:PDF_MARKER_WINDOW]:
        return PDF
    return None


def describe_unknown(head: bytes) -> str:
    """A reason for rejecting bytes that are neither an image nor a PDF."""
    if not head:
        return "unsupported content: empty file"
    return f"unsupported content: not an image or PDF (starts with {head[:16]!r})"


def _looks_like_bmp(head: bytes) -> bool:
    if len(head) < 18 or not head.startswith(b"BM"):
        return False
    return int.from_bytes(head[14:18], "little") in _BMP_DIB_HEADER_SIZES


def _sniff_iso_bmff(head: bytes) -> Detected | None:
    major = head[8:12]
    if major in _AVIF_BRANDS:
        return AVIF
    if major in _HEIF_BRANDS:
        return HEIF
    if major in _GENERIC_BRANDS:
        return AVIF if _AVIF_BRANDS & _compatible_brands(head) else HEIF
    return None


def _compatible_brands(head: bytes) -> set[bytes]:
    box_size = int.from_bytes(head[0:4], "big")
    # Brands follow the major brand and minor version; clamp to what we were given.
    end = min(box_size, len(head))
    return {head[offset : offset + 4] for offset in range(16, end - 3, 4)}
