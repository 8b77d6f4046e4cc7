"""CPU per job of staging its files: a folder made and removed per job, against job folders.

Each job writes a photo-sized source (in the 1 MiB chunks the S3 download writes), then two
thumbnails, which are read back as the upload reads them. The baseline makes a temporary
folder per job and removes it, as the pipeline did; staging.JobFolders keeps the folder and
writes the next source over the last one (staging.write_over). Jobs overlap as in the daemon:
each ends when --in-flight newer ones have begun, so a job folder comes back to the next job
after as many others have used theirs. Both kinds run in this process, in alternating rounds;
the figure is this process's CPU (user + system) per job, the median over the rounds.

Usage: python bench/staging.py [--dir DIR] [--in-flight 8] [--jobs 200] [--rounds 5]
  --dir        where to stage (default: the system's temporary folder; try a tmpfs such as
               /dev/shm, as a Kubernetes emptyDir with medium Memory is)
  --in-flight  jobs open at once (default 8, MAX_INFLIGHT's default)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from pipelined.aws.s3 import CHUNK_BYTES  # the size of the chunks the S3 download writes
from pipelined.staging import SOURCE_NAME, JobFolders, write_over

SOURCE_BYTES = 3_000_000  # a 12 MP photo as a phone writes it
THUMBNAIL_BYTES = (15_000, 100_000)

Opener = Callable[[Path], AbstractContextManager[BinaryIO]]
Staging = Callable[[], AbstractContextManager[tuple[Path, Path]]]
"""A job's staging: the source's path and the artifacts' folder, given back on leaving."""


def stage(source: Path, output: Path, chunks: list[bytes], opened: Opener) -> None:
    with opened(source) as file:
        for chunk in chunks:
            file.write(chunk)
    for number, size in enumerate(THUMBNAIL_BYTES):
        artifact = output / f"thumb-{number}"
        artifact.write_bytes(b"t" * size)
        artifact.read_bytes()


def kinds(root: str) -> dict[str, tuple[Staging, Opener]]:
    folders = JobFolders(root)

    @contextmanager
    def folder_per_job() -> Iterator[tuple[Path, Path]]:
        with tempfile.TemporaryDirectory(prefix="pipelined-", dir=root) as work:
            yield Path(work) / SOURCE_NAME, Path(work)

    @contextmanager
    def job_folder() -> Iterator[tuple[Path, Path]]:
        with folders.job_folder() as folder:
            yield folder.source, folder.output

    return {
        "a folder per job (baseline)": (folder_per_job, lambda path: path.open("wb")),
        "job folders": (job_folder, write_over),
    }


def cpu_ms_per_job(
    staging: Staging, opened: Opener, chunks: list[bytes], jobs: int, in_flight: int
) -> float:
    open_jobs: deque[ExitStack] = deque()
    started = time.process_time()
    try:
        for _ in range(jobs):
            job = ExitStack()
            open_jobs.append(job)
            source, output = job.enter_context(staging())
            stage(source, output, chunks, opened)
            if len(open_jobs) == in_flight:
                open_jobs.popleft().close()
    finally:
        while open_jobs:
            open_jobs.popleft().close()
    return 1000 * (time.process_time() - started) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to stage (default: system temp)")
    parser.add_argument("--in-flight", type=int, default=8, help="jobs open at once")
    parser.add_argument("--jobs", type=int, default=200, help="jobs per kind and round")
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    body = os.urandom(SOURCE_BYTES)
    chunks = [body[start : start + CHUNK_BYTES] for start in range(0, len(body), CHUNK_BYTES)]
    jobs, in_flight = arguments.jobs, max(1, arguments.in_flight)
    with tempfile.TemporaryDirectory(prefix="staging-bench-", dir=arguments.dir) as root:
        runs = kinds(root)
        for staging, opened in runs.values():  # warm-up: job folders hold sources from here on
            cpu_ms_per_job(staging, opened, chunks, 20, in_flight)
        results: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(arguments.rounds):
            for name, (staging, opened) in runs.items():
                results[name].append(cpu_ms_per_job(staging, opened, chunks, jobs, in_flight))
    baseline = statistics.median(results["a folder per job (baseline)"])
    print(f"CPU ms per job staged in {arguments.dir or tempfile.gettempdir()}, "
          f"{in_flight} in flight: median of {arguments.rounds} rounds of {jobs}")  # fmt: skip
    for name, figures in results.items():
        median = statistics.median(figures)
        spread = f"{min(figures):.2f} to {max(figures):.2f}"
        print(f"  {name:<28} {median:6.2f}  ({spread})  {median / baseline:5.2f}x")


if __name__ == "__main__":
    main()
