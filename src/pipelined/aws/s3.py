"""The pipeline's ObjectStore port on S3."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelined.aws.errors import translated
from pipelined.errors import LimitExceededError
from pipelined.events import ObjectEvent
from pipelined.pipeline import ObjectInfo

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

CHUNK_BYTES = 1024 * 1024

_GONE = {
    "NoSuchKey": "the source object no longer exists",
    "404": "the source object no longer exists",
    "NoSuchVersion": "the source object version no longer exists",
    "PreconditionFailed": "the object was overwritten after this event; a newer event covers it",
    "412": "the object was overwritten after this event; a newer event covers it",
}


class S3Store:
    def __init__(self, client: S3Client) -> None:
        self._client = client

    async def head(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo:
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        with translated("s3.HeadObject", permanent=_GONE):
            response = await self._client.head_object(Bucket=bucket, Key=key, **extra)
        return ObjectInfo(
            size=response["ContentLength"],
            etag=_unquote(response.get("ETag")),
            content_type=response.get("ContentType"),
        )

    async def download(self, event: ObjectEvent, destination: Path, max_bytes: int) -> ObjectInfo:
        """Stream the exact version the event names to ``destination``, never past max_bytes."""
        extra: dict[str, Any] = {}
        if event.version_id:
            extra["VersionId"] = event.version_id
        elif event.etag:
            extra["IfMatch"] = f'"{_unquote(event.etag)}"'
        with translated("s3.GetObject", permanent=_GONE):
            response = await self._client.get_object(Bucket=event.bucket, Key=event.key, **extra)
            size = response["ContentLength"]
            if size > max_bytes:
                response["Body"].close()
                raise LimitExceededError(
                    f"object is {size} bytes, over the max_object_bytes limit of {max_bytes}"
                )
            written = 0
            body = response["Body"]
            try:
                with destination.open("wb") as file:
                    async for chunk in body.iter_chunks(CHUNK_BYTES):
                        written += len(chunk)
                        if written > max_bytes:  # the length header lied
                            raise LimitExceededError(
                                f"object exceeds the max_object_bytes limit of {max_bytes}"
                            )
                        file.write(chunk)
            finally:
                body.close()
        return ObjectInfo(
            size=written,
            etag=_unquote(response.get("ETag")),
            content_type=response.get("ContentType"),
        )

    async def upload(self, bucket: str, key: str, source: Path, content_type: str) -> int:
        with translated("s3.PutObject"), source.open("rb") as body:
            await self._client.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type
            )
            return os.fstat(body.fileno()).st_size

    async def presign(self, bucket: str, key: str, ttl_s: int) -> str:
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s
        )
        return url


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None
