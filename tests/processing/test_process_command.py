"""``pipelined process FILE``: the processors on a local file, through the real worker pool,
with no cloud; the outcome printed, the artifacts in a folder, the exit code saying which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from pipelined.cli import main
from pipelined.samples import demo_samples

pytestmark = pytest.mark.timeout(60)


def _sample(tmp_path: Path, key: str) -> Path:
    [sample] = [sample for sample in demo_samples() if sample.key == key]
    path = tmp_path / Path(key).name
    path.write_bytes(sample.body)
    return path


def test_a_photo_is_processed_into_the_folder_and_described(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = _sample(tmp_path, "photos/beach trip+1.jpg")
    out = tmp_path / "out"
    assert main(["process", str(photo), "--out", str(out), "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert (outcome["status"], outcome["kind"]) == ("processed", "image")
    names = {artifact["name"] for artifact in outcome["artifacts"]}
    assert names == {"thumb-256.webp", "thumb-1024.webp"}
    with Image.open(out / "thumb-256.webp") as thumbnail:
        assert thumbnail.size == (192, 256)  # upright: the sample has EXIF orientation 6
    assert outcome["metadata"]["orientation"] == 6


def test_the_folder_defaults_to_one_beside_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = _sample(tmp_path, "docs/report.pdf")
    assert main(["process", str(pdf)]) == 0
    assert "processed (pdf)" in capsys.readouterr().out
    written = {path.name for path in (tmp_path / "report.pdf.pipelined").iterdir()}
    assert written == {"text.txt", "preview-1024.webp"}


def test_a_corrupt_file_fails_with_its_reason_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _sample(tmp_path, "photos/broken.jpg")
    assert main(["process", str(broken), "--out", str(tmp_path / "out"), "--json"]) == 1
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith("corrupt JPEG")


def test_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["process", str(tmp_path / "absent.jpg")]) == 2
    assert "no such file" in capsys.readouterr().err
