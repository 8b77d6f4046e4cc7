"""``pipelined check``: the settings, the identity and every dependency, tried for real.

Each check is one harmless call (or a few) against the deployment the daemon's own settings
point at (``ops/checking.py`` runs them; ``check_aws.py`` and ``check_gcp.py`` are the checks).
The command exits 1 when any check fails, 2 for a bad setting.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

import click

from pipelined.ops.common import EXIT_FAILURE, EXIT_OK, json_option, print_json

DEFAULT_TIMEOUT_S = 15.0


@click.command(
    short_help="Try the settings and every dependency; a pass/fail table.",
    help="Try the settings, the identity and each dependency with harmless real calls "
    "(queue and dead letters, ledger, topic, input buckets, a probe object under the output "
    "prefix); print a pass/fail table. Exit 0 when everything passes, 1 when anything fails, "
    "2 for a bad setting.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="seconds each check may take",
)
@json_option
def check(timeout_s: float, as_json: bool) -> int:
    from pipelined.ops.checking import collect, print_table
    from pipelined.ops.common import load_backend_settings

    settings = load_backend_settings()  # a bad setting: ConfigError, exit 2
    results = asyncio.run(collect(settings, timeout_s))
    passed = all(result.passed for result in results)
    if as_json:
        print_json(
            {
                "backend": settings.backend,
                "passed": passed,
                "checks": [asdict(result) for result in results],
            }
        )
    else:
        print_table(results)
    return EXIT_OK if passed else EXIT_FAILURE
