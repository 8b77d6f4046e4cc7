"""``pipelined dlq`` on SQS: the dead-letter queue the queue's RedrivePolicy names."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pipelined.aws.clients import open_clients
from pipelined.aws.errors import error_code, translated
from pipelined.errors import PipelinedError
from pipelined.ops.dlq import (
    DeadLetterError,
    DeadLetterStats,
    PeekedMessage,
    RedriveSummary,
    describe_objects,
    iso_from_epoch,
    redrive_progress,
)
from pipelined.ops.replay import Pacer
from pipelined.quotas import SQS_MAX_BATCH
from pipelined.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType
    from types_aiobotocore_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        MessageTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

PEEK_VISIBILITY_S = 30
"""The lease of a peeked message: longer than the peek takes, and given back at its end."""
REDRIVE_VISIBILITY_S = 60
"""The lease of a message being moved: its send and delete fit well inside it. One whose send
failed shows again in the dead letters after it, for this redrive or the next."""
RECEIVE_WAIT_S = 1
EMPTY_RECEIVES = 2
"""Empty receives in a row before the dead-letter queue is asked whether it is empty."""
EMPTY_CHECKS = 3
"""Times the queue may say it holds messages no receive brings before the loop stops."""
SEND_ATTEMPTS = 3
"""Sends of one message that may fail before this redrive leaves it in the dead letters."""
MOVE_TASK_POLL_S = 2.0
MOVE_TASK_DONE = frozenset({"COMPLETED", "CANCELLED", "FAILED"})
MOVE_TASK_UNSUPPORTED = frozenset(
    {"InvalidAction", "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", "501"}
)
"""Answers of an endpoint without StartMessageMoveTask. A bare "500", a body that is no SQS
error at all, is one too (moto answers so): the loop is safe even if a task did start."""
MOVE_TASK_UNSUPPORTED_BARE = "500"


@dataclass(frozen=True)
class Queues:
    queue_url: str
    queue_arn: str
    dead_letters_url: str
    dead_letters_arn: str


async def locate(sqs: SQSClient, queue_url: str) -> Queues:
    """The queue's ARN and the dead-letter queue its RedrivePolicy names (URL and ARN)."""
    with translated("sqs.GetQueueAttributes"):
        answer = await sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn", "RedrivePolicy"]
        )
    attributes = answer.get("Attributes", {})
    text = attributes.get("RedrivePolicy")
    if not text:
        raise DeadLetterError(f"the queue {queue_url} has no RedrivePolicy: it has no dead letters")
    target = str(json.loads(text).get("deadLetterTargetArn", ""))
    parts = target.split(":")  # arn:aws:sqs:REGION:ACCOUNT:NAME
    if len(parts) != 6 or parts[2] != "sqs":
        raise DeadLetterError(f"the RedrivePolicy's deadLetterTargetArn {target!r} is no queue")
    with translated("sqs.GetQueueUrl"):
        found = await sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
    return Queues(queue_url, attributes["QueueArn"], found["QueueUrl"], target)


async def aws_stats(settings: Settings) -> DeadLetterStats:
    async with AsyncExitStack() as stack:
        sqs = (await open_clients(stack, max_connections=2, region=settings.aws_region)).sqs
        queues = await locate(sqs, settings.aws().queue_url)
        depth = await _depth(sqs, queues.dead_letters_url)
    return DeadLetterStats(
        queue=queues.queue_url,
        dead_letters=queues.dead_letters_url,
        visible=depth["ApproximateNumberOfMessages"],
        in_flight=depth["ApproximateNumberOfMessagesNotVisible"],
        delayed=depth["ApproximateNumberOfMessagesDelayed"],
    )


async def _depth(sqs: SQSClient, queue_url: str) -> dict[str, int]:
    names: list[QueueAttributeNameType] = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    with translated("sqs.GetQueueAttributes"):
        answer = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
    attributes = answer.get("Attributes", {})
    return {str(name): int(attributes.get(name, 0)) for name in names}


async def aws_peek(settings: Settings, count: int) -> list[PeekedMessage]:
    async with AsyncExitStack() as stack:
        sqs = (await open_clients(stack, max_connections=2, region=settings.aws_region)).sqs
        queues = await locate(sqs, settings.aws().queue_url)
        received: list[MessageTypeDef] = []
        try:
            while len(received) < count:
                batch = await _receive(
                    sqs,
                    queues.dead_letters_url,
                    min(SQS_MAX_BATCH, count - len(received)),
                    PEEK_VISIBILITY_S,
                )
                if not batch:
                    break
                received += batch
        finally:
            # Whatever happened above: every message received is visible again at once.
            await asyncio.shield(_give_back(sqs, queues.dead_letters_url, received))
    return [_peeked(message) for message in received]


async def _receive(
    sqs: SQSClient, queue_url: str, count: int, visibility_s: int
) -> list[MessageTypeDef]:
    with translated("sqs.ReceiveMessage"):
        answer = await sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=RECEIVE_WAIT_S,
            VisibilityTimeout=visibility_s,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
    return list(answer.get("Messages", []))


async def _give_back(sqs: SQSClient, queue_url: str, messages: list[MessageTypeDef]) -> None:
    for start in range(0, len(messages), SQS_MAX_BATCH):
        batch = messages[start : start + SQS_MAX_BATCH]
        with translated("sqs.ChangeMessageVisibilityBatch"):
            await sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(batch)
                ],
            )


async def _give_back_quietly(
    sqs: SQSClient, queue_url: str, messages: list[MessageTypeDef]
) -> None:
    """_give_back when another error is already on its way: this one's would only hide it,
    and a message not given back is visible again once its lease runs out anyway."""
    with contextlib.suppress(PipelinedError):
        await _give_back(sqs, queue_url, messages)


def _peeked(message: MessageTypeDef) -> PeekedMessage:
    attributes = message.get("Attributes", {})
    sent_ms = attributes.get("SentTimestamp")
    count = attributes.get("ApproximateReceiveCount")
    return PeekedMessage(
        message_id=message["MessageId"],
        sent_at=iso_from_epoch(int(sent_ms) / 1000) if sent_ms and sent_ms.isdigit() else None,
        receive_count=int(count) if count and count.isdigit() else None,
        objects=describe_objects(message["Body"]),
        body=message["Body"],
    )


# --- redrive ----------------------------------------------------------------------------------


async def aws_redrive(settings: Settings, rate: int | None) -> RedriveSummary:
    async with AsyncExitStack() as stack:
        sqs = (await open_clients(stack, max_connections=4, region=settings.aws_region)).sqs
        queues = await locate(sqs, settings.aws().queue_url)
        started = await _start_move_task(stack, settings, queues, rate)
        if started:
            return await _follow_move_task(sqs, queues)
        return await _move_by_hand(sqs, queues, rate)


async def _start_move_task(
    stack: AsyncExitStack, settings: Settings, queues: Queues, rate: int | None
) -> bool:
    """Start SQS's own move task; False when the endpoint does not have it.

    Its own client, tried once: an endpoint without the action may answer a bare 500, which
    the shared clients would retry four times to no end.
    """
    once = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5)
    sqs = await stack.enter_async_context(
        aioboto3.Session(region_name=settings.aws_region).client("sqs", config=once)
    )
    extra: dict[str, Any] = {"MaxNumberOfMessagesPerSecond": rate} if rate else {}
    unsupported = MOVE_TASK_UNSUPPORTED | {MOVE_TASK_UNSUPPORTED_BARE}
    try:
        with translated("sqs.StartMessageMoveTask", expected=unsupported):
            await sqs.start_message_move_task(
                SourceArn=queues.dead_letters_arn, DestinationArn=queues.queue_arn, **extra
            )
    except ClientError as error:
        if error_code(error) in unsupported:
            return False
        raise
    return True


async def _follow_move_task(sqs: SQSClient, queues: Queues) -> RedriveSummary:
    summary = RedriveSummary(queues.dead_letters_url, queues.queue_url, "move-task")
    with redrive_progress() as bar:
        task = bar.add_task("moving", total=None)
        while True:
            await asyncio.sleep(MOVE_TASK_POLL_S)
            with translated("sqs.ListMessageMoveTasks"):
                answer = await sqs.list_message_move_tasks(
                    SourceArn=queues.dead_letters_arn, MaxResults=1
                )
            [latest] = answer.get("Results", [{}])[:1] or [{}]
            summary.moved = int(latest.get("ApproximateNumberOfMessagesMoved", 0))
            to_move = latest.get("ApproximateNumberOfMessagesToMove")
            bar.update(task, completed=summary.moved, total=to_move)
            status = str(latest.get("Status", ""))
            if status in MOVE_TASK_DONE:
                if status != "COMPLETED":
                    reason = latest.get("FailureReason", "no reason given")
                    summary.failed.append(f"the move task ended {status}: {reason}")
                break
    summary.remaining = (await _depth(sqs, queues.dead_letters_url))["ApproximateNumberOfMessages"]
    return summary


async def _move_by_hand(sqs: SQSClient, queues: Queues, rate: int | None) -> RedriveSummary:
    """Receive, send to the queue, and only then delete what was sent: never the reverse.

    A crash between the send and the delete leaves the message in both queues (the ledger
    makes its second delivery a duplicate); no order of failures leaves it in neither.
    """
    summary = RedriveSummary(queues.dead_letters_url, queues.queue_url, "receive-send-delete")
    pacer = Pacer(rate)
    send_failures: Counter[str] = Counter()
    moved_ids: set[str] = set()
    empty_receives = empty_checks = 0
    with redrive_progress() as bar:
        depth = await _depth(sqs, queues.dead_letters_url)
        task = bar.add_task("moving", total=depth["ApproximateNumberOfMessages"])
        while empty_checks < EMPTY_CHECKS:
            received = await _receive(
                sqs, queues.dead_letters_url, SQS_MAX_BATCH, REDRIVE_VISIBILITY_S
            )
            # A message whose sends kept failing is left where it is, under its lease.
            received = [m for m in received if send_failures[m["MessageId"]] < SEND_ATTEMPTS]
            if not received:
                empty_receives += 1
                if empty_receives >= EMPTY_RECEIVES:
                    empty_receives = 0
                    empty_checks += 1
                    left = await _depth(sqs, queues.dead_letters_url)
                    if (
                        left["ApproximateNumberOfMessages"]
                        + left["ApproximateNumberOfMessagesDelayed"]
                        == 0
                    ):
                        break
                continue
            empty_receives = empty_checks = 0
            await pacer.wait(len(received))
            try:
                sent = await _send(sqs, queues.queue_url, received, send_failures)
            except BaseException:
                # Nothing of this batch is known sent: back to the dead letters at once.
                await asyncio.shield(_give_back_quietly(sqs, queues.dead_letters_url, received))
                raise
            await _delete(sqs, queues.dead_letters_url, sent)
            moved_ids.update(message["MessageId"] for message in sent)
            # What SQS refused to take is tried again at once, up to SEND_ATTEMPTS times.
            unsent = [m for m in received if m["MessageId"] not in moved_ids]
            await _give_back(sqs, queues.dead_letters_url, unsent)
            summary.moved += len(sent)
            bar.update(task, advance=len(sent), total=max(summary.moved, _total(bar, task)))
    summary.failed = [
        f"message {message_id} could not be sent ({count} tries); it stays in the dead letters"
        for message_id, count in send_failures.items()
        if message_id not in moved_ids
    ]
    summary.remaining = (await _depth(sqs, queues.dead_letters_url))["ApproximateNumberOfMessages"]
    return summary


def _total(bar: Any, task: Any) -> int:
    return int(bar.tasks[task].total or 0)


async def _send(
    sqs: SQSClient, queue_url: str, messages: list[MessageTypeDef], failures: Counter[str]
) -> list[MessageTypeDef]:
    """Send copies (body and message attributes) to the queue; return those SQS took."""
    by_id = {str(index): message for index, message in enumerate(messages)}
    entries: list[SendMessageBatchRequestEntryTypeDef] = []
    for id_, message in by_id.items():
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": id_, "MessageBody": message["Body"]}
        attributes = _copied_attributes(message)
        if attributes:
            entry["MessageAttributes"] = attributes
        entries.append(entry)
    with translated("sqs.SendMessageBatch"):
        answer = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    for failed in answer.get("Failed", []):
        failures[by_id[failed["Id"]]["MessageId"]] += 1
    return [by_id[entry["Id"]] for entry in answer.get("Successful", [])]


def _copied_attributes(message: MessageTypeDef) -> dict[str, MessageAttributeValueTypeDef]:
    copied: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        kept: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
        if "StringValue" in value:
            kept["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            kept["BinaryValue"] = value["BinaryValue"]
        copied[name] = kept
    return copied


async def _delete(sqs: SQSClient, queue_url: str, sent: list[MessageTypeDef]) -> None:
    """Delete from the dead letters what is safely on the queue. A delete that fails leaves a
    duplicate behind, which the next redrive moves (and the ledger skips)."""
    if not sent:
        return
    with translated("sqs.DeleteMessageBatch"):
        await sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(sent)
            ],
        )
