"""The interface other modules rely on: names, pickling, process boundaries, demo samples."""

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from pipelined import samples
from pipelined.errors import ConfigError, CorruptFileError, LimitExceededError, PermanentError
from pipelined.processing import ProcessingOptions, ProcessResult, dispatch, process_file

from .builders import run


def test_options_defaults() -> None:
    options = ProcessingOptions()
    assert options.thumbnail_sizes == (256, 1024)
    assert options.thumbnail_format == "webp"
    assert options.thumbnail_quality == 82
    assert options.background_rgb == (255, 255, 255)
    assert (options.max_pixels, options.max_frames, options.max_pages) == (
        100_000_000,
        1_000,
        2_000,
    )
    assert options.pdf_preview_size == 1024
    assert options.pdf_preview_timeout_s == 10.0


@pytest.mark.parametrize(
    "bad",
    [
        {"thumbnail_sizes": ()},
        {"thumbnail_sizes": (256, 0)},
        {"thumbnail_format": "gif"},
        {"thumbnail_quality": 0},
        {"background_rgb": (0, 0, 256)},
        {"max_pixels": 0},
        {"pdf_preview_timeout_s": 0},
    ],
)
def test_invalid_options_are_a_config_error(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ProcessingOptions(**bad)  # type: ignore[arg-type]


def test_everything_crossing_the_pool_pickles(tmp_path: Path) -> None:
    options = ProcessingOptions(thumbnail_sizes=(64,), max_pages=3)
    assert pickle.loads(pickle.dumps(options)) == options
    assert pickle.loads(pickle.dumps(process_file)) is process_file

    result = run(tmp_path, samples.transparent_png(80, 60), options)
    assert pickle.loads(pickle.dumps(result)) == result

    with pytest.raises(LimitExceededError) as raised:
        run(tmp_path, samples.text_pdf(["1", "2", "3", "4"]), options)
    copy = pickle.loads(pickle.dumps(raised.value))
    assert type(copy) is LimitExceededError
    assert str(copy) == str(raised.value)


def test_process_file_runs_in_a_spawned_worker(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(samples.photo_jpeg(320, 240))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        result = pool.submit(
            process_file, str(source), str(tmp_path / "out"), ProcessingOptions()
        ).result(timeout=60)
    assert isinstance(result, ProcessResult)
    assert result.metadata["orientation"] == 6
    assert all(Path(a.path).is_file() for a in result.artifacts)


def test_demo_samples_are_small_and_behave_as_labelled(tmp_path: Path) -> None:
    demo = samples.demo_samples()
    keys = [sample.key for sample in demo]
    assert keys[:4] == [
        "photos/beach trip+1.jpg",
        "logos/logo.png",
        "docs/report.pdf",
        "photos/broken.jpg",
    ]
    assert sum(len(sample.body) for sample in demo) < 1_000_000
    for index, sample in enumerate(demo):
        workdir = tmp_path / str(index)
        workdir.mkdir()
        if sample.expect == "processed":
            result = run(workdir, sample.body, name=Path(sample.key).name)
            assert result.artifacts, sample.key
        else:
            with pytest.raises(PermanentError):
                run(workdir, sample.body, name=Path(sample.key).name)


def test_report_sample_has_three_pages_of_text(tmp_path: Path) -> None:
    report = next(s for s in samples.demo_samples() if s.key == "docs/report.pdf")
    result = run(tmp_path, report.body)
    text = Path(result.artifacts[0].path).read_text(encoding="utf-8")
    assert result.metadata["page_count"] == 3
    assert len(text.split("\f")) == 3
    assert "Page two: the numbers (all of them)." in text


def test_an_unexpected_library_error_is_a_permanent_failure_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes would raise it again on every retry: record a reason instead."""

    def broken(*_: object) -> ProcessResult:
        raise KeyError("/Kids")

    monkeypatch.setattr(dispatch, "process_pdf", broken)
    with pytest.raises(
        CorruptFileError, match=r"^corrupt PDF: could not be decoded \(KeyError: '/Kids'\)$"
    ):
        run(tmp_path, samples.text_pdf(["x"]))


@pytest.mark.parametrize("error", [MemoryError(), OSError(28, "No space left on device")])
def test_memory_and_machine_errors_escape_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """MemoryError becomes the pool's worker_memory_mb failure; OSError is retried."""

    def failing(*_: object) -> ProcessResult:
        raise error

    monkeypatch.setattr(dispatch, "process_image", failing)
    with pytest.raises(type(error)):
        run(tmp_path, samples.photo_jpeg(64, 48))
