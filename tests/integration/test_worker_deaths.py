"""A file that keeps killing its worker ends as a recorded failure, not in the DLQ."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import pytest

from pipelined import samples
from pipelined.app import pipeline_config
from pipelined.aws.clients import open_clients
from pipelined.aws.ledger import DynamoLedgerStore
from pipelined.aws.s3 import S3Store
from pipelined.aws.sns import SnsNotifier
from pipelined.disposition import JobOutcome
from pipelined.errors import WorkerDiedError
from pipelined.events import ObjectEvent
from pipelined.ledger.store import Ledger, ProcessGrant
from pipelined.local import REGION, LocalStack
from pipelined.pipeline import WORKER_DEATHS_BEFORE_FAILING, Pipeline
from pipelined.pool import WorkerPool
from pipelined.staging import JobFolders
from tests.hostile import jobs
from tests.integration.helpers import fast_settings, ledger_item, notifications, put

T = TypeVar("T")


class NativeCrashRunner:
    """The real pool, but every job is one that kills its own worker, as a decoder crash would."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        await self._pool.run(jobs.kill_self)
        raise AssertionError("the worker should have died")


@pytest.fixture
def crash_png(stack: LocalStack) -> ObjectEvent:
    put(stack, "crash.png", samples.transparent_png())
    etag = stack.client("s3").head_object(Bucket=stack.input_bucket, Key="crash.png")["ETag"]
    return ObjectEvent(bucket=stack.input_bucket, key="crash.png", etag=etag.strip('"'))


@asynccontextmanager
async def crashing_pipeline(stack: LocalStack) -> AsyncIterator[tuple[Pipeline, Ledger]]:
    """A pipeline on the stack whose every job kills its worker; and its ledger."""
    settings = fast_settings()
    pool = WorkerPool(workers=1, timeout_s=20, memory_mb=1024)
    folders = JobFolders()
    try:
        async with AsyncExitStack() as exits:
            clients = await open_clients(exits, max_connections=10, region=REGION)
            ledger = Ledger(
                DynamoLedgerStore(clients.dynamodb, stack.table), settings.claim_lease_s
            )
            yield (
                Pipeline(
                    S3Store(clients.s3),
                    ledger,
                    SnsNotifier(clients.sns, stack.topic_arn),
                    NativeCrashRunner(pool),
                    pipeline_config(settings),
                    folders=folders,
                ),
                ledger,
            )
    finally:
        pool.close()
        folders.close()


@pytest.mark.timeout(60)
async def test_a_file_that_keeps_killing_its_worker_is_recorded_as_failed(
    stack: LocalStack, crash_png: ObjectEvent
) -> None:
    async with crashing_pipeline(stack) as (pipeline, _):
        for _ in range(WORKER_DEATHS_BEFORE_FAILING - 1):
            with pytest.raises(WorkerDiedError):
                await pipeline.handle(crash_png)
        assert await pipeline.handle(crash_png) is JobOutcome.FAILED
    item = ledger_item(stack, stack.input_bucket, "crash.png")
    assert item is not None
    assert (item["status"], item["attempts"]) == ("failed", WORKER_DEATHS_BEFORE_FAILING)
    assert "worker process died" in item["error"]
    [notification] = await notifications(stack, 1)
    assert notification["status"] == "failed"


@pytest.mark.timeout(60)
async def test_claims_that_ended_without_a_worker_death_do_not_fail_the_file(
    stack: LocalStack, crash_png: ObjectEvent
) -> None:
    """Hole f: deaths are counted, not claims. Two claims end without any worker dying (a
    shutdown released them, say); one OOM kill on the third claim is a retry, not a failure."""
    async with crashing_pipeline(stack) as (pipeline, ledger):
        for owner in ("shut-down-1", "shut-down-2"):
            grant = await ledger.claim(crash_png, owner)
            assert isinstance(grant, ProcessGrant)
            await ledger.release(grant.hold)
        with pytest.raises(WorkerDiedError):
            await pipeline.handle(crash_png)
    item = ledger_item(stack, stack.input_bucket, "crash.png")
    assert item is not None
    assert "status" not in item, "nothing is recorded after one worker death"
    assert (item["claim"]["attempts"], item["claim"]["worker_deaths"]) == (3, 1)
