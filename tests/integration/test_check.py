"""``pipelined check`` against the emulator: a good stack passes, each broken part fails its row.

The check runs in this process on the daemon's settings, which the ``stack`` fixture points at
freshly provisioned resources; each test breaks one resource with the emulator's own API.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipelined.cli import main
from pipelined.local import LocalStack

pytestmark = pytest.mark.timeout(60)


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["check", "--json", "--timeout", "20", *args])
    return code, json.loads(capsys.readouterr().out)


def rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in report["checks"]}


def test_a_good_stack_passes_every_check(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINED_INPUT_BUCKETS", stack.input_bucket)
    code, report = run_check(capsys)
    assert code == 0, report
    assert report["passed"] is True
    found = rows(report)
    assert set(found) == {
        "settings",
        "identity",
        "queue",
        "redrive policy",
        "visibility timeout",
        "dead-letter queue",
        "ledger table",
        "topic",
        f"input bucket {stack.input_bucket}",
        "output probe",
    }
    assert all(row["passed"] for row in found.values()), found
    assert stack.dead_letter_queue_url in found["dead-letter queue"]["detail"]
    # The probe was removed again: nothing is left under the output prefix.
    listed = stack.client("s3").list_objects_v2(Bucket=stack.output_bucket, Prefix="pipelined/")
    assert listed.get("KeyCount", 0) == 0


def test_a_missing_table_fails_with_exit_1(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.client("dynamodb").delete_table(TableName=stack.table)
    code, report = run_check(capsys)
    assert code == 1
    found = rows(report)
    assert not found["ledger table"]["passed"]
    assert "ResourceNotFoundException" in found["ledger table"]["detail"]
    assert found["queue"]["passed"], "the other checks still ran"


def test_a_table_keyed_otherwise_fails(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = f"{stack.table}-by-id"
    stack.client("dynamodb").create_table(
        TableName=other,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("PIPELINED_TABLE", other)
    code, report = run_check(capsys)
    assert code == 1
    assert "keyed by id (HASH)" in rows(report)["ledger table"]["detail"]


def test_a_queue_without_redrive_policy_fails(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.client("sqs").set_queue_attributes(
        QueueUrl=stack.queue_url, Attributes={"RedrivePolicy": ""}
    )
    code, report = run_check(capsys)
    assert code == 1
    found = rows(report)
    assert not found["redrive policy"]["passed"]
    assert "no RedrivePolicy" in found["redrive policy"]["detail"]
    assert not found["dead-letter queue"]["passed"]


def test_a_visibility_timeout_other_than_the_daemons_passes_with_a_note(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon asks for its own lease on every receive: a queue provisioned with another
    # timeout works, and check says how it differs from the deploy guide.
    monkeypatch.setenv("PIPELINED_VISIBILITY_TIMEOUT_S", "30")  # the queue's is 60
    code, report = run_check(capsys)
    assert code == 0
    row = rows(report)["visibility timeout"]
    assert row["passed"]
    assert "is 60 s, not 30 s" in row["detail"]


def test_an_unreadable_input_bucket_and_a_missing_topic_fail(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = f"{stack.input_bucket}-absent"
    monkeypatch.setenv("PIPELINED_INPUT_BUCKETS", f"{stack.input_bucket},{absent}")
    stack.client("sns").delete_topic(TopicArn=stack.topic_arn)
    code, report = run_check(capsys)
    assert code == 1
    found = rows(report)
    assert found[f"input bucket {stack.input_bucket}"]["passed"]
    assert not found[f"input bucket {absent}"]["passed"]
    assert "NoSuchBucket" in found[f"input bucket {absent}"]["detail"]
    assert not found["topic"]["passed"]


def test_an_unwritable_output_bucket_fails_the_probe(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINED_OUTPUT_BUCKET", f"{stack.output_bucket}-absent")
    code, report = run_check(capsys)
    assert code == 1
    assert "NoSuchBucket" in rows(report)["output probe"]["detail"]


def test_the_table_shows_a_row_per_check(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "ledger table" in out
    assert "PASS" in out
    assert "FAIL" not in out


def test_a_bad_setting_exits_2_naming_it(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINED_INPUT_BUCKETS", "uploads,,other")
    assert main(["check"]) == 2
    assert "PIPELINED_INPUT_BUCKETS" in capsys.readouterr().err


def test_an_unreachable_endpoint_fails_every_row_in_time(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nothing listens
    code = main(["check", "--json", "--timeout", "3"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    failed = [row for row in report["checks"] if not row["passed"]]
    assert {row["name"] for row in failed} >= {"identity", "queue", "ledger table", "topic"}
    assert all(row["detail"] for row in failed)
