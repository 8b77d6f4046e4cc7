"""Encoder effort against size and quality: libwebp methods 0-6, AVIF speeds 0-10, JPEG.

Each photo of the set (bench/images.py's photo-like 12 MP JPEGs, with sensor-like grain) is
resampled to each thumbnail size exactly as pipelined resamples it (images.pipelined_resample),
and that unencoded thumbnail is the reference. Each setting encodes it at pipelined's quality
(82); the table gives, per setting and size, averaged over the photos:

  CPU ms    user + system CPU of one encode (all encoder threads: AVIF is multi-threaded),
            median of --repeats runs (one run for AVIF speeds below 4, which take seconds)
  bytes     output size; and the ratio to the current default's
  PSNR dB   over RGB against the reference (higher is closer)
  SSIM      on luma (BT.601), 7x7 uniform window, K1 0.01, K2 0.03 (scikit-image's defaults)

AVIF's quality scale is not WebP's: at the same number it spends far more bytes for a little
more PSNR, so --avif-quality sets it apart (about 60 matches WebP 82 on these photos).

Usage: python bench/encoders.py [--photos 3] [--megapixels 12] [--sizes 256,1024]
                                [--repeats 5] [--avif-speeds 0-10] [--avif-quality 82]
                                [--out encoders-results.json]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from corpus import photo_size
from images import photo_like_jpeg, pipelined_resample
from PIL import Image, features

from pipelined.processing.options import DEFAULT_QUALITY
from pipelined.processing.options import DEFAULT_WEBP_METHOD as WEBP_METHOD

SLOW_AVIF_BELOW = 4  # speeds under this take seconds per encode: measured once
AVIF_DEFAULT_SPEED = 6  # Pillow's, which pipelined uses today (it passes no speed)


@dataclass(frozen=True)
class Setting:
    label: str
    pillow_format: str
    parameters: tuple[tuple[str, Any], ...]
    slow: bool = False


@dataclass
class Row:
    setting: str
    size: int
    cpu_ms: float
    bytes: float
    bytes_vs_default: float
    cpu_vs_default: float
    psnr_db: float
    ssim: float


def settings(avif_speeds: Sequence[int], avif_quality: int) -> list[Setting]:
    rows = [
        Setting(f"webp m{method}", "WEBP", (("quality", DEFAULT_QUALITY), ("method", method)))
        for method in range(7)
    ]
    if features.check("avif"):
        rows += [
            Setting(
                f"avif s{speed} q{avif_quality}",
                "AVIF",
                (("quality", avif_quality), ("speed", speed)),
                slow=speed < SLOW_AVIF_BELOW,
            )
            for speed in avif_speeds
        ]
    rows.append(Setting("jpeg", "JPEG", (("quality", DEFAULT_QUALITY), ("optimize", True))))
    return rows


def encode(image: Image.Image, setting: Setting) -> tuple[bytes, float]:
    buffer = io.BytesIO()
    started = time.process_time()
    image.save(buffer, setting.pillow_format, **dict(setting.parameters))
    return buffer.getvalue(), time.process_time() - started


def psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    error = np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2)
    return math.inf if error == 0 else 10 * math.log10(255**2 / error)


def box_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean over every window x window block (valid positions only), by an integral image."""
    integral = np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    total = (
        integral[window:, window:]
        - integral[:-window, window:]
        - integral[window:, :-window]
        + integral[:-window, :-window]
    )
    return np.asarray(total / window**2)


def ssim(reference: np.ndarray, candidate: np.ndarray, window: int = 7) -> float:
    """Mean SSIM of two 8-bit luma planes (Wang et al. 2004), sample covariance as skimage."""
    x, y = reference.astype(np.float64), candidate.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    unbias = window**2 / (window**2 - 1)
    mx, my = box_mean(x, window), box_mean(y, window)
    vx = unbias * (box_mean(x * x, window) - mx * mx)
    vy = unbias * (box_mean(y * y, window) - my * my)
    cxy = unbias * (box_mean(x * y, window) - mx * my)
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(index.mean())


def measure(
    references: Sequence[Image.Image], setting: Setting, repeats: int
) -> tuple[float, float, float, float]:
    """Mean over the photos of (CPU s, bytes, PSNR, SSIM) for one setting."""
    cpu, sizes, psnrs, ssims = [], [], [], []
    for reference in references:
        runs = [encode(reference, setting) for _ in range(1 if setting.slow else repeats)]
        data = runs[0][0]
        cpu.append(statistics.median(seconds for _, seconds in runs))
        sizes.append(len(data))
        with Image.open(io.BytesIO(data)) as decoded:
            decoded_rgb = decoded.convert("RGB")
        psnrs.append(psnr(np.asarray(reference), np.asarray(decoded_rgb)))
        ssims.append(ssim(np.asarray(reference.convert("L")), np.asarray(decoded_rgb.convert("L"))))
    return (statistics.fmean(cpu), statistics.fmean(sizes), statistics.fmean(psnrs),
            statistics.fmean(ssims))  # fmt: skip


def warm_up(image: Image.Image, candidates: Sequence[Setting]) -> None:
    """One untimed encode per format: the first call of a codec pays its set-up."""
    fastest = {s.pillow_format: s for s in candidates if not s.slow}
    for setting in fastest.values():
        encode(image, setting)


def table(
    references: dict[int, list[Image.Image]], candidates: Sequence[Setting], repeats: int
) -> list[Row]:
    warm_up(next(iter(references.values()))[0], candidates)
    rows = []
    default_label = f"webp m{WEBP_METHOD}"
    for size, images in references.items():
        measured = {s.label: measure(images, s, repeats) for s in candidates}
        default_cpu, default_bytes, _, _ = measured[default_label]
        for label, (cpu, size_bytes, psnr_db, ssim_index) in measured.items():
            rows.append(
                Row(
                    setting=label,
                    size=size,
                    cpu_ms=round(1000 * cpu, 2),
                    bytes=round(size_bytes),
                    bytes_vs_default=round(size_bytes / default_bytes, 3),
                    cpu_vs_default=round(cpu / default_cpu, 2),
                    psnr_db=round(psnr_db, 2),
                    ssim=round(ssim_index, 4),
                )
            )
    return rows


def print_markdown(rows: Sequence[Row]) -> None:
    for size in dict.fromkeys(row.size for row in rows):
        print(f"\n{size} px long edge, quality {DEFAULT_QUALITY} "
              f"(ratios against today's default, webp m{WEBP_METHOD})\n")  # fmt: skip
        print("| setting | CPU ms | CPU x | bytes | bytes x | PSNR dB | SSIM |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in (r for r in rows if r.size == size):
            print(
                f"| {row.setting} | {row.cpu_ms:.1f} | {row.cpu_vs_default:.2f} | "
                f"{row.bytes:,.0f} | {row.bytes_vs_default:.3f} | {row.psnr_db:.2f} | "
                f"{row.ssim:.4f} |"
            )


def speeds(text: str) -> list[int]:
    """'0-10' or '4,6,8'."""
    if "-" in text:
        low, high = (int(part) for part in text.split("-"))
        return list(range(low, high + 1))
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--megapixels", type=float, default=12)
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--avif-speeds", type=speeds, default=list(range(11)))
    parser.add_argument(
        "--avif-quality",
        type=int,
        default=DEFAULT_QUALITY,
        help="AVIF's quality (its scale is not WebP's: about 60 matches WebP 82 here)",
    )
    parser.add_argument("--out", type=Path, default=Path("encoders-results.json"))
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.sizes.split(",")]
    width, height = photo_size(arguments.megapixels)
    print(f"{arguments.photos} photo-like JPEGs of {width}x{height}; Pillow {PIL.__version__}, "
          f"libwebp {features.version('webp')}, libavif {features.version('avif')}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    references: dict[int, list[Image.Image]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory() as workdir:
        for n in range(arguments.photos):
            path = Path(workdir) / f"photo-{n}.jpg"
            path.write_bytes(photo_like_jpeg(width, height))
            for size in sizes:
                references[size].append(pipelined_resample(str(path), size).convert("RGB"))
    rows = table(
        references, settings(arguments.avif_speeds, arguments.avif_quality), arguments.repeats
    )
    print_markdown(rows)
    arguments.out.write_text(
        json.dumps(
            {
                "photos": arguments.photos,
                "source": f"{width}x{height}",
                "quality": DEFAULT_QUALITY,
                "avif_quality": arguments.avif_quality,
                "pillow": PIL.__version__,
                "libwebp": features.version("webp"),
                "libavif": features.version("avif"),
                "load_average_at_end": os.getloadavg(),
                "rows": [asdict(row) for row in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {arguments.out}")


if __name__ == "__main__":
    main()
