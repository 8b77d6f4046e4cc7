"""The pipeline's Notifier port on a Pub/Sub topic: the SNS message's JSON, as the data."""

from __future__ import annotations

import json
from typing import Any

from google.pubsub_v1.services.publisher import PublisherAsyncClient
from google.pubsub_v1.types import PubsubMessage

from pipelined.gcp.errors import translated


class PubSubNotifier:
    def __init__(self, client: PublisherAsyncClient, topic: str) -> None:
        self._client = client
        self._topic = topic

    async def publish(self, message: dict[str, Any], attributes: dict[str, str]) -> None:
        data = json.dumps(message, ensure_ascii=False, default=str).encode()
        with translated("pubsub.Publish"):
            # The client's default retry covers a publish. A repeat after a lost reply carries
            # the same notification_id, as on SNS, so a subscriber can tell it for one.
            await self._client.publish(
                topic=self._topic, messages=[PubsubMessage(data=data, attributes=attributes)]
            )
