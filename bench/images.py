"""Thumbnail speed and quality: naive Pillow vs pipelined's path vs libvips (when installed).

Inputs are generated in memory: two 12 MP JPEGs (a photo-like one with sensor-like grain,
about 3 MB as a phone writes it, and a smooth one of a few hundred KB), a 2 MP RGBA PNG and a
20-page PDF. Each runner runs several times, interleaved with the others so that load from
other processes hits every column alike; the median per image is printed twice, as CPU time
(user + system, children included: what a job costs a pool of one job per core, and steady
on a shared machine) and as wall time, each with the ratios the targets are stated in:

  naive/pipelined    how many times faster pipelined is than the naive Pillow path
  pipelined/libvips  pipelined's time over libvips's (1.00 = as fast; target at most 1.20)

Columns:
  naive      open, full decode, Lanczos resize to each size, save WebP at the same quality
             with Pillow's defaults; for the PDF: pypdf text of every page, pypdfium2
             render of page 1 at 1024 px, WebP
  pipelined  pipelined.processing.process_file, everything included (sniffing, limits,
             shrink-on-load, orientation, sRGB, stripping; for the PDF the text as well, and
             the preview rendered in its isolated child)
  libvips    pyvips.Image.thumbnail (shrink-on-load, sRGB, Lanczos) at the largest size, the
             smaller from that, WebP at pipelined's quality and effort, metadata stripped;
             one thread and no operation cache, as one job per core runs in pipelined's
             pool. Skipped if pyvips cannot be imported (install the bench extra); n/a for
             the PDF when this libvips has no PDF loader (pyvips-binary has none).

Then the PSNR of pipelined's thumbnails against a full-decode Lanczos reference.
No assertions: numbers for a human.

Usage: python bench/images.py [--repeats 7]
"""

import argparse
import importlib
import io
import math
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

import pypdfium2 as pdfium  # type: ignore[import-untyped]  # ships no type information
from PIL import Image, ImageChops
from pypdf import PdfReader

from pipelined.processing import ProcessingOptions, process_file
from pipelined.processing.options import DEFAULT_WEBP_METHOD as WEBP_METHOD
from pipelined.processing.renditions import REDUCING_GAP, RESAMPLE
from pipelined.samples import photo_jpeg, text_pdf, transparent_png

QUALITY = ProcessingOptions().thumbnail_quality
SIZE_SETS: tuple[tuple[int, ...], ...] = ((256,), (1024,), (256, 1024))
PDF_SIZES: tuple[int, ...] = (1024,)
# Grain like a phone sensor's at base ISO: what makes a real photo's JPEG 3 MB, not 300 KB,
# and its entropy decoding, which no shrink-on-load avoids, the larger part of the cost.
SENSOR_NOISE_SIGMA = 8

Runner = Callable[[str, tuple[int, ...], Path], None]
Codec = tuple[Literal["webp", "jpeg"], int]
# WebP as deployed, and near-lossless JPEG to isolate the resampling path from codec loss.
QUALITY_CODECS: tuple[Codec, ...] = (("webp", QUALITY), ("jpeg", 100))


@dataclass(frozen=True)
class BenchInput:
    label: str
    path: str
    is_pdf: bool


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


@dataclass(frozen=True)
class Row:
    label: str
    sizes: tuple[int, ...]
    naive: Timing
    pipelined: Timing
    libvips: Timing | None


def load_pyvips() -> ModuleType | None:
    try:
        module = importlib.import_module("pyvips")  # a bench-only extra
    except ImportError:
        return None
    except OSError:  # the binding is installed but the libvips shared library is not
        return None
    module.cache_set_max(0)  # a cached decode would make every repeat free
    module.concurrency_set(1)
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


def naive_pdf(path: str, sizes: tuple[int, ...], out_dir: Path) -> None:
    text = "\f".join(page.extract_text() for page in PdfReader(path).pages)
    (out_dir / "naive.txt").write_text(text, encoding="utf-8")
    document = pdfium.PdfDocument(path)
    try:
        page = document[0]
        for size in sizes:
            bitmap = page.render(scale=size / max(page.get_size()))
            bitmap.to_pil().save(out_dir / f"naive-{size}.webp", quality=QUALITY)
    finally:
        document.close()


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
        largest = pyvips.Image.thumbnail(path, max(sizes))
        if len(sizes) > 1:
            largest = largest.copy_memory()  # read once, resized again below
        for size in sorted(sizes, reverse=True):
            thumbnail = largest if size == max(sizes) else largest.thumbnail_image(size)
            thumbnail.write_to_file(
                str(out_dir / f"vips-{size}.webp"), Q=QUALITY, effort=WEBP_METHOD, keep="none"
            )

    return run


def can_load(pyvips: ModuleType, path: str) -> bool:
    try:
        pyvips.Image.new_from_file(path)
    except pyvips.Error:
        return False
    return True


def cpu_seconds() -> float:
    """User and system time of this process and of the children it waited for (the PDF
    preview is rendered in a forked child)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def median_timings(
    runners: Sequence[Runner], path: str, sizes: tuple[int, ...], repeats: int
) -> list[Timing]:
    """Median wall and CPU time of each runner, runs interleaved across runners."""
    walls: list[list[float]] = [[] for _ in runners]
    cpus: list[list[float]] = [[] for _ in runners]
    with tempfile.TemporaryDirectory() as workdir:
        for runner in runners:
            runner(path, sizes, Path(workdir))  # warm-up: imports, codec initialisation
        for _ in range(repeats):
            for index, runner in enumerate(runners):
                cpu_started, wall_started = cpu_seconds(), time.perf_counter()
                runner(path, sizes, Path(workdir))
                walls[index].append(time.perf_counter() - wall_started)
                cpus[index].append(cpu_seconds() - cpu_started)
    return [
        Timing(statistics.median(wall), statistics.median(cpu))
        for wall, cpu in zip(walls, cpus, strict=True)
    ]


def photo_like_jpeg(width: int, height: int) -> bytes:
    """samples.photo_jpeg's scene with Gaussian grain, saved at quality 90 like a phone."""
    with Image.open(io.BytesIO(photo_jpeg(width, height, orientation=1))) as scene:
        scene.load()
        grain = Image.merge(
            "RGB", [Image.effect_noise((width, height), SENSOR_NOISE_SIGMA) for _ in range(3)]
        )
        photo = ImageChops.add(scene, grain, offset=-128)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_inputs(workdir: Path) -> list[BenchInput]:
    pdf_page = "\n".join(f"{n:02d} The quick brown fox jumps over the lazy dog." for n in range(50))
    generated = [
        ("12 MP JPEG", "photo.jpg", photo_like_jpeg(4000, 3000), False),
        ("12 MP smooth", "smooth.jpg", photo_jpeg(4000, 3000, orientation=1), False),
        ("2 MP PNG", "logo.png", transparent_png(1732, 1155), False),
        ("20-page PDF", "report.pdf", text_pdf([pdf_page] * 20), True),
    ]
    inputs = []
    for label, name, body, is_pdf in generated:
        path = workdir / name
        path.write_bytes(body)
        inputs.append(BenchInput(f"{label} ({len(body) / 1e6:.1f} MB)", str(path), is_pdf))
    return inputs


def timing_rows(inputs: Sequence[BenchInput], pyvips: ModuleType | None, repeats: int) -> list[Row]:
    rows = []
    for item in inputs:
        for sizes in (PDF_SIZES,) if item.is_pdf else SIZE_SETS:
            runners: list[Runner] = [naive_pdf if item.is_pdf else naive_pillow, pipelined]
            if pyvips is not None and can_load(pyvips, item.path):
                runners.append(libvips_runner(pyvips))
            timings = median_timings(runners, item.path, sizes, repeats)
            libvips = timings[2] if len(timings) > 2 else None
            rows.append(Row(item.label, sizes, timings[0], timings[1], libvips))
    return rows


def print_table(rows: Sequence[Row], measure: Literal["cpu", "wall"]) -> None:
    print()
    print(f"{measure} time per image, ms, median of interleaved runs")
    print(
        f"{'input':<22} {'sizes':<9} {'naive':>8} {'pipelined':>10} {'libvips':>8}"
        f" {'naive/pipelined':>16} {'pipelined/libvips':>18}"
    )
    for row in rows:
        naive, ours = getattr(row.naive, measure), getattr(row.pipelined, measure)
        vips = None if row.libvips is None else getattr(row.libvips, measure)
        libvips = "n/a" if vips is None else f"{vips * 1000:.1f}"
        versus = "n/a" if vips is None else f"{ours / vips:.2f}"
        print(
            f"{row.label:<22} {','.join(map(str, row.sizes)):<9} {naive * 1000:8.1f}"
            f" {ours * 1000:10.1f} {libvips:>8} {naive / ours:15.2f}x {versus:>18}"
        )


def targets(rows: Sequence[Row]) -> None:
    """The issue's targets for the 12 MP JPEG photo, each stated with its measured ratio."""
    print()
    print("targets on the 12 MP JPEG photo: naive/pipelined at least 3x (256) and 2x (1024),")
    print("pipelined/libvips at most 1.20 at either size")
    for measure in ("cpu", "wall"):
        for size, wanted in ((256, 3.0), (1024, 2.0)):
            [row] = [r for r in rows if r.label.startswith("12 MP JPEG") and r.sizes == (size,)]
            ours = getattr(row.pipelined, measure)
            speed_up = getattr(row.naive, measure) / ours
            line = f"  {measure:<4} {size:>4} px: naive/pipelined {speed_up:5.2f}x "
            line += "(met)" if speed_up >= wanted else "(NOT met)"
            if row.libvips is not None:
                ratio = ours / getattr(row.libvips, measure)
                line += f", pipelined/libvips {ratio:.2f} "
                line += "(met)" if ratio <= 1.2 else "(NOT met)"
            print(line)


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
    print("PSNR of thumbnails against full decode + Lanczos (unencoded), dB;")
    print("codec 'none' is pipelined's resampling path before encoding")
    print(f"{'input':<22} {'size':>5} {'codec':<10} {'naive':>7} {'pipelined':>10}")
    for item in inputs:
        if item.is_pdf:
            continue
        for size in (256, 1024):
            reference = lanczos_reference(item.path, size)
            resampled = pipelined_resample(item.path, size)
            print(
                f"{item.label:<22} {size:>5} {'none':<10} {'inf':>7}"
                f" {psnr(reference, resampled):10.2f}"
            )
            for codec in QUALITY_CODECS:
                naive, ours = encoded_thumbnails(item.path, size, codec)
                label = f"{codec[0]} q{codec[1]}"
                print(
                    f"{item.label:<22} {size:>5} {label:<10}"
                    f" {psnr(reference, naive):7.2f} {psnr(reference, ours):10.2f}"
                )


def lanczos_reference(path: str, size: int) -> Image.Image:
    with Image.open(path) as original:
        original.load()
        return on_white(original.resize(fit(original.size, size), Image.Resampling.LANCZOS))


def pipelined_resample(path: str, size: int) -> Image.Image:
    """pipelined's resampling steps alone, unencoded: draft to the covering JPEG scale
    (1/2, 1/4, 1/8), reduce by the integer factor the reducing gap allows (premultiplied
    for alpha), then the final pass, with processing/images.py's own filter and gap."""
    with Image.open(path) as original:
        target = fit(original.size, size)
        original.draft(None, target)
        original.load()
        picture = original.convert("RGBa") if original.mode == "RGBA" else original
        factor = int(max(picture.size) / max(target) / REDUCING_GAP)
        if factor >= 2:
            picture = picture.reduce(factor)
        resized = picture.resize(target, RESAMPLE, reducing_gap=REDUCING_GAP)
        return on_white(resized.convert("RGBA") if resized.mode == "RGBa" else resized)


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
    parser.add_argument("--repeats", type=int, default=7)
    arguments = parser.parse_args()
    pyvips = load_pyvips()
    if pyvips is None:
        print("libvips column skipped: `import pyvips` failed (pyvips/libvips not installed)")
    else:
        print(f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, 1 thread")
    print(f"WebP quality {QUALITY}, effort {WEBP_METHOD} (pipelined, libvips) and 4 (naive)")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as workdir:
        inputs = make_inputs(Path(workdir))
        rows = timing_rows(inputs, pyvips, arguments.repeats)
        print_table(rows, "cpu")
        print_table(rows, "wall")
        targets(rows)
        quality_table(inputs)


if __name__ == "__main__":
    main()
