"""``pipelined status gs://bucket/key`` on the emulators: the Firestore document of an object the
daemon processed, read through the Firestore ledger store."""

from __future__ import annotations

import asyncio
import json

import pytest

from pipelined import samples
from pipelined.cli import main
from pipelined.gcp.local import GcpStack
from tests.gcp.helpers import notifications, point_at, put
from tests.integration.helpers import running_daemon

pytestmark = pytest.mark.timeout(120)


async def test_status_shows_the_recorded_outcome(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_at(gcp, monkeypatch)
    async with running_daemon():
        generation = put(gcp, "logos/logo.png", samples.transparent_png(), "image/png")
        [notification] = await notifications(gcp, 1)
    capsys.readouterr()  # the daemon's log lines
    url = f"gs://{gcp.input_bucket}/logos/logo.png"

    assert await asyncio.to_thread(main, ["status", url, "--json"]) == 0
    item = json.loads(capsys.readouterr().out)["item"]
    assert (item["status"], item["version"]) == ("processed", generation)
    assert [a["key"] for a in item["artifacts"]] == [a["key"] for a in notification["artifacts"]]

    assert await asyncio.to_thread(main, ["status", url, "--version", generation]) == 0
    shown = capsys.readouterr().out
    assert f"version      {generation}" in shown
    assert "processed (image)" in shown

    missing = f"gs://{gcp.input_bucket}/never.png"
    assert await asyncio.to_thread(main, ["status", missing]) == 1
    assert "no item" in capsys.readouterr().err
