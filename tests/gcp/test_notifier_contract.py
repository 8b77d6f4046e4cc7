"""The Notifier port on a Pub/Sub topic, read back through the stack's subscription of it: the
contract every notifier passes (tests/integration/notifier_contract.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from pipelined.gcp.clients import open_clients
from pipelined.gcp.local import GcpStack, subscriber
from pipelined.gcp.notifier import PubSubNotifier
from pipelined.tools import take_messages
from tests.integration.notifier_contract import NotifierBackend, NotifierContract


class TestPubSubNotifier(NotifierContract):
    @pytest.fixture
    async def backend(
        self, gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[NotifierBackend]:
        for name, value in gcp.google_environment().items():
            monkeypatch.setenv(name, value)
        client = subscriber(gcp.emulators.pubsub_host)

        def received() -> list[tuple[dict[str, Any], dict[str, str]]]:
            messages = take_messages(client, gcp.watch_subscription, timeout_s=1)
            return [(json.loads(message.data), dict(message.attributes)) for message in messages]

        async with AsyncExitStack() as exits:
            clients = await open_clients(exits, gcp.project, "(default)", max_connections=4)
            yield NotifierBackend(PubSubNotifier(clients.publisher, gcp.results_topic), received)
