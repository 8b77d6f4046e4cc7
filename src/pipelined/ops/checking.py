"""What ``pipelined check`` runs: the settings, the identity and every dependency, tried for real.

Each check is one harmless call (or a few) against the deployment the daemon's own settings
point at: read attributes, describe, list one key, write and delete one probe object. Every
check has a time limit and turns whatever goes wrong into a FAIL row with a one-line reason;
the command exits 1 when any check fails.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from pipelined.ops.common import console
from pipelined.settings import ENV_PREFIX, Settings

DETAIL_MAX_CHARS = 300


class CheckError(Exception):
    """A check's answer is no; the message says why, in an operator's words."""


@dataclass(frozen=True)
class Check:
    name: str
    probe: Callable[[], Awaitable[str]]
    """Returns what was found (the PASS row's detail), or raises: CheckError, or any error."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


async def run_checks(checks: Sequence[Check], timeout_s: float) -> list[CheckResult]:
    """Every check at once, each under ``timeout_s``; results in the order given."""
    return list(await asyncio.gather(*(_run_one(check, timeout_s) for check in checks)))


async def _run_one(check: Check, timeout_s: float) -> CheckResult:
    try:
        detail = await asyncio.wait_for(check.probe(), timeout_s)
    except CheckError as failed:
        return CheckResult(check.name, False, str(failed))
    except TimeoutError:
        return CheckResult(check.name, False, f"no answer within {timeout_s:g} s")
    except Exception as error:  # whatever the cloud or the network says: a FAIL row
        return CheckResult(check.name, False, describe(error))
    return CheckResult(check.name, True, detail)


_BOTOCORE_ERROR = re.compile(
    r"An error occurred \((?P<code>[^)]+)\) when calling the (?P<operation>\w+) operation"
    r"(?: \(reached max retries: \d+\))?: (?P<message>.*)"
)


def describe(error: BaseException) -> str:
    """An error as one short line: the clients' messages name the operation and the code."""
    text = " ".join(str(error).split()) or type(error).__name__
    if found := _BOTOCORE_ERROR.fullmatch(text):
        text = f"{found['operation']}: {found['code']}: {found['message']}"
    if len(text) > DETAIL_MAX_CHARS:
        text = text[: DETAIL_MAX_CHARS - 1] + "…"
    return text


def listed(names: Sequence[str]) -> str:
    return ", ".join(names)


def lease_fits(settings: Settings, first_lease_s: int, named: str) -> str:
    """Whether a message's leases cover the longest job. The daemon asks for
    VISIBILITY_TIMEOUT_S on every receive (SQS) or right after the pull (Pub/Sub) and renews it
    a third before it runs out, up to MAX_JOB_TIME_S, which the settings keep at least
    JOB_TIMEOUT_S: the queue's own timeout (``first_lease_s``) is only the first lease on
    Pub/Sub, and on SQS what other readers get. A mismatch is noted, never a failure: an
    independently provisioned queue keeps working."""
    own = settings.visibility_timeout_s
    if settings.max_job_time_s < settings.job_timeout_s:  # settings refuse it; say it anyway
        raise CheckError(
            f"leases end at {ENV_PREFIX}MAX_JOB_TIME_S ({settings.max_job_time_s} s), before a "
            f"job's limit {ENV_PREFIX}JOB_TIMEOUT_S ({settings.job_timeout_s:g} s)"
        )
    covered = (
        f"{own} s leases renewed up to MAX_JOB_TIME_S ({settings.max_job_time_s} s), past "
        f"JOB_TIMEOUT_S ({settings.job_timeout_s:g} s)"
    )
    if first_lease_s == own:
        return f"{named} {first_lease_s} s, as {ENV_PREFIX}VISIBILITY_TIMEOUT_S; {covered}"
    return (
        f"{covered}; note: {named} is {first_lease_s} s, not {own} s (docs/deploy.md: keep "
        "them equal)"
    )


def receives_fit(limit: int, named: str) -> str:
    """A file whose worker dies is retried, and recorded as failed only at its
    WORKER_DEATHS_BEFORE_FAILING-th death: with a dead-letter limit at or below that, it goes to
    the dead letters instead, unrecorded. A note, not a failure: everything else works."""
    from pipelined.pipeline import WORKER_DEATHS_BEFORE_FAILING

    if limit <= WORKER_DEATHS_BEFORE_FAILING:
        return (
            f"{named} {limit}; note: a file that crashes its worker is dead-lettered before it "
            f"is recorded as failed, after {WORKER_DEATHS_BEFORE_FAILING} crashes: above "
            f"{WORKER_DEATHS_BEFORE_FAILING} is better"
        )
    return f"{named} {limit}"


async def collect(settings: Settings, timeout_s: float) -> list[CheckResult]:
    """The backend's checks, on clients opened for them and closed after."""
    settings_row = CheckResult("settings", True, _settings_summary(settings))
    async with AsyncExitStack() as stack:
        try:
            checks = await _open_checks(settings, stack)
        except Exception as error:  # no clients, no credentials: nothing else can be tried
            return [settings_row, CheckResult("clients", False, describe(error))]
        return [settings_row, *await run_checks(checks, timeout_s)]


async def _open_checks(settings: Settings, stack: AsyncExitStack) -> list[Check]:
    # A cloud's libraries load only when it is the one checked.
    if settings.backend == "gcp":
        from pipelined.ops.check_gcp import gcp_checks

        return await gcp_checks(settings, stack)
    from pipelined.ops.check_aws import aws_checks

    return await aws_checks(settings, stack)


def _settings_summary(settings: Settings) -> str:
    inputs = listed(settings.input_buckets) if settings.input_buckets else "any bucket"
    return (
        f"valid; backend {settings.backend}, output {settings.output_bucket}/"
        f"{settings.output_prefix}, inputs {inputs}"
    )


def print_table(results: Sequence[CheckResult]) -> None:
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for result in results:
        mark = Text("PASS", style="green") if result.passed else Text("FAIL", style="bold red")
        # Text, not markup: a detail may hold brackets (an ARN, an error's own text).
        table.add_row(result.name, mark, Text(result.detail))
    out = console()
    out.print(table)
    failed = sum(not result.passed for result in results)
    out.print(f"{len(results) - failed} passed, {failed} failed", highlight=False)
