"""One aioboto3 session and long-lived clients, closed together by an AsyncExitStack."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioboto3
from botocore.config import Config

from pipelined.aws.errors import THROTTLING_CODES, error_code_of
from pipelined.quotas import SQS_MAX_WAIT_TIME_S

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


@dataclass(frozen=True)
class Clients:
    sqs: SQSClient
    s3: S3Client
    dynamodb: DynamoDBClient
    sns: SNSClient


async def open_clients(
    stack: AsyncExitStack,
    max_connections: int,
    region: str | None = None,
    on_throttle: Callable[[], None] | None = None,
) -> Clients:
    """Open every client once; endpoint and credentials come from the standard AWS chain.

    ``on_throttle`` is called for every throttled attempt, also those botocore retries itself.
    """
    session = aioboto3.Session(region_name=region)
    config = Config(
        # Standard mode retries throttling and transient errors with backoff before we see them.
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=max_connections,
        connect_timeout=5,
        # Long polls hold the connection for up to 20 s; leave room above that.
        read_timeout=SQS_MAX_WAIT_TIME_S + 10,
    )
    sqs = await stack.enter_async_context(session.client("sqs", config=config))
    # SigV4 for presigned URLs too: SigV2 is refused in newer regions and is being retired.
    s3_config = config.merge(Config(signature_version="s3v4"))
    s3 = await stack.enter_async_context(session.client("s3", config=s3_config))
    dynamodb = await stack.enter_async_context(session.client("dynamodb", config=config))
    sns = await stack.enter_async_context(session.client("sns", config=config))
    if on_throttle is not None:
        for client in (sqs, s3, dynamodb, sns):
            client.meta.events.register("needs-retry", _throttle_listener(on_throttle))
    return Clients(sqs=sqs, s3=s3, dynamodb=dynamodb, sns=sns)


def _throttle_listener(on_throttle: Callable[[], None]) -> Callable[..., None]:
    def listener(response: Any = None, **_: Any) -> None:
        # Returning None leaves the retry decision to botocore's own handler.
        if response is not None and error_code_of(response[1]) in THROTTLING_CODES:
            on_throttle()

    return listener
