import json

import pytest

from pipelined.events import IgnoredRecord, MalformedMessageError, ObjectEvent
from pipelined.gcp.events import parse_gcs_message
from pipelined.ledger.machine import Order, Version
from pipelined.ledger.store import version_of


def attributes(event_type: str = "OBJECT_FINALIZE", **overrides: str) -> dict[str, str]:
    return {
        "notificationConfig": "projects/_/buckets/uploads/notificationConfigs/1",
        "eventType": event_type,
        "payloadFormat": "JSON_API_V1",
        "bucketId": "uploads",
        "objectId": "photos/beach trip+1.jpg",
        "objectGeneration": "1764547200123456",
        "eventTime": "2026-12-01T00:00:00.200000Z",
        **overrides,
    }


def payload(**fields: object) -> bytes:
    """The JSON API object resource as Cloud Storage sends it: int64 values as strings."""
    resource = {
        "kind": "storage#object",
        "name": "photos/beach trip+1.jpg",
        "bucket": "uploads",
        "generation": "1764547200123456",
        "metageneration": "1",
        "contentType": "image/jpeg",
        "timeCreated": "2026-12-01T00:00:00.100Z",
        "size": "1234",
        "etag": "CMDo4Jz/+5ADEAE=",
        **fields,
    }
    return json.dumps({k: v for k, v in resource.items() if v is not None}).encode()


def test_a_finalized_object_is_an_event_named_by_its_attributes() -> None:
    [event] = parse_gcs_message(payload(), attributes())
    assert event == ObjectEvent(
        bucket="uploads",
        key="photos/beach trip+1.jpg",  # as it is: GCS does not URL-encode names
        size=1234,
        etag="CMDo4Jz/+5ADEAE=",
        version_id="1764547200123456",
        sequencer=None,
        event_name="OBJECT_FINALIZE",
        event_time="2026-12-01T00:00:00.100Z",
    )


def test_a_fake_gcs_server_payload_without_etag_is_an_event() -> None:
    # fake-gcs-server leaves out etag and metageneration, and may send the generation as a number.
    data = payload(etag=None, metageneration=None, generation=1764547200123456)
    [event] = parse_gcs_message(data, attributes())
    assert isinstance(event, ObjectEvent)
    assert (event.etag, event.size, event.version) == (None, 1234, "1764547200123456")


def test_without_a_payload_the_attributes_suffice() -> None:
    [event] = parse_gcs_message(b"", attributes(payloadFormat="NONE"))
    assert isinstance(event, ObjectEvent)
    assert (event.size, event.etag, event.event_time) == (None, None, "2026-12-01T00:00:00.200000Z")


@pytest.mark.parametrize(("one", "other"), [("9", "10"), ("10", "9"), ("1", "9223372036854775807")])
def test_generations_are_never_ordered(one: str, other: str) -> None:
    # Cloud Storage promises unique generations, not increasing ones: every generation of an
    # object must prove itself current before it may replace another's record.
    def version(generation: str) -> Version:
        [event] = parse_gcs_message(payload(), attributes(objectGeneration=generation))
        assert isinstance(event, ObjectEvent)
        assert event.sequencer is None
        return version_of(event)

    assert version(one).compare(version(other)) is Order.UNKNOWN


@pytest.mark.parametrize(
    "event_type", ["OBJECT_DELETE", "OBJECT_METADATA_UPDATE", "OBJECT_ARCHIVE", "OBJECT_NEW_KIND"]
)
def test_other_events_are_ignored_with_a_reason(event_type: str) -> None:
    # Even without a payload or the object's attributes: nothing of them is needed.
    [record] = parse_gcs_message(b"", {"eventType": event_type})
    assert isinstance(record, IgnoredRecord)
    assert event_type in record.reason


@pytest.mark.parametrize(
    ("data", "attrs", "reason"),
    [
        (payload(), {}, "'eventType' is missing"),
        (payload(), attributes(bucketId=""), "'bucketId' is missing"),
        (payload(), {k: v for k, v in attributes().items() if k != "objectId"}, "'objectId'"),
        (payload(), attributes(objectGeneration="12a"), "not a generation number"),
        (payload(), attributes(objectGeneration="١٢٣"), "not a generation number"),
        (payload(), attributes(objectGeneration="1" * 21), "not a generation number"),
        (payload(), attributes(payloadFormat="PROTOBUF"), "unknown payloadFormat"),
        (b"{not json", attributes(), "not JSON"),
        (b"\xff\xfe", attributes(), "not JSON"),
        (b"[1, 2]", attributes(), "not an object"),
    ],
)
def test_malformed_notifications_say_why(data: bytes, attrs: dict[str, str], reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        parse_gcs_message(data, attrs)


def test_a_replayed_notification_round_trips_and_only_its_marker_forces() -> None:
    from datetime import UTC, datetime

    from pipelined.ops.replay import StoredObject, gcs_event_message

    stored = StoredObject(
        bucket="uploads",
        key="photos/beach trip+1.jpg",
        size=1234,
        etag="CMDo4Jz/+5ADEAE=",
        last_modified=datetime(2026, 1, 1, tzinfo=UTC),
        version_id="1764547200123456",
    )
    now = datetime(2026, 12, 1, tzinfo=UTC)
    data, attrs = gcs_event_message(stored, force=True, now=now)
    [event] = parse_gcs_message(data, attrs)
    assert event == ObjectEvent(
        bucket="uploads",
        key="photos/beach trip+1.jpg",
        size=1234,
        version_id="1764547200123456",
        event_name="OBJECT_FINALIZE",
        event_time="2026-12-01T00:00:00.000Z",
        forced=True,
    )
    data, attrs = gcs_event_message(stored, force=False, now=now)
    [plain] = parse_gcs_message(data, attrs)
    assert isinstance(plain, ObjectEvent)
    assert not plain.forced


def test_neither_custom_attributes_nor_object_metadata_can_force() -> None:
    marker = json.dumps({"force": True})
    forged = attributes(pipelinedReplay=marker)
    data = payload(metadata={"pipelinedReplay": {"force": True}})
    [event] = parse_gcs_message(data, forged)
    assert isinstance(event, ObjectEvent)
    assert not event.forced
