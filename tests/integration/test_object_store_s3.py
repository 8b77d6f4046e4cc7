"""The ObjectStore port on S3, against the emulator: the contract every store passes
(object_store_contract.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from pipelined.aws.clients import open_clients
from pipelined.aws.s3 import S3Store
from pipelined.events import ObjectEvent
from pipelined.local import REGION, LocalStack
from tests.integration.object_store_contract import ObjectStoreContract, StoreBackend


class TestS3Store(ObjectStoreContract):
    @pytest.fixture
    async def backend(self, stack: LocalStack) -> AsyncIterator[StoreBackend]:
        s3 = stack.client("s3")
        bucket = stack.input_bucket
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

        def put(key: str, body: bytes, content_type: str) -> ObjectEvent:
            written = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
            return ObjectEvent(
                bucket=bucket,
                key=key,
                size=len(body),
                etag=written["ETag"].strip('"'),
                version_id=written["VersionId"],
            )

        def read(key: str) -> tuple[bytes, str | None]:
            found = s3.get_object(Bucket=bucket, Key=key)
            return found["Body"].read(), found.get("ContentType")

        async with AsyncExitStack() as exits:
            clients = await open_clients(exits, max_connections=10, region=REGION)
            yield StoreBackend(
                S3Store(clients.s3),
                bucket,
                put,
                lambda key: s3.delete_object(Bucket=bucket, Key=key),
                read,
            )
