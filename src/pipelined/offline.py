"""``pipelined process FILE``: the processors on a local file, with no cloud at all.

How a developer checks a file before uploading it: the same worker pool, limits and processors
as the daemon's, with the default processing options (thumbnails of 256 and 1024 px in WebP,
the PDF text and preview). The artifacts go to a folder; the outcome is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipelined.errors import PermanentError, PipelinedError
from pipelined.pool import WorkerPool
from pipelined.processing import ProcessingOptions, ProcessResult, process_file

EXIT_PROCESSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
JOB_TIMEOUT_S = 300.0  # the daemon's defaults (JOB_TIMEOUT_S, WORKER_MEMORY_MB)
WORKER_MEMORY_MB = 1024


def process_local(path: str, out_dir: str | None, *, as_json: bool) -> int:
    """Process ``path`` into ``out_dir`` (default: ``NAME.pipelined`` beside the file)."""
    source = Path(path)
    if not source.is_file():
        print(f"pipelined process: {path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    destination = Path(out_dir) if out_dir else source.with_name(f"{source.name}.pipelined")
    destination.mkdir(parents=True, exist_ok=True)
    try:
        options = ProcessingOptions(job_timeout_s=JOB_TIMEOUT_S)
        result = asyncio.run(_run(source, destination, options))
    except PipelinedError as error:
        return _report_failure(path, error, as_json=as_json)
    _report_result(path, destination, result, as_json=as_json)
    return EXIT_PROCESSED


async def _run(source: Path, destination: Path, options: ProcessingOptions) -> ProcessResult:
    pool = WorkerPool(1, JOB_TIMEOUT_S, WORKER_MEMORY_MB)
    try:
        return await pool.run(process_file, str(source), str(destination), options)
    finally:
        pool.close()


def _report_result(path: str, destination: Path, result: ProcessResult, *, as_json: bool) -> None:
    artifacts = [
        {**asdict(artifact), "size": os.path.getsize(artifact.path)}
        for artifact in result.artifacts
    ]
    if as_json:
        outcome: dict[str, Any] = {"status": "processed", "kind": result.kind, "file": path}
        outcome |= {"artifacts": artifacts, "metadata": result.metadata}
        print(json.dumps(outcome, ensure_ascii=False, indent=2))
        return
    print(f"{path}: processed ({result.kind}); artifacts in {destination}/")
    for artifact in artifacts:
        dimensions = f"{artifact['width']}x{artifact['height']}, " if artifact["width"] else ""
        print(f"  {artifact['name']}  ({dimensions}{artifact['size']:,} bytes)")
    for name, value in result.metadata.items():
        if value not in (None, ""):
            print(f"  {name}: {value}")


def _report_failure(path: str, error: PipelinedError, *, as_json: bool) -> int:
    # A file's own fault is its failure; anything else (a worker killed, a bug) says so too.
    status = "failed" if isinstance(error, PermanentError) else "error"
    if as_json:
        print(json.dumps({"status": status, "file": path, "error": str(error)}, indent=2))
    else:
        print(f"{path}: {status}: {error}")
    return EXIT_FAILED
