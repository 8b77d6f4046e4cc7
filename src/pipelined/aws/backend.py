"""The AWS backend: SQS, S3, DynamoDB and SNS, on one aioboto3 session."""

from __future__ import annotations

from contextlib import AsyncExitStack

from pipelined.aws.clients import open_clients
from pipelined.aws.ledger import DynamoLedgerStore
from pipelined.aws.s3 import S3Store
from pipelined.aws.sns import SnsNotifier
from pipelined.aws.sqs import SqsQueue, SqsQueueStats
from pipelined.backends import Backend
from pipelined.concurrency import ThrottleSignal
from pipelined.settings import Settings


async def open_aws_backend(
    settings: Settings, stack: AsyncExitStack, max_connections: int, throttled: ThrottleSignal
) -> Backend:
    """The ports on this cloud, their clients opened on ``stack``."""
    resources = settings.aws()
    clients = await open_clients(
        stack, max_connections=max_connections, region=settings.aws_region, on_throttle=throttled
    )
    queue = SqsQueue(clients.sqs, resources.queue_url)

    async def has_redrive_policy() -> bool:
        return bool(await queue.redrive_policy())

    return Backend(
        queue=queue,
        parse=None,  # the handler's default: S3 events in the message body
        store=S3Store(clients.s3),
        ledger_store=DynamoLedgerStore(clients.dynamodb, resources.table),
        notifier=SnsNotifier(clients.sns, resources.topic_arn),
        source=resources.queue_url,
        has_dead_letters=has_redrive_policy,
        dead_letter_hint="messages that keep failing will be retried until they expire; "
        "set a RedrivePolicy with a maxReceiveCount on the queue",
        queue_stats=SqsQueueStats(clients.sqs, resources.queue_url),
    )
