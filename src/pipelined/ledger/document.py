"""The ledger's stored layout: one flat document per source object, the same on every backend.

The recorded outcome's fields sit at the top level, where an operator querying the table finds
them (``status``, ``version``, ``notified``, ``error``, ...); the claim of a version in progress
is one nested ``claim`` map, present only while a version is being worked on. Values are plain
JSON types; a backend converts numbers as its wire format needs (DynamoDB wants decimals).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pipelined.ledger.machine import ObjectState, Processing, Recorded, Version
from pipelined.records import DEFAULT_RULE_NAME, JobRecord, SourceObject, StoredArtifact

Document = dict[str, Any]

FIELDS = frozenset(
    {
        "bucket",
        "object_key",
        "claim",
        # The recorded outcome (_recorded_fields).
        "status",
        "version",
        "sequencer",
        "kind",
        "rule",
        "etag",
        "size",
        "version_id",
        "artifacts",
        "metadata",
        "error",
        "attempts",
        "started_at",
        "finished_at",
        "duration_ms",
        "recorded_by",
        "notified",
        "notifier",
        "notify_lease_expires_at",
        "forced",
    }
)
"""Every top-level field a document of this layout can have. A backend whose write changes
only the fields it names (Firestore's update) deletes those of them a new document leaves out."""


def to_document(state: ObjectState, bucket: str, key: str) -> Document:
    """The document for ``state``; fields that are None are left out."""
    document: Document = {"bucket": bucket, "object_key": key}
    if state.recorded is not None:
        document.update(_recorded_fields(state.recorded))
    if state.processing is not None:
        document["claim"] = _without_none(_claim_fields(state.processing))
    return _without_none(document)


def from_document(document: Document) -> ObjectState:
    # Items of the layout before this one said "processing" here; such a claim is ignored.
    finished = document.get("status") in ("processed", "failed")
    recorded = _recorded_from(document) if finished else None
    claim = document.get("claim")
    processing = _claim_from(claim) if isinstance(claim, dict) else None
    return ObjectState(recorded=recorded, processing=processing)


def _recorded_fields(recorded: Recorded) -> Document:
    record = recorded.record
    return {
        "status": record.status,
        "version": recorded.version.id,
        "sequencer": recorded.version.sequencer,
        "kind": record.kind,
        "rule": record.rule,
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
        "recorded_by": recorded.recorded_by,
        "notified": recorded.notified,
        "notifier": recorded.notifier,
        "notify_lease_expires_at": recorded.notify_lease_expires_at,
        # Only when true: an item that no replay forced reads as it always did.
        "forced": True if recorded.forced else None,
    }


def _claim_fields(claim: Processing) -> Document:
    return {
        "version": claim.version.id,
        "sequencer": claim.version.sequencer,
        "owner": claim.owner,
        "lease_expires_at": claim.lease_expires_at,
        "attempts": claim.attempts,
        "worker_deaths": claim.worker_deaths,
        "must_be_current": claim.must_be_current,
        "forced": True if claim.forced else None,
    }


def _recorded_from(document: Document) -> Recorded:
    return Recorded(
        version=Version(str(document["version"]), document.get("sequencer")),
        record=record_from_document(document),
        recorded_by=str(document.get("recorded_by", "")),
        notified=bool(document.get("notified", False)),
        notifier=document.get("notifier"),
        notify_lease_expires_at=float(document.get("notify_lease_expires_at", 0)),
    )


def _claim_from(claim: Document) -> Processing:
    return Processing(
        version=Version(str(claim["version"]), claim.get("sequencer")),
        owner=str(claim["owner"]),
        lease_expires_at=float(claim.get("lease_expires_at", 0)),
        attempts=int(claim.get("attempts", 1)),
        worker_deaths=int(claim.get("worker_deaths", 0)),
        must_be_current=bool(claim.get("must_be_current", False)),
        forced=claim.get("forced") is True,
    )


def record_from_document(document: Document) -> JobRecord:
    """Rebuild a finished JobRecord from its document (to re-send a lost notification)."""
    return JobRecord(
        source=SourceObject(
            bucket=document["bucket"],
            key=document["object_key"],
            etag=document.get("etag"),
            size=document.get("size"),
            version_id=document.get("version_id"),
        ),
        status=document["status"],
        kind=document.get("kind", "unknown"),
        attempts=int(document.get("attempts", 1)),
        started_at=document.get("started_at", ""),
        finished_at=document.get("finished_at", ""),
        duration_ms=int(document.get("duration_ms", 0)),
        artifacts=tuple(StoredArtifact(**artifact) for artifact in document.get("artifacts", [])),
        metadata=dict(document.get("metadata", {})),
        error=document.get("error"),
        # Items written before rules existed have no rule: the default rule made them.
        rule=str(document.get("rule", DEFAULT_RULE_NAME)),
        forced=document.get("forced") is True,
    )


def _without_none(fields: Document) -> Document:
    return {name: value for name, value in fields.items() if value is not None}
