"""Every corpus case through the real worker pool: killable workers, a 512 MB cap, 10 s.

Each case must end as its expected outcome: processed with correct artifacts, or failed with
a reason naming what was wrong. After every failure the pool must still serve a good job.
"""

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pipelined import samples
from pipelined.errors import LimitExceededError, PermanentError
from pipelined.pool import WorkerPool
from pipelined.processing import ProcessingOptions, ProcessResult, process_file
from tests.hostile import jobs
from tests.hostile.corpus import (
    MAX_FRAMES,
    MAX_PAGES,
    MAX_PIXELS,
    PREVIEW_TIMEOUT_S,
    PROCESSING_JOB_TIMEOUT_S,
    THUMBNAIL_SIZES,
    WORKER_MEMORY_MB,
    Case,
    Outcome,
    cases,
)

pytestmark = pytest.mark.timeout(120)

OPTIONS = ProcessingOptions(
    thumbnail_sizes=THUMBNAIL_SIZES,
    max_pixels=MAX_PIXELS,
    max_frames=MAX_FRAMES,
    max_pages=MAX_PAGES,
    pdf_preview_timeout_s=PREVIEW_TIMEOUT_S,
)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(
        workers=2, timeout_s=PROCESSING_JOB_TIMEOUT_S, memory_mb=WORKER_MEMORY_MB, max_tasks=20
    )
    yield pool
    pool.close()


async def run_case(
    pool: WorkerPool, case: Case, workdir: Path
) -> tuple[Outcome | None, str | None]:
    """(outcome, None) when processed, (None, reason) when it failed permanently."""
    source = workdir / "source"
    source.write_bytes(case.body)
    options = replace(OPTIONS, **case.options)
    try:
        result = await pool.run(process_file, str(source), str(workdir / "out"), options)
    except PermanentError as error:
        return None, str(error)
    return read_outcome(result), None


def read_outcome(result: ProcessResult) -> Outcome:
    artifacts = {artifact.name: Path(artifact.path).read_bytes() for artifact in result.artifacts}
    return Outcome(result.metadata, artifacts)


async def assert_pool_serves_a_good_job(pool: WorkerPool, workdir: Path) -> None:
    source = workdir / "good.jpg"
    source.write_bytes(samples.photo_jpeg(64, 48))
    result = await pool.run(process_file, str(source), str(workdir / "good"), OPTIONS)
    assert [a.name for a in result.artifacts] == ["thumb-256.webp", "thumb-1024.webp"]


@pytest.mark.parametrize("case", cases("both"), ids=lambda case: case.name)
async def test_each_case_ends_as_expected(case: Case, pool: WorkerPool, tmp_path: Path) -> None:
    outcome, reason = await run_case(pool, case, tmp_path)
    if case.expect == "failed":
        assert outcome is None, f"expected a failure, got {outcome and outcome.metadata}"
        assert case.reason is not None
        assert reason is not None
        assert re.search(case.reason, reason), reason
        assert "worker_memory_mb" not in reason, "a limit must strike before the memory cap"
        await assert_pool_serves_a_good_job(pool, tmp_path)
    else:
        assert reason is None, reason
        assert outcome is not None
        assert case.check is not None
        case.check(outcome)


def test_the_corpus_is_big_enough() -> None:
    assert len(cases("both")) >= 30
    names = [case.name for case in cases("daemon")]
    assert len(names) == len(set(names))
    assert {"processed", "failed"} == {case.expect for case in cases("both")}


# -- memory --------------------------------------------------------------------------------

BOMBS = {
    # Refused from the header or by a parser limit: nothing big is ever allocated.
    "png-bomb-900-megapixels": 100,
    "jpeg-header-claims-60000x60000": 100,
    "png-ztxt-bomb": 100,
    "pdf-flate-bomb": 300,  # pypdf stops inflating at 75 MB
    # Processed within bounds: pdfium streams the image; the big PNG is one decoded copy.
    "pdf-flate-bomb-image": 150,
    "png-rgba-icc-at-pixel-limit": 400,
}


@pytest.fixture(scope="module")
def fresh_worker_pool() -> Iterator[WorkerPool]:
    """One task per worker: a worker's peak resident memory is its one job's."""
    pool = WorkerPool(
        workers=1, timeout_s=PROCESSING_JOB_TIMEOUT_S, memory_mb=WORKER_MEMORY_MB, max_tasks=1
    )
    yield pool
    pool.close()


@pytest.mark.parametrize(("name", "bound_mib"), BOMBS.items())
async def test_bombs_stay_well_under_the_memory_cap(
    name: str, bound_mib: int, fresh_worker_pool: WorkerPool, tmp_path: Path
) -> None:
    (case,) = [case for case in cases("both") if case.name == name]
    source = tmp_path / "source"
    source.write_bytes(case.body)
    status, detail, peak_mib = await fresh_worker_pool.run(
        jobs.process_and_measure, str(source), str(tmp_path / "out"), OPTIONS
    )
    assert status == case.expect, detail
    assert peak_mib < bound_mib < WORKER_MEMORY_MB, f"{name}: peak RSS {peak_mib:.0f} MiB"


async def test_a_job_past_the_memory_cap_fails_naming_the_limit(pool: WorkerPool) -> None:
    with pytest.raises(LimitExceededError, match=r"worker_memory_mb limit of 512 MB"):
        await pool.run(jobs.allocate, 2 * WORKER_MEMORY_MB)
    assert await pool.run(jobs.allocate, 16) == 16 * 1024 * 1024
