"""What the daemon checks of a Google Cloud deployment when it starts: the subscription's
dead-letter policy, without which Pub/Sub counts no delivery attempts."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
from google.pubsub_v1 import types as pubsub
from structlog.testing import capture_logs

from pipelined.gcp.local import GcpStack, subscriber
from tests.integration.helpers import running_daemon

pytestmark = pytest.mark.timeout(60)


def _point_at(stack: GcpStack, monkeypatch: pytest.MonkeyPatch, subscription: str) -> None:
    for name, value in stack.daemon_environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIPELINED_SUBSCRIPTION", subscription)


def _warnings(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "queue_without_dead_letter_queue"]


async def test_a_subscription_without_dead_letters_is_warned_about(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = gcp.subscription + "-plain"
    subscriber(gcp.emulators.pubsub_host).create_subscription(
        request=pubsub.Subscription(name=plain, topic=gcp.topic)
    )
    _point_at(gcp, monkeypatch, plain)
    with capture_logs() as logs:
        async with running_daemon():
            pass
    [warning] = _warnings(logs)
    assert "dead_letter_policy" in str(warning["hint"])


async def test_a_subscription_with_dead_letters_is_not(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_at(gcp, monkeypatch, gcp.subscription)
    with capture_logs() as logs:
        async with running_daemon():
            pass
    assert _warnings(logs) == []
    started = [entry for entry in logs if entry["event"] == "daemon_started"]
    assert started[0]["backend"] == "gcp"
    assert started[0]["source"] == gcp.subscription
