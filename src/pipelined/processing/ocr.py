"""OCR of PDF pages that have no text layer (scans), with Debian's Tesseract.

pytesseract drives the tesseract program the system installed (tesserocr's wheels bring a
Tesseract build of their own, and building tesserocr from source needs a compiler in the
image). Everything runs in one isolated child (isolation.call_isolated): pdfium renders each
page at OCR_DPI, tesseract reads it. tesseract runs in that child's process group, so it dies
with the child, even when the pool kills the worker itself (isolation.py).

The budget is what the job has left (ocr_budget_s); pages past it, or past OCR_MAX_PAGES, are
named in the reason instead. A missing Tesseract or language never fails the file: the reason
says what is missing, and the pages keep whatever text they had.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType

import pypdfium2 as pdfium  # type: ignore[import-untyped]  # ships no type information
from PIL import Image

from pipelined.processing.isolation import StepFailedError, call_isolated
from pipelined.processing.placeholders import one_blas_thread
from pipelined.processing.sanitize import describe_error

# Tesseract is trained on text of 20 to 40 px cap height, which 300 dpi gives for body text.
OCR_DPI = 300
# A3 at 300 dpi is 17 MP; a poster-sized page is read at a lower resolution rather than
# allocated at full size (grey, one byte a pixel, plus Tesseract's own copies, under the
# worker's memory cap).
OCR_MAX_PIXELS = 25_000_000
# A page takes Tesseract about a second per language: past this many, a long scan would hold
# its worker for the whole job time limit while other uploads wait, only to be cut off there.
# The first pages of a scan are the ones a search or a reader is most likely to need.
OCR_MAX_PAGES = 100
# Kept back from the job's time limit, whose end is a SIGKILL that loses the whole job: for
# what comes after OCR (text.txt) and for stopping a tesseract that runs late.
_RESERVE_FRACTION = 0.1
_RESERVE_MAX_S = 10.0
# How much longer than its budget the child may take: stopping a late tesseract (pytesseract
# sends SIGTERM, waits a second, then SIGKILL) and sending the texts back.
_STOP_GRACE_S = 2.0
# Below this, a page is not started: it would only be killed half-read.
_MIN_PAGE_S = 0.5
# The program pytesseract runs, looked up on PATH.
TESSERACT_COMMAND = "tesseract"
# Each worker is one of as many as there are cores: Tesseract's OpenMP threads would only
# compete with the other workers for them.
_TESSERACT_ENV = {"OMP_THREAD_LIMIT": "1"}
_OUT_OF_TIME = "the job's time limit ran out"

# The languages each tesseract program has, learnt once per worker (the child reports them).
_installed: dict[str, frozenset[str]] = {}


@dataclass(frozen=True)
class OcrResult:
    """The text Tesseract read, by page number (from 1), and what went wrong, if anything."""

    texts: dict[int, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class _Reading:
    """What the child sends back: small, plain values."""

    installed: frozenset[str]
    texts: dict[int, str]
    problems: list[str]


def ocr_budget_s(job_timeout_s: float, elapsed_s: float) -> float:
    """The seconds OCR may take in a job that has run for elapsed_s."""
    reserve_s = min(_RESERVE_MAX_S, job_timeout_s * _RESERVE_FRACTION)
    return job_timeout_s - elapsed_s - reserve_s - _STOP_GRACE_S


def ocr_pages(
    source_path: str,
    pages: Sequence[int],
    languages: Sequence[str],
    budget_s: float,
    work_dir: str,
) -> OcrResult:
    """Read pages (ascending numbers from 1) of a PDF with Tesseract, in languages."""
    if not pages:
        return OcrResult()
    binary = shutil.which(TESSERACT_COMMAND)
    if binary is None:
        return OcrResult(error=f"Tesseract is not installed, so {_not_read(pages)}")
    problems = []
    if len(pages) > OCR_MAX_PAGES:
        over = f"over the limit of {OCR_MAX_PAGES} pages per file"
        problems.append(f"{_not_read(pages[OCR_MAX_PAGES:])}: {over}")
        pages = pages[:OCR_MAX_PAGES]
    known = _installed.get(binary)
    if known is not None and not set(languages) & known:
        return OcrResult(error="; ".join([_missing(languages, known, pages), *problems]))
    if budget_s < _MIN_PAGE_S:
        return OcrResult(error="; ".join([f"{_not_read(pages)}: {_OUT_OF_TIME}", *problems]))
    try:
        reading = _read_isolated(
            source_path,
            pages,
            binary=binary,
            languages=languages,
            known=known,
            budget_s=budget_s,
            work_dir=work_dir,
        )
    except StepFailedError as exc:
        return OcrResult(error="; ".join([f"OCR failed: {exc}", *problems]))
    _installed[binary] = reading.installed
    return OcrResult(reading.texts, "; ".join([*reading.problems, *problems]) or None)


def page_ranges(numbers: Sequence[int]) -> str:
    """Ascending page numbers as "1-3, 5": short, even for a thousand pages in a row."""
    ranges: list[list[int]] = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def describe_pages(numbers: Sequence[int]) -> str:
    """As "page 3" or "pages 2-4, 7"."""
    return ("page " if len(numbers) == 1 else "pages ") + page_ranges(numbers)


def _read_isolated(
    source_path: str,
    pages: Sequence[int],
    *,
    binary: str,
    languages: Sequence[str],
    known: frozenset[str] | None,
    budget_s: float,
    work_dir: str,
) -> _Reading:
    # pytesseract's image and output files: removed here even when the child is killed
    # before pytesseract could clean up.
    with tempfile.TemporaryDirectory(prefix="ocr-", dir=work_dir) as scratch:
        return call_isolated(
            lambda: _read(
                source_path,
                pages,
                binary=binary,
                languages=languages,
                known=known,
                budget_s=budget_s,
                scratch=scratch,
            ),
            budget_s + _STOP_GRACE_S,
        )


def _read(
    source_path: str,
    pages: Sequence[int],
    *,
    binary: str,
    languages: Sequence[str],
    known: frozenset[str] | None,
    budget_s: float,
    scratch: str,
) -> _Reading:
    """In the isolated child: render and read each page while the budget lasts."""
    deadline = time.monotonic() + budget_s
    os.environ.update(_TESSERACT_ENV)
    tempfile.tempdir = scratch  # this child's own copy of the module: the worker's is unchanged
    pytesseract = _load_pytesseract(binary)
    installed = known if known is not None else _list_languages(pytesseract)
    usable = [language for language in languages if language in installed]
    if not usable:
        return _Reading(installed, {}, [_missing(languages, installed, pages)])
    problems = []
    if len(usable) < len(languages):
        problems.append(f"{_missing(languages, installed)}; pages were read in {'+'.join(usable)}")
    texts: dict[int, str] = {}
    document = pdfium.PdfDocument(source_path)
    try:
        for index, number in enumerate(pages):
            remaining_s = deadline - time.monotonic()
            if remaining_s < _MIN_PAGE_S:
                problems.append(f"{_not_read(pages[index:])}: {_OUT_OF_TIME}")
                break
            try:
                texts[number] = _read_page(
                    pytesseract, document.get_page(number - 1), "+".join(usable), remaining_s
                )
            except (pytesseract.TesseractError, pdfium.PdfiumError) as exc:
                problems.append(f"page {number} could not be read: {describe_error(exc)}")
            except RuntimeError as exc:  # pytesseract's "Tesseract process timeout"
                if "timeout" not in str(exc).lower():
                    raise
                problems.append(f"{_not_read(pages[index:])}: {_OUT_OF_TIME}")
                break
    finally:
        document.close()
    return _Reading(installed, texts, problems)


def _load_pytesseract(binary: str) -> ModuleType:
    """pytesseract, imported here in the child only: it imports numpy when numpy is installed,
    whose OpenBLAS starts a thread per core, each reserving some 40 MB of address space
    (placeholders.one_blas_thread keeps it to one). The worker itself never loads it."""
    one_blas_thread()
    import pytesseract  # type: ignore[import-untyped]  # noqa: PLC0415 - see above

    pytesseract.pytesseract.tesseract_cmd = binary
    module: ModuleType = pytesseract
    return module


def _list_languages(pytesseract: ModuleType) -> frozenset[str]:
    try:
        return frozenset(pytesseract.get_languages())
    except pytesseract.TesseractNotFoundError:
        return frozenset()


def _read_page(
    pytesseract: ModuleType, page: pdfium.PdfPage, languages: str, timeout_s: float
) -> str:
    picture = _render_for_ocr(page)
    # No page separator of Tesseract's: text.txt separates pages with form feeds of its own.
    text: str = pytesseract.image_to_string(
        picture, lang=languages, config="-c page_separator=", timeout=timeout_s
    )
    return text.replace("\f", "\n").strip()


def _render_for_ocr(page: pdfium.PdfPage) -> Image.Image:
    width, height = page.get_size()  # PDF units: 1/72 inch
    area = max(width * height, 1.0)
    scale = min(OCR_DPI / 72, math.sqrt(OCR_MAX_PIXELS / area))
    picture: Image.Image = page.render(scale=scale, grayscale=True).to_pil()
    return picture


def _missing(languages: Sequence[str], installed: frozenset[str], pages: Sequence[int] = ()) -> str:
    absent = ", ".join(language for language in languages if language not in installed)
    reason = f"Tesseract language data missing: {absent}"
    return f"{reason}, so {_not_read(pages)}" if pages else reason


def _not_read(pages: Sequence[int]) -> str:
    verb = "was" if len(pages) == 1 else "were"
    return f"{describe_pages(pages)} {verb} not OCR'd"
