"""``pipelined demo`` as a user runs it: its own emulator, the samples, a summary, and what came
out copied into a local folder that a second run replaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.timeout(180)


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelined", "demo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


def test_the_demo_keeps_its_artifacts_in_a_folder_of_the_current_directory(
    tmp_path: Path,
) -> None:
    stale = tmp_path / "pipelined-demo-output" / "from-an-earlier-run.txt"
    result = _demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 of 4 files ended as expected." in result.stdout
    folder = tmp_path / "pipelined-demo-output"
    assert f"Artifacts and notifications are in {folder}/" in result.stdout

    photo = folder / "photos" / "beach trip+1.jpg"
    with Image.open(photo / "thumb-256.webp") as thumbnail:
        assert thumbnail.size == (192, 256)
    notification = json.loads((photo / "notification.json").read_text())
    assert notification["status"] == "processed"
    assert not any(name.startswith("_") for name in notification)
    report = folder / "docs" / "report.pdf"
    assert {path.name for path in report.iterdir()} == {
        "notification.json",
        "text.txt",
        "preview-1024.webp",
    }
    broken = json.loads((folder / "photos" / "broken.jpg" / "notification.json").read_text())
    assert broken["error"].startswith("corrupt JPEG")

    stale.write_text("left by hand")
    again = _demo(tmp_path, "--out", "pipelined-demo-output")
    assert again.returncode == 0, again.stdout + again.stderr
    assert not stale.exists(), "the demo's own folder is replaced on each run"


def test_a_folder_that_is_not_the_demos_is_never_cleared(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    result = _demo(tmp_path, "--out", str(mine))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (mine / "keep.txt").read_text() == "precious"
    assert (mine / "logos" / "logo.png" / "thumb-1024.webp").is_file()
