"""``pipelined check`` on the Google Cloud emulators: a good stack passes every check, and a
missing piece fails its row with exit 1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipelined.cli import main
from pipelined.gcp.local import GcpStack, subscriber
from tests.gcp.helpers import point_at

pytestmark = pytest.mark.timeout(90)


def run_check(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    code = main(["check", "--json", "--timeout", "30"])
    report = json.loads(capsys.readouterr().out)
    return code, {row["name"]: row for row in report["checks"]}


def test_a_good_stack_passes_every_check(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_at(gcp, monkeypatch, input_buckets=gcp.input_bucket)
    code, rows = run_check(capsys)
    assert code == 0, [row for row in rows.values() if not row["passed"]]
    assert set(rows) == {
        "settings",
        "identity",
        "subscription",
        "dead-letter policy",
        "ack deadline",
        "dead-letter topic",
        "ledger collection",
        "topic",
        f"input bucket {gcp.input_bucket}",
        "output probe",
    }
    assert rows["identity"]["detail"] == "anonymous: every service is an emulator"
    blobs = gcp.storage_client().list_blobs(gcp.output_bucket, prefix="pipelined/")
    assert [blob.name for blob in blobs] == [], "the probe was deleted"


def test_an_ack_deadline_other_than_the_daemons_passes_with_a_note(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The daemon sets its own deadline right after each pull.
    point_at(gcp, monkeypatch, visibility_timeout_s="30")
    code, rows = run_check(capsys)
    assert code == 0
    assert rows["ack deadline"]["passed"]
    assert "keep them equal" in rows["ack deadline"]["detail"]


def test_a_missing_topic_and_bucket_fail_with_exit_1(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = f"{gcp.input_bucket}-absent"
    point_at(
        gcp,
        monkeypatch,
        input_buckets=absent,
        topic=f"projects/{gcp.project}/topics/absent",
    )
    code, rows = run_check(capsys)
    assert code == 1
    assert not rows["topic"]["passed"]
    assert "404" in rows["topic"]["detail"]
    assert not rows[f"input bucket {absent}"]["passed"]
    assert rows["subscription"]["passed"], "the other checks still ran"


def test_a_subscription_without_dead_letter_policy_fails(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = f"projects/{gcp.project}/subscriptions/bare"
    subscriber(gcp.emulators.pubsub_host).create_subscription(
        request={"name": bare, "topic": gcp.topic, "ack_deadline_seconds": 60}
    )
    point_at(gcp, monkeypatch, subscription=bare)
    code, rows = run_check(capsys)
    assert code == 1
    assert "no dead_letter_policy" in rows["dead-letter policy"]["detail"]
    assert not rows["dead-letter topic"]["passed"]
    assert rows["ack deadline"]["passed"]
