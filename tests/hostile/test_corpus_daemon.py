"""The whole corpus uploaded to a running daemon at once, as an attacker would.

Every upload must end with exactly one notification, processed or failed with its reason;
nothing may be left on the queue or reach the dead-letter queue; the daemon must stay up,
and its own memory (the processing happens in workers) must not grow with what it handled.
"""

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from pipelined.local import LocalStack
from tests.hostile.corpus import (
    DAEMON_JOB_TIMEOUT_S,
    MAX_FRAMES,
    MAX_OBJECT_BYTES,
    MAX_PAGES,
    MAX_PIXELS,
    WORKER_MEMORY_MB,
    Case,
    Outcome,
    cases,
)
from tests.integration.helpers import (
    ledger_item,
    notifications,
    object_bytes,
    put,
    queue_counts,
    running_daemon,
)

pytestmark = pytest.mark.timeout(240)

# The daemon shares this process with the test and the emulator (which keeps every upload and
# artifact in memory, a few MB here): a generous bound, far below one leaked decoded image.
RSS_GROWTH_BOUND_MIB = 200


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def upload_all(stack: LocalStack, corpus: list[Case]) -> None:
    for case in corpus:
        put(stack, case.key, case.body)


def read_outcome(stack: LocalStack, notification: dict[str, Any]) -> Outcome:
    artifacts = {
        artifact["key"].rsplit("/", 1)[1]: object_bytes(stack, artifact["bucket"], artifact["key"])
        for artifact in notification["artifacts"]
    }
    return Outcome(notification["metadata"], artifacts)


async def test_the_corpus_through_a_running_daemon(stack: LocalStack) -> None:
    corpus = cases("daemon")
    for case in corpus:
        assert case.body is not None  # build every body before measuring memory
    async with running_daemon(
        workers=2,
        max_inflight=8,
        worker_memory_mb=WORKER_MEMORY_MB,
        job_timeout_s=DAEMON_JOB_TIMEOUT_S,
        max_pixels=MAX_PIXELS,
        max_frames=MAX_FRAMES,
        max_pages=MAX_PAGES,
        max_object_bytes=MAX_OBJECT_BYTES,
    ):
        rss_before = await asyncio.to_thread(rss_mib)
        await asyncio.to_thread(upload_all, stack, corpus)
        found = await notifications(stack, len(corpus), timeout_s=180, settle_s=3)
        rss_after = await asyncio.to_thread(rss_mib)

    by_key: dict[str, list[dict[str, Any]]] = {}
    for notification in found:
        by_key.setdefault(notification["source"]["key"], []).append(notification)
    assert sorted(by_key) == sorted(case.key for case in corpus), "one outcome per upload"
    problems = []
    for case in corpus:
        [notification] = by_key[case.key]
        problem = await asyncio.to_thread(judge, stack, case, notification)
        if problem:
            problems.append(f"{case.name}: {problem}")
    assert not problems, "\n".join(problems)

    assert queue_counts(stack) == (0, 0)
    assert queue_counts(stack, stack.dead_letter_queue_url) == (0, 0)
    growth = rss_after - rss_before
    assert growth < RSS_GROWTH_BOUND_MIB, f"daemon RSS grew {growth:.0f} MiB"


def judge(stack: LocalStack, case: Case, notification: dict[str, Any]) -> str | None:
    """None when the upload ended as its case says; else what went wrong."""
    status = notification["status"]
    item = ledger_item(stack, stack.input_bucket, case.key)
    if item is None or item["status"] != status:
        return f"ledger says {item and item['status']}, notification says {status}"
    if status != case.expect:
        return f"expected {case.expect}, got {status}: {notification.get('error')}"
    if case.expect == "failed":
        assert case.reason is not None
        error = notification.get("error") or ""
        return None if re.search(case.reason, error) else f"reason {error!r}"
    # Option overrides apply to the processing layer only; the daemon runs its settings.
    if case.check is not None and not case.options:
        try:
            case.check(read_outcome(stack, notification))
        except AssertionError as error:
            return f"check failed: {error}"
    return None
