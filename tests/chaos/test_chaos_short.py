"""Chaos, short form: 30 uploads, 3 SIGKILLs and ~45 s of random faults against 3 daemons.

Nothing may be lost, processed twice, left unfinished, end with the wrong outcome or leave a
stray artifact. A notification re-sent with the same notification_id is tolerated here (and
counted, with its cause, in the printed table): those come from the at-least-once windows and
the known weaknesses that tests/faults/test_daemon_faults.py pins down deterministically. The
long form (bench/chaos.py) counts them as failures. The Google Cloud form is
test_chaos_gcp_short.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.runner import ChaosConfig, run_chaos

pytestmark = pytest.mark.timeout(150)


def test_chaos_short(emulator_url: str, tmp_path: Path) -> None:
    config = ChaosConfig(
        files=30,
        kills=3,
        duration_s=45,
        daemons=3,
        seed=20261128,
        finish_timeout_s=60,
        fault_gap_s=2.0,
        log_dir=tmp_path,
    )
    lines: list[str] = []
    report = run_chaos(config, emulator_url, say=lines.append)
    table = report.table()
    print("\n".join(lines), table, sep="\n")
    assert report.kills == 3
    assert report.uploaded == 30
    assert report.processed + report.failed_as_expected == 30, table
    assert report.failures_besides_resends == [], table
