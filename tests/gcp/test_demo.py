"""``pipelined demo --backend gcp`` as a user runs it: its own emulators, the samples, a summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelined.gcp.local import EmulatorUnavailableError, firestore_command, pubsub_command

pytestmark = pytest.mark.timeout(180)


def test_the_gcp_demo_processes_every_sample_as_expected(tmp_path: Path) -> None:
    try:
        pubsub_command(0), firestore_command(0)
    except EmulatorUnavailableError as missing:
        pytest.skip(str(missing))
    result = subprocess.run(
        [sys.executable, "-m", "pipelined", "demo", "--backend", "gcp"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 of 4 files ended as expected." in result.stdout
    assert "gs://pipelined-demo-uploads/pipelined/pipelined-demo-uploads/" in result.stdout
    assert "reason:   corrupt JPEG" in result.stdout
    folder = tmp_path / "pipelined-demo-output"
    assert f"Artifacts and notifications are in {folder}/" in result.stdout
    assert (folder / "docs" / "report.pdf" / "text.txt").read_text().startswith("Quarterly report")
    assert (folder / "logos" / "logo.png" / "thumb-256.webp").is_file()
