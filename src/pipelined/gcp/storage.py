"""The pipeline's ObjectStore port on Cloud Storage, with Google's own client on threads.

google-cloud-storage is synchronous (requests underneath), so every call runs on an executor of
its own, sized to the daemon's concurrency: the event loop never waits on a socket. It is used
rather than an asyncio client because it is the one that reads a given generation, sets
generation preconditions and signs V4 URLs with signBlob when the credentials hold no key.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import timedelta
from pathlib import Path
from typing import IO, TypeVar

from google.auth import credentials as auth_credentials
from google.auth.transport import requests as auth_requests
from google.cloud import storage

from pipelined.errors import (
    LimitExceededError,
    PermanentError,
    SourceGoneError,
    SourceOverwrittenError,
)
from pipelined.events import ObjectEvent
from pipelined.gcp.errors import translated
from pipelined.pipeline import ObjectInfo
from pipelined.staging import write_over

T = TypeVar("T")


class GcsStore:
    def __init__(
        self,
        client: storage.Client,
        executor: Executor,
        credentials: auth_credentials.Credentials,
    ) -> None:
        self._client = client
        self._executor = executor
        self._credentials = credentials  # what signs URLs: the client's own

    async def head(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo:
        blob = self._client.bucket(bucket).blob(key, generation=_generation(version_id))
        try:
            with translated("storage.objects.get", source_object=True):
                await self._call(blob.reload)
        except SourceGoneError:
            raise await self._why_gone(bucket, key, version_id) from None
        return ObjectInfo(size=blob.size or 0, etag=blob.etag, content_type=blob.content_type)

    async def download(
        self, event: ObjectEvent, destination: Path, max_bytes: int, *, current_only: bool = False
    ) -> ObjectInfo:
        """Write the generation the event names to ``destination``, never past max_bytes.

        With ``current_only``, read the live object, and only while it is still that generation
        (SourceOverwrittenError otherwise): ifGenerationMatch, and the generation the answer
        carries, since not every emulator honours the precondition on a read.
        """
        generation = _generation(event.version_id)
        pinned = None if current_only else generation
        blob = self._client.bucket(event.bucket).blob(event.key, generation=pinned)
        condition = {"if_generation_match": generation} if current_only else {}
        try:
            with (
                translated("storage.objects.get", source_object=True),
                write_over(destination) as file,
            ):
                capped = _CappedWriter(file, max_bytes)
                await self._call(blob.download_to_file, capped, **condition)
        except SourceGoneError:
            raise await self._why_gone(event.bucket, event.key, event.version_id) from None
        if current_only and generation is not None and blob.generation != generation:
            raise SourceOverwrittenError.of("source_overwritten")
        return ObjectInfo(size=capped.written, etag=blob.etag, content_type=blob.content_type)

    async def _why_gone(self, bucket: str, key: str, version_id: str | None) -> PermanentError:
        """Why a generation could not be read: the object was deleted, or written again. In a
        bucket without versioning, a new generation replaces the old one for good, so a
        generation that is gone is most often an overwrite: a stale event, not a failure."""
        live = self._client.bucket(bucket).blob(key)
        try:
            with translated("storage.objects.get", source_object=True):
                await self._call(live.reload)
        except SourceGoneError:
            return SourceGoneError.of("source_deleted")
        if str(live.generation) != version_id:
            return SourceOverwrittenError.of("source_overwritten")
        return SourceGoneError.of("source_version_deleted")

    async def upload(self, bucket: str, key: str, source: Path, content_type: str) -> int:
        blob = self._client.bucket(bucket).blob(key)
        with translated("storage.objects.insert"):
            await self._call(blob.upload_from_filename, str(source), content_type=content_type)
        return os.stat(source).st_size

    async def presign(self, bucket: str, key: str, ttl_s: int) -> str:
        blob = self._client.bucket(bucket).blob(key)
        # Credentials that hold a key sign here; only the others call IAM's signBlob.
        remote = not isinstance(self._credentials, auth_credentials.Signing)
        with translated("iam.signBlob", counted=remote):
            return await self._call(_signed_url, blob, self._credentials, ttl_s)

    async def _call(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )


class _CappedWriter:
    """A file that refuses to grow past ``limit``: the download stops at the first chunk over.

    The notification's size is checked before the download; this guards against a size that
    lied, or none at all.
    """

    def __init__(self, file: IO[bytes], limit: int) -> None:
        self._file = file
        self._limit = limit
        self.written = 0

    def write(self, chunk: bytes) -> int:
        self.written += len(chunk)
        if self.written > self._limit:
            raise LimitExceededError.of(
                "object_too_large", size=f"at least {self.written}", limit=self._limit
            )
        return self._file.write(chunk)


def _generation(version_id: str | None) -> int | None:
    return int(version_id) if version_id else None


def _signed_url(blob: storage.Blob, credentials: auth_credentials.Credentials, ttl_s: int) -> str:
    """A V4 signed URL. Credentials with a private key sign it here; others (Workload Identity,
    a VM's service account) have IAM's signBlob sign it, which takes the account's email and a
    fresh token, and roles/iam.serviceAccountTokenCreator on that account.
    """
    expiration = timedelta(seconds=ttl_s)
    if isinstance(credentials, auth_credentials.Signing):
        return str(
            blob.generate_signed_url(
                version="v4", expiration=expiration, method="GET", credentials=credentials
            )
        )
    if not credentials.valid:
        credentials.refresh(auth_requests.Request())
    return str(
        blob.generate_signed_url(
            version="v4",
            expiration=expiration,
            method="GET",
            service_account_email=getattr(credentials, "service_account_email", None),
            access_token=credentials.token,
        )
    )
