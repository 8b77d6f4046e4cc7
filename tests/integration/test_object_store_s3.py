"""The ObjectStore port on S3, against the emulator: the contract every store passes
(object_store_contract.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from pipelined.aws import s3 as s3_module
from pipelined.aws.clients import open_clients
from pipelined.aws.s3 import S3Store
from pipelined.events import ObjectEvent
from pipelined.local import REGION, LocalStack
from tests.integration.object_store_contract import ObjectStoreContract, StoreBackend

pytestmark = pytest.mark.every_aws_emulator


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

    @pytest.mark.parametrize("limit", [0, 1 << 20], ids=["streamed", "in-memory"])
    async def test_an_upload_streams_or_reads_whole_the_same_bytes(
        self,
        backend: StoreBackend,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        limit: int,
    ) -> None:
        monkeypatch.setattr(s3_module, "UPLOAD_IN_MEMORY_MAX_BYTES", limit)
        artifact = tmp_path / "rendition.jpg"
        artifact.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
        key = "pipelined/bucket/photo.jpg/1/rendition.jpg"
        size = await backend.store.upload(backend.bucket, key, artifact, "image/jpeg")
        assert size == artifact.stat().st_size
        assert backend.read(key) == (artifact.read_bytes(), "image/jpeg")
