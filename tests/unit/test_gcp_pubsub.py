"""The Pub/Sub queue's own decisions, on a fake subscriber: deadlines within Pub/Sub's cap,
releases grouped by delay, empty pulls, and the per-ack-id failures of exactly-once delivery."""

from __future__ import annotations

from typing import Any, cast

import pytest
from google.api_core import exceptions as api
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
from google.pubsub_v1.types import PubsubMessage, PullResponse, ReceivedMessage
from google.rpc import error_details_pb2

from pipelined.consumer import BatchFailure, Delivery
from pipelined.errors import RetryableError
from pipelined.gcp.pubsub import EXACTLY_ONCE_FAILURE, PubSubQueue
from pipelined.quotas import PUBSUB_MAX_ACK_DEADLINE_S

SUBSCRIPTION = "projects/p/subscriptions/jobs"


class FakeSubscriber:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.pulled: list[ReceivedMessage] = []
        self.failure: Exception | None = None

    async def pull(self, **kwargs: Any) -> PullResponse:
        self.calls.append(("pull", kwargs))
        if self.failure is not None:
            raise self.failure
        return PullResponse(received_messages=self.pulled)

    async def modify_ack_deadline(self, **kwargs: Any) -> None:
        self.calls.append(("modify_ack_deadline", kwargs))
        if self.failure is not None:
            raise self.failure

    async def acknowledge(self, **kwargs: Any) -> None:
        self.calls.append(("acknowledge", kwargs))
        if self.failure is not None:
            raise self.failure


def queue_of(fake: FakeSubscriber) -> PubSubQueue:
    return PubSubQueue(cast(SubscriberAsyncClient, fake), SUBSCRIPTION)


def delivery(ack_id: str) -> Delivery:
    return Delivery(message_id=f"m-{ack_id}", body="{}", receive_count=1, lease=ack_id)


def deadlines(fake: FakeSubscriber) -> list[tuple[list[str], int]]:
    return [
        (list(kwargs["ack_ids"]), kwargs["ack_deadline_seconds"])
        for name, kwargs in fake.calls
        if name == "modify_ack_deadline"
    ]


async def test_a_receive_sets_the_consumers_lease_and_reads_the_message() -> None:
    fake = FakeSubscriber()
    message = PubsubMessage(message_id="m-1", data=b"\xff{}", attributes={"bucketId": "b"})
    fake.pulled = [ReceivedMessage(ack_id="a-1", message=message, delivery_attempt=0)]
    [received] = await queue_of(fake).receive(50, 20, 900)
    assert fake.calls[0] == (
        "pull",
        {"subscription": SUBSCRIPTION, "max_messages": 10, "retry": None, "timeout": 20.0},
    )
    assert deadlines(fake) == [(["a-1"], PUBSUB_MAX_ACK_DEADLINE_S)]
    assert (received.message_id, received.body, received.receive_count) == ("m-1", "\ufffd{}", 1)
    assert (received.lease, dict(received.attributes)) == ("a-1", {"bucketId": "b"})


async def test_an_empty_pull_that_times_out_is_no_messages() -> None:
    fake = FakeSubscriber()
    fake.failure = api.DeadlineExceeded("no messages")
    assert await queue_of(fake).receive(10, 1, 30) == []
    assert deadlines(fake) == []


async def test_a_release_is_grouped_by_delay_nacks_first_and_capped() -> None:
    fake = FakeSubscriber()
    a, b, c, d = (delivery(ack_id) for ack_id in "abcd")
    entries = [(a, 30), (b, 0), (c, 3600), (d, 30)]
    assert await queue_of(fake).release(entries) == []
    assert deadlines(fake) == [(["b"], 0), (["a", "d"], 30), (["c"], PUBSUB_MAX_ACK_DEADLINE_S)]


async def test_a_whole_call_failure_is_translated() -> None:
    fake = FakeSubscriber()
    fake.failure = api.ServiceUnavailable("down")
    with pytest.raises(RetryableError):
        await queue_of(fake).delete([delivery("a")])


async def test_exactly_once_failures_are_per_ack_id() -> None:
    fake = FakeSubscriber()
    info = error_details_pb2.ErrorInfo(
        reason=EXACTLY_ONCE_FAILURE,
        metadata={"a": "PERMANENT_FAILURE_INVALID_ACK_ID", "b": "TRANSIENT_FAILURE_UNORDERED"},
    )
    fake.failure = api.InvalidArgument("some ack ids failed", error_info=info)
    a, b, c = (delivery(ack_id) for ack_id in "abc")
    failures = await queue_of(fake).delete([a, b, c])
    assert failures == [
        BatchFailure(a, "PERMANENT_FAILURE_INVALID_ACK_ID", retryable=False),
        BatchFailure(b, "TRANSIENT_FAILURE_UNORDERED", retryable=True),
        BatchFailure(c, "EXACTLY_ONCE_UNCONFIRMED", retryable=True),
    ]
