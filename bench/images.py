"""Thumbnail speed and quality: naive Pillow vs pipelined's path vs libvips (when installed).

Inputs are generated in memory: a 12 MP JPEG photo, a 2 MP RGBA PNG and a 20-page PDF.
For each input and size set the median wall time of a few runs is printed per column with
its speed-up over the naive Pillow baseline measured in this same process, then the PSNR of
pipelined's 1024 thumbnail against a full-decode Lanczos reference. No assertions.

  naive     : open, full decode, Lanczos resize to each size, save WebP (no orientation,
              no colour management, no stripping beyond Pillow's defaults)
  pipelined : pipelined.processing.process_file, everything included (sniffing, limits,
              shrink-on-load, orientation, sRGB, stripping; for the PDF also the text)
  libvips   : pyvips.Image.thumbnail + WebP save, if pyvips can be imported

Usage: python bench/images.py [--repeats 3]
"""

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from PIL import Image, ImageChops

from pipelined.processing import ProcessingOptions, process_file
from pipelined.samples import photo_jpeg, text_pdf, transparent_png

QUALITY = ProcessingOptions().thumbnail_quality
SIZE_SETS: tuple[tuple[int, ...], ...] = ((256,), (1024,), (256, 1024))

Runner = Callable[[str, tuple[int, ...], Path], None]
Codec = tuple[Literal["webp", "jpeg"], int]
# WebP as deployed, and near-lossless JPEG to isolate the resampling path from codec loss.
QUALITY_CODECS: tuple[Codec, ...] = (("webp", QUALITY), ("jpeg", 100))


@dataclass(frozen=True)
class BenchInput:
    label: str
    path: str
    is_pdf: bool


def load_pyvips() -> ModuleType | None:
    try:
        import pyvips  # type: ignore[import-not-found]  # noqa: PLC0415  (optional)
    except ImportError:
        return None
    except OSError:  # the binding is installed but the libvips shared library is not
        return None
    module: ModuleType = pyvips
    return module


def fit(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    scale = min(1.0, long_edge / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def naive_pillow(
    path: str, sizes: tuple[int, ...], out_dir: Path, codec: Codec = ("webp", QUALITY)
) -> None:
    file_format, quality = codec
    with Image.open(path) as image:
        image.load()
        # JPEG has no alpha channel; flatten as pipelined does (default white background).
        source = on_white(image) if file_format == "jpeg" else image
        for size in sizes:
            thumbnail = source.resize(fit(source.size, size), Image.Resampling.LANCZOS)
            thumbnail.save(out_dir / f"naive-{size}.{file_format}", quality=quality)


def pipelined(
    path: str, sizes: tuple[int, ...], out_dir: Path, codec: Codec = ("webp", QUALITY)
) -> None:
    file_format, quality = codec
    options = ProcessingOptions(
        thumbnail_sizes=sizes,
        pdf_preview_size=max(sizes),
        thumbnail_format=file_format,
        thumbnail_quality=quality,
    )
    process_file(path, str(out_dir), options)


def libvips_runner(pyvips: ModuleType) -> Runner:
    def run(path: str, sizes: tuple[int, ...], out_dir: Path) -> None:
        for size in sizes:
            thumbnail = pyvips.Image.thumbnail(path, size)
            thumbnail.write_to_file(str(out_dir / f"vips-{size}.webp"), Q=QUALITY, strip=True)

    return run


def median_seconds(
    runners: Sequence[Runner], path: str, sizes: tuple[int, ...], repeats: int
) -> list[float]:
    """Median time of each runner; runs are interleaved so that load from other processes
    on a shared machine hits every column alike instead of skewing one of them."""
    durations: list[list[float]] = [[] for _ in runners]
    with tempfile.TemporaryDirectory() as workdir:
        for runner in runners:
            runner(path, sizes, Path(workdir))  # warm-up: imports, codec initialisation
        for _ in range(repeats):
            for runner, runs in zip(runners, durations, strict=True):
                started = time.perf_counter()
                runner(path, sizes, Path(workdir))
                runs.append(time.perf_counter() - started)
    return [statistics.median(runs) for runs in durations]


def make_inputs(workdir: Path) -> list[BenchInput]:
    pdf_page = "\n".join(f"{n:02d} The quick brown fox jumps over the lazy dog." for n in range(50))
    generated = [
        ("12 MP JPEG", "photo.jpg", photo_jpeg(4000, 3000, orientation=1), False),
        ("2 MP PNG", "logo.png", transparent_png(1732, 1155), False),
        ("20-page PDF", "report.pdf", text_pdf([pdf_page] * 20), True),
    ]
    inputs = []
    for label, name, body, is_pdf in generated:
        path = workdir / name
        path.write_bytes(body)
        inputs.append(BenchInput(label, str(path), is_pdf))
    return inputs


def timing_table(inputs: Sequence[BenchInput], pyvips: ModuleType | None, repeats: int) -> None:
    print(f"median of {repeats} runs, milliseconds per image (speed-up vs naive Pillow)")
    print(f"{'input':<12} {'sizes':<10} {'naive':>9} {'pipelined':>18} {'libvips':>18}")
    for item in inputs:
        for sizes in SIZE_SETS:
            if item.is_pdf and len(sizes) > 1:
                continue  # a PDF gets a single preview size
            row = timing_row(item, sizes, pyvips, repeats)
            print(f"{item.label:<12} {','.join(map(str, sizes)):<10} {row}")


def timing_row(
    item: BenchInput, sizes: tuple[int, ...], pyvips: ModuleType | None, repeats: int
) -> str:
    # Pillow cannot read PDFs, so a PDF has no naive baseline.
    runners: list[Runner] = [] if item.is_pdf else [naive_pillow]
    runners.append(pipelined)
    if pyvips is not None:
        runners.append(libvips_runner(pyvips))
    timings = median_seconds(runners, item.path, sizes, repeats)
    baseline = None if item.is_pdf else timings.pop(0)
    cells = [f"{'n/a':>9}" if baseline is None else f"{baseline * 1000:9.1f}"]
    for seconds in timings:
        ratio = "" if baseline is None else f" ({baseline / seconds:.1f}x)"
        cells.append(f"{seconds * 1000:9.1f}{ratio:>9}")
    if pyvips is None:
        cells.append(f"{'skipped':>18}")
    return " ".join(cells)


def psnr(reference: Image.Image, candidate: Image.Image) -> float:
    """Peak signal-to-noise ratio over RGB, in dB (higher is closer; above ~40 dB is
    visually indistinguishable for thumbnails)."""
    difference = ImageChops.difference(reference, candidate)
    histogram = difference.histogram()
    squared_error = sum(count * (index % 256) ** 2 for index, count in enumerate(histogram))
    mean_squared_error = squared_error / (reference.width * reference.height * 3)
    if mean_squared_error == 0:
        return math.inf
    return 10 * math.log10(255**2 / mean_squared_error)


def on_white(image: Image.Image) -> Image.Image:
    # Lossy WebP may rewrite the colour of fully transparent pixels; compare what is seen.
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def quality_table(inputs: Sequence[BenchInput]) -> None:
    print()
    print("PSNR of 1024 thumbnails against full decode + Lanczos (unencoded), dB;")
    print("codec 'none' is pipelined's resampling path before encoding")
    print(f"{'input':<12} {'codec':<10} {'naive':>7} {'pipelined':>10}")
    for item in inputs:
        if item.is_pdf:
            continue
        reference = lanczos_reference(item.path, 1024)
        resampled = shrink_on_load_resample(item.path, 1024)
        print(f"{item.label:<12} {'none':<10} {'inf':>7} {psnr(reference, resampled):10.2f}")
        for codec in QUALITY_CODECS:
            naive, ours = encoded_thumbnails(item.path, 1024, codec)
            label = f"{codec[0]} q{codec[1]}"
            print(
                f"{item.label:<12} {label:<10}"
                f" {psnr(reference, naive):7.2f} {psnr(reference, ours):10.2f}"
            )


def lanczos_reference(path: str, size: int) -> Image.Image:
    with Image.open(path) as original:
        original.load()
        return on_white(original.resize(fit(original.size, size), Image.Resampling.LANCZOS))


def shrink_on_load_resample(path: str, size: int) -> Image.Image:
    """pipelined's resampling steps alone, unencoded: draft to the covering JPEG scale
    (1/2, 1/4, 1/8), then reduce + Lanczos with a reducing gap of 3."""
    with Image.open(path) as original:
        target = fit(original.size, size)
        original.draft(None, target)
        original.load()
        return on_white(original.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0))


def encoded_thumbnails(path: str, size: int, codec: Codec) -> tuple[Image.Image, Image.Image]:
    """The naive and pipelined thumbnails of one size, decoded back and flattened."""
    extension = {"webp": "webp", "jpeg": "jpg"}[codec[0]]
    with tempfile.TemporaryDirectory() as workdir:
        out_dir = Path(workdir)
        naive_pillow(path, (size,), out_dir, codec)
        pipelined(path, (size,), out_dir, codec)
        with (
            Image.open(out_dir / f"naive-{size}.{codec[0]}") as naive,
            Image.open(out_dir / f"thumb-{size}.{extension}") as ours,
        ):
            return on_white(naive), on_white(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    pyvips = load_pyvips()
    if pyvips is None:
        print("libvips column skipped: `import pyvips` failed (pyvips/libvips not installed)")
    with tempfile.TemporaryDirectory() as workdir:
        inputs = make_inputs(Path(workdir))
        timing_table(inputs, pyvips, arguments.repeats)
        quality_table(inputs)


if __name__ == "__main__":
    main()
