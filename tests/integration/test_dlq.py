"""``pipelined dlq stats|peek|redrive`` on the emulator: stats and peek consume nothing, redrive
returns every dead letter to the queue, and a failure half-way loses none."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from pipelined.cli import main
from pipelined.local import LocalStack, free_port
from tests.faults.proxy import Rule, ThreadedFaultProxy
from tests.integration.helpers import queue_counts

pytestmark = pytest.mark.timeout(120)

DEAD_LETTERS = 25


def s3_body(key: str) -> str:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "uploads"}, "object": {"key": key, "eTag": f"etag-{key}"}},
    }
    return json.dumps({"Records": [record]})


def fill_dead_letters(stack: LocalStack, count: int = DEAD_LETTERS) -> Counter[str]:
    """``count`` messages on the dead-letter queue, one in five with a message attribute; the
    queue itself emptied of the test event S3 sent when its notification was set up."""
    drain(stack, stack.queue_url)
    sqs = stack.client("sqs")
    bodies: Counter[str] = Counter()
    for index in range(count):
        extra: dict[str, Any] = {}
        if index % 5 == 0:
            extra["MessageAttributes"] = {"origin": {"DataType": "String", "StringValue": "s3"}}
        body = s3_body(f"photos/{index}.jpg")
        sqs.send_message(QueueUrl=stack.dead_letter_queue_url, MessageBody=body, **extra)
        bodies[body] += 1
    return bodies


def drain(stack: LocalStack, queue_url: str) -> list[dict[str, Any]]:
    """Every message on the queue, received and deleted, until a receive brings none."""
    sqs = stack.client("sqs")
    taken: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return taken
        taken += messages
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_stats_counts_the_dead_letters(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_dead_letters(stack, 3)
    code, stats = run_json(capsys, "dlq", "stats", "--json")
    assert code == 0
    assert stats == {
        "queue": stack.queue_url,
        "dead_letters": stack.dead_letter_queue_url,
        "visible": 3,
        "in_flight": 0,
        "delayed": 0,
    }
    assert main(["dlq", "stats"]) == 0
    assert "3 visible, 0 in flight" in capsys.readouterr().out


def test_peek_shows_the_objects_and_consumes_nothing(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_dead_letters(stack, 12)
    code, peeked = run_json(capsys, "dlq", "peek", "-n", "11", "--json")
    assert code == 0
    messages = peeked["messages"]
    assert len(messages) == 11, "two receives: peek gathers up to -n"
    first = messages[0]
    assert first["objects"][0].startswith("s3://uploads/photos/")
    assert first["receive_count"] == 1
    assert first["sent_at"].endswith("Z")
    assert queue_counts(stack, stack.dead_letter_queue_url) == (12, 0), "all visible again"

    assert main(["dlq", "peek", "-n", "2"]) == 0
    shown = capsys.readouterr().out
    assert "s3://uploads/photos/" in shown
    assert "none consumed" in shown
    assert queue_counts(stack, stack.dead_letter_queue_url) == (12, 0)


def test_peek_says_why_a_body_names_no_object(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.client("sqs").send_message(QueueUrl=stack.dead_letter_queue_url, MessageBody="{oops")
    code, peeked = run_json(capsys, "dlq", "peek", "--json")
    assert code == 0
    [message] = peeked["messages"]
    assert message["objects"][0].startswith("malformed: message body is not JSON")
    assert message["body"] == "{oops"


def test_redrive_returns_every_dead_letter_none_lost(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = fill_dead_letters(stack)
    code, summary = run_json(capsys, "dlq", "redrive", "--json")
    assert code == 0, summary
    # moto has no StartMessageMoveTask: the safe loop did the work.
    assert (summary["method"], summary["moved"], summary["failed"]) == (
        "receive-send-delete",
        DEAD_LETTERS,
        [],
    )
    assert summary["remaining"] == 0
    moved = drain(stack, stack.queue_url)
    assert Counter(message["Body"] for message in moved) == bodies
    with_attribute = [m for m in moved if "MessageAttributes" in m]
    assert len(with_attribute) == DEAD_LETTERS // 5
    assert with_attribute[0]["MessageAttributes"]["origin"]["StringValue"] == "s3"
    assert queue_counts(stack, stack.dead_letter_queue_url) == (0, 0)


def test_redrive_of_an_empty_dead_letter_queue_moves_nothing(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "redrive", "--rate", "5"]) == 0
    assert "moved 0" in capsys.readouterr().out


def test_a_queue_without_a_redrive_policy_has_no_dead_letters(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = stack.client("sqs").create_queue(QueueName=f"{stack.table}-plain")["QueueUrl"]
    monkeypatch.setenv("PIPELINED_QUEUE_URL", plain)
    for command in ("stats", "peek", "redrive"):
        assert main(["dlq", command]) == 1
        assert "has no RedrivePolicy" in capsys.readouterr().err


def test_bad_options_are_usage_errors(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "peek", "-n", "0"]) == 2
    assert main(["dlq", "redrive", "--rate", "501"]) == 2
    assert "--rate" in capsys.readouterr().err


@pytest.fixture
def proxy(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedFaultProxy]:
    """The commands' AWS calls go through a fault proxy in front of the emulator."""
    with ThreadedFaultProxy(stack.endpoint_url, port=free_port(), seed=1) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield running


def dead_letters_held(stack: LocalStack) -> int:
    return sum(queue_counts(stack, stack.dead_letter_queue_url))


def test_a_failing_delete_duplicates_a_message_and_loses_none(
    stack: LocalStack, proxy: ThreadedFaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = fill_dead_letters(stack)
    proxy.add(
        Rule(action="error", service="sqs", operation="DeleteMessageBatch", code="AccessDenied")
    )
    assert main(["dlq", "redrive"]) == 1
    assert "sqs.DeleteMessageBatch was denied (AccessDenied)" in capsys.readouterr().err
    # The first batch was sent before its delete failed: it is in both queues.
    moved = drain(stack, stack.queue_url)
    assert len(moved) == 10
    assert dead_letters_held(stack) == DEAD_LETTERS, "the dead letters still hold every one"
    assert set(Counter(m["Body"] for m in moved)) <= set(bodies)


def test_a_failing_send_leaves_the_message_in_the_dead_letters(
    stack: LocalStack, proxy: ThreadedFaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_dead_letters(stack)
    proxy.add(
        Rule(action="error", service="sqs", operation="SendMessageBatch", code="AccessDenied")
    )
    assert main(["dlq", "redrive"]) == 1
    assert "sqs.SendMessageBatch was denied (AccessDenied)" in capsys.readouterr().err
    assert queue_counts(stack) == (0, 0), "nothing reached the queue"
    visible = (DEAD_LETTERS, 0)
    assert queue_counts(stack, stack.dead_letter_queue_url) == visible, "all given back at once"


def test_an_endpoint_without_the_move_task_gets_the_loop(
    stack: LocalStack, proxy: ThreadedFaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = fill_dead_letters(stack, 3)
    proxy.add(
        Rule(
            action="error",
            service="sqs",
            operation="StartMessageMoveTask",
            code="UnsupportedOperation",
        )
    )
    code, summary = run_json(capsys, "dlq", "redrive", "--json")
    assert (code, summary["method"], summary["moved"]) == (0, "receive-send-delete", 3)
    assert Counter(m["Body"] for m in drain(stack, stack.queue_url)) == bodies


def test_a_move_task_refused_for_another_reason_moves_nothing(
    stack: LocalStack, proxy: ThreadedFaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_dead_letters(stack, 3)
    proxy.add(
        Rule(action="error", service="sqs", operation="StartMessageMoveTask", code="AccessDenied")
    )
    assert main(["dlq", "redrive"]) == 1
    assert "sqs.StartMessageMoveTask was denied (AccessDenied)" in capsys.readouterr().err
    assert queue_counts(stack, stack.dead_letter_queue_url) == (3, 0), "not taken for a fallback"
