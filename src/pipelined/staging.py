"""Where jobs stage their files: a folder per job in flight, kept from one job to the next.

A folder made and removed for every job costs its source's page cache twice: the pages are
allocated as the download is written and freed again when the folder goes. Writing over the
previous job's source reuses them instead. For a 3 MB photo and two thumbnails, with eight
jobs in flight, that is 0.6 ms of CPU per job instead of 1.0 on ext4, and 0.6 instead of 1.6
on a tmpfs (bench/staging.py), all of it in the main process, which writes the download and
removes the folder.

So each folder outlives its job and keeps one thing: the source, which the next download
writes over and cuts to its own length (``write_over``). The artifacts go into a subfolder
made for the job and removed with it, so nothing a job writes can reach the next: not even a
late write from the child of a worker that was killed mid-job.

A daemon killed outright (SIGKILL, the OOM killer) cannot remove its folders, and a
container's emptyDir outlives restarts of the container. So each daemon's root holds a lock
while the daemon lives, and a starting daemon removes the roots whose lock nobody holds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipelined.logs import get_logger

log = get_logger(__name__)

ROOT_PREFIX = "pipelined-"
_SETUP_PREFIX = ".pipelined-setup-"
_LOCK_NAME = ".lock"

SOURCE_NAME = "source"

KEEP_SOURCE_MAX_BYTES = 16 * 1024 * 1024
"""A source up to this size stays in its folder for the next job to write over; a larger one
is removed with its job. Beyond photo sizes the saving is small beside the job's own work, and
an idle daemon should not hold MAX_INFLIGHT large files on disk (or in memory, on a tmpfs)."""


@dataclass(frozen=True)
class JobFolder:
    source: Path  # the download; it may hold the previous job's until written over
    output: Path  # empty, the job's own: where the worker writes the artifacts


class JobFolders:
    """Job folders under one private root, made as needed: at most one per job in flight.

    Folders are handed out and given back on the event loop's thread only, so the list of idle
    ones needs no mutex. ``close`` removes the root and everything in it.
    """

    def __init__(self, parent: str | None = None) -> None:
        parent_dir = Path(tempfile.gettempdir() if parent is None else parent)
        self._root, self._lock = _locked_root(parent_dir)
        self._idle: list[Path] = []
        removed = _remove_abandoned_roots(parent_dir)
        if removed:
            log.info("abandoned_job_folders_removed", roots=removed, parent=str(parent_dir))

    @contextmanager
    def job_folder(self) -> Iterator[JobFolder]:
        folder = self._idle.pop() if self._idle else Path(tempfile.mkdtemp(dir=self._root))
        output = Path(tempfile.mkdtemp(prefix="out-", dir=folder))
        try:
            yield JobFolder(source=folder / SOURCE_NAME, output=output)
        finally:
            shutil.rmtree(output, ignore_errors=True)
            _remove_if_large(folder / SOURCE_NAME)
            self._idle.append(folder)

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
        os.close(self._lock)


def _locked_root(parent: Path) -> tuple[Path, int]:
    """A new root and the descriptor of its held lock.

    mkdtemp's folders are the user's own (0700) and unique. The root is locked before it takes
    the name other daemons look for, so none of them ever sees it unlocked.
    """
    setup = Path(tempfile.mkdtemp(prefix=_SETUP_PREFIX, dir=parent))
    lock = os.open(setup / _LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    root = parent / (ROOT_PREFIX + setup.name.removeprefix(_SETUP_PREFIX))
    setup.rename(root)
    return root, lock


def _remove_abandoned_roots(parent: Path) -> int:
    """Remove every root under ``parent`` whose daemon is gone; how many there were."""
    return sum(_remove_if_abandoned(root) for root in parent.glob(ROOT_PREFIX + "*"))


def _remove_if_abandoned(root: Path) -> bool:
    try:
        lock = os.open(root / _LOCK_NAME, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:  # no lock: not a root of ours (another user's, an older version's folder)
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # its daemon is alive (this one's own root included)
        os.close(lock)
        return False
    # Removed while the lock is held, so that another daemon starting now leaves it alone.
    shutil.rmtree(root, ignore_errors=True)
    os.close(lock)
    return True


def _remove_if_large(source: Path) -> None:
    try:
        if source.stat().st_size > KEEP_SOURCE_MAX_BYTES:
            source.unlink()
    except FileNotFoundError:  # the job failed before its download began
        pass


@contextmanager
def write_over(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened to be written from its start, but not first cut to nothing: the pages
    of what was there are written over rather than freed and allocated again. On leaving, it
    is cut to what was written, whether the writing finished or not."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with open(descriptor, "wb") as file:
        try:
            yield file
        finally:
            file.truncate()
