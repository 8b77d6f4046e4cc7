"""``pipelined check`` on AWS: STS, SQS and its dead-letter queue, DynamoDB, SNS, S3."""

from __future__ import annotations

import functools
import json
import uuid
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import aioboto3
from botocore.config import Config

from pipelined.aws.clients import Clients, open_clients
from pipelined.layout import probe_key
from pipelined.ops.checking import Check, CheckError, lease_fits, receives_fit
from pipelined.settings import ENV_PREFIX, Settings

if TYPE_CHECKING:
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

LEDGER_KEY = [{"AttributeName": "pk", "KeyType": "HASH"}]
"""The ledger table's key schema, as aws/ledger.py writes its items: ``pk`` only."""
PROBE_BODY = b"pipelined check: a probe, deleted at once\n"


async def aws_checks(settings: Settings, stack: AsyncExitStack) -> list[Check]:
    clients = await open_clients(stack, max_connections=10, region=settings.aws_region)
    sts = await stack.enter_async_context(
        aioboto3.Session(region_name=settings.aws_region).client(
            "sts", config=Config(connect_timeout=5, read_timeout=10)
        )
    )
    checks = AwsChecks(settings, clients, sts)
    return [
        Check("identity", checks.identity),
        Check("queue", checks.queue),
        Check("redrive policy", checks.redrive_policy),
        Check("visibility timeout", checks.visibility_timeout),
        Check("dead-letter queue", checks.dead_letter_queue),
        Check("ledger table", checks.ledger_table),
        Check("topic", checks.topic),
        *checks.input_buckets(),
        Check("output probe", checks.output_probe),
    ]


class AwsChecks:
    def __init__(self, settings: Settings, clients: Clients, sts: Any) -> None:
        self._settings = settings
        self._resources = settings.aws()
        self._clients = clients
        self._sts = sts

    async def identity(self) -> str:
        found = await self._sts.get_caller_identity()
        return f"{found['Arn']} (account {found['Account']})"

    async def queue(self) -> str:
        attributes = await self._queue_attributes("QueueArn", "ApproximateNumberOfMessages")
        return (
            f"{attributes['QueueArn']}, about {attributes['ApproximateNumberOfMessages']} waiting"
        )

    async def redrive_policy(self) -> str:
        policy = await self._redrive_policy()
        receives = receives_fit(int(policy.get("maxReceiveCount", 0)), "maxReceiveCount")
        return f"to {policy['deadLetterTargetArn']}, {receives}"

    async def visibility_timeout(self) -> str:
        """The queue's timeout is each message's first lease; the docs' rule is to keep it
        equal to the daemon's, which then extends it up to MAX_JOB_TIME_S."""
        queue_s = int((await self._queue_attributes("VisibilityTimeout"))["VisibilityTimeout"])
        return lease_fits(self._settings, queue_s, "the queue's VisibilityTimeout")

    async def dead_letter_queue(self) -> str:
        target = str((await self._redrive_policy())["deadLetterTargetArn"])
        parts = target.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise CheckError(f"the redrive policy's target {target!r} is not an SQS queue ARN")
        account, name = parts[4], parts[5]
        found = await self._clients.sqs.get_queue_url(
            QueueName=name, QueueOwnerAWSAccountId=account
        )
        attributes = await self._clients.sqs.get_queue_attributes(
            QueueUrl=found["QueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
        )
        held = attributes.get("Attributes", {}).get("ApproximateNumberOfMessages", "?")
        return f"{found['QueueUrl']}, about {held} messages"

    async def ledger_table(self) -> str:
        table = (await self._clients.dynamodb.describe_table(TableName=self._resources.table))[
            "Table"
        ]
        key = [dict(element) for element in table.get("KeySchema", [])]
        if key != LEDGER_KEY:
            raise CheckError(
                f"{self._resources.table} is keyed by {_key_names(key)}; the ledger needs a "
                "string partition key pk and no sort key"
            )
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        if types.get("pk") != "S":
            raise CheckError(f"{self._resources.table}'s pk is of type {types.get('pk')}, not S")
        return f"{self._resources.table}, keyed by pk, {table.get('TableStatus', '?').lower()}"

    async def topic(self) -> str:
        arn = self._resources.topic_arn
        attributes = (await self._clients.sns.get_topic_attributes(TopicArn=arn))["Attributes"]
        return f"{arn}, {attributes.get('SubscriptionsConfirmed', '?')} confirmed subscriptions"

    def input_buckets(self) -> list[Check]:
        if not self._settings.input_buckets:
            return [Check("input buckets", self._any_bucket)]
        return [
            Check(f"input bucket {bucket}", functools.partial(self._readable, bucket))
            for bucket in self._settings.input_buckets
        ]

    async def _any_bucket(self) -> str:
        return f"{ENV_PREFIX}INPUT_BUCKETS not set: events from any bucket are accepted"

    async def _readable(self, bucket: str) -> str:
        listed = await self._clients.s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
        return "listed" if listed.get("KeyCount", 0) else "listed (empty)"

    async def output_probe(self) -> str:
        bucket = self._settings.output_bucket
        key = probe_key(self._settings.output_prefix, uuid.uuid4().hex)
        s3 = self._clients.s3
        written = await s3.put_object(Bucket=bucket, Key=key, Body=PROBE_BODY)
        # By version: on a versioned bucket a plain delete would leave the probe behind a
        # delete marker.
        version = written.get("VersionId")
        try:
            if version:
                await s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
            else:
                await s3.delete_object(Bucket=bucket, Key=key)
        except Exception as error:
            raise CheckError(
                f"wrote s3://{bucket}/{key} but could not delete it: {error}"
            ) from None
        return f"wrote and deleted a probe under s3://{bucket}/{self._settings.output_prefix}"

    async def _queue_attributes(self, *names: QueueAttributeNameType) -> dict[str, str]:
        response = await self._clients.sqs.get_queue_attributes(
            QueueUrl=self._resources.queue_url, AttributeNames=list(names)
        )
        return {str(name): value for name, value in response.get("Attributes", {}).items()}

    async def _redrive_policy(self) -> dict[str, Any]:
        text = (await self._queue_attributes("RedrivePolicy")).get("RedrivePolicy")
        if not text:
            raise CheckError(
                "the queue has no RedrivePolicy: messages that keep failing are retried until "
                "they expire; give it a dead-letter queue and a maxReceiveCount"
            )
        policy = json.loads(text)
        if not isinstance(policy, dict) or "deadLetterTargetArn" not in policy:
            raise CheckError(f"the queue's RedrivePolicy names no deadLetterTargetArn: {text}")
        return policy


def _key_names(key: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e.get('AttributeName')} ({e.get('KeyType')})" for e in key) or "nothing"
