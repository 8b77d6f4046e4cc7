"""Turn an SQS message body into the object events it carries. Pure: no I/O.

Accepted forms: a direct S3 notification, S3 -> SNS -> SQS (raw or in the SNS envelope),
EventBridge "Object Created", and the ``s3:TestEvent`` S3 sends when a notification is set up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from pipelined.errors import PermanentError

SEQUENCER_WIDTH = 64

REPLAY_FIELD = "pipelinedReplay"
"""The member of an event record that ``pipelined replay`` adds, ``{"force": true}`` to
reprocess a version the ledger has already recorded. S3 composes its records itself and never
writes this member (an uploader controls only the key and the object's own metadata, which sit
deeper), so only a sender with ``sqs:SendMessage`` on the queue can ask for a forced claim."""


def normalise_sequencer(sequencer: str) -> str:
    """S3 sequencers compare as hex strings after right-padding the shorter one with zeros.

    Padded and upper-cased here, at parse time, so that everywhere else (the ledger machine)
    a sequencer is just a string whose order is the order of the versions of one key.
    """
    return sequencer.upper().ljust(SEQUENCER_WIDTH, "0")


class MalformedMessageError(PermanentError):
    """The message body is not an event this daemon understands."""


@dataclass(frozen=True)
class ObjectEvent:
    """One object was created: the unit of work."""

    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None  # orders versions of one key as strings (see normalise_sequencer)
    event_name: str = "ObjectCreated"
    event_time: str | None = None
    forced: bool = False  # a replay asked to reprocess even a recorded version (REPLAY_FIELD)

    @property
    def version(self) -> str:
        """What identifies this version of the object: the version id, else the etag."""
        return self.version_id or self.etag or "unversioned"


@dataclass(frozen=True)
class IgnoredRecord:
    """A record that is acknowledged without work (test event, deletion, other events)."""

    reason: str


ParsedRecord = ObjectEvent | IgnoredRecord


def parse_message(body: str) -> list[ParsedRecord]:
    """Parse an SQS body into records; raise MalformedMessageError with the reason if it is bad."""
    document = _load_json(body, "message body")
    if _is_sns_envelope(document):
        document = _load_json(_require_str(document, "Message"), "SNS Message")
    return _parse_document(document)


def _parse_document(document: dict[str, Any]) -> list[ParsedRecord]:
    if document.get("Event") == "s3:TestEvent":
        return [IgnoredRecord("s3:TestEvent")]
    if "Records" in document:
        records = document["Records"]
        if not isinstance(records, list) or not records:
            raise MalformedMessageError("'Records' is not a non-empty list")
        return [_parse_s3_record(record) for record in records]
    if document.get("source") == "aws.s3" and "detail-type" in document:
        return [_parse_eventbridge(document)]
    raise MalformedMessageError("not an S3, SNS or EventBridge event (no 'Records' or 'detail')")


def _parse_s3_record(record: object) -> ParsedRecord:
    if not isinstance(record, dict):
        raise MalformedMessageError("a record is not an object")
    event_name = str(record.get("eventName", ""))
    if record.get("eventSource") != "aws:s3":
        return IgnoredRecord(f"not an S3 record (eventSource={record.get('eventSource')!r})")
    if not event_name.startswith("ObjectCreated:"):
        return IgnoredRecord(f"not an object-created event ({event_name})")
    s3 = _require_dict(record, "s3")
    obj = _require_dict(s3, "object")
    return ObjectEvent(
        bucket=_require_str(_require_dict(s3, "bucket"), "name"),
        # S3 notifications URL-encode keys form-style: '+' is a space, '%2B' a plus.
        key=unquote_plus(_require_str(obj, "key")),
        size=optional_int(obj.get("size")),
        etag=optional_str(obj.get("eTag")),
        version_id=optional_str(obj.get("versionId")),
        sequencer=_optional_sequencer(obj.get("sequencer")),
        event_name=event_name,
        event_time=optional_str(record.get("eventTime")),
        forced=replay_forced(record),
    )


def _parse_eventbridge(document: dict[str, Any]) -> ParsedRecord:
    detail_type = str(document["detail-type"])
    if detail_type != "Object Created":
        return IgnoredRecord(f"not an object-created event ({detail_type})")
    detail = _require_dict(document, "detail")
    obj = _require_dict(detail, "object")
    return ObjectEvent(
        bucket=_require_str(_require_dict(detail, "bucket"), "name"),
        # EventBridge carries the key as it is, not URL-encoded: decoding would corrupt '+'.
        key=_require_str(obj, "key"),
        size=optional_int(obj.get("size")),
        etag=optional_str(obj.get("etag")),
        version_id=optional_str(obj.get("version-id")),
        sequencer=_optional_sequencer(obj.get("sequencer")),
        event_name=f"ObjectCreated:{detail.get('reason', 'EventBridge')}",
        event_time=optional_str(document.get("time")),
    )


def replay_forced(carrier: dict[str, Any]) -> bool:
    """Does ``carrier`` (an S3 record, a GCS object resource) hold replay's force marker?

    Only the literal ``true`` counts: anything else a body might hold there is no request.
    """
    marker = carrier.get(REPLAY_FIELD)
    return isinstance(marker, dict) and marker.get("force") is True


def _is_sns_envelope(document: dict[str, Any]) -> bool:
    return document.get("Type") == "Notification" and "Message" in document


def _load_json(text: str, what: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, TypeError) as error:
        raise MalformedMessageError(f"{what} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise MalformedMessageError(f"{what} is JSON but not an object")
    return document


def _require_dict(parent: dict[str, Any], field: str) -> dict[str, Any]:
    value = parent.get(field)
    if not isinstance(value, dict):
        raise MalformedMessageError(f"field {field!r} is missing or not an object")
    return value


def _require_str(parent: dict[str, Any], field: str) -> str:
    value = parent.get(field)
    if not isinstance(value, str) or not value:
        raise MalformedMessageError(f"field {field!r} is missing or not a string")
    return value


def optional_str(value: object) -> str | None:
    """An event's text field, or None when it is missing, empty or not text."""
    return value if isinstance(value, str) and value else None


def _optional_sequencer(value: object) -> str | None:
    sequencer = optional_str(value)
    return normalise_sequencer(sequencer) if sequencer else None


def optional_int(value: object) -> int | None:
    """An event's number field: JSON APIs send int64 values (sizes) as digit strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    # isdigit() alone would take digits of other scripts, which int() reads differently.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None
