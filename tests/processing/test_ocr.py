"""OCR of scanned PDF pages with Debian's Tesseract: what it reads, what it says when it cannot,
and that no tesseract outlives its job.

The scans are small pages drawn with Pillow's font (tests/processing/scans.py), so each read
takes Tesseract a fraction of a second. A stand-in tesseract (a shell script that sleeps)
plays the one that never finishes.
"""

from __future__ import annotations

import asyncio
import stat
import sys
import time
from pathlib import Path

import pytest

from pipelined import samples
from pipelined.errors import LimitExceededError
from pipelined.pool import WorkerPool
from pipelined.processing import ProcessingOptions, ProcessResult, ocr, process_file

from .builders import run
from .scans import mixed_pdf, scanned_pdf

pytestmark = pytest.mark.timeout(60)

ENGLISH = ProcessingOptions(pdf_ocr_languages=("eng",))
DEFAULT_MEMORY_MB = 1024  # the daemon's WORKER_MEMORY_MB


def text_pages(result: ProcessResult) -> list[str]:
    artifact = next(a for a in result.artifacts if a.name == "text.txt")
    return Path(artifact.path).read_text(encoding="utf-8").split("\f")


def words(text: str) -> list[str]:
    return text.lower().split()


def test_a_scanned_page_is_read_into_text_txt(tmp_path: Path) -> None:
    result = run(tmp_path, scanned_pdf(["Invoice 4711", "paid in full"]), ENGLISH)

    assert words(text_pages(result)[0]) == ["invoice", "4711", "paid", "in", "full"]
    assert result.metadata["ocr_pages"] == "1"
    assert "ocr_error" not in result.metadata
    assert result.metadata["char_count"] == len("\f".join(text_pages(result)))
    # The scratch files of pytesseract are gone; only the artifacts are left.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "preview-1024.webp",
        "text.txt",
    ]


def test_only_the_pages_without_text_are_read(tmp_path: Path) -> None:
    result = run(tmp_path, mixed_pdf("Typed page", ["Scanned words"]), ENGLISH)

    typed, scanned = text_pages(result)
    assert typed == "Typed page"  # as pypdf extracted it
    assert words(scanned) == ["scanned", "words"]
    assert result.metadata["ocr_pages"] == "2"


def test_pages_with_text_need_no_ocr(tmp_path: Path) -> None:
    result = run(tmp_path, samples.text_pdf(["One", "Two"]), ENGLISH)
    assert result.metadata["ocr_pages"] == ""
    assert "ocr_error" not in result.metadata


def test_without_ocr_in_the_rule_a_scan_has_an_empty_page(tmp_path: Path) -> None:
    result = run(tmp_path, scanned_pdf(["Invoice 4711"]))
    assert text_pages(result) == [""]
    assert "ocr_pages" not in result.metadata


def test_a_missing_language_is_named_and_the_others_still_read(tmp_path: Path) -> None:
    options = ProcessingOptions(pdf_ocr_languages=("eng", "xyz"))
    result = run(tmp_path, scanned_pdf(["Invoice 4711"]), options)

    assert words(text_pages(result)[0]) == ["invoice", "4711"]
    assert result.metadata["ocr_pages"] == "1"
    assert result.metadata["ocr_error"] == (
        "Tesseract language data missing: xyz; pages were read in eng"
    )


def test_with_no_language_installed_the_file_is_processed_without_ocr(tmp_path: Path) -> None:
    options = ProcessingOptions(pdf_ocr_languages=("xyz", "qqq"))
    body = mixed_pdf("Typed page", ["Scanned words"])
    # Twice: the second time from the languages the worker learnt the first time.
    for attempt in ("first", "second"):
        (tmp_path / attempt).mkdir()
        result = run(tmp_path / attempt, body, options)
        assert text_pages(result) == ["Typed page", ""]
        assert result.metadata["ocr_pages"] == ""
        assert result.metadata["ocr_error"] == (
            "Tesseract language data missing: xyz, qqq, so page 2 was not OCR'd"
        )


def test_without_tesseract_the_file_is_processed_and_the_metadata_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run(tmp_path, scanned_pdf(["Invoice"], ["Receipt"]), ENGLISH)

    assert text_pages(result) == ["", ""]
    assert result.metadata["ocr_pages"] == ""
    assert result.metadata["ocr_error"] == "Tesseract is not installed, so pages 1-2 were not OCR'd"
    assert result.metadata["page_count"] == 2


def test_pages_past_the_limit_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "OCR_MAX_PAGES", 1)
    result = run(tmp_path, scanned_pdf(["First"], ["Second"], ["Third"]), ENGLISH)

    assert words(text_pages(result)[0]) == ["first"]
    assert text_pages(result)[1:] == ["", ""]
    assert result.metadata["ocr_pages"] == "1"
    assert result.metadata["ocr_error"] == (
        "pages 2-3 were not OCR'd: over the limit of 1 pages per file"
    )


def test_a_job_with_no_time_left_skips_ocr(tmp_path: Path) -> None:
    # 2 s of job time is all kept back: for text.txt and for stopping a late tesseract.
    options = ProcessingOptions(pdf_ocr_languages=("eng",), job_timeout_s=2.0)
    result = run(tmp_path, scanned_pdf(["Invoice"]), options)

    assert text_pages(result) == [""]
    assert result.metadata["ocr_error"] == ("page 1 was not OCR'd: the job's time limit ran out")


def test_ocr_fits_under_the_default_memory_cap(tmp_path: Path) -> None:
    # A full Letter page at 300 dpi in both default languages, in a real worker: RLIMIT_AS
    # is inherited by tesseract.
    source = tmp_path / "letter.pdf"
    source.write_bytes(scanned_pdf(["Quarterly report"], width_in=8.5, height_in=11))
    options = ProcessingOptions(pdf_ocr_languages=("eng", "deu"))
    result = asyncio.run(run_in_pool(source, tmp_path / "out", options, 50.0))

    assert words(text_pages(result)[0]) == ["quarterly", "report"]
    assert result.metadata["ocr_pages"] == "1"
    assert "ocr_error" not in result.metadata


def test_workers_never_load_pytesseract(tmp_path: Path) -> None:
    # It imports numpy, whose OpenBLAS would start a thread per core in every worker: only
    # the OCR child loads it.
    source = tmp_path / "scan.pdf"
    source.write_bytes(scanned_pdf(["Scanned"]))
    pool = WorkerPool(workers=1, timeout_s=50.0, memory_mb=DEFAULT_MEMORY_MB)
    try:
        loaded = asyncio.run(pool.run(modules_after, str(source), str(tmp_path / "out"), ENGLISH))
    finally:
        pool.close()
    assert loaded == {"numpy": False, "pytesseract": False}


def modules_after(source: str, out: str, options: ProcessingOptions) -> dict[str, bool]:
    """In the worker: process_file, then which of the heavy modules the worker has loaded."""
    result = process_file(source, out, options)
    assert result.metadata["ocr_pages"] == "1"
    return {name: name in sys.modules for name in ("numpy", "pytesseract")}


# -- a tesseract that never finishes -------------------------------------------------------


def sleeping_tesseract(directory: Path) -> tuple[Path, Path]:
    """A stand-in tesseract that knows English and then sleeps; it writes its pid to a file."""
    pids = directory / "pids"
    script = directory / "tesseract"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --list-langs ]; then echo "List of available languages (1):"; echo eng;'
        " exit 0; fi\n"
        f"echo $$ >> {pids}\n"
        "exec sleep 300\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, pids


def test_a_tesseract_past_the_budget_is_stopped_and_the_file_processed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, pids = sleeping_tesseract(tmp_path)
    monkeypatch.setattr(ocr, "TESSERACT_COMMAND", str(script))
    options = ProcessingOptions(pdf_ocr_languages=("eng",), job_timeout_s=5.0)
    result = run(tmp_path, mixed_pdf("Typed page", ["Scanned"]), options)

    assert text_pages(result) == ["Typed page", ""]
    assert result.metadata["ocr_pages"] == ""
    assert result.metadata["ocr_error"] == "page 2 was not OCR'd: the job's time limit ran out"
    assert all_gone(read_pids(pids))


def test_no_tesseract_outlives_a_worker_killed_at_the_job_time_limit(tmp_path: Path) -> None:
    script, pids = sleeping_tesseract(tmp_path)
    source = tmp_path / "scan.pdf"
    source.write_bytes(scanned_pdf(["Scanned"]))
    # OCR believes it has the daemon's five minutes; the pool kills the worker long before.
    options = ProcessingOptions(pdf_ocr_languages=("eng",), job_timeout_s=300.0)

    with pytest.raises(LimitExceededError, match="job_timeout_s limit of 3 s"):
        asyncio.run(run_in_pool(source, tmp_path / "out", options, 3.0, str(script)))

    started = read_pids(pids)
    assert started  # the stand-in was reading when the worker was killed
    assert all_gone(started)


async def run_in_pool(
    source: Path,
    out: Path,
    options: ProcessingOptions,
    timeout_s: float,
    tesseract: str | None = None,
) -> ProcessResult:
    pool = WorkerPool(workers=1, timeout_s=timeout_s, memory_mb=DEFAULT_MEMORY_MB)
    try:
        return await pool.run(process_with, str(source), str(out), options, tesseract)
    finally:
        pool.close()


def process_with(
    source: str, out: str, options: ProcessingOptions, tesseract: str | None
) -> ProcessResult:
    """In the worker: process_file, with the stand-in tesseract if one is given."""
    if tesseract is not None:
        ocr.TESSERACT_COMMAND = tesseract
    return process_file(source, out, options)


def read_pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def all_gone(pids: list[int], wait_s: float = 10.0) -> bool:
    """Whether every process in pids has ended (a zombie has), waiting up to wait_s for it."""
    deadline = time.monotonic() + wait_s
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] not in {"Z", "X"}


def test_the_budget_keeps_a_margin_inside_the_job_time_limit() -> None:
    assert ocr.ocr_budget_s(300.0, 0.0) == 300.0 - 10.0 - 2.0
    assert ocr.ocr_budget_s(20.0, 5.0) == 20.0 - 5.0 - 2.0 - 2.0
    assert ocr.ocr_budget_s(2.0, 0.0) < 0
