"""The consumer's Queue port on SQS."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pipelined.aws.errors import translated
from pipelined.consumer import BatchFailure, Delivery
from pipelined.queuestats import Depth, QueueStats
from pipelined.quotas import SQS_MAX_BATCH

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType
    from types_aiobotocore_sqs.type_defs import BatchResultErrorEntryTypeDef, MessageTypeDef

# A receipt handle that no longer works means someone else owns the message now.
LOST_LEASE_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"}
)


class SqsQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Delivery]:
        with translated("sqs.ReceiveMessage"):
            response = await self._client.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=min(max_messages, SQS_MAX_BATCH),
                WaitTimeSeconds=wait_time_s,
                VisibilityTimeout=visibility_timeout_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        return [_delivery(message) for message in response.get("Messages", [])]

    async def extend(
        self, deliveries: Sequence[Delivery], visibility_timeout_s: int
    ) -> list[BatchFailure]:
        return await self._change_visibility(
            [(delivery, visibility_timeout_s) for delivery in deliveries]
        )

    async def release(self, entries: Sequence[tuple[Delivery, int]]) -> list[BatchFailure]:
        return await self._change_visibility(entries)

    async def _change_visibility(
        self, entries: Sequence[tuple[Delivery, int]]
    ) -> list[BatchFailure]:
        by_id = {str(index): delivery for index, (delivery, _) in enumerate(entries)}
        with translated("sqs.ChangeMessageVisibilityBatch"):
            response = await self._client.change_message_visibility_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {
                        "Id": str(index),
                        "ReceiptHandle": delivery.lease,
                        "VisibilityTimeout": timeout,
                    }
                    for index, (delivery, timeout) in enumerate(entries)
                ],
            )
        return _failures(response.get("Failed", []), by_id)

    async def delete(self, deliveries: Sequence[Delivery]) -> list[BatchFailure]:
        by_id = {str(index): delivery for index, delivery in enumerate(deliveries)}
        with translated("sqs.DeleteMessageBatch"):
            response = await self._client.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": id_, "ReceiptHandle": d.lease} for id_, d in by_id.items()],
            )
        return _failures(response.get("Failed", []), by_id)

    async def redrive_policy(self) -> str | None:
        """The queue's RedrivePolicy, or None when it has no dead-letter queue."""
        with translated("sqs.GetQueueAttributes"):
            response = await self._client.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["RedrivePolicy"]
            )
        return response.get("Attributes", {}).get("RedrivePolicy")


def _delivery(message: MessageTypeDef) -> Delivery:
    attributes = message.get("Attributes", {})
    sent_ms = attributes.get("SentTimestamp")
    return Delivery(
        message_id=message["MessageId"],
        body=message["Body"],
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
        lease=message["ReceiptHandle"],
        sent_at=int(sent_ms) / 1000 if sent_ms and sent_ms.isdigit() else None,
    )


_DEPTH_ATTRIBUTES: list[QueueAttributeNameType] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


class SqsQueueStats:
    """The queue's depth and its dead-letter queue's, from GetQueueAttributes.

    The dead-letter queue is the one the queue's RedrivePolicy names, read in the same call,
    so a policy changed while the daemon runs is followed; its URL is looked up once per ARN.
    """

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url
        self._dead_letters: tuple[str, str] | None = None  # (ARN, URL)

    async def stats(self) -> QueueStats:
        main = await self._attributes(self._queue_url, [*_DEPTH_ATTRIBUTES, "RedrivePolicy"])
        dead_letters_url = await self._dead_letters_url(main.get("RedrivePolicy"))
        dead_letters = None
        if dead_letters_url is not None:
            dead_letters = _depth(await self._attributes(dead_letters_url, _DEPTH_ATTRIBUTES))
        return QueueStats(_depth(main), dead_letters)

    async def _attributes(
        self, queue_url: str, names: list[QueueAttributeNameType]
    ) -> Mapping[QueueAttributeNameType, str]:
        with translated("sqs.GetQueueAttributes"):
            response = await self._client.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=names
            )
        return response.get("Attributes", {})

    async def _dead_letters_url(self, redrive_policy: str | None) -> str | None:
        if not redrive_policy:
            return None
        arn = str(json.loads(redrive_policy).get("deadLetterTargetArn", ""))
        if self._dead_letters is None or self._dead_letters[0] != arn:
            # arn:aws:sqs:REGION:ACCOUNT:NAME
            parts = arn.split(":")
            if len(parts) != 6 or parts[2] != "sqs":
                raise ValueError(f"the RedrivePolicy's deadLetterTargetArn {arn!r} is no queue")
            with translated("sqs.GetQueueUrl"):
                found = await self._client.get_queue_url(
                    QueueName=parts[5], QueueOwnerAWSAccountId=parts[4]
                )
            self._dead_letters = (arn, found["QueueUrl"])
        return self._dead_letters[1]


def _depth(attributes: Mapping[QueueAttributeNameType, str]) -> Depth:
    return Depth(
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


def _failures(
    failed: Sequence[BatchResultErrorEntryTypeDef], by_id: dict[str, Delivery]
) -> list[BatchFailure]:
    return [
        BatchFailure(
            delivery=by_id[entry["Id"]],
            code=entry["Code"],
            # SenderFault marks a request that can never succeed (e.g. an expired handle).
            retryable=not entry.get("SenderFault", False) and entry["Code"] not in LOST_LEASE_CODES,
        )
        for entry in failed
    ]
