"""The notification's id: the same for repeats of an outcome, new for a forced reprocess."""

from dataclasses import replace

from pipelined.ledger.document import record_from_document, to_document
from pipelined.ledger.machine import ObjectState, Recorded, Version
from pipelined.records import JobRecord, SourceObject

RECORD = JobRecord(
    source=SourceObject("in", "photos/a.jpg", "etag-1", 10, "v1"),
    status="processed",
    kind="image",
    attempts=1,
    started_at="2026-12-02T10:00:00+00:00",
    finished_at="2026-12-02T10:00:01+00:00",
    duration_ms=1000,
)


def test_repeats_of_an_outcome_share_an_id_and_a_forced_reprocess_gets_its_own() -> None:
    again = replace(RECORD, attempts=2, finished_at="2026-12-02T11:00:00+00:00")
    forced = replace(again, forced=True)
    assert again.notification_id == RECORD.notification_id
    assert forced.notification_id != RECORD.notification_id
    assert forced.notification()["forced"] is True
    assert RECORD.notification()["forced"] is False


def test_a_forced_record_read_back_from_the_ledger_keeps_its_id() -> None:
    forced = replace(RECORD, forced=True)
    recorded = Recorded(Version("v1", None), forced, "owner")
    document = to_document(ObjectState(recorded=recorded, processing=None), "in", "photos/a.jpg")
    read_back = record_from_document(document)
    assert read_back.forced
    assert read_back.notification_id == forced.notification_id
