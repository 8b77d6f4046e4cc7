"""What every ObjectStore port must do on the wire, written once and run against each backend.

A store reads the version an event names and no other, refuses to read past a size limit,
tells an overwritten or deleted source apart from a failure worth retrying, writes artifacts
that read back byte for byte with their content type, and signs URLs that fetch them.

A backend's test module subclasses ObjectStoreContract (pytest collects the subclass, named
Test...) and gives it a ``backend`` fixture on a fresh, versioned bucket.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelined.errors import LimitExceededError, SourceGoneError, SourceOverwrittenError
from pipelined.events import ObjectEvent
from pipelined.pipeline import ObjectStore

pytestmark = pytest.mark.timeout(60)

BODY = b"the first version's bytes " * 100


@dataclass(frozen=True)
class StoreBackend:
    store: ObjectStore
    bucket: str
    put: Callable[[str, bytes, str], ObjectEvent]
    """Write an object (key, body, content type); the event its notification would carry."""
    delete: Callable[[str], None]
    """Delete the object's live version (a versioned bucket keeps the older ones)."""
    read: Callable[[str], tuple[bytes, str | None]]
    """The live object's bytes and content type, read past the store under test."""


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # the emulator, on 127.0.0.1
        body: bytes = response.read()
    return body


class ObjectStoreContract:
    async def test_the_download_is_the_events_bytes_with_size_and_type(
        self, backend: StoreBackend, tmp_path: Path
    ) -> None:
        event = backend.put("photos/a b+c.jpg", BODY, "image/jpeg")
        info = await backend.store.download(event, tmp_path / "source", max_bytes=len(BODY))
        assert (tmp_path / "source").read_bytes() == BODY
        assert (info.size, info.content_type) == (len(BODY), "image/jpeg")

    async def test_a_download_writes_over_a_longer_file_and_leaves_only_its_own_bytes(
        self, backend: StoreBackend, tmp_path: Path
    ) -> None:
        # Job folders keep the last job's source (staging.py): the next download writes over it.
        staged = tmp_path / "source"
        staged.write_bytes(b"the previous job's longer source " * 200)
        event = backend.put("photos/next.jpg", BODY, "image/jpeg")
        await backend.store.download(event, staged, max_bytes=len(BODY))
        assert staged.read_bytes() == BODY

    async def test_an_older_version_is_read_as_it_was(
        self, backend: StoreBackend, tmp_path: Path
    ) -> None:
        first = backend.put("doc.pdf", BODY, "application/pdf")
        backend.put("doc.pdf", b"the second version", "application/pdf")
        await backend.store.download(first, tmp_path / "source", max_bytes=len(BODY))
        assert (tmp_path / "source").read_bytes() == BODY

    async def test_current_only_reads_a_version_that_is_still_live(
        self, backend: StoreBackend, tmp_path: Path
    ) -> None:
        event = backend.put("doc.pdf", BODY, "application/pdf")
        await backend.store.download(
            event, tmp_path / "source", max_bytes=len(BODY), current_only=True
        )
        assert (tmp_path / "source").read_bytes() == BODY

    async def test_current_only_refuses_an_overwritten_version(
        self, backend: StoreBackend, tmp_path: Path
    ) -> None:
        first = backend.put("doc.pdf", BODY, "application/pdf")
        backend.put("doc.pdf", b"the second version", "application/pdf")
        with pytest.raises(SourceOverwrittenError):
            await backend.store.download(
                first, tmp_path / "source", max_bytes=len(BODY), current_only=True
            )

    async def test_a_deleted_object_is_gone_for_good(
        self, backend: StoreBackend, tmp_path: Path
    ) -> None:
        event = backend.put("gone.jpg", BODY, "image/jpeg")
        backend.delete("gone.jpg")
        with pytest.raises((SourceGoneError, SourceOverwrittenError)):
            await backend.store.download(
                event, tmp_path / "source", max_bytes=len(BODY), current_only=True
            )

    async def test_the_size_limit_holds_even_when_the_event_says_nothing(
        self, backend: StoreBackend, tmp_path: Path
    ) -> None:
        event = backend.put("big.bin", BODY, "application/octet-stream")
        with pytest.raises(LimitExceededError, match="over the max_object_bytes limit"):
            await backend.store.download(event, tmp_path / "source", max_bytes=len(BODY) - 1)

    async def test_head_reports_the_versions_size(self, backend: StoreBackend) -> None:
        event = backend.put("photo.png", BODY, "image/png")
        info = await backend.store.head(backend.bucket, "photo.png", event.version_id)
        assert (info.size, info.content_type) == (len(BODY), "image/png")

    async def test_an_upload_reads_back_with_its_content_type(
        self, backend: StoreBackend, tmp_path: Path
    ) -> None:
        artifact = tmp_path / "thumb.webp"
        artifact.write_bytes(b"RIFF....WEBP" * 10)
        key = "pipelined/bucket/photo.jpg/1/thumb-256.webp"
        size = await backend.store.upload(backend.bucket, key, artifact, "image/webp")
        assert size == artifact.stat().st_size
        assert backend.read(key) == (artifact.read_bytes(), "image/webp")

    async def test_a_signed_url_fetches_the_artifact(
        self, backend: StoreBackend, tmp_path: Path
    ) -> None:
        artifact = tmp_path / "text.txt"
        artifact.write_bytes(b"extracted text")
        key = "pipelined/bucket/doc.pdf/1/text.txt"
        await backend.store.upload(backend.bucket, key, artifact, "text/plain")
        url = await backend.store.presign(backend.bucket, key, 600)
        assert fetch(url) == b"extracted text"
