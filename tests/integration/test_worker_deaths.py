"""A file that keeps killing its worker ends as a recorded failure, not in the DLQ."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import pytest

from pipelined import samples
from pipelined.app import pipeline_config
from pipelined.aws.clients import open_clients
from pipelined.aws.ledger import DynamoLedger
from pipelined.aws.s3 import S3Store
from pipelined.aws.sns import SnsNotifier
from pipelined.disposition import JobOutcome
from pipelined.errors import WorkerDiedError
from pipelined.events import ObjectEvent
from pipelined.local import REGION, LocalStack
from pipelined.pipeline import WORKER_DEATHS_BEFORE_FAILING, Pipeline
from pipelined.pool import WorkerPool
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


@pytest.mark.timeout(60)
async def test_a_file_that_keeps_killing_its_worker_is_recorded_as_failed(
    stack: LocalStack,
) -> None:
    put(stack, "crash.png", samples.transparent_png())
    etag = stack.client("s3").head_object(Bucket=stack.input_bucket, Key="crash.png")["ETag"]
    event = ObjectEvent(bucket=stack.input_bucket, key="crash.png", etag=etag.strip('"'))
    settings = fast_settings()
    pool = WorkerPool(workers=1, timeout_s=20, memory_mb=1024)
    try:
        async with AsyncExitStack() as exits:
            clients = await open_clients(exits, max_connections=10, region=REGION)
            pipeline = Pipeline(
                S3Store(clients.s3),
                DynamoLedger(clients.dynamodb, settings.table),
                SnsNotifier(clients.sns, settings.topic_arn),
                NativeCrashRunner(pool),
                pipeline_config(settings),
            )
            for _ in range(WORKER_DEATHS_BEFORE_FAILING - 1):
                with pytest.raises(WorkerDiedError):
                    await pipeline.handle(event)
            assert await pipeline.handle(event) is JobOutcome.FAILED
    finally:
        pool.close()
    item = ledger_item(stack, stack.input_bucket, "crash.png")
    assert item is not None
    assert (item["status"], item["attempts"]) == ("failed", WORKER_DEATHS_BEFORE_FAILING)
    assert "worker process died" in item["error"]
    [notification] = await notifications(stack, 1)
    assert notification["status"] == "failed"
