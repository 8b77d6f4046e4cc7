"""The pipeline's ObjectStore port on S3."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pipelined.aws.errors import translated
from pipelined.errors import LimitExceededError, SourceOverwrittenError
from pipelined.events import ObjectEvent
from pipelined.pipeline import ObjectInfo
from pipelined.staging import write_over

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3 import S3Client

CHUNK_BYTES = 1024 * 1024

UPLOAD_IN_MEMORY_MAX_BYTES = 8 * 1024 * 1024
"""Artifacts up to this size are read whole and sent as bytes. A file object costs botocore a
read and a seek for its checksum and aiohttp a thread-pool hop per chunk it sends, several
times what a thumbnail's bytes cost to hold; larger artifacts (a long PDF's text, a big
rendition) are still streamed from their file."""


class S3Store:
    def __init__(self, client: S3Client) -> None:
        self._client = client

    async def head(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo:
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        with translated("s3.HeadObject", source_object=True):
            response = await self._client.head_object(Bucket=bucket, Key=key, **extra)
        return ObjectInfo(
            size=response["ContentLength"],
            etag=_unquote(response.get("ETag")),
            content_type=response.get("ContentType"),
        )

    async def download(
        self, event: ObjectEvent, destination: Path, max_bytes: int, *, current_only: bool = False
    ) -> ObjectInfo:
        """Stream the version the event names to ``destination``, never past max_bytes.

        With ``current_only``, read the object's current version, and only if it is still
        the one the event names (SourceOverwrittenError otherwise).
        """
        condition = _read_condition(event, current_only=current_only)
        with translated("s3.GetObject", source_object=True):
            response = await self._client.get_object(
                Bucket=event.bucket, Key=event.key, **condition
            )
            body = response["Body"]
            try:
                if current_only:
                    _check_current(event, response.get("VersionId"))
                _check_size(response["ContentLength"], max_bytes)
                written = await _stream(body, destination, max_bytes)
            finally:
                body.close()
        return ObjectInfo(
            size=written,
            etag=_unquote(response.get("ETag")),
            content_type=response.get("ContentType"),
        )

    async def upload(self, bucket: str, key: str, source: Path, content_type: str) -> int:
        with translated("s3.PutObject"), source.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            body: bytes | BinaryIO = file.read() if size <= UPLOAD_IN_MEMORY_MAX_BYTES else file
            await self._client.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type
            )
        return size

    async def presign(self, bucket: str, key: str, ttl_s: int) -> str:
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s
        )
        return url


def _read_condition(event: ObjectEvent, *, current_only: bool) -> dict[str, Any]:
    """GetObject parameters that make S3 return the event's version or refuse.

    A version id names the bytes exactly. Without one (or when only the current version may
    be read) If-Match on the event's etag makes S3 answer 412 for content written since.
    """
    if event.version_id and not current_only:
        return {"VersionId": event.version_id}
    if event.etag:
        return {"IfMatch": f'"{_unquote(event.etag)}"'}
    return {}


def _check_current(event: ObjectEvent, current_version_id: str | None) -> None:
    # The same bytes uploaded again pass If-Match, but are a newer version all the same.
    if event.version_id and current_version_id != event.version_id:
        raise SourceOverwrittenError.of("source_overwritten")


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise LimitExceededError.of("object_too_large", size=size, limit=max_bytes)


async def _stream(body: StreamingBody, destination: Path, max_bytes: int) -> int:
    """Write body to destination; the number of bytes written."""
    written = 0
    with write_over(destination) as file:
        async for chunk in body.iter_chunks(CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:  # the length header lied
                raise LimitExceededError.of(
                    "object_too_large", size=f"at least {written}", limit=max_bytes
                )
            file.write(chunk)
    return written


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None
