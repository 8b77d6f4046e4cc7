"""The pipeline's Notifier port on SNS."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipelined.aws.errors import translated

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient


class SnsNotifier:
    def __init__(self, client: SNSClient, topic_arn: str) -> None:
        self._client = client
        self._topic_arn = topic_arn

    async def publish(self, message: dict[str, Any], attributes: dict[str, str]) -> None:
        with translated("sns.Publish"):
            await self._client.publish(TopicArn=self._topic_arn, **sns_message(message, attributes))


def sns_message(message: dict[str, Any], attributes: dict[str, str]) -> dict[str, Any]:
    """A notification as SNS takes it: the JSON body and string message attributes."""
    return {
        "Message": json.dumps(message, ensure_ascii=False, default=str),
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    }
