"""The Notifier port on SNS, read back through the stack's SQS subscription of the topic: the
contract every notifier passes (notifier_contract.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from pipelined.aws.clients import open_clients
from pipelined.aws.sns import SnsNotifier
from pipelined.local import REGION, LocalStack
from pipelined.tools import notification_attributes, unwrap_notification
from tests.integration.notifier_contract import NotifierBackend, NotifierContract

pytestmark = pytest.mark.every_aws_emulator


class TestSnsNotifier(NotifierContract):
    @pytest.fixture
    async def backend(self, stack: LocalStack) -> AsyncIterator[NotifierBackend]:
        sqs = stack.client("sqs")

        def received() -> list[tuple[dict[str, Any], dict[str, str]]]:
            response = sqs.receive_message(
                QueueUrl=stack.watch_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            found = []
            for message in response.get("Messages", []):
                body = message["Body"]
                found.append((unwrap_notification(body), notification_attributes(body)))
                sqs.delete_message(
                    QueueUrl=stack.watch_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            return found

        async with AsyncExitStack() as exits:
            clients = await open_clients(exits, max_connections=4, region=REGION)
            yield NotifierBackend(SnsNotifier(clients.sns, stack.topic_arn), received)
