"""The consumer's Queue port on Pub/Sub: unary pulls and ack-deadline changes over asyncio gRPC.

Not the library's streaming subscriber: that one leases messages on threads of its own and
extends them by itself, while the consumer keeps its leases and its back-pressure itself, as
it does on SQS. A visibility timeout here is an ack deadline, a receipt handle an ack id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from google.api_core import exceptions as api
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
from google.pubsub_v1.types import PubsubMessage, ReceivedMessage

from pipelined.consumer import BatchFailure, Delivery
from pipelined.gcp.errors import translated
from pipelined.quotas import PUBSUB_MAX_ACK_DEADLINE_S, SQS_MAX_BATCH

MIN_PULL_TIMEOUT_S = 1.0
"""A pull is given at least this long: with no time at all it could never return a message."""

EXACTLY_ONCE_FAILURE = "EXACTLY_ONCE_ACKID_FAILURE"
"""The ErrorInfo reason of an ack or deadline change refused for some of its ack ids; only a
subscription with exactly-once delivery answers so, and lists them in the ErrorInfo metadata."""

PERMANENT_FAILURE_PREFIX = "PERMANENT_"
"""An ack id listed with this prefix (e.g. PERMANENT_FAILURE_INVALID_ACK_ID) will never work
again: the message's lease is lost. Others are TRANSIENT_ and may be sent again."""

AckIdCall = Callable[[list[str]], Awaitable[None]]


class PubSubQueue:
    def __init__(self, client: SubscriberAsyncClient, subscription: str) -> None:
        self._client = client
        self._subscription = subscription

    async def receive(
        self, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Delivery]:
        received = await self._pull(min(max_messages, SQS_MAX_BATCH), wait_time_s)
        deliveries = [_delivery(message) for message in received]
        # The pulled messages hold the subscription's default deadline: make the lease the one
        # the consumer counts on. Should this fail, they come back after that default deadline;
        # so does one whose deadline alone was refused (exactly-once), left out here.
        failures = await self._modify(
            "pubsub.ModifyAckDeadline", deliveries, _ack_deadline_s(visibility_timeout_s)
        )
        refused = {failure.delivery for failure in failures}
        return [delivery for delivery in deliveries if delivery not in refused]

    async def _pull(self, max_messages: int, wait_time_s: int) -> Sequence[ReceivedMessage]:
        with translated("pubsub.Pull"):
            try:
                # No retry of the client's own: one pull, bounded by the wait (the drain counts
                # on that); a failed receive is retried by the consumer with its backoff.
                response = await self._client.pull(
                    subscription=self._subscription,
                    max_messages=max_messages,
                    retry=None,
                    timeout=max(float(wait_time_s), MIN_PULL_TIMEOUT_S),
                )
            except api.DeadlineExceeded:
                return []  # nothing came within the wait: an empty long poll
        return list(response.received_messages)

    async def extend(
        self, deliveries: Sequence[Delivery], visibility_timeout_s: int
    ) -> list[BatchFailure]:
        return await self._modify(
            "pubsub.ModifyAckDeadline", deliveries, _ack_deadline_s(visibility_timeout_s)
        )

    async def release(self, entries: Sequence[tuple[Delivery, int]]) -> list[BatchFailure]:
        """Give each message back after its delay; a delay of 0 is a nack, redelivered at once.

        A deadline change sets one deadline for all its ack ids, so entries go out grouped by
        delay, the nacks first. A delay past ten minutes is cut to ten minutes, the most a
        deadline can be: such a message comes back sooner than asked (the subscription's retry
        policy, if it has one, adds its own backoff on top).
        """
        by_deadline: dict[int, list[Delivery]] = {}
        for delivery, delay_s in entries:
            by_deadline.setdefault(_ack_deadline_s(delay_s), []).append(delivery)
        failures: list[BatchFailure] = []
        for deadline_s in sorted(by_deadline):
            failures += await self._modify(
                "pubsub.ModifyAckDeadline", by_deadline[deadline_s], deadline_s
            )
        return failures

    async def delete(self, deliveries: Sequence[Delivery]) -> list[BatchFailure]:
        async def acknowledge(ack_ids: list[str]) -> None:
            await self._client.acknowledge(subscription=self._subscription, ack_ids=ack_ids)

        return await _on_ack_ids("pubsub.Acknowledge", deliveries, acknowledge)

    async def dead_letter_policy(self) -> bool:
        """Whether the subscription dead-letters messages (to a topic) after some attempts."""
        with translated("pubsub.GetSubscription"):
            found = await self._client.get_subscription(subscription=self._subscription)
        return bool(found.dead_letter_policy.dead_letter_topic)

    async def _modify(
        self, operation: str, deliveries: Sequence[Delivery], deadline_s: int
    ) -> list[BatchFailure]:
        async def modify(ack_ids: list[str]) -> None:
            await self._client.modify_ack_deadline(
                subscription=self._subscription, ack_ids=ack_ids, ack_deadline_seconds=deadline_s
            )

        return await _on_ack_ids(operation, deliveries, modify)


def _delivery(received: ReceivedMessage) -> Delivery:
    message = received.message
    return Delivery(
        message_id=message.message_id,
        body=bytes(message.data).decode("utf-8", errors="replace"),
        # Counted only on a subscription with a dead-letter policy; 0 everywhere else.
        receive_count=received.delivery_attempt if received.delivery_attempt > 0 else 1,
        lease=received.ack_id,
        attributes=dict(message.attributes),
        sent_at=_publish_time(message),
    )


def _publish_time(message: PubsubMessage) -> float | None:
    """When the message was published (Unix time); None if the server left it unset."""
    published = message.publish_time
    return published.timestamp() if published is not None and published.year > 1970 else None


def _ack_deadline_s(seconds: int) -> int:
    return max(0, min(seconds, PUBSUB_MAX_ACK_DEADLINE_S))


async def _on_ack_ids(
    operation: str, deliveries: Sequence[Delivery], call: AckIdCall
) -> list[BatchFailure]:
    """Run ``call`` on the deliveries' ack ids; the failures of a partly refused call.

    Pub/Sub answers an ack or a deadline change as a whole: [] once it succeeds, an error
    (translated) when it fails, except under exactly-once delivery (see ``_refused``).
    """
    if not deliveries:
        return []  # Pub/Sub refuses a call without ack ids
    with translated(operation):
        try:
            await call([delivery.lease for delivery in deliveries])
        except api.GoogleAPICallError as error:
            if error.reason != EXACTLY_ONCE_FAILURE or not error.metadata:
                raise
            return _refused(deliveries, error.metadata)
    return []


def _refused(deliveries: Sequence[Delivery], errors: Mapping[str, str]) -> list[BatchFailure]:
    """The failures of an exactly-once call refused for the ack ids ``errors`` lists.

    An ack id it does not list may or may not have been acted on: it is reported retryable,
    since a second ack or deadline change of it is harmless.
    """
    failures = []
    for delivery in deliveries:
        code = errors.get(delivery.lease, "EXACTLY_ONCE_UNCONFIRMED")
        permanent = code.startswith(PERMANENT_FAILURE_PREFIX)
        failures.append(BatchFailure(delivery, code, retryable=not permanent))
    return failures
