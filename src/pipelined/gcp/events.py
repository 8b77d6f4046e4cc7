"""Turn a Cloud Storage Pub/Sub notification into the object event it carries. Pure: no I/O.

Cloud Storage says what happened in the message's attributes (``eventType``, ``bucketId``,
``objectId``, ``objectGeneration``, ``payloadFormat``); the data is the object's JSON API
resource (``JSON_API_V1``), or nothing (``NONE``). Only OBJECT_FINALIZE (a new object, or a
new generation of one) is work; deletions, metadata updates and archived generations are
acknowledged and ignored. The attributes are authoritative: emulators such as fake-gcs-server
send a sparser payload (no etag, no metageneration, the generation a number or a string).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipelined.events import (
    IgnoredRecord,
    MalformedMessageError,
    ObjectEvent,
    ParsedRecord,
    optional_int,
    optional_str,
    replay_forced,
)

FINALIZE = "OBJECT_FINALIZE"
IGNORED_EVENTS: Mapping[str, str] = {
    "OBJECT_DELETE": "the object was deleted",
    "OBJECT_METADATA_UPDATE": "only the object's metadata changed",
    "OBJECT_ARCHIVE": "the object's live generation became noncurrent",
}
GENERATION_DIGITS = 19
"""A generation is an int64: at most 19 digits."""


def parse_gcs_message(data: str | bytes, attributes: Mapping[str, str]) -> list[ParsedRecord]:
    """Parse a notification into records; raise MalformedMessageError with the reason if bad."""
    event_type = _require(attributes, "eventType")
    if event_type in IGNORED_EVENTS:
        return [IgnoredRecord(f"{event_type}: {IGNORED_EVENTS[event_type]}")]
    if event_type != FINALIZE:
        return [IgnoredRecord(f"not an object-finalize event ({event_type})")]
    payload = _payload(data, _require(attributes, "payloadFormat"))
    generation = _generation(_require(attributes, "objectGeneration"))
    return [
        ObjectEvent(
            bucket=_require(attributes, "bucketId"),
            # Object names come as they are, not URL-encoded.
            key=_require(attributes, "objectId"),
            size=optional_int(payload.get("size")),
            etag=optional_str(payload.get("etag")),
            version_id=generation,
            # No sequencer: Cloud Storage guarantees only that each generation of an object is
            # unique, not that a later one is larger. The ledger then orders nothing by it, and
            # a claim goes on only once the download confirms the generation is current.
            sequencer=None,
            event_name=event_type,
            event_time=optional_str(payload.get("timeCreated"))
            or optional_str(attributes.get("eventTime")),
            # In the data, never an attribute: a bucket's notification config can add custom
            # attributes, but the object resource's top level is Cloud Storage's own.
            forced=replay_forced(payload),
        )
    ]


def _payload(data: str | bytes, payload_format: str) -> dict[str, Any]:
    if payload_format == "NONE":
        return {}
    if payload_format != "JSON_API_V1":
        raise MalformedMessageError(f"unknown payloadFormat {payload_format!r}")
    try:
        payload = json.loads(data)
    except ValueError as error:  # bad JSON and bad UTF-8 alike
        raise MalformedMessageError(f"message data is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise MalformedMessageError("message data is JSON but not an object")
    return payload


def _generation(value: str) -> str:
    # isdigit() alone would let through digits of other scripts, which are no generation.
    if not (value.isascii() and value.isdigit()) or len(value) > GENERATION_DIGITS:
        raise MalformedMessageError(f"objectGeneration {value!r} is not a generation number")
    return value


def _require(attributes: Mapping[str, str], name: str) -> str:
    value = attributes.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedMessageError(f"attribute {name!r} is missing or empty")
    return value
