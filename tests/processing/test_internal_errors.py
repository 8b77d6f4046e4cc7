"""A bug in pipelined's own code is an internal error, retried; bad bytes stay a corrupt file.

The rule (errors.raised_in_pipelined): an exception whose innermost traceback frame runs
pipelined's code is ours, however the processors' nets wrapped it; one raised inside a library
on the file's bytes is the file's, and keeps its reason.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pypdf
import pytest
from PIL import Image, JpegImagePlugin
from pypdf.generic import DictionaryObject

from pipelined import errors, samples
from pipelined.errors import CorruptFileError, PermanentError, RetryableError
from pipelined.pool import WorkerPool
from pipelined.processing import ProcessingOptions, ProcessResult, dispatch, images, pdfs
from tests.hostile.corpus import cases
from tests.hostile.test_corpus_processing import OPTIONS as CORPUS_OPTIONS

from .builders import run

SMALL = ProcessingOptions(thumbnail_sizes=(64,))


def internal_error_of(call: Callable[[], object]) -> errors.InternalError:
    """The error call() raises, which must be the retryable internal error."""
    with pytest.raises(RetryableError) as raised:
        call()
    error = raised.value
    assert isinstance(error, errors.InternalError), repr(error)
    assert not isinstance(error, PermanentError)
    return error


def assert_names_our_bug(error: errors.InternalError, kind: type[Exception], frame: str) -> None:
    # The summary names the bug and where it is by module, never by a path of this machine.
    assert f"{kind.__name__}:" in str(error)
    assert "pipelined." in str(error)
    assert str(Path(dispatch.__file__).parent) not in str(error)
    # The full traceback travels with it, for the one log line the handler writes.
    assert f"in {frame}" in error.traceback_text
    assert error.traceback_text.rstrip().splitlines()[-1].startswith(kind.__name__)


def test_a_type_error_in_our_image_code_is_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "REDUCING_GAP", "3")  # a constant of the wrong type: our bug
    error = internal_error_of(lambda: run(tmp_path, samples.photo_jpeg(320, 240), SMALL))
    assert_names_our_bug(error, TypeError, "_shrink")


def test_a_removed_pillow_method_our_code_calls_is_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Pillow upgrade that drops draft(): our call is wrong, every JPEG would fail."""
    monkeypatch.delattr(JpegImagePlugin.JpegImageFile, "draft")
    monkeypatch.delattr(Image.Image, "draft")
    error = internal_error_of(lambda: run(tmp_path, samples.photo_jpeg(320, 240), SMALL))
    assert_names_our_bug(error, AttributeError, "_request_shrink_on_load")


def test_an_unexpected_keyword_to_pillow_is_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Image.open without the formats= parameter our call passes (as in an old Pillow)."""
    real_open = Image.open

    def open_without_formats(fp: object, mode: str = "r") -> Image.Image:
        return real_open(fp, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", open_without_formats)
    error = internal_error_of(lambda: run(tmp_path, samples.photo_jpeg(320, 240), SMALL))
    assert_names_our_bug(error, TypeError, "_open")


def test_a_removed_pypdf_method_inside_the_pdf_net_is_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pdfs.py's net catches AttributeError (pypdf raises it on bad bytes); ours gets through."""
    monkeypatch.delattr(pypdf.PageObject, "extract_text")
    error = internal_error_of(lambda: run(tmp_path, samples.text_pdf(["x"])))
    assert_names_our_bug(error, AttributeError, "_page_text")


def test_an_unexpected_keyword_to_pypdf_inside_the_pdf_net_is_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reader_without_strict(stream: object) -> pypdf.PdfReader:
        return pypdf.PdfReader(stream)  # type: ignore[arg-type]

    monkeypatch.setattr(pdfs, "PdfReader", reader_without_strict)
    error = internal_error_of(lambda: run(tmp_path, samples.text_pdf(["x"])))
    assert_names_our_bug(error, TypeError, "process_pdf")


def test_the_internal_error_pickles_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "REDUCING_GAP", "3")
    error = internal_error_of(lambda: run(tmp_path, samples.photo_jpeg(320, 240), SMALL))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is errors.InternalError
    assert (str(copy), copy.traceback_text) == (str(error), error.traceback_text)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(workers=1, timeout_s=60, memory_mb=1024, max_tasks=10)
    yield pool
    pool.close()


async def test_an_internal_error_in_a_worker_reaches_the_daemon_with_its_traceback(
    pool: WorkerPool, tmp_path: Path
) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(samples.photo_jpeg(320, 240))
    # Settings of the wrong type, as a bug in the settings code would make them; the options
    # are pickled to the worker as they are (validation only runs where they are built).
    options = replace(SMALL)
    object.__setattr__(options, "thumbnail_sizes", ("64",))
    with pytest.raises(RetryableError) as raised:
        await pool.run(dispatch.process_file, str(source), str(tmp_path / "out"), options)
    error = raised.value
    assert isinstance(error, errors.InternalError), repr(error)
    assert "in fit_long_edge" in error.traceback_text


# -- what stays the file's fault -----------------------------------------------------------

CORPUS = {case.name: case for case in cases("both")}

# The reasons these files got before internal errors were told apart (library messages).
UNCHANGED_REASONS = {
    "truncated-jpeg": "corrupt JPEG: image file is truncated (17 bytes not processed)",
    "png-bad-crc": "corrupt PNG: cannot identify image data",
    "pdf-50000-nested-arrays-in-page": "corrupt PDF: Error reading PDF file.",
    "pdf-50000-nested-arrays-in-content": "corrupt PDF: objects nested too deeply",
    "pdf-page-tree-cycle": "corrupt PDF: Detected cyclic page references.",
    "pdf-truncated": "corrupt PDF: Stream has ended unexpectedly",
}


@pytest.mark.parametrize(("name", "reason"), UNCHANGED_REASONS.items())
def test_a_library_error_on_bad_bytes_keeps_its_corrupt_file_reason(
    name: str, reason: str, tmp_path: Path
) -> None:
    case = CORPUS[name]
    with pytest.raises(CorruptFileError) as raised:
        run(tmp_path, case.body, replace(CORPUS_OPTIONS, **case.options))
    assert str(raised.value) == reason


def test_a_key_error_deep_inside_pypdf_is_still_a_corrupt_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised in pypdf's frames, outside every net: dispatch's catch-all names it."""

    def lookup_missing_kids(*_: object) -> ProcessResult:
        DictionaryObject()["/Kids"]
        raise AssertionError("unreachable")

    monkeypatch.setattr(dispatch, "process_pdf", lookup_missing_kids)
    with pytest.raises(CorruptFileError) as raised:
        run(tmp_path, samples.text_pdf(["x"]))
    assert str(raised.value) == "corrupt PDF: could not be decoded (KeyError: '/Kids')"
