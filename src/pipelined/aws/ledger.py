"""The pipeline's Ledger port on DynamoDB: one item per source object, conditional writes.

A claim is held per object version under a lease. The item's ``version`` is the S3 version id
(or the etag), ``sequencer`` the event's S3 sequencer, normalised so that string order is event
order. Conditions make the second delivery of a version a no-op, let one of two concurrent
consumers win, and let a claim whose owner died be taken over once its lease ran out.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import asdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from pipelined.aws.errors import error_code, translated
from pipelined.errors import LeaseLostError
from pipelined.events import ObjectEvent
from pipelined.pipeline import Claim
from pipelined.records import JobRecord, SourceObject, StoredArtifact

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SEQUENCER_WIDTH = 64
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# Every attribute is written as #name (see _names): DynamoDB reserves words like STATUS, OWNER,
# BUCKET and SIZE, and placeholders everywhere beat remembering which.
_CLAIM_FRESH = (
    "SET #status = :processing, #owner = :owner, #lease_expires_at = :lease,"
    " #version = :version, #bucket = :bucket, #object_key = :key, #attempts = :one,"
    " #notified = :false, #updated_at = :now{sequencer_set}"
    " REMOVE #artifacts, #metadata, #error, #kind, #finished_at, #duration_ms"
)
_CLAIM_TAKEOVER = (
    "SET #owner = :owner, #lease_expires_at = :lease, #updated_at = :now ADD #attempts :one"
)


def normalise_sequencer(sequencer: str) -> str:
    """S3 sequencers compare as hex strings after right-padding the shorter one with zeros."""
    return sequencer.upper().ljust(SEQUENCER_WIDTH, "0")


def item_key(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


class DynamoLedger:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    async def claim(self, event: ObjectEvent, owner: str, lease_s: int) -> Claim:
        now = time.time()
        values = {
            ":processing": "processing",
            ":owner": owner,
            ":lease": Decimal(str(round(now + lease_s, 3))),
            ":version": event.version,
            ":bucket": event.bucket,
            ":key": event.key,
            ":one": 1,
            ":false": False,
            ":now": Decimal(str(round(now, 3))),
        }
        fresh = await self._claim_fresh(event, values)
        if fresh is not None:
            return Claim(granted=True, owner=owner, attempts=1)
        taken = await self._claim_takeover(values)
        if taken is not None:
            return Claim(granted=True, owner=owner, attempts=int(taken["attempts"]))
        return await self._explain_refusal(event, owner, now)

    async def _claim_fresh(
        self, event: ObjectEvent, values: dict[str, Any]
    ) -> dict[str, Any] | None:
        # A new object, or a newer version than the one recorded (by sequencer, when both have one).
        condition = "attribute_not_exists(#pk) OR #version <> :version"
        sequencer_set = ""
        if event.sequencer:
            values = {**values, ":sequencer": normalise_sequencer(event.sequencer)}
            condition = (
                "attribute_not_exists(#pk) OR (#version <> :version AND"
                " (attribute_not_exists(#sequencer) OR #sequencer < :sequencer))"
            )
            sequencer_set = ", #sequencer = :sequencer"
        return await self._conditional_update(
            item_key(event.bucket, event.key),
            _CLAIM_FRESH.format(sequencer_set=sequencer_set),
            condition,
            values,
        )

    async def _claim_takeover(self, values: dict[str, Any]) -> dict[str, Any] | None:
        # The same version, left "processing" by an owner whose lease ran out (or who released it).
        return await self._conditional_update(
            item_key(values[":bucket"], values[":key"]),
            _CLAIM_TAKEOVER,
            "#version = :version AND #status = :processing AND #lease_expires_at < :now",
            {k: values[k] for k in (":owner", ":lease", ":now", ":one", ":version", ":processing")},
        )

    async def _explain_refusal(self, event: ObjectEvent, owner: str, now: float) -> Claim:
        item = await self._get(event)
        if item is None:  # deleted between our two writes; let the redelivery try again
            return Claim(granted=False, owner=owner, reason="busy")
        if item.get("version") != event.version:
            return Claim(granted=False, owner=owner, reason="stale")
        remaining = float(item.get("lease_expires_at", 0)) - now
        # A finished item keeps its owner's lease until the notification is marked sent: until
        # then the owner may still be publishing, and a second publish would be a duplicate.
        if item.get("status") == "processing" or (not item.get("notified") and remaining > 0):
            return Claim(granted=False, owner=owner, reason="busy", retry_after_s=max(0, remaining))
        return Claim(
            granted=False,
            owner=owner,
            reason="duplicate",
            existing=record_from_item(item),
            notified=bool(item.get("notified", True)),
        )

    async def renew(self, event: ObjectEvent, claim: Claim, lease_s: int) -> None:
        await self._owned_update(
            event,
            claim,
            "SET #lease_expires_at = :lease",
            {":lease": Decimal(str(round(time.time() + lease_s, 3)))},
        )

    async def release(self, event: ObjectEvent, claim: Claim) -> None:
        with contextlib.suppress(LeaseLostError):  # someone else owns it: nothing to release
            await self._owned_update(event, claim, "SET #lease_expires_at = :zero", {":zero": 0})

    async def complete(self, event: ObjectEvent, claim: Claim, record: JobRecord) -> None:
        fields: dict[str, Any] = {
            "status": record.status,
            "kind": record.kind,
            "etag": record.source.etag,
            "size": record.source.size,
            "version_id": record.source.version_id,
            "artifacts": [asdict(artifact) for artifact in record.artifacts],
            "metadata": record.metadata,
            "error": record.error,
            "attempts": record.attempts,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "duration_ms": record.duration_ms,
            "notified": False,
            "updated_at": time.time(),
        }
        present = {name: value for name, value in fields.items() if value is not None}
        absent = [name for name, value in fields.items() if value is None]
        # The claim's lease stays on: it now guards the notification (see mark_notified).
        expression = "SET " + ", ".join(f"#{name} = :{name}" for name in present)
        if absent:
            expression += " REMOVE " + ", ".join(f"#{name}" for name in absent)
        values = {f":{name}": value for name, value in present.items()}
        await self._owned_update(event, claim, expression, values)

    async def claim_notification(self, event: ObjectEvent, owner: str, lease_s: int) -> bool:
        """Take over the notification of a finished version whose owner died before sending it."""
        now = time.time()
        taken = await self._conditional_update(
            item_key(event.bucket, event.key),
            "SET #owner = :owner, #lease_expires_at = :lease",
            "#version = :version AND #notified = :false AND #status <> :processing"
            " AND (attribute_not_exists(#lease_expires_at) OR #lease_expires_at < :now)",
            {
                ":owner": owner,
                ":lease": Decimal(str(round(now + lease_s, 3))),
                ":version": event.version,
                ":false": False,
                ":processing": "processing",
                ":now": Decimal(str(round(now, 3))),
            },
        )
        return taken is not None

    async def mark_notified(self, event: ObjectEvent) -> None:
        with translated("dynamodb.UpdateItem"):
            await self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": item_key(event.bucket, event.key)}},
                UpdateExpression="SET #notified = :true REMOVE #lease_expires_at",
                ConditionExpression="#version = :version",
                ExpressionAttributeNames={
                    "#notified": "notified",
                    "#version": "version",
                    "#lease_expires_at": "lease_expires_at",
                },
                ExpressionAttributeValues={
                    ":true": {"BOOL": True},
                    ":version": {"S": event.version},
                },
            )

    async def _owned_update(
        self,
        event: ObjectEvent,
        claim: Claim,
        expression: str,
        values: dict[str, Any],
    ) -> None:
        result = await self._conditional_update(
            item_key(event.bucket, event.key),
            expression,
            "#owner = :owner AND #version = :version",
            {**values, ":owner": claim.owner, ":version": event.version},
        )
        if result is None:
            raise LeaseLostError("the ledger claim was taken over by another consumer")

    async def _conditional_update(
        self, pk: str, expression: str, condition: str, values: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Run an UpdateItem; return the new item, or None when the condition did not hold."""
        try:
            with translated("dynamodb.UpdateItem"):
                response = await self._client.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": pk}},
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeValues={
                        name: _serializer.serialize(_to_dynamo(value))
                        for name, value in values.items()
                    },
                    ExpressionAttributeNames=_names(expression + " " + condition),
                    ReturnValues="ALL_NEW",
                )
        except Exception as error:
            cause = error.__cause__
            if (
                isinstance(cause, ClientError)
                and error_code(cause) == "ConditionalCheckFailedException"
            ):
                return None
            raise
        return item_from_dynamo(response.get("Attributes", {}))

    async def _get(self, event: ObjectEvent) -> dict[str, Any] | None:
        with translated("dynamodb.GetItem"):
            response = await self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": item_key(event.bucket, event.key)}},
                ConsistentRead=True,
            )
        item = response.get("Item")
        return item_from_dynamo(item) if item else None


def record_from_item(item: dict[str, Any]) -> JobRecord:
    """Rebuild a finished JobRecord from its ledger item (to re-send a lost notification)."""
    return JobRecord(
        source=SourceObject(
            bucket=item["bucket"],
            key=item["object_key"],
            etag=item.get("etag"),
            size=item.get("size"),
            version_id=item.get("version_id"),
        ),
        status=item["status"],
        kind=item.get("kind", "unknown"),
        attempts=int(item.get("attempts", 1)),
        started_at=item.get("started_at", ""),
        finished_at=item.get("finished_at", ""),
        duration_ms=int(item.get("duration_ms", 0)),
        artifacts=tuple(StoredArtifact(**artifact) for artifact in item.get("artifacts", [])),
        metadata=dict(item.get("metadata", {})),
        error=item.get("error"),
    )


def _names(expression: str) -> dict[str, str]:
    return {f"#{name}": name for name in re.findall(r"#(\w+)", expression)}


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
