"""Chaos run, long form: daemons SIGKILLed and restarted and faults injected while uploads
flow, then an audit of what came out. Prints a table; exits 1 if anything was lost, notified
twice, duplicated, left unfinished or ended with the wrong outcome.

On AWS (the default) the faults are the fault proxy's as well as SIGTERMs; with --backend gcp,
on the embedded Google Cloud stack, they are SIGTERMs and duplicate notifications only (no
network faults there: see tests/chaos/runner.py).

The core is tests/chaos/runner.py (the short forms run in `make test`); see docs/reliability.md.

Usage: python bench/chaos.py [--backend aws|gcp] [--files 200] [--kills 20] [--duration 600]
                             [--daemons 3] [--seed 1] [--log-dir DIR] [--proxy process|thread]
"""

import argparse
import sys
from pathlib import Path

# The runner lives with the tests; make the repository root importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.runner import (
    FAULT_WEIGHTS,
    GCP_FAULT_WEIGHTS,
    ChaosConfig,
    run_chaos,
    run_gcp_chaos,
)

FAULTS = {"aws": FAULT_WEIGHTS, "gcp": GCP_FAULT_WEIGHTS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--backend", choices=tuple(FAULTS), default="aws", help="which cloud")
    parser.add_argument("--files", type=int, default=200, help="uploads (default 200)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs (default 20)")
    parser.add_argument("--duration", type=float, default=600, help="seconds of chaos")
    parser.add_argument("--daemons", type=int, default=3, help="daemon processes (K)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--finish-timeout", type=float, default=180, help="seconds to finish")
    parser.add_argument("--fault-gap", type=float, default=4.0, help="mean s between faults")
    parser.add_argument("--corrupt-every", type=int, default=10)
    parser.add_argument(
        "--proxy", choices=("process", "thread"), default="process", help="AWS only"
    )
    parser.add_argument(
        "--faults",
        default=None,
        help=f"comma-separated subset of {','.join(FAULT_WEIGHTS)} (AWS, the default) or "
        f"{','.join(GCP_FAULT_WEIGHTS)} (GCP); '' for kills only",
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="keep daemon logs here")
    args = parser.parse_args()
    faults = ",".join(FAULTS[args.backend]) if args.faults is None else args.faults
    config = ChaosConfig(
        files=args.files,
        kills=args.kills,
        duration_s=args.duration,
        daemons=args.daemons,
        seed=args.seed,
        finish_timeout_s=args.finish_timeout,
        fault_gap_s=args.fault_gap,
        corrupt_every=args.corrupt_every,
        proxy=args.proxy,
        log_dir=args.log_dir,
        faults=tuple(name for name in faults.split(",") if name),
    )
    unknown = set(config.faults) - set(FAULTS[args.backend])
    if unknown:
        parser.error(f"no such fault on {args.backend}: {', '.join(sorted(unknown))}")
    run = run_gcp_chaos if args.backend == "gcp" else run_chaos
    report = run(config, say=lambda line: print(line, flush=True))
    print()
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
