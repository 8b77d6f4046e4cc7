"""What a job produces: the ledger item and the notification are both views of a JobRecord."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pipelined.processing.results import JSONScalar

Status = Literal["processed", "failed"]
Kind = Literal["image", "pdf", "unknown"]

NOTIFICATION_SCHEMA_VERSION = 1
DEFAULT_RULE_NAME = "default"
"""The rule of an upload no rule in the rules file matches (rules.py), and of every upload
without a rules file; items recorded before rules existed read back with it too."""


@dataclass(frozen=True)
class SourceObject:
    bucket: str
    key: str
    etag: str | None
    size: int | None
    version_id: str | None = None


@dataclass(frozen=True)
class StoredArtifact:
    bucket: str
    key: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None
    url: str | None = None  # presigned GET, only in notifications and only when asked for


@dataclass(frozen=True)
class JobRecord:
    source: SourceObject
    status: Status
    kind: Kind
    attempts: int
    started_at: str
    finished_at: str
    duration_ms: int
    artifacts: tuple[StoredArtifact, ...] = ()
    metadata: dict[str, JSONScalar] = field(default_factory=dict)
    error: str | None = None
    rule: str = DEFAULT_RULE_NAME  # the rule (rules.py) that chose the outputs
    # A replay's --force reprocessed this version, which had been recorded already.
    forced: bool = False

    def notification(self) -> dict[str, Any]:
        """The SNS message body: everything a subscriber needs, as plain JSON."""
        body = asdict(self)
        body["artifacts"] = [_drop_none(artifact) for artifact in body["artifacts"]]
        body["schema_version"] = NOTIFICATION_SCHEMA_VERSION
        body["notification_id"] = self.notification_id
        if self.error is None:
            del body["error"]
        return body

    def notification_attributes(self) -> dict[str, str]:
        """SNS message attributes, so subscriptions can filter on them."""
        return {"status": self.status, "kind": self.kind}

    @property
    def notification_id(self) -> str:
        """Stable per object version and outcome, so a subscriber can drop a repeat.

        A forced reprocess is asked for, not a repeat: its id also holds its own finish time,
        which its resends (rebuilt from the ledger) keep, so they stay droppable."""
        version = self.source.version_id or self.source.etag or ""
        parts = [self.source.bucket, self.source.key, version, self.status]
        if self.forced:
            parts += ["forced", self.finished_at]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}
