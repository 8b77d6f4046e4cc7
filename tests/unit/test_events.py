import json

import pytest

from pipelined.events import (
    SEQUENCER_WIDTH,
    IgnoredRecord,
    MalformedMessageError,
    ObjectEvent,
    normalise_sequencer,
    parse_message,
)


def s3_record(key: str, event_name: str = "ObjectCreated:Put", **obj: object) -> dict[str, object]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event_name,
        "eventTime": "2026-11-28T05:00:00.000Z",
        "s3": {
            "bucket": {"name": "uploads"},
            "object": {"key": key, "size": 1234, "eTag": "abc123", "sequencer": "0A1B", **obj},
        },
    }


def s3_body(*records: dict[str, object]) -> str:
    return json.dumps({"Records": list(records)})


def eventbridge_body(key: str, detail_type: str = "Object Created") -> str:
    return json.dumps(
        {
            "version": "0",
            "detail-type": detail_type,
            "source": "aws.s3",
            "time": "2026-11-28T05:00:00Z",
            "detail": {
                "bucket": {"name": "uploads"},
                "object": {
                    "key": key,
                    "size": 99,
                    "etag": "e1",
                    "version-id": "v1",
                    "sequencer": "00AB",
                },
                "reason": "PutObject",
            },
        }
    )


def sns_envelope(message: str) -> str:
    return json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:x", "Message": message})


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("photos/beach+trip.jpg", "photos/beach trip.jpg"),
        ("photos/1%2B1.jpg", "photos/1+1.jpg"),
        ("caf%C3%A9/%E5%86%99%E7%9C%9F.png", "café/写真.png"),
        ("a%2Fb%2Fc.pdf", "a/b/c.pdf"),
    ],
)
def test_direct_s3_keys_are_url_decoded(encoded: str, decoded: str) -> None:
    [event] = parse_message(s3_body(s3_record(encoded)))
    assert isinstance(event, ObjectEvent)
    assert event.key == decoded
    assert (event.bucket, event.size, event.etag, event.sequencer) == (
        "uploads",
        1234,
        "abc123",
        normalise_sequencer("0A1B"),
    )


def test_each_record_of_a_message_is_its_own_event() -> None:
    events = parse_message(s3_body(s3_record("a.jpg"), s3_record("b.pdf")))
    assert [e.key for e in events if isinstance(e, ObjectEvent)] == ["a.jpg", "b.pdf"]


def test_sns_enveloped_and_raw_delivery_parse_the_same() -> None:
    inner = s3_body(s3_record("docs/my+report.pdf"))
    assert parse_message(sns_envelope(inner)) == parse_message(inner)
    [event] = parse_message(sns_envelope(inner))
    assert isinstance(event, ObjectEvent)
    assert event.key == "docs/my report.pdf"


def test_eventbridge_keys_are_taken_as_they_are() -> None:
    [event] = parse_message(eventbridge_body("photos/1+1 café.jpg"))
    assert event == ObjectEvent(
        bucket="uploads",
        key="photos/1+1 café.jpg",
        size=99,
        etag="e1",
        version_id="v1",
        sequencer="00AB".ljust(SEQUENCER_WIDTH, "0"),
        event_name="ObjectCreated:PutObject",
        event_time="2026-11-28T05:00:00Z",
    )
    assert event.version == "v1"


def test_version_falls_back_to_etag() -> None:
    [event] = parse_message(s3_body(s3_record("a.jpg")))
    assert isinstance(event, ObjectEvent)
    assert event.version == "abc123"


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"}),
        sns_envelope(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})),
        s3_body(s3_record("gone.jpg", event_name="ObjectRemoved:Delete")),
        eventbridge_body("gone.jpg", detail_type="Object Deleted"),
    ],
)
def test_test_events_and_removals_are_ignored(body: str) -> None:
    [record] = parse_message(body)
    assert isinstance(record, IgnoredRecord)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not an object"),
        (json.dumps({"Records": []}), "non-empty list"),
        (json.dumps({"hello": "world"}), "not an S3, SNS or EventBridge event"),
        (sns_envelope("{broken"), "SNS Message is not JSON"),
        (
            s3_body({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}),
            "'object'",
        ),
    ],
)
def test_malformed_bodies_raise_with_a_reason(body: str, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        parse_message(body)


def test_sequencers_compare_as_strings_once_parsed() -> None:
    # From S3's documentation: compare as hex strings after right-padding the shorter with
    # zeros. The parser pads them, so the ledger compares plain strings.
    assert normalise_sequencer("0055AED6DCD90281E5") > normalise_sequencer("0055AED6DCD9028")
    assert normalise_sequencer("00a1") == normalise_sequencer("00A100")


def test_a_replayed_event_round_trips_and_only_its_marker_forces() -> None:
    from datetime import UTC, datetime

    from pipelined.ops.replay import StoredObject, s3_event_body

    stored = StoredObject(
        bucket="uploads",
        key="in/a b+c/é.jpg",
        size=5,
        etag="abc",
        last_modified=datetime(2026, 1, 1, tzinfo=UTC),
        version_id="v1",
    )
    now = datetime(2026, 11, 28, 5, tzinfo=UTC)
    [forced] = parse_message(s3_event_body(stored, force=True, now=now))
    assert forced == ObjectEvent(
        bucket="uploads",
        key="in/a b+c/é.jpg",
        size=5,
        etag="abc",
        version_id="v1",
        event_name="ObjectCreated:Replay",
        event_time="2026-11-28T05:00:00.000Z",
        forced=True,
    )
    [plain] = parse_message(s3_event_body(stored, force=False, now=now))
    assert isinstance(plain, ObjectEvent)
    assert not plain.forced


@pytest.mark.parametrize("marker", [{"force": "true"}, {"force": 1}, True, "force", None])
def test_anything_but_the_literal_marker_forces_nothing(marker: object) -> None:
    record = {**s3_record("a.jpg"), "pipelinedReplay": marker}
    [event] = parse_message(s3_body(record))
    assert isinstance(event, ObjectEvent)
    assert not event.forced


def test_s3_events_never_force() -> None:
    [event] = parse_message(s3_body(s3_record("pipelinedReplay.jpg")))
    assert isinstance(event, ObjectEvent)
    assert not event.forced
