"""An in-memory compare-and-set store for the ledger machine's tests, with lost replies on cue.

It follows the LedgerStore contract to the letter (a revision per write, the write id stored
with the document, the found snapshot returned on a failed condition), so the tests exercise
the real ``Ledger`` over it. The backends' stores pass their contract against their emulators
(tests/integration/ledger_contract.py).
"""

from __future__ import annotations

from pipelined.errors import RetryableError
from pipelined.ledger.machine import ABSENT, ObjectState
from pipelined.ledger.store import Snapshot


class MemoryLedgerStore:
    def __init__(self) -> None:
        self.documents: dict[tuple[str, str], Snapshot] = {}
        self.writes = 0
        self.lost_replies = 0  # the next writes this many are applied, then answered by an error
        self.failing_reads = False

    def state(self, bucket: str, key: str) -> ObjectState:
        return self.documents.get((bucket, key), Snapshot(ABSENT)).state

    async def read(self, bucket: str, key: str) -> Snapshot:
        if self.failing_reads:
            raise RetryableError("read failed (injected)")
        return self.documents.get((bucket, key), Snapshot(ABSENT))

    async def write(
        self, bucket: str, key: str, expected: str | None, state: ObjectState, write_id: str
    ) -> Snapshot:
        found = self.documents.get((bucket, key))
        current = found.revision if found is not None else None
        if current != expected:
            assert found is not None
            return found
        self.writes += 1
        written = Snapshot(state, str(self.writes), write_id)
        self.documents[(bucket, key)] = written
        if self.lost_replies:
            self.lost_replies -= 1
            raise RetryableError("the connection was reset after the write (injected)")
        return written
