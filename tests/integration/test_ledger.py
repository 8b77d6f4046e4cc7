"""The ledger over its DynamoDB store, against the emulator: the contract every store passes
(ledger_contract.py), and items written before items had a revision."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from pipelined.aws.clients import open_clients
from pipelined.aws.ledger import DynamoLedgerStore, item_key
from pipelined.ledger.store import Ledger, ProcessGrant
from pipelined.local import REGION, LocalStack
from tests.integration.helpers import ledger_item
from tests.integration.ledger_contract import EVENT, Backend, LedgerContract, record

pytestmark = pytest.mark.every_aws_emulator


@pytest.fixture
async def store(stack: LocalStack) -> AsyncIterator[DynamoLedgerStore]:
    async with AsyncExitStack() as exits:
        clients = await open_clients(exits, max_connections=10, region=REGION)
        yield DynamoLedgerStore(clients.dynamodb, stack.table)


class TestDynamoLedger(LedgerContract):
    @pytest.fixture
    def backend(self, store: DynamoLedgerStore, stack: LocalStack) -> Backend:
        async def stored(bucket: str, key: str) -> dict[str, Any] | None:
            return ledger_item(stack, bucket, key)

        return Backend(store, stored, "dynamodb.PutItem", frozenset({"pk", "rev", "write_id"}))


async def test_an_item_of_the_previous_layout_is_taken_over(
    store: DynamoLedgerStore, stack: LocalStack
) -> None:
    # Written by the version before revisions: a flat claim, no rev, no write id.
    stack.client("dynamodb").put_item(
        TableName=stack.table,
        Item={
            "pk": {"S": item_key(EVENT.bucket, EVENT.key)},
            "status": {"S": "processing"},
            "version": {"S": "etag-1"},
            "owner": {"S": "old-daemon"},
            "lease_expires_at": {"N": "1"},
        },
    )
    ledger = Ledger(store, lease_s=60)
    grant = await ledger.claim(EVENT, "owner-1")
    assert isinstance(grant, ProcessGrant)
    await ledger.complete(grant.hold, record(EVENT))
    item = ledger_item(stack, EVENT.bucket, EVENT.key)
    assert item is not None
    assert (item["status"], item["rev"]) == ("processed", 2)
    assert "owner" not in item, "the whole item is rewritten in the current layout"
