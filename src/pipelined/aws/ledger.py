"""The ledger's compare-and-set store on DynamoDB: one item per source object.

The item is the neutral document (``pipelined.ledger.document``) plus ``pk``, a revision
``rev`` and the ``write_id`` of the write that produced it. A write is a PutItem conditioned on
the revision it read, and asks for the item it found when the condition fails
(``ReturnValuesOnConditionCheckFailure=ALL_OLD``), so a refused write costs no second read.
Which writes are allowed is decided by the state machine, never here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from pipelined.aws.errors import translated
from pipelined.ledger.document import from_document, to_document
from pipelined.ledger.machine import ABSENT, ObjectState
from pipelined.ledger.store import Snapshot

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

CONDITION_FAILED = "ConditionalCheckFailedException"
_CONDITION_FAILED = frozenset({CONDITION_FAILED})
UNREVISED = "0"
"""The revision of an item written before items had one: the first write adds ``rev``."""
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def item_key(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


class DynamoLedgerStore:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    async def read(self, bucket: str, key: str) -> Snapshot:
        with translated("dynamodb.GetItem"):
            response = await self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": item_key(bucket, key)}},
                ConsistentRead=True,
            )
        return _snapshot(response.get("Item"))

    async def write(
        self, bucket: str, key: str, expected: str | None, state: ObjectState, write_id: str
    ) -> Snapshot:
        revision = 1 if expected is None else int(expected) + 1
        document = {
            **to_document(state, bucket, key),
            "pk": item_key(bucket, key),
            "rev": revision,
            "write_id": write_id,
        }
        request: dict[str, Any] = {
            "TableName": self._table,
            "Item": item_to_dynamo(document),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        request.update(_condition(expected))
        found = await self._put(request)
        if found is None:
            return Snapshot(state, str(revision), write_id)
        # Some emulators leave the old item out of the error: read it then.
        return _snapshot(found) if found else await self.read(bucket, key)

    async def _put(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """PutItem; None if written, else the item found instead (empty if not returned)."""
        try:
            # A refused condition is an answer, not an error: translated lets it through uncounted.
            with translated("dynamodb.PutItem", expected=_CONDITION_FAILED):
                await self._client.put_item(**request)
        except ClientError as error:
            item: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
            return item
        return None


def _condition(expected: str | None) -> dict[str, Any]:
    """The one condition every write carries: the item is still the revision we read."""
    if expected is None:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    if expected == UNREVISED:
        return {
            "ConditionExpression": "attribute_not_exists(#rev)",
            "ExpressionAttributeNames": {"#rev": "rev"},
        }
    return {
        "ConditionExpression": "#rev = :rev",
        "ExpressionAttributeNames": {"#rev": "rev"},
        "ExpressionAttributeValues": {":rev": {"N": expected}},
    }


def _snapshot(item: dict[str, Any] | None) -> Snapshot:
    if not item:
        return Snapshot(ABSENT)
    document = item_from_dynamo(item)
    return Snapshot(
        from_document(document), str(document.get("rev", UNREVISED)), document.get("write_id")
    )


def _to_dynamo(value: Any) -> Any:
    """DynamoDB numbers are decimals, not floats: convert on the way in (None stays NULL)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def item_to_dynamo(document: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(_to_dynamo(value)) for name, value in document.items()}


def item_from_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
