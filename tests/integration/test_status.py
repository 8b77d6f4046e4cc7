"""``pipelined status s3://bucket/key`` on the emulator: the ledger item of an object the daemon
processed, readably and as JSON; exit 1 when there is none."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pipelined import samples
from pipelined.cli import main
from pipelined.local import LocalStack
from tests.integration.helpers import notifications, put, running_daemon

pytestmark = pytest.mark.timeout(120)


async def _processed(stack: LocalStack, key: str) -> dict[str, Any]:
    async with running_daemon():
        put(stack, key, samples.transparent_png())
        [notification] = await notifications(stack, 1)
    return notification


async def test_status_shows_the_recorded_outcome(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    notification = await _processed(stack, "logos/a logo+1.png")
    url = f"s3://{stack.input_bucket}/logos/a logo+1.png"
    capsys.readouterr()  # the daemon's log lines

    assert await asyncio.to_thread(main, ["status", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    item = report["item"]
    assert (report["object"], item["status"], item["kind"]) == (url, "processed", "image")
    assert item["notified"] is True
    assert item["rule"] == "default"
    assert [a["key"] for a in item["artifacts"]] == [a["key"] for a in notification["artifacts"]]
    assert "claim" not in item, "no claim is left once the job is done"

    assert await asyncio.to_thread(main, ["status", url]) == 0
    shown = capsys.readouterr().out
    assert "processed (image)" in shown
    assert "notified" in shown
    assert item["artifacts"][0]["key"] in shown

    version = str(item["version"])
    assert await asyncio.to_thread(main, ["status", url, "--version", version]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", url, "--version", "other"]) == 1
    assert "no item" in capsys.readouterr().err


def test_status_of_an_unknown_object_exits_1(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{stack.input_bucket}/never/uploaded.png"
    assert main(["status", url]) == 1
    assert f"the ledger has no item for {url}" in capsys.readouterr().err
    assert main(["status", url, "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"object": url, "item": None}


def test_status_with_a_url_of_the_other_cloud_is_a_usage_error(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", f"gs://{stack.input_bucket}/a.png"]) == 2
    assert "PIPELINED_BACKEND is aws" in capsys.readouterr().err


def test_a_missing_table_is_a_failure_with_its_reason(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.client("dynamodb").delete_table(TableName=stack.table)
    assert main(["status", f"s3://{stack.input_bucket}/a.png"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pipelined: dynamodb.GetItem failed (ResourceNotFoundException)")
    assert "Traceback" not in err
