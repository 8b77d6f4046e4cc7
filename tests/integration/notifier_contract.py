"""What every Notifier port must do on the wire, written once and run against each backend:
the message arrives as the same JSON, non-ASCII text intact, with the attributes a
subscription filters on.

A backend's test module subclasses NotifierContract and gives it a ``backend`` fixture whose
``received`` reads what a subscriber of the topic got, as (JSON body, attributes) pairs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pipelined.pipeline import Notifier

pytestmark = pytest.mark.timeout(60)

RECEIVE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class NotifierBackend:
    notifier: Notifier
    received: Callable[[], list[tuple[dict[str, Any], dict[str, str]]]]
    """What arrived since the last call (blocking, briefly): bodies parsed, with attributes."""


async def receive(
    backend: NotifierBackend, count: int
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    found: list[tuple[dict[str, Any], dict[str, str]]] = []
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while len(found) < count and time.monotonic() < deadline:
        found += await asyncio.to_thread(backend.received)
    return found


class NotifierContract:
    async def test_the_message_arrives_as_json_with_its_attributes(
        self, backend: NotifierBackend
    ) -> None:
        message = {
            "status": "processed",
            "kind": "image",
            "source": {"bucket": "uploads", "key": "fotos/über café.jpg", "version_id": "7"},
            "artifacts": [{"key": "pipelined/uploads/fotos/über café.jpg/7/thumb-256.webp"}],
        }
        await backend.notifier.publish(message, {"status": "processed", "kind": "image"})
        [(body, attributes)] = await receive(backend, 1)
        assert body == message
        assert attributes == {"status": "processed", "kind": "image"}

    async def test_each_publish_is_one_message(self, backend: NotifierBackend) -> None:
        for index in range(3):
            await backend.notifier.publish({"n": index}, {"status": "failed", "kind": "pdf"})
        found = await receive(backend, 3)
        assert sorted(body["n"] for body, _ in found) == [0, 1, 2]
