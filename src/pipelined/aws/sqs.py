"""The consumer's Queue port on SQS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipelined.aws.errors import translated
from pipelined.consumer import BatchFailure, Delivery
from pipelined.quotas import SQS_MAX_BATCH

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import BatchResultErrorEntryTypeDef

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
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        return [
            Delivery(
                message_id=message["MessageId"],
                body=message["Body"],
                receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                lease=message["ReceiptHandle"],
            )
            for message in response.get("Messages", [])
        ]

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
