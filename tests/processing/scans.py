"""PDFs of scanned pages, made in memory: text drawn onto a picture, saved as an image-only PDF.

Pillow's own font draws the words, so the tests need no font files; pypdf finds no text in
such a page, as in a real scan, and Tesseract has to read it.
"""

import io

from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter

from pipelined import samples

SCAN_DPI = 300


def scanned_pdf(*pages: list[str], width_in: float = 4.0, height_in: float = 1.5) -> bytes:
    """One image-only page for each list of lines, width_in x height_in inches at 300 dpi."""
    pictures = [_scanned_page(lines, width_in, height_in) for lines in pages]
    buffer = io.BytesIO()
    pictures[0].save(buffer, "PDF", resolution=SCAN_DPI, save_all=True, append_images=pictures[1:])
    return buffer.getvalue()


def mixed_pdf(*pages: str | list[str]) -> bytes:
    """A page with a text layer for each str, a scanned page for each list of lines."""
    writer = PdfWriter()
    for page in pages:
        body = samples.text_pdf([page]) if isinstance(page, str) else scanned_pdf(page)
        writer.append(PdfReader(io.BytesIO(body)))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _scanned_page(lines: list[str], width_in: float, height_in: float) -> Image.Image:
    size = (round(width_in * SCAN_DPI), round(height_in * SCAN_DPI))
    picture = Image.new("L", size, 255)
    draw = ImageDraw.Draw(picture)
    # About 14 pt at 300 dpi: ordinary body text on a scan.
    font = ImageFont.load_default(size=60)
    for number, line in enumerate(lines):
        draw.text((60, 60 + number * 100), line, font=font, fill=0)
    return picture
