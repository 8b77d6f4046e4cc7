"""``pipelined replay s3://bucket[/prefix]`` on the emulator: what it sends, what it skips, and
what the daemon makes of it: a duplicate without --force, a forced reprocess with it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pipelined import samples
from pipelined.cli import main
from pipelined.events import ObjectEvent, parse_message
from pipelined.local import LocalStack
from tests.integration.helpers import (
    eventually,
    ledger_item,
    notifications,
    put,
    queue_counts,
    running_daemon,
)

pytestmark = pytest.mark.timeout(120)


def take_events(stack: LocalStack) -> list[ObjectEvent]:
    """Every object event on the queue (S3's set-up test event aside), received and deleted."""
    sqs = stack.client("sqs")
    events: list[ObjectEvent] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        if not messages:
            return events
        for message in messages:
            events += [r for r in parse_message(message["Body"]) if isinstance(r, ObjectEvent)]
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])


def replay_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["replay", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_replay_sends_one_event_per_object_and_skips_its_own_outputs(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = ["in/a photo+1.jpg", "in/b.png", "other/c.pdf"]
    for key in [*keys, "pipelined/in/a.jpg/v/thumb-256.webp"]:
        put(stack, key, key.encode())
    take_events(stack)  # S3's own events of those uploads

    code, summary = replay_json(capsys, f"s3://{stack.input_bucket}")
    assert code == 0
    assert (summary["listed"], summary["sent"], summary["failed"]) == (4, 3, [])
    assert summary["skipped"] == {"own_output": 1, "before_since": 0}
    events = {event.key: event for event in take_events(stack)}
    assert sorted(events) == sorted(keys), "keys decoded back as they were written"
    head = stack.client("s3").head_object(Bucket=stack.input_bucket, Key=keys[0])
    replayed = events[keys[0]]
    assert replayed.etag == head["ETag"].strip('"'), "the ETag as S3's events carry it"
    assert (replayed.size, replayed.version_id, replayed.sequencer) == (len(keys[0]), None, None)
    assert not replayed.forced

    code, summary = replay_json(capsys, f"s3://{stack.input_bucket}/in/", "--force")
    assert (code, summary["sent"], summary["force"]) == (0, 2, True)
    assert {event.key: event.forced for event in take_events(stack)} == {
        "in/a photo+1.jpg": True,
        "in/b.png": True,
    }


def test_dry_run_lists_and_sends_nothing(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    put(stack, "in/a.png", b"a")
    take_events(stack)
    code, summary = replay_json(capsys, f"s3://{stack.input_bucket}/in", "--dry-run")
    assert code == 0
    assert (summary["dry_run"], summary["sent"]) == (True, 0)
    [listed] = summary["objects"]
    assert (listed["key"], listed["size"]) == ("in/a.png", 1)
    assert queue_counts(stack) == (0, 0)

    assert main(["replay", f"s3://{stack.input_bucket}", "--dry-run"]) == 0
    assert f"would send s3://{stack.input_bucket}/in/a.png" in capsys.readouterr().out


def test_since_keeps_only_newer_objects_and_a_bad_date_is_a_usage_error(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    put(stack, "in/a.png", b"a")
    take_events(stack)
    code, summary = replay_json(capsys, f"s3://{stack.input_bucket}", "--since", "2999-01-01")
    assert (code, summary["sent"], summary["skipped"]["before_since"]) == (0, 0, 1)
    code, summary = replay_json(
        capsys, f"s3://{stack.input_bucket}", "--since", "2000-01-01T00:00:00+02:00"
    )
    assert (code, summary["sent"]) == (0, 1)

    assert main(["replay", f"s3://{stack.input_bucket}", "--since", "last tuesday"]) == 2
    assert "not an ISO 8601 date" in capsys.readouterr().err


def test_a_versioned_bucket_replays_each_current_version_id(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = stack.client("s3")
    s3.put_bucket_versioning(
        Bucket=stack.input_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    put(stack, "in/a.png", b"first")
    current = s3.put_object(Bucket=stack.input_bucket, Key="in/a.png", Body=b"second")
    take_events(stack)
    code, summary = replay_json(capsys, f"s3://{stack.input_bucket}/in/")
    assert (code, summary["sent"]) == (0, 1), "the current version only"
    [event] = take_events(stack)
    assert (event.version_id, event.size) == (current["VersionId"], len(b"second"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ftp://bucket"], "is not an s3://BUCKET[/PREFIX]"),
        (["s3://"], "names no bucket"),
        (["gs://bucket/in"], "PIPELINED_BACKEND is aws"),
        (["s3://bucket", "--rate", "0"], "--rate"),
    ],
)
def test_bad_arguments_are_usage_errors(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["replay", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_bucket_outside_input_buckets_is_refused(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINED_INPUT_BUCKETS", "somewhere-else")
    assert main(["replay", f"s3://{stack.input_bucket}"]) == 2
    assert "not one of PIPELINED_INPUT_BUCKETS" in capsys.readouterr().err


def test_a_missing_bucket_is_a_failure_with_its_reason(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", f"s3://{stack.input_bucket}-missing"]) == 1
    assert "NoSuchBucket" in capsys.readouterr().err


async def test_replay_is_a_duplicate_unless_forced_and_the_item_says_forced(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "logos/a logo+1.png"
    url = f"s3://{stack.input_bucket}/logos/"
    async with running_daemon():
        put(stack, key, samples.transparent_png())
        [first] = await notifications(stack, 1)
        item = ledger_item(stack, stack.input_bucket, key)
        assert item is not None
        assert (item["attempts"], "forced" in item) == (1, False)

        assert await asyncio.to_thread(main, ["replay", url]) == 0
        # The daemon takes the replayed event and deletes it as a duplicate: nothing new.
        assert await eventually(lambda: queue_counts(stack) == (0, 0), timeout_s=30)
        assert await notifications(stack, 1, timeout_s=2) == []
        item = ledger_item(stack, stack.input_bucket, key)
        assert item is not None
        assert item["attempts"] == 1, "not processed again"

        assert await asyncio.to_thread(main, ["replay", url, "--force"]) == 0
        [second] = await notifications(stack, 1)
    capsys.readouterr()
    assert second["source"]["key"] == key
    # Asked for, not a repeat: a subscriber that drops repeats by id must not drop it.
    assert second["notification_id"] != first["notification_id"]
    assert (first["forced"], second["forced"], second["attempts"]) == (False, True, 2)
    item = ledger_item(stack, stack.input_bucket, key)
    assert item is not None
    assert (item["forced"], item["attempts"], item["notified"]) == (True, 2, True)
