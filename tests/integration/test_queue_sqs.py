"""The Queue port on SQS, against the emulator: the contract every queue passes
(queue_contract.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from pipelined.aws.clients import open_clients
from pipelined.aws.sqs import SqsQueue
from pipelined.local import REGION, LocalStack
from tests.integration.queue_contract import QueueBackend, QueueContract

pytestmark = pytest.mark.every_aws_emulator


class TestSqsQueue(QueueContract):
    @pytest.fixture
    async def backend(self, stack: LocalStack) -> AsyncIterator[QueueBackend]:
        # The s3:TestEvent queued when the bucket notification was configured is not ours.
        stack.client("sqs").purge_queue(QueueUrl=stack.queue_url)
        async with AsyncExitStack() as exits:
            clients = await open_clients(exits, max_connections=10, region=REGION)

            async def send(body: str) -> None:
                await clients.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)

            # The stack's queue has a redrive policy, and SQS counts receives regardless.
            yield QueueBackend(SqsQueue(clients.sqs, stack.queue_url), send, counts_receives=True)
