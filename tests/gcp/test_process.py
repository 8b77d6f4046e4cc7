"""``pipelined run`` as a real process on the Google Cloud emulators: SIGTERM's drain, a job
that outlasts its ack deadline, and the start-up refusals of settings that do not fit the
backend."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipelined import samples
from pipelined.gcp.local import GcpStack
from tests.faults.daemon import wait_until
from tests.gcp.helpers import (
    FOREIGN_NAMES,
    FOREIGN_PREFIXES,
    GcpDaemon,
    backlog,
    ledger,
    object_ids,
    put,
    read_notifications,
)

pytestmark = pytest.mark.timeout(120)

EXTENDED = 'pipelined_visibility_extensions_total{result="extended"}'


def processed(stack: GcpStack, keys: list[str]) -> list[str]:
    documents = ledger(stack)
    return [key for key in keys if documents.get(key, {}).get("status") == "processed"]


def test_sigterm_drains_and_loses_nothing(gcp: GcpStack, tmp_path: Path) -> None:
    keys = [f"batch/doc-{index}.pdf" for index in range(8)]
    # Seconds of text extraction each, on one worker: a SIGTERM finds jobs under way and
    # jobs waiting for the worker, more than its drain of 1 s can finish.
    body = samples.text_pdf([f"page {n} " + "words " * 300 for n in range(1000)])
    # A lease of 30 s: a message the drain left leased would not be back within the test.
    leases = {"visibility_timeout_s": "30", "claim_lease_s": "30"}
    daemon = GcpDaemon(gcp, tmp_path / "first.log", drain_timeout_s="1", **leases).start()
    try:
        daemon.wait_ready()
        for key in keys:
            put(gcp, key, body, "application/pdf")
        first = read_notifications(gcp, 1)  # work is under way
        assert first, daemon.log_tail()
        returncode = daemon.terminate(timeout_s=60)
    finally:
        daemon.kill()
    assert returncode == 0, daemon.log_tail()
    [drained] = daemon.events("drain_finished")

    # What is not done is back on the subscription at once: released, not left leased.
    done = processed(gcp, keys)
    back = object_ids(backlog(gcp, gcp.subscription, window_s=2))
    assert set(done) | set(back) >= set(keys), "every upload is processed or back to be done"
    assert sum(back.values()) >= drained["released"], "each released message is back"

    # A second daemon finishes the rest; nothing was lost.
    second = GcpDaemon(gcp, tmp_path / "second.log", workers="2", **leases).start()
    try:
        second.wait_ready()
        assert wait_until(lambda: len(processed(gcp, keys)) == len(keys), timeout_s=60)
        rest = read_notifications(gcp, len(keys) - len(first), settle_s=2)
        assert second.terminate(timeout_s=60) == 0, second.log_tail()
    finally:
        second.kill()
    per_key = Counter(n["source"]["key"] for n in first + rest)
    assert per_key == dict.fromkeys(keys, 1), "one notification per upload, no more"
    assert all(n["status"] == "processed" for n in first + rest)
    assert object_ids(backlog(gcp, gcp.subscription)) == {}
    assert object_ids(backlog(gcp, gcp.dead_letter_subscription)) == {}


def test_a_job_longer_than_its_ack_deadline_is_extended_and_done_once(
    gcp: GcpStack, tmp_path: Path
) -> None:
    # Two thousand pages of text take several seconds to extract; the ack deadline is 3 s,
    # extended whenever 2 s of it are left (every second). Without the extensions Pub/Sub would
    # hand the message out again meanwhile.
    body = samples.text_pdf([f"page {n} " + "lorem ipsum " * 600 for n in range(2000)])
    settings = {"visibility_timeout_s": "3", "claim_lease_s": "6", "log_level": "debug"}
    daemon = GcpDaemon(gcp, tmp_path / "daemon.log", **settings).start()
    try:
        daemon.wait_ready()
        put(gcp, "long/manual.pdf", body, "application/pdf")
        [notification] = read_notifications(gcp, 1, timeout_s=90)
        extended = daemon.metric(EXTENDED)
        assert daemon.terminate(timeout_s=60) == 0, daemon.log_tail()
    finally:
        daemon.kill()

    assert notification["status"] == "processed", notification
    assert notification["metadata"]["page_count"] == 2000
    # An extension comes a second after the one before (the first, a second after the
    # receive): with three, the job held its message past the 3 s it was received with.
    assert extended is not None
    assert extended >= 3, f"{extended} extensions"
    [finished] = [e for e in daemon.events("job_finished") if e.get("key") == "long/manual.pdf"]
    receives = [
        e for e in daemon.events("message_received") if e["message_id"] == finished["message_id"]
    ]
    assert [e["receives"] for e in receives] == [1], "received once, never handed out again"
    assert daemon.events("lease_extension_failed") == []
    assert daemon.events("job_cancelled") == []
    assert ledger(gcp)["long/manual.pdf"]["attempts"] == 1
    assert read_notifications(gcp, 0, timeout_s=2, settle_s=2) == [], "notified once"


def run_to_exit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``pipelined run`` in ``env``, for a start-up that is expected to end by itself."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(FOREIGN_PREFIXES) and name not in FOREIGN_NAMES
    }
    return subprocess.run(
        [sys.executable, "-m", "pipelined", "run"],
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# Settings that would do for a deployment on Google Cloud; nothing is reached before the
# settings are refused.
GCP_SETTINGS = {
    "PIPELINED_BACKEND": "gcp",
    "PIPELINED_SUBSCRIPTION": "projects/pipelined-test/subscriptions/uploads-jobs",
    "PIPELINED_TOPIC": "projects/pipelined-test/topics/results",
    "PIPELINED_OUTPUT_BUCKET": "pipelined-test-artifacts",
}


@pytest.mark.parametrize("missing", ["PIPELINED_SUBSCRIPTION", "PIPELINED_TOPIC"])
def test_a_missing_gcp_setting_stops_start_up_with_exit_code_2(missing: str) -> None:
    env = {name: value for name, value in GCP_SETTINGS.items() if name != missing}
    result = run_to_exit(env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"{missing} is required with PIPELINED_BACKEND=gcp but not set" in line


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("PIPELINED_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/uploads"),
        ("PIPELINED_TABLE", "pipelined-jobs"),
        ("PIPELINED_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:results"),
    ],
)
def test_an_aws_setting_with_the_gcp_backend_stops_start_up_with_exit_code_2(
    setting: str, value: str
) -> None:
    result = run_to_exit({**GCP_SETTINGS, setting: value})
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"{setting} is for PIPELINED_BACKEND=aws, but the backend is gcp: unset it" in line
