"""The ObjectStore port on Cloud Storage, against fake-gcs-server: the contract every store
passes (tests/integration/object_store_contract.py).

Signed URLs need a signer: a throwaway service-account key, named by
GOOGLE_APPLICATION_CREDENTIALS as a deployment outside Google Cloud would name its key. The
emulator checks no signature, so what is shown is that the URL is V4, bounded, and fetches the
object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from pipelined.errors import SourceGoneError, SourceOverwrittenError
from pipelined.events import ObjectEvent
from pipelined.gcp.clients import open_clients
from pipelined.gcp.local import GcpStack
from pipelined.gcp.storage import GcsStore
from tests.gcp.helpers import service_account_key
from tests.integration.object_store_contract import ObjectStoreContract, StoreBackend


class TestGcsStore(ObjectStoreContract):
    @pytest.fixture
    async def backend(
        self, gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> AsyncIterator[StoreBackend]:
        for name, value in gcp.google_environment().items():
            monkeypatch.setenv(name, value)
        key_file = tmp_path / "key.json"
        service_account_key(key_file, gcp.project)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        bucket = gcp.storage_client().bucket(gcp.input_bucket)

        def put(key: str, body: bytes, content_type: str) -> ObjectEvent:
            blob = bucket.blob(key)
            blob.upload_from_string(body, content_type=content_type)
            return ObjectEvent(
                bucket=gcp.input_bucket, key=key, size=len(body), version_id=str(blob.generation)
            )

        def read(key: str) -> tuple[bytes, str | None]:
            blob = bucket.blob(key)
            return blob.download_as_bytes(), bucket.get_blob(key).content_type

        async with AsyncExitStack() as exits:
            clients = await open_clients(exits, gcp.project, "(default)", max_connections=10)
            store = GcsStore(clients.storage, clients.storage_executor, clients.signing_credentials)
            yield StoreBackend(
                store, gcp.input_bucket, put, lambda key: bucket.blob(key).delete(), read
            )


async def test_a_signed_url_is_v4_and_expires_when_asked(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in gcp.google_environment().items():
        monkeypatch.setenv(name, value)
    key_file = tmp_path / "key.json"
    service_account_key(key_file, gcp.project)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    async with AsyncExitStack() as exits:
        clients = await open_clients(exits, gcp.project, "(default)", max_connections=2)
        store = GcsStore(clients.storage, clients.storage_executor, clients.signing_credentials)
        url = await store.presign(gcp.output_bucket, "pipelined/x/thumb.webp", 7 * 24 * 3600)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == [str(7 * 24 * 3600)]
    assert query["X-Goog-Credential"][0].startswith(f"pipelined-test@{gcp.project}.iam")


async def test_in_a_bucket_without_versions_an_overwrite_is_stale_and_a_delete_gone(
    gcp: GcpStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without versioning a new generation replaces the old one for good: reading the old one
    finds nothing, which must say "overwritten" (a stale event), not "this version deleted"."""
    for name, value in gcp.google_environment().items():
        monkeypatch.setenv(name, value)
    client = gcp.storage_client()
    bucket = client.create_bucket(f"{gcp.input_bucket}-plain")
    first = bucket.blob("photo.jpg")
    first.upload_from_string(b"first")
    event = ObjectEvent(bucket=bucket.name, key="photo.jpg", version_id=str(first.generation))
    bucket.blob("photo.jpg").upload_from_string(b"second")
    async with AsyncExitStack() as exits:
        clients = await open_clients(exits, gcp.project, "(default)", max_connections=2)
        store = GcsStore(clients.storage, clients.storage_executor, clients.signing_credentials)
        with pytest.raises(SourceOverwrittenError):
            await store.download(event, tmp_path / "source", max_bytes=100)
        with pytest.raises(SourceOverwrittenError):  # as the size is asked for when unknown
            await store.head(bucket.name, "photo.jpg", event.version_id)
        bucket.blob("photo.jpg").delete()
        with pytest.raises(SourceGoneError, match="the file was deleted"):
            await store.download(event, tmp_path / "source", max_bytes=100)
