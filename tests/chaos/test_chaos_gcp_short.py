"""Chaos on Google Cloud, short form: a dozen uploads, 3 SIGKILLs, SIGTERMs and duplicate
notifications against 3 daemons on the embedded GCP stack, for about 30 s.

The same verdict as the AWS short form (test_chaos_short.py): nothing lost, processed twice,
left unfinished, ending with the wrong outcome or leaving a stray artifact; a notification
re-sent with the same notification_id is tolerated and counted. No network faults: see
tests/chaos/runner.py. The run starts emulators of its own (the session's are tests/gcp's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelined.gcp.local import EmulatorUnavailableError, firestore_command, pubsub_command
from tests.chaos.runner import GCP_FAULT_WEIGHTS, ChaosConfig, run_gcp_chaos

pytestmark = pytest.mark.timeout(150)


def test_chaos_gcp_short(tmp_path: Path) -> None:
    try:
        pubsub_command(0), firestore_command(0)
    except EmulatorUnavailableError as missing:
        pytest.skip(str(missing))
    config = ChaosConfig(
        files=12,
        kills=3,
        duration_s=30,
        daemons=3,
        seed=20261202,
        finish_timeout_s=45,
        fault_gap_s=2.0,
        corrupt_every=6,
        log_dir=tmp_path,
        faults=tuple(GCP_FAULT_WEIGHTS),
    )
    lines: list[str] = []
    report = run_gcp_chaos(config, say=lines.append)
    table = report.table()
    print("\n".join(lines), table, sep="\n")
    assert report.kills == 3, table
    assert report.uploaded == 12
    assert report.duplicates_published > 0, table
    assert report.processed + report.failed_as_expected == 12, table
    assert report.failures_besides_resends == [], table
