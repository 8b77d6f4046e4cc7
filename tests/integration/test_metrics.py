"""The metrics against the emulator: cloud calls counted by the clients' listener (throttles
inside botocore's retries too), the queue's depth from its attributes, and a daemon's /metrics
after a few files."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack

import pytest
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipelined import queuestats, samples
from pipelined.aws.clients import open_clients
from pipelined.aws.sqs import SqsQueueStats
from pipelined.local import REGION, LocalStack, free_port
from pipelined.queuestats import Depth
from tests.faults.proxy import FaultProxy, throttle
from tests.integration.helpers import (
    notifications,
    put,
    queue_counts,
    running_daemon,
)

pytestmark = pytest.mark.timeout(120)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parsed(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def in_process() -> Samples:
    return parsed(generate_latest().decode())


def calls(service: str, operation: str, outcome: str) -> float:
    found = REGISTRY.get_sample_value(
        "pipelined_cloud_calls_total",
        {"service": service, "operation": operation, "outcome": outcome},
    )
    return found or 0.0


async def test_every_call_is_counted_by_outcome(stack: LocalStack) -> None:
    before = {
        key: calls(*key)
        for key in [
            ("sqs", "GetQueueAttributes", "ok"),
            ("s3", "GetObject", "error"),
            ("dynamodb", "PutItem", "ok"),
            ("dynamodb", "PutItem", "error"),
        ]
    }
    async with AsyncExitStack() as exits:
        clients = await open_clients(exits, max_connections=4, region=REGION)
        await clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url)
        with pytest.raises(ClientError):
            await clients.s3.get_object(Bucket=stack.input_bucket, Key="no such key")
        item = {"pk": {"S": "metrics-test"}}
        await clients.dynamodb.put_item(TableName=stack.table, Item=item)
        with pytest.raises(ClientError):  # the condition refuses: an answer, not an error
            await clients.dynamodb.put_item(
                TableName=stack.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
    after = {key: calls(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("sqs", "GetQueueAttributes", "ok"): 1,
        ("s3", "GetObject", "error"): 1,
        ("dynamodb", "PutItem", "ok"): 2,
        ("dynamodb", "PutItem", "error"): 0,
    }
    seconds = REGISTRY.get_sample_value(
        "pipelined_cloud_call_seconds_count", {"service": "sqs", "operation": "GetQueueAttributes"}
    )
    assert seconds is not None
    assert seconds >= 1


async def test_throttles_inside_botocores_retries_are_counted(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    throttles: list[None] = []
    before = [calls("sqs", "GetQueueAttributes", o) for o in ("throttled", "ok")]
    async with FaultProxy(stack.endpoint_url) as proxy, AsyncExitStack() as exits:
        proxy.add(throttle("sqs", "GetQueueAttributes", count=2))
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        clients = await open_clients(
            exits, max_connections=4, region=REGION, on_throttle=lambda: throttles.append(None)
        )
        await clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url)
    after = [calls("sqs", "GetQueueAttributes", o) for o in ("throttled", "ok")]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1]
    assert len(throttles) == 2


async def test_the_queue_and_its_dead_letter_queue_report_their_depth(stack: LocalStack) -> None:
    sqs = stack.client("sqs")
    waiting, _ = queue_counts(stack)  # S3's test event, when the emulator sends one
    for body in ("one", "two"):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="later", DelaySeconds=60)
    sqs.send_message(QueueUrl=stack.dead_letter_queue_url, MessageBody="dead")
    async with AsyncExitStack() as exits:
        clients = await open_clients(exits, max_connections=4, region=REGION)
        source = SqsQueueStats(clients.sqs, stack.queue_url)
        stats = await source.stats()
        assert stats.main == Depth(visible=waiting + 2, in_flight=0, delayed=1)
        assert stats.dead_letters == Depth(visible=1, in_flight=0, delayed=0)
        before = calls("sqs", "GetQueueUrl", "ok")
        await source.stats()
        assert calls("sqs", "GetQueueUrl", "ok") == before, "the DLQ's URL is looked up once"


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return parsed(reply.read().decode())


async def scraped_until(
    port: int, condition: Callable[[Samples], bool], timeout_s: float = 20
) -> Samples:
    """Scrape /metrics (off the loop the daemon runs on) until ``condition`` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition(found := await asyncio.to_thread(scrape, port)):
        assert time.monotonic() < deadline, "the metrics never settled"
        await asyncio.sleep(0.2)
    return found


async def test_a_daemons_metrics_after_a_few_files(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queuestats, "POLL_INTERVAL_S", 0.5)
    photo = samples.photo_jpeg(width=800, height=600)
    pdf = samples.text_pdf(["one", "two"])
    port = free_port()
    before = in_process()
    uploaded_at = time.time()
    async with running_daemon(metrics_port=port, metrics_host="127.0.0.1") as settings:
        put(stack, "in/a.jpg", photo)
        put(stack, "in/b.jpg", photo)
        put(stack, "in/c.pdf", pdf)
        assert len(await notifications(stack, 3)) == 3
        notified_at = time.time()

        def settled(now: Samples) -> bool:
            # Every message (the artifacts' own events too) finished, and a poll since.
            return (
                value(now, "pipelined_in_flight_messages") == 0
                and value(now, "pipelined_queue_stats_timestamp_seconds") > notified_at
                and value(now, "pipelined_queue_messages", queue="main", state="visible") == 0
                and value(now, "pipelined_queue_messages", queue="main", state="in_flight") == 0
            )

        after = await scraped_until(port, settled)
    elapsed_s = time.time() - uploaded_at

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # With artifacts written into the input bucket, their events come and are acknowledged.
    assert grew("pipelined_messages_received_total") >= 3
    assert grew("pipelined_messages_total", outcome="ack") == grew(
        "pipelined_messages_received_total"
    )
    assert grew("pipelined_jobs_total", kind="image", outcome="processed") == 2
    assert grew("pipelined_jobs_total", kind="pdf", outcome="processed") == 1
    for stage in ("download", "process", "upload", "record", "notify"):
        assert grew("pipelined_stage_seconds_count", kind="image", stage=stage) == 2, stage
        assert grew("pipelined_stage_seconds_count", kind="pdf", stage=stage) == 1, stage
        assert 0 < grew("pipelined_stage_seconds_sum", kind="image", stage=stage) < elapsed_s
    assert grew("pipelined_downloaded_bytes_total") == 2 * len(photo) + len(pdf)
    assert grew("pipelined_uploaded_bytes_total") > 0

    # From S3's eventTime to the notification: positive, and no longer than the test took.
    assert grew("pipelined_end_to_end_seconds_count", kind="image") == 2
    assert 0 < grew("pipelined_end_to_end_seconds_sum", kind="image") <= 2 * (elapsed_s + 1)
    received = grew("pipelined_messages_received_total")
    assert grew("pipelined_message_age_seconds_count") == received
    assert 0 <= grew("pipelined_message_age_seconds_sum") <= received * (elapsed_s + 1)

    for service, operation in [
        ("sqs", "ReceiveMessage"),
        ("sqs", "DeleteMessageBatch"),
        ("sqs", "GetQueueAttributes"),
        ("s3", "GetObject"),
        ("s3", "PutObject"),
        ("dynamodb", "PutItem"),
        ("sns", "Publish"),
    ]:
        assert grew(
            "pipelined_cloud_calls_total", service=service, operation=operation, outcome="ok"
        )
        assert grew("pipelined_cloud_call_seconds_count", service=service, operation=operation)
    assert (
        grew("pipelined_cloud_calls_total", service="sns", operation="Publish", outcome="ok") == 3
    )

    for state in ("visible", "in_flight", "delayed"):
        assert value(after, "pipelined_queue_messages", queue="main", state=state) == 0
        assert value(after, "pipelined_queue_messages", queue="dlq", state=state) == 0
    assert value(after, "pipelined_queue_oldest_message_age_seconds", queue="dlq") == 0
    assert ("pipelined_queue_oldest_message_age_seconds", frozenset({("queue", "main")})) in after
    assert value(after, "pipelined_last_receive_timestamp_seconds") > uploaded_at

    assert value(after, "pipelined_pool_workers") == settings.workers
    assert value(after, "pipelined_pool_busy_workers") == 0
    assert value(after, "pipelined_pool_queued_jobs") == 0
    assert value(after, "pipelined_job_timeout_seconds") == settings.job_timeout_s
    assert value(after, "pipelined_free_slots") == settings.max_inflight
    # Half of the slots beyond the workers': 3 of the default 8 with FAST's 2 workers.
    assert (settings.max_inflight, settings.workers) == (8, 2)
    assert value(after, "pipelined_receive_floor_slots") == 3
    assert _labels_of(after, "pipelined_build_info")["backend"] == "aws"


def _labels_of(samples: Samples, name: str) -> Mapping[str, str]:
    [labels] = [dict(labels) for found, labels in samples if found == name]
    return labels
