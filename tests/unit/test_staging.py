"""Job folders (staging.py): each keeps its source from job to job and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelined.staging import KEEP_SOURCE_MAX_BYTES, ROOT_PREFIX, JobFolders, write_over


@pytest.fixture
def folders(tmp_path: Path) -> Iterator[JobFolders]:
    folders = JobFolders(str(tmp_path))
    yield folders
    folders.close()


def test_write_over_leaves_only_the_new_bytes_in_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "source"
    path.write_bytes(b"x" * 10_000)
    inode = os.stat(path).st_ino
    with write_over(path) as file:
        file.write(b"shorter")
    assert path.read_bytes() == b"shorter"
    assert os.stat(path).st_ino == inode  # written over in place, not replaced


def test_write_over_cuts_the_file_to_what_was_written_when_the_writing_fails(
    tmp_path: Path,
) -> None:
    path = tmp_path / "source"
    path.write_bytes(b"the previous job's source")
    with pytest.raises(ConnectionError):
        broken_download(path)
    assert path.read_bytes() == b"half"


def broken_download(path: Path) -> None:
    with write_over(path) as file:
        file.write(b"half")
        raise ConnectionError("the download broke off")


def test_write_over_makes_a_missing_file_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "source"
    with write_over(path) as file:
        file.write(b"new")
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o077 == 0


def test_a_folder_comes_back_for_the_next_job_with_a_fresh_empty_output(
    folders: JobFolders,
) -> None:
    with folders.job_folder() as first:
        first.source.write_bytes(b"source")
        (first.output / "thumb-256.webp").write_bytes(b"artifact")
    assert not first.output.exists()
    with folders.job_folder() as second:
        assert second.source == first.source
        assert second.output != first.output
        assert list(second.output.iterdir()) == []


@pytest.mark.parametrize(
    ("size", "kept"), [(KEEP_SOURCE_MAX_BYTES, True), (KEEP_SOURCE_MAX_BYTES + 1, False)]
)
def test_a_source_is_kept_for_the_next_job_only_up_to_its_size_limit(
    folders: JobFolders, size: int, kept: bool
) -> None:
    with folders.job_folder() as folder:
        folder.source.touch()
        os.truncate(folder.source, size)  # sparse: the size without the writing
    assert folder.source.exists() is kept


def test_jobs_in_flight_at_once_have_folders_of_their_own(folders: JobFolders) -> None:
    with folders.job_folder() as first, folders.job_folder() as second:
        assert first.source.parent != second.source.parent
        assert first.output.parent == first.source.parent


def test_close_removes_every_folder(tmp_path: Path) -> None:
    folders = JobFolders(str(tmp_path))
    with folders.job_folder() as folder:
        folder.source.write_bytes(b"source")
    folders.close()
    assert list(tmp_path.iterdir()) == []


# A daemon that stages a source and then waits to be killed: the kill leaves its root behind.
KILLED_DAEMON = """
import sys
from pipelined.staging import JobFolders
folders = JobFolders(sys.argv[1])
with folders.job_folder() as folder:
    folder.source.write_bytes(b"a source")
print(folder.source.parent.parent, flush=True)
sys.stdin.read()
"""


def roots(parent: Path) -> set[Path]:
    return set(parent.glob(ROOT_PREFIX + "*"))


@pytest.mark.timeout(30)
def test_a_killed_daemons_folders_are_removed_when_the_next_one_starts(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_DAEMON, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as daemon:
        assert daemon.stdout is not None
        killed_root = Path(daemon.stdout.readline().strip())
        daemon.send_signal(signal.SIGKILL)
    assert killed_root.is_dir()
    folders = JobFolders(str(tmp_path))
    try:
        assert not killed_root.exists()
        assert len(roots(tmp_path)) == 1
    finally:
        folders.close()


def test_a_live_daemons_folders_are_left_alone(tmp_path: Path) -> None:
    live = JobFolders(str(tmp_path))
    with live.job_folder() as folder:
        folder.source.write_bytes(b"in use")
    starting = JobFolders(str(tmp_path))
    try:
        assert folder.source.read_bytes() == b"in use"
        assert len(roots(tmp_path)) == 2
    finally:
        starting.close()
        live.close()


def test_a_folder_without_a_lock_is_not_taken_for_an_abandoned_root(tmp_path: Path) -> None:
    older = tmp_path / f"{ROOT_PREFIX}abc123"  # as an older version named its job folders
    older.mkdir()
    JobFolders(str(tmp_path)).close()
    assert older.is_dir()
