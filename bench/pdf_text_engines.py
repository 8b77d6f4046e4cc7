"""Compare PDF text extraction: pypdf (what pipelined uses) against pypdfium2.

Each engine runs in its own freshly spawned process, so its peak resident memory is not
mixed with the other's or with this script's. Prints the median wall time over several
runs and the growth of peak RSS during the runs (which counts C allocations too, unlike
tracemalloc), then the pypdf/pypdfium2 ratios. No assertions: numbers for a human.

Usage: python bench/pdf_text_engines.py [--pages 20] [--repeats 5]
"""

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium  # type: ignore[import-untyped]  # ships no type information
from pypdf import PdfReader

from pipelined.samples import text_pdf

# A dense page of body text: 50 lines of about 90 characters, like a typical report.
_LINE = "The quick brown fox jumps over the lazy dog while 12,345 invoices (Q3) wait; "
_LINES_PER_PAGE = 50


@dataclass(frozen=True)
class Measurement:
    engine: str
    median_seconds: float
    peak_rss_growth_kib: int
    characters: int


def extract_with_pypdf(path: str) -> str:
    reader = PdfReader(path)
    return "\f".join(page.extract_text() for page in reader.pages)


def extract_with_pypdfium2(path: str) -> str:
    document = pdfium.PdfDocument(path)
    try:
        texts: list[str] = [page.get_textpage().get_text_bounded() for page in document]
    finally:
        document.close()
    return "\f".join(texts)


ENGINES: dict[str, Callable[[str], str]] = {
    "pypdf": extract_with_pypdf,
    "pypdfium2": extract_with_pypdfium2,
}


def measure(engine: str, path: str, repeats: int) -> Measurement:
    """Runs inside a fresh process, where both libraries are already imported (as in a
    pipelined worker), so the baseline excludes import cost and the growth is extraction's."""
    extract = ENGINES[engine]
    Path(path).read_bytes()  # page cache warm for both engines alike
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    durations = []
    text = ""
    for _ in range(repeats):
        started = time.perf_counter()
        text = extract(path)
        durations.append(time.perf_counter() - started)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return Measurement(engine, statistics.median(durations), peak_kib - baseline_kib, len(text))


def sample_pdf(pages: int) -> bytes:
    page_text = "\n".join(f"{n:02d} {_LINE}" for n in range(_LINES_PER_PAGE))
    return text_pdf([f"Page {index + 1}\n{page_text}" for index in range(pages)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        path = str(Path(workdir) / "sample.pdf")
        Path(path).write_bytes(sample_pdf(arguments.pages))
        context = multiprocessing.get_context("spawn")
        results = []
        for engine in ENGINES:
            with context.Pool(1) as pool:
                results.append(pool.apply(measure, (engine, path, arguments.repeats)))

    print(f"{arguments.pages}-page generated PDF, median of {arguments.repeats} runs")
    print(f"{'engine':<10} {'time ms':>9} {'ms/page':>8} {'peak RSS +MiB':>14} {'chars':>7}")
    for result in results:
        print(
            f"{result.engine:<10} {result.median_seconds * 1000:9.1f}"
            f" {result.median_seconds * 1000 / arguments.pages:8.2f}"
            f" {result.peak_rss_growth_kib / 1024:14.1f} {result.characters:7d}"
        )
    pypdf, pdfium = results
    print(f"time ratio pypdf/pypdfium2: {pypdf.median_seconds / pdfium.median_seconds:.1f}x")
    memory_ratio = pypdf.peak_rss_growth_kib / max(1, pdfium.peak_rss_growth_kib)
    print(f"peak RSS growth ratio pypdf/pypdfium2: {memory_ratio:.1f}x")


if __name__ == "__main__":
    main()
