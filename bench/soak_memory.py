"""Memory soak: thousands of small jobs through the worker pool from one asyncio process.

The daemon's side of processing is this: schedule process_file on the pool, await the
result, handle the error. This script does exactly that, with a mix of uploads (photos with
EXIF, PNGs with alpha, PDFs, and inputs that fail: corrupt, over a limit, not a type we
take), keeps a number of jobs in flight as the daemon does, and prints this process's
resident memory at intervals, with the number of distinct worker processes seen so far
(workers are recycled every --max-tasks jobs). Not a test: a measurement to quote. A flat
RSS column after warm-up is the result to look for.

Usage: python bench/soak_memory.py [--jobs 2000] [--workers 2] [--inflight 8] [--max-tasks 50]
"""

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from pathlib import Path

from pipelined import samples
from pipelined.errors import PermanentError
from pipelined.pool import WorkerPool
from pipelined.processing import ProcessingOptions, process_file


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_in_worker(source: str, out_dir: str, options: ProcessingOptions) -> tuple[str, int]:
    """What the daemon schedules, plus the worker's pid (to count recycled workers)."""
    try:
        process_file(source, out_dir, options)
        outcome = "processed"
    except PermanentError:
        outcome = "failed"
    return outcome, os.getpid()


def inputs() -> list[tuple[str, bytes]]:
    """A small, varied set of uploads; each job picks the next one round-robin."""
    over_limit = samples.photo_jpeg(600, 400)  # judged against max_pixels below
    return [
        ("photo.jpg", samples.photo_jpeg(400, 300, orientation=6, gps=True)),
        ("logo.png", samples.transparent_png(400, 300)),
        ("report.pdf", samples.text_pdf(["page one", "page two", "page three"])),
        ("broken.jpg", samples.corrupt_jpeg()),
        ("notes.jpg", b"plain text, not an image"),
        ("big.jpg", over_limit),
    ]


async def soak(arguments: argparse.Namespace) -> None:
    pool = WorkerPool(arguments.workers, 30, 512, arguments.max_tasks)
    options = ProcessingOptions(thumbnail_sizes=(256, 1024), max_pixels=200_000)
    outcomes = {"processed": 0, "failed": 0}
    pids: set[int] = set()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        sources = []
        for name, body in inputs():
            path = Path(root) / name
            path.write_bytes(body)
            sources.append(path)
        queue = iter(itertools.islice(itertools.cycle(sources), arguments.jobs))

        def report() -> None:
            done = outcomes["processed"] + outcomes["failed"]
            print(
                f"{done:>6} {rss_mib():>9.1f} {len(pids):>8} {outcomes['processed']:>9}"
                f" {outcomes['failed']:>7} {time.perf_counter() - started:>8.1f}",
                flush=True,
            )

        async def runner() -> None:
            # Like the daemon's consumer: a fixed number of jobs in flight, each awaited.
            for source in queue:
                with tempfile.TemporaryDirectory(dir=root) as workdir:
                    outcome, pid = await pool.run(process_in_worker, str(source), workdir, options)
                outcomes[outcome] += 1
                pids.add(pid)
                done = outcomes["processed"] + outcomes["failed"]
                if done % arguments.every == 0:
                    report()

        print(f"{'jobs':>6} {'RSS MiB':>9} {'workers':>8} {'processed':>9} {'failed':>7} {'s':>8}")
        report()
        await asyncio.gather(*(runner() for _ in range(arguments.inflight)))
    pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--max-tasks", type=int, default=50)
    parser.add_argument("--every", type=int, default=250, help="print a line every N jobs")
    asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
