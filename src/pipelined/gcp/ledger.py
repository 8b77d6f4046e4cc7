"""The ledger's compare-and-set store on Firestore: one document per source object.

The document is the neutral layout (``pipelined.ledger.document``) plus the ``write_id`` of
the write that produced it. Its revision is Firestore's own ``update_time``, so the document
needs no revision field of its own. (Firestore keeps the update time of a write that changes
nothing; ours always change the document, each carrying a fresh ``write_id``.) The first
write is a ``create``, refused if the document exists; every later one replaces the document
on the condition that its ``update_time`` is still the one read. A refused write reads the
document it found: Firestore's refusal does not carry it. Which writes are allowed is decided
by the state machine, never here.
"""

from __future__ import annotations

import hashlib
from typing import Any

from google.api_core import exceptions as api
from google.cloud import firestore
from google.cloud.firestore_v1.types import WriteResult
from proto.datetime_helpers import DatetimeWithNanoseconds

from pipelined.gcp.errors import translated
from pipelined.ledger.document import FIELDS, Document, from_document, to_document
from pipelined.ledger.machine import ABSENT, ObjectState
from pipelined.ledger.store import Snapshot

READ = "firestore.BatchGetDocuments"
WRITE = "firestore.Commit"
"""The operations as metrics and errors name them: the RPCs the client's get() and writes make."""

_STORED_FIELDS = FIELDS | {"write_id"}


def document_id(bucket: str, key: str) -> str:
    """The id of the object's document: the SHA-256 of its ``gs://`` URL, in hex.

    Firestore ids may not contain "/" and are limited to 1,500 bytes, while an object name
    may be 1,024 bytes of any UTF-8: percent-encoding, reversible as it is, can triple that.
    A hash is always 64 characters and, bucket names having no "/", the URL it is taken of
    is unambiguous. Nothing needs to reverse it: the document carries bucket and key.
    """
    return hashlib.sha256(f"gs://{bucket}/{key}".encode()).hexdigest()


def revision_of(update_time: object) -> str:
    """An update time as a revision: RFC 3339 text that parses back to the same nanosecond.

    The client hands out update times as proto-plus's DatetimeWithNanoseconds, and turns only
    that class back into a Timestamp with its nanoseconds. Any other datetime, google.api_core's
    class of the same name included, it sends as whole microseconds: a precondition made of
    one would not match an update time with nanoseconds, and every write would be refused.
    """
    if not isinstance(update_time, DatetimeWithNanoseconds):
        raise TypeError(f"an update time with nanoseconds expected, not {update_time!r}")
    return str(update_time.rfc3339())


def update_time_of(revision: str) -> DatetimeWithNanoseconds:
    """The update time a revision was made of, for a precondition: the client turns it into
    the Timestamp the server compares, from its seconds and its nanoseconds."""
    return DatetimeWithNanoseconds.from_rfc3339(revision)


class FirestoreLedgerStore:
    def __init__(self, client: firestore.AsyncClient, collection: str) -> None:
        self._client = client
        self._collection = client.collection(collection)

    async def read(self, bucket: str, key: str) -> Snapshot:
        # A get outside a transaction reads the latest committed version: strongly consistent.
        with translated(READ):
            found = await self._document(bucket, key).get()
        if not found.exists:
            return Snapshot(ABSENT)
        document: Document = found.to_dict() or {}
        return Snapshot(
            from_document(document), revision_of(found.update_time), document.get("write_id")
        )

    async def write(
        self, bucket: str, key: str, expected: str | None, state: ObjectState, write_id: str
    ) -> Snapshot:
        document = {**to_document(state, bucket, key), "write_id": write_id}
        result = await self._commit(self._document(bucket, key), expected, document)
        if result is None:
            # Refused: the document is another writer's, or ours if the client resent a write
            # whose answer was lost. Either way, what is stored now is the answer.
            return await self.read(bucket, key)
        return Snapshot(state, revision_of(result.update_time), write_id)

    async def _commit(
        self, reference: firestore.AsyncDocumentReference, expected: str | None, document: Document
    ) -> WriteResult | None:
        """Create the document, or replace revision ``expected``; None if the condition fails."""
        result: WriteResult | None = None
        with translated(WRITE):
            try:
                if expected is None:
                    result = await reference.create(document)
                else:
                    option = self._client.write_option(last_update_time=update_time_of(expected))
                    result = await reference.update(_replacing(document), option=option)
            except (api.AlreadyExists, api.FailedPrecondition):
                pass  # a refused condition is an answer, not an error: it is not counted as one
        return result

    def _document(self, bucket: str, key: str) -> firestore.AsyncDocumentReference:
        return self._collection.document(document_id(bucket, key))


def _replacing(document: Document) -> dict[str, Any]:
    """The fields of an update that leaves exactly ``document`` stored.

    The client's set() replaces a document but takes no precondition; update() takes one but
    changes only the fields it names (a map such as ``claim`` as a whole). Naming every field
    of the layout, those the document leaves out as deleted, makes it a replacement. That
    covers every field the document can hold: the precondition says it is the revision we
    read, which this layout wrote. A transaction would do the same in three calls, not one.
    """
    deleted = {name: firestore.DELETE_FIELD for name in _STORED_FIELDS - document.keys()}
    return {**document, **deleted}
