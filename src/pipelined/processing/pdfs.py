"""Text, document metadata, previews of the first pages and OCR of scanned pages for PDFs.

pypdf extracts the text (pure Python, with resource limits of its own against hostile
files); pypdfium2 renders the previews, because pypdf cannot render. The previews are rendered
in the worker's standing child, with a deadline of their own (standing.call_standing): a page
that makes pdfium spin, abort or crash costs the previews, recorded as preview_error, never
the text. A page
from which pypdf extracts no text has no text layer (a scan): with a rule's pdf.ocr,
Tesseract reads it in another child (ocr.py), and its text takes the page's place in text.txt.

A stream in a codec this service lacks (JBIG2: pypdf would run the external jbig2dec, which
is never done on uploads) is not the file's fault: it costs that page's text, recorded as
text_error, or the file when it is needed to open the document at all. Reasons name the
codec in the uploader's words; pypdf's own message, with its install hint, goes to the log.
"""

import contextlib
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import pypdfium2 as pdfium  # type: ignore[import-untyped]  # ships no type information
from PIL import Image
from pypdf import (
    DocumentInformation,
    PageObject,
    PasswordType,
    PdfReader,
    apply_configuration,
    get_configuration,
)
from pypdf.errors import DependencyError, DeprecationError, LimitReachedError, PyPdfError

from pipelined.errors import (
    CorruptFileError,
    LimitExceededError,
    PermanentError,
    PipelinedError,
    UnsupportedContentError,
    internal_error,
)
from pipelined.logs import get_logger
from pipelined.processing.encoding import Encoding, encode_as, write_encoded
from pipelined.processing.isolation import StepFailedError
from pipelined.processing.ocr import describe_pages, ocr_budget_s, ocr_pages, page_ranges
from pipelined.processing.options import ProcessingOptions
from pipelined.processing.results import Artifact, JSONScalar, ProcessResult
from pipelined.processing.sanitize import clean_text, describe_error
from pipelined.processing.standing import call_standing

log = get_logger(__name__)

TEXT_ARTIFACT_NAME = "text.txt"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
PAGE_SEPARATOR = "\f"

# What pypdf raises on malformed files besides its own PyPdfError tree: it indexes, unpacks
# and asserts its way through untrusted structures. Only pypdf calls run under this net, so
# a bug in our own code is not silently turned into "corrupt file".
_PDF_INPUT_ERRORS: tuple[type[Exception], ...] = (
    PyPdfError,
    OSError,  # seeks to offsets before the start of the file
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    AssertionError,
    EOFError,
    OverflowError,
    UnicodeError,
    ZeroDivisionError,
    struct.error,
    zlib.error,
)

# A page's text may need a codec this service lacks; pypdf raises DependencyError for it.
_PAGE_TEXT_ERRORS: tuple[type[Exception], ...] = (DependencyError, *_PDF_INPUT_ERRORS)
_NET_ERRORS: tuple[type[Exception], ...] = (DeprecationError, *_PAGE_TEXT_ERRORS)

# A metadata field that needs a missing codec is as unreadable as a broken one.
_TOLERATED_ERRORS: tuple[type[Exception], ...] = (
    *_PDF_INPUT_ERRORS,
    RecursionError,
    DependencyError,
    DeprecationError,
)

# What pypdf's DependencyError messages name (its words, lowercased) -> the uploader's words.
_MISSING_FEATURES = (
    ("brotli", "Brotli compression"),
    ("jbig2", "JBIG2 image compression"),
    ("cryptography", "AES encryption"),
)
_UNNAMED_FEATURE = "a compression or encryption method"
# pypdf (7) refuses filter abbreviations outside inline images with a DeprecationError whose
# message is about pypdf's API, not about the file.
_ABBREVIATED_FILTER = re.compile(r"filter name (/\w+) is deprecated")

_INFO_TEXT_FIELDS = {
    "title": "/Title",
    "author": "/Author",
    "producer": "/Producer",
    "creator": "/Creator",
}

T = TypeVar("T")


def process_pdf(source_path: str, out_dir: str, options: ProcessingOptions) -> ProcessResult:
    """Write text.txt (pages separated by form feeds) and the previews; OCR scanned pages."""
    started = time.monotonic()
    # pypdf logs a warning for every oddity it recovers from: thousands for a hostile file,
    # all on the worker's stderr. The outcome and its reason are what gets recorded.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    with open(source_path, "rb") as file, apply_configuration(jbig2dec_binary=None):
        # jbig2dec_binary=None: pypdf never starts an external program on untrusted bytes.
        with _permanent_errors():
            # strict=False: recover what real-world writers get wrong (offsets, missing
            # endobj) instead of refusing half the PDFs in the wild.
            reader = PdfReader(file, strict=False)
            _ensure_readable(reader)
            # Counts the page tree itself: a lying /Count is not believed.
            page_count = len(reader.pages)
        _check_page_count(page_count, options.max_pages)
        texts: list[str] | None = None
        text_error = None
        if options.pdf_text:
            with _permanent_errors():
                texts, text_error = _extract_text(reader)
        metadata: dict[str, JSONScalar] = {"page_count": page_count}
        metadata.update(_document_metadata(reader))
        metadata["encrypted"] = reader.is_encrypted
    if text_error is not None:
        metadata["text_error"] = text_error
    previews, preview_error = _render_previews(source_path, out_dir, options, page_count)
    if preview_error is not None:
        metadata["preview_error"] = preview_error
    if texts is None:
        return ProcessResult("pdf", previews, metadata)
    if options.pdf_ocr_languages:
        elapsed_s = time.monotonic() - started
        metadata.update(_ocr_scans(source_path, out_dir, options, texts, elapsed_s))
    text_artifact, metadata["char_count"] = _write_text(PAGE_SEPARATOR.join(texts), out_dir)
    return ProcessResult("pdf", (text_artifact, *previews), metadata)


def _ocr_scans(
    source_path: str,
    out_dir: str,
    options: ProcessingOptions,
    texts: list[str],
    elapsed_s: float,
) -> dict[str, JSONScalar]:
    """OCR the pages without text, putting their text in texts; ocr_pages and ocr_error."""
    scans = [number for number, text in enumerate(texts, start=1) if not text.strip()]
    budget_s = ocr_budget_s(options.job_timeout_s, elapsed_s)
    result = ocr_pages(source_path, scans, options.pdf_ocr_languages, budget_s, out_dir)
    for number, text in result.texts.items():
        texts[number - 1] = text
    metadata: dict[str, JSONScalar] = {"ocr_pages": page_ranges(sorted(result.texts))}
    if result.error is not None:
        # Bounded like every metadata text: each page Tesseract fails on adds its reason.
        metadata["ocr_error"] = clean_text(result.error)
    return metadata


@contextlib.contextmanager
def _permanent_errors() -> Iterator[None]:
    """Turn what pypdf raises for bad bytes into PermanentError subclasses with a reason."""
    try:
        yield
    except LimitReachedError as exc:
        raise _limit_error(exc) from exc
    except RecursionError as exc:
        raise CorruptFileError("corrupt PDF: objects nested too deeply") from exc
    except _NET_ERRORS as exc:
        missing = _missing_dependency(exc)
        if missing is None:
            raise _input_error(exc) from exc
        feature = _missing_feature(missing)
        # pypdf's own words, with their install hint, help whoever runs the service.
        log.warning("decoder_not_found", feature=feature, hint=describe_error(missing))
        raise UnsupportedContentError.of("missing_decoder", label="PDF", feature=feature) from exc


def _input_error(exc: Exception) -> PipelinedError:
    """The failure for what pypdf raised on the file's bytes (no codec missing)."""
    if not isinstance(exc, DeprecationError):
        return CorruptFileError.of("corrupt", label="PDF", detail=describe_error(exc))
    abbreviated = _ABBREVIATED_FILTER.search(str(exc))
    if abbreviated is None:
        # Any other DeprecationError is an API pypdf removed, called by our code.
        return internal_error(exc)
    detail = (
        f"a stream names its filter {abbreviated[1]}, an abbreviation the PDF format allows"
        " only in inline images"
    )
    return CorruptFileError.of("corrupt", label="PDF", detail=detail)


def _missing_dependency(exc: BaseException) -> DependencyError | None:
    """The DependencyError behind exc, if any: pypdf wraps some in PdfReadError ("Trailer
    cannot be read: brotli is required ...")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DependencyError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _missing_feature(missing: DependencyError) -> str:
    """What the file uses that this service cannot decode, in the uploader's words."""
    message = str(missing).lower()
    return next((words for key, words in _MISSING_FEATURES if key in message), _UNNAMED_FEATURE)


def _limit_error(exc: LimitReachedError) -> PermanentError:
    """pypdf reports cycles and loops as limits too; those are corrupt files, not big ones."""
    message = describe_error(exc)
    lowered = message.lower()
    if "cycl" in lowered or "loop" in lowered:
        return CorruptFileError(f"corrupt PDF: {message}")
    if "while decompressing" in lowered:
        limit = get_configuration().zlib_maximum_output_length
        return LimitExceededError(
            f"PDF stream inflates past the decompressed stream limit of {limit} bytes"
            f" (pypdf zlib_maximum_output_length): {message}"
        )
    return LimitExceededError(f"PDF is over a pypdf safety limit: {message}")


def _ensure_readable(reader: PdfReader) -> None:
    """Refuse files that need a user password; owner-password-only files open with ""."""
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise UnsupportedContentError("encrypted PDF: a password is required")


def _extract_text(reader: PdfReader) -> tuple[list[str], str | None]:
    """The pages' texts, and what was skipped, if anything.

    A page that needs a codec this service lacks gives an empty text: the other pages are
    still worth having. Anything else wrong with a page raises (the file is corrupt).
    """
    texts: list[str] = []
    skipped: dict[str, list[int]] = {}
    for number, page in enumerate(reader.pages, start=1):
        text, feature = _page_text(page, number)
        texts.append(text)
        if feature is not None:
            skipped.setdefault(feature, []).append(number)
    return texts, _text_error(skipped)


def _page_text(page: PageObject, number: int) -> tuple[str, str | None]:
    """(text, None), or ("", the missing feature) for a page that needs a missing codec."""
    try:
        return page.extract_text(), None
    except _PAGE_TEXT_ERRORS as exc:
        missing = _missing_dependency(exc)
        if missing is None:
            raise
        feature = _missing_feature(missing)
        log.warning("page_text_skipped", page=number, feature=feature, hint=describe_error(missing))
        return "", feature


def _text_error(skipped: dict[str, list[int]]) -> str | None:
    """What text_error says, as in "text of pages 2-4, 7 not extracted: PDF uses ..."."""
    parts = []
    for feature, numbers in skipped.items():
        which = describe_pages(numbers)
        reason = UnsupportedContentError.of("missing_decoder", label="PDF", feature=feature)
        parts.append(f"text of {which} not extracted: {reason}")
    return clean_text("; ".join(parts))


def _check_page_count(page_count: int, max_pages: int) -> None:
    if page_count == 0:
        raise CorruptFileError("corrupt PDF: the document has no pages")
    if page_count > max_pages:
        raise LimitExceededError(
            f"PDF has {page_count} pages, over the max_pages limit of {max_pages}"
        )


def _document_metadata(reader: PdfReader) -> dict[str, JSONScalar]:
    """Info dictionary fields; a broken field becomes None instead of failing the file."""
    info = _tolerant(lambda: reader.metadata)
    metadata: dict[str, JSONScalar] = {
        name: _info_text(info, key) for name, key in _INFO_TEXT_FIELDS.items()
    }
    metadata["creation_date"] = _creation_date(info)
    return metadata


def _info_text(info: DocumentInformation | None, key: str) -> str | None:
    if info is None:
        return None
    # Indexing (not .get) resolves indirect references to the actual string object.
    return _tolerant(lambda: clean_text(info[key]) if key in info else None)


def _creation_date(info: DocumentInformation | None) -> str | None:
    """ISO 8601 from the PDF date ("D:20240102030405+01'00'"); None if absent or broken."""
    if info is None:
        return None
    parsed = _tolerant(lambda: info.creation_date)
    return None if parsed is None else parsed.isoformat()


def _tolerant(read: Callable[[], T]) -> T | None:
    try:
        return read()
    except _TOLERATED_ERRORS:
        return None


def _write_text(text: str, out_dir: str) -> tuple[Artifact, int]:
    """Write the text as UTF-8; returns the artifact and the number of characters written."""
    # pypdf can yield lone surrogates from broken UTF-16 strings, which UTF-8 cannot encode.
    safe_text = text.encode("utf-8", errors="replace").decode("utf-8")
    path = os.path.join(out_dir, TEXT_ARTIFACT_NAME)
    with open(path, "w", encoding="utf-8", newline="") as file:
        file.write(safe_text)
    return Artifact(TEXT_ARTIFACT_NAME, path, TEXT_CONTENT_TYPE), len(safe_text)


def preview_stem(size: int, page: int | None) -> str:
    """A preview's file name without its extension: "preview-1024", or "preview-1024-p2" for a
    rule's numbered previews (page counts from 1)."""
    return f"preview-{size}" if page is None else f"preview-{size}-p{page}"


def _render_previews(
    source_path: str, out_dir: str, options: ProcessingOptions, page_count: int
) -> tuple[tuple[Artifact, ...], str | None]:
    """Render the first pages in the worker's standing child; the previews, and what went
    wrong."""
    try:
        previews, problems = call_standing(
            _write_previews,
            source_path,
            out_dir,
            options,
            page_count,
            timeout_s=options.pdf_preview_timeout_s,
        )
    except StepFailedError as exc:
        return (), f"preview failed: {exc}"
    return previews, "; ".join(problems) or None


def _write_previews(
    source_path: str, out_dir: str, options: ProcessingOptions, page_count: int
) -> tuple[tuple[Artifact, ...], list[str]]:
    """In the child: one preview for each page asked for, as far as the document goes.

    A page pdfium cannot render costs its own preview; the other pages still get theirs.
    """
    numbered = options.pdf_preview_pages is not None
    pages = min(page_count, options.pdf_preview_pages or 1)
    encoding = Encoding.of_thumbnails(options)
    previews: list[Artifact] = []
    problems: list[str] = []
    document = pdfium.PdfDocument(source_path)
    try:
        for number in range(1, pages + 1):
            try:
                picture = _render_page(document, number, options.pdf_preview_size)
            except pdfium.PdfiumError as exc:
                problems.append(f"preview of page {number} failed: {describe_error(exc)}")
                continue
            stem = preview_stem(options.pdf_preview_size, number if numbered else None)
            encoded = encode_as(picture, encoding)
            previews.append(write_encoded(encoded, out_dir, stem, options.thumbnail_format))
    finally:
        document.close()
    return tuple(previews), problems


def _render_page(document: pdfium.PdfDocument, number: int, long_edge: int) -> Image.Image:
    page = document[number - 1]
    width, height = page.get_size()
    # PDF units are 1/72 inch and render scale 1 means one pixel per unit.
    bitmap = page.render(scale=long_edge / max(width, height))
    picture: Image.Image = bitmap.to_pil()
    return _with_long_edge(picture, long_edge)


def _with_long_edge(picture: Image.Image, long_edge: int) -> Image.Image:
    """Correct pdfium's rounding so the long edge is exactly long_edge."""
    scale = long_edge / max(picture.size)
    target = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    if target == picture.size:
        return picture
    return picture.resize(target, Image.Resampling.LANCZOS)
