"""Content sniffing: the bytes decide, never the name."""

from pathlib import Path

import pytest
from PIL import Image

from pipelined import samples
from pipelined.errors import UnsupportedContentError
from pipelined.processing import sniff_kind
from pipelined.processing.sniff import AVIF, HEIF, sniff

from .builders import encode, run

SMALL = Image.new("RGB", (8, 6), (10, 120, 200))


@pytest.mark.parametrize(
    ("label", "body"),
    [
        ("jpeg", encode(SMALL, "JPEG")),
        ("png", encode(SMALL, "PNG")),
        ("gif", encode(SMALL, "GIF")),
        ("webp", encode(SMALL, "WEBP")),
        ("tiff little-endian", encode(SMALL, "TIFF")),
        ("tiff big-endian", b"MM\x00*\x00\x00\x00\x08" + bytes(64)),
        ("bmp", encode(SMALL, "BMP")),
        ("avif", encode(SMALL, "AVIF", quality=50)),
        ("heic", encode(SMALL, "HEIF", quality=50)),  # opener registered by processing
    ],
)
def test_images_are_recognised(label: str, body: bytes) -> None:
    assert sniff_kind(body[:4096]) == "image", label


@pytest.mark.parametrize(
    "body",
    [
        samples.text_pdf(["hello"]),
        b"\r\n\r\n%PDF-1.4\n" + bytes(100),  # junk before the header is common and legal
        b"\x00" * 1000 + b"%PDF-1.7\n",
    ],
)
def test_pdfs_are_recognised(body: bytes) -> None:
    assert sniff_kind(body[:4096]) == "pdf"


@pytest.mark.parametrize(
    ("label", "body"),
    [
        ("empty", b""),
        ("html", b"<!DOCTYPE html><html><body>not found</body></html>"),
        ("plain text", b"hello, this is a text file\n"),
        ("text starting with BM", b"BMW service schedule, page 1 of 3\n"),
        ("PDF marker too far in", b" " * 2000 + b"%PDF-1.4"),
        ("mp4 video", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"),
        ("wav audio", b"RIFF\x24\x00\x00\x00WAVEfmt "),
        ("zip", b"PK\x03\x04" + bytes(30)),
    ],
)
def test_other_content_is_not_recognised(label: str, body: bytes) -> None:
    assert sniff_kind(body) is None, label


def test_avif_and_heic_are_told_apart_by_brand() -> None:
    avif_with_generic_major = b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf"
    heic_with_generic_major = b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heicmiaf"
    assert sniff(avif_with_generic_major) is AVIF
    assert sniff(heic_with_generic_major) is HEIF


def test_text_named_jpg_is_unsupported_and_says_what_it_looks_like(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedContentError, match=r"not an image or PDF .*b'hello"):
        run(tmp_path, b"hello, this is a text file\n", name="holiday.jpg")


def test_png_named_pdf_is_processed_as_an_image(tmp_path: Path) -> None:
    result = run(tmp_path, samples.transparent_png(64, 48), name="report.pdf")
    assert result.kind == "image"
    assert result.metadata["format"] == "PNG"


def test_html_named_pdf_is_unsupported(tmp_path: Path) -> None:
    html = b"<!DOCTYPE html>\n<html><head><title>Login</title></head></html>"
    with pytest.raises(UnsupportedContentError, match=r"starts with b'<!DOCTYPE"):
        run(tmp_path, html, name="invoice.pdf")


def test_empty_file_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedContentError, match="empty file"):
        run(tmp_path, b"", name="empty.png")
