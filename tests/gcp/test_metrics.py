"""The daemon's /metrics on the Google Cloud emulators: calls counted by the adapters, stage
and end-to-end times, and the oldest message's age from what was received."""

from __future__ import annotations

import time

import pytest

from pipelined import queuestats, samples
from pipelined.gcp.local import GcpStack
from pipelined.local import free_port
from tests.gcp.helpers import notifications, point_at, put
from tests.integration.helpers import running_daemon
from tests.integration.test_metrics import Samples, in_process, scraped_until, value

pytestmark = pytest.mark.timeout(120)


async def test_a_daemons_metrics_after_a_file(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(gcp, monkeypatch)
    monkeypatch.setattr(queuestats, "POLL_INTERVAL_S", 0.5)
    photo = samples.photo_jpeg(width=800, height=600)
    port = free_port()
    before = in_process()
    uploaded_at = time.time()
    async with running_daemon(metrics_port=port, metrics_host="127.0.0.1"):
        put(gcp, "in/a.jpg", photo, "image/jpeg")
        [found] = await notifications(gcp, 1)
        # The upload and its two thumbnails' own notifications, all acknowledged.
        expected = 1 + len(found["artifacts"])

        def settled(now: Samples) -> bool:
            acked = value(now, "pipelined_messages_total", outcome="ack")
            return acked - value(before, "pipelined_messages_total", outcome="ack") >= expected

        await scraped_until(port, settled)
    after = in_process()  # the drain has sent the last acknowledgements
    elapsed_s = time.time() - uploaded_at

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for stage in ("download", "process", "upload", "record", "notify"):
        assert grew("pipelined_stage_seconds_count", kind="image", stage=stage) == 1, stage
    assert grew("pipelined_downloaded_bytes_total") == len(photo)
    assert grew("pipelined_messages_received_total") >= expected
    assert grew("pipelined_message_age_seconds_count") == grew("pipelined_messages_received_total")
    assert grew("pipelined_end_to_end_seconds_count", kind="image") == 1, "GCS timeCreated"
    assert 0 < grew("pipelined_end_to_end_seconds_sum", kind="image") <= elapsed_s + 1
    for service, operation in [
        ("pubsub", "Pull"),
        ("pubsub", "ModifyAckDeadline"),
        ("pubsub", "Acknowledge"),
        ("pubsub", "Publish"),
        ("gcs", "objects.get"),
        ("gcs", "objects.insert"),
        ("firestore", "Commit"),
    ]:
        assert grew(
            "pipelined_cloud_calls_total", service=service, operation=operation, outcome="ok"
        )
        assert grew("pipelined_cloud_call_seconds_count", service=service, operation=operation)
    assert ("pipelined_queue_oldest_message_age_seconds", frozenset({("queue", "main")})) in after
