"""Photo-like JPEGs and text PDFs for the end-to-end bench, generated in memory.

Photos are bench/images.py's photo_like_jpeg (samples.photo_jpeg's scene with sensor-like
grain, quality 90: about 3 MB at 12 MP, as a phone writes one), PDFs samples.text_pdf pages of
text. Generating a 12 MP photo takes a second or more, so a few distinct ones are made and
repeated under distinct keys: every upload is its own object and its own job either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from images import photo_like_jpeg

from pipelined import samples

DISTINCT_PHOTOS = 8
PDF_LINE = "{:02d} The quick brown fox jumps over the lazy dog, page after page of text."


@dataclass(frozen=True)
class CorpusFile:
    key: str
    body: bytes
    content_type: str


def photo_size(megapixels: float) -> tuple[int, int]:
    """4:3 landscape, as most phone cameras shoot."""
    height = round(math.sqrt(megapixels * 1e6 * 3 / 4))
    return round(height * 4 / 3), height


def photo_corpus(photos: int, pdfs: int, megapixels: float, pages: int) -> list[CorpusFile]:
    width, height = photo_size(megapixels)
    bodies = [photo_like_jpeg(width, height) for _ in range(min(photos, DISTINCT_PHOTOS))]
    page = "\n".join(PDF_LINE.format(line) for line in range(45))
    files = [
        CorpusFile(f"photos/{n:05d}.jpg", bodies[n % len(bodies)], "image/jpeg")
        for n in range(photos)
    ]
    files += [
        CorpusFile(
            f"docs/{n:05d}.pdf",
            samples.text_pdf([page] * pages, title=f"Report {n}"),
            "application/pdf",
        )
        for n in range(pdfs)
    ]
    # Interleaved, as uploads from many users would arrive.
    return sorted(files, key=lambda item: item.key.split("/")[1])


def small_jobs_corpus(count: int) -> list[CorpusFile]:
    """Tiny photos and PNGs (a few KB): the daemon's per-message cost, not the codecs'."""
    bodies = [
        (samples.photo_jpeg(96, 72, orientation=6), "image/jpeg", "jpg"),
        (samples.photo_jpeg(120, 80, orientation=1, gps=True), "image/jpeg", "jpg"),
        (samples.transparent_png(80, 60), "image/png", "png"),
    ]
    return [
        CorpusFile(f"small/{n:06d}.{ext}", body, content_type)
        for n, (body, content_type, ext) in ((n, bodies[n % len(bodies)]) for n in range(count))
    ]
