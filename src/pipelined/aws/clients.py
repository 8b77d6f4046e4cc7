"""One aioboto3 session and long-lived clients, closed together by an AsyncExitStack.

Every client carries one listener on botocore's events that counts and times each attempt of
each call, those botocore retries by itself included, and reports throttled ones.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioboto3
import botocore
from botocore.config import Config

import pipelined
from pipelined import metrics
from pipelined.aws.endpoints import cache_endpoints_by_what_they_depend_on
from pipelined.aws.errors import ANSWER_CODES, THROTTLING_CODES, error_code_of
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
    listener = CallListener(on_throttle)
    session = aioboto3.Session(region_name=region)
    config = Config(
        # Standard mode retries throttling and transient errors with backoff before we see them.
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=max_connections,
        connect_timeout=5,
        # Long polls hold the connection for up to 20 s; leave room above that.
        read_timeout=SQS_MAX_WAIT_TIME_S + 10,
        # A fixed User-Agent: botocore otherwise rebuilds its own from a dozen components,
        # twice for every call (about a sixth of a call's CPU in bench/e2e.py).
        user_agent=user_agent(),
        # botocore checks every request against the service model before sending it; ours
        # are built by typed code, and the service validates them again all the same.
        parameter_validation=False,
    )
    sqs = await stack.enter_async_context(session.client("sqs", config=config))
    # SigV4 for presigned URLs too: SigV2 is refused in newer regions and is being retired.
    s3_config = config.merge(Config(signature_version="s3v4"))
    s3 = await stack.enter_async_context(session.client("s3", config=s3_config))
    dynamodb = await stack.enter_async_context(session.client("dynamodb", config=config))
    sns = await stack.enter_async_context(session.client("sns", config=config))
    for client in (sqs, s3, dynamodb, sns):
        listener.register(client.meta.events)
        cache_endpoints_by_what_they_depend_on(client)
    return Clients(sqs=sqs, s3=s3, dynamodb=dynamodb, sns=sns)


def user_agent() -> str:
    return (
        f"pipelined/{pipelined.version()} botocore/{botocore.__version__} "
        f"Python/{platform.python_version()}"
    )


_STARTED = "pipelined_attempt_started"
"""Where an attempt's start is kept: botocore's request context, shared by the attempt's events."""


class CallListener:
    """Counts every attempt in pipelined_cloud_calls_total by outcome and times it.

    ``request-created`` fires before each attempt is sent and ``response-received`` after it
    is answered (or failed to connect), retries included; both carry the request's context.
    The service and operation come from the event's name, whose series are looked up once.
    """

    def __init__(self, on_throttle: Callable[[], None] | None = None) -> None:
        self._on_throttle = on_throttle
        self._series: dict[str, metrics.CallSeries] = {}

    def register(self, events: Any) -> None:
        events.register("request-created", self.started)
        events.register("response-received", self.answered)

    def started(self, request: Any = None, **_: Any) -> None:
        context = getattr(request, "context", None)
        if context is not None:
            context[_STARTED] = time.monotonic()

    def answered(
        self,
        event_name: str,
        context: dict[str, Any] | None = None,
        response_dict: dict[str, Any] | None = None,
        parsed_response: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        started = context.get(_STARTED) if context else None
        seconds = time.monotonic() - started if started is not None else 0.0
        outcome = _outcome(response_dict, parsed_response, exception)
        self._series_for(event_name).record(outcome, seconds)
        if outcome == "throttled" and self._on_throttle is not None:
            self._on_throttle()

    def _series_for(self, event_name: str) -> metrics.CallSeries:
        series = self._series.get(event_name)
        if series is None:
            # "response-received.<service id>.<Operation>": s3, sqs, dynamodb, sns.
            _, service, operation = event_name.split(".", 2)
            series = self._series[event_name] = metrics.cloud_call(service, operation)
        return series


def _outcome(
    response_dict: dict[str, Any] | None,
    parsed_response: dict[str, Any] | None,
    exception: BaseException | None,
) -> str:
    if exception is not None or response_dict is None:
        return "error"  # no answer: a connection refused or reset, a timeout
    if response_dict.get("status_code", 500) < 300:
        return "ok"
    code = error_code_of(parsed_response or {})
    if code in THROTTLING_CODES:
        return "throttled"
    return "ok" if code in ANSWER_CODES else "error"
