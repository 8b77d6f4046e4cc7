"""A real Prometheus scrapes a real daemon that processes an image, a PDF and a corrupt file on
the embedded AWS stack; every dashboard query and every rule expression then goes through
Prometheus's HTTP API.

Prometheus comes from Debian's package (make installs it next to the venv's Python with
deploy/test-tools.sh); without it the test is skipped, saying so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelined import samples
from pipelined.local import LocalStack
from tests.faults.daemon import Daemon, Upload, Watcher, upload
from tests.observability import artifacts
from tests.observability.prometheus import Prometheus, find_prometheus

pytestmark = pytest.mark.timeout(120)

# The panels that must show numbers after a few files: each of their queries returns at least
# one finite sample.
MAIN_PANELS = {
    "Messages received",
    "Messages finished, by outcome",
    "Jobs, by kind and outcome",
    "End-to-end latency",
    "Processing time, by kind",
    "Messages in flight, by instance",
    "Main process CPU, by instance",
    "Main process CPU per message, by instance",
    "Workers, by instance",
    "Calls, by service and outcome",
    "Call latency p99, by operation",
}
# Queries of events a healthy run of a few small files may well not have: a labelled counter
# has no series before its first event. Every other query must return series.
MAY_BE_EMPTY = {
    ("Ledger refusals, by reason", "A"),  # no duplicate, stale or busy delivery
    ("Failed deletes", "A"),
    ("Lease extensions", "A"),  # jobs shorter than a third of the 5 s lease
    ("Worker restarts, by reason", "A"),
}


def uploads(round_: int) -> list[Upload]:
    """An image, a PDF and a corrupt file; their keys differ from round to round."""
    return [
        Upload(f"in/{round_}/photo.jpg", samples.photo_jpeg(640, 480), "processed", "image"),
        Upload(f"in/{round_}/report.pdf", samples.text_pdf(["one", "two"]), "processed", "pdf"),
        Upload(f"in/{round_}/broken.jpg", samples.corrupt_jpeg(), "failed", "corrupt"),
    ]


@pytest.fixture
def prometheus_binary() -> str:
    binary = find_prometheus()
    if binary is None:
        pytest.skip(
            "no prometheus binary next to the venv's Python or on PATH: "
            "`make` installs Debian's (deploy/test-tools.sh)"
        )
    return binary


@pytest.fixture
def daemon(stack: LocalStack, tmp_path: Path) -> Iterator[Daemon]:
    with Daemon(stack, stack.endpoint_url, tmp_path / "daemon.log") as running:
        running.wait_ready()
        yield running


@pytest.fixture
def prometheus(prometheus_binary: str, daemon: Daemon, tmp_path: Path) -> Iterator[Prometheus]:
    target = f"127.0.0.1:{daemon.metrics_port}"
    with Prometheus(
        prometheus_binary, tmp_path / "prometheus", target, [artifacts.ALERTS]
    ) as server:
        server.wait_ready()
        server.wait_new_scrapes(2)
        yield server


def files_processed(stack: LocalStack, prometheus: Prometheus, daemon: Daemon) -> None:
    """Two rounds of uploads, each waited for until notified and scraped. A labelled series
    appears with its first job, so the second round is what gives every rate an increase."""
    watcher = Watcher(stack)
    for round_ in (1, 2):
        batch = uploads(round_)
        upload(stack, batch)
        assert watcher.wait_for_keys([item.key for item in batch], timeout_s=60), daemon.log_tail()
        prometheus.wait_at_least('sum(pipelined_jobs_total{job="pipelined"})', len(batch) * round_)
        prometheus.wait_new_scrapes(2)
    statuses = {notification.key: notification.status for notification in watcher.received}
    assert statuses == {item.key: item.expect for item in uploads(1) + uploads(2)}


def test_dashboard_and_rules_on_a_real_prometheus(
    prometheus: Prometheus, daemon: Daemon, stack: LocalStack
) -> None:
    # (prometheus first: without the binary the test skips before any daemon starts)
    files_processed(stack, prometheus, daemon)
    assert_every_query_evaluates(prometheus)
    assert_rules_loaded_and_healthy(prometheus)

    # Every file was notified within 60 s of its upload: the SLO ratio is 0, not missing.
    assert prometheus.values("job:pipelined_end_to_end_slow:ratio_rate5m") == [0.0]
    # One file of three failed: the error ratio is over 5 %, pending its 15 minutes.
    prometheus.wait(
        "PipelinedHighErrorRatio pending",
        lambda: rule_states(prometheus, "PipelinedHighErrorRatio") == ["pending"],
        timeout_s=10,
    )


def assert_every_query_evaluates(prometheus: Prometheus) -> None:
    """Every panel query and every rule expression succeeds; every panel query returns series
    (but those of MAY_BE_EMPTY), and the main panels' queries return numbers."""
    failures: list[str] = []
    for target in artifacts.targets(artifacts.dashboard()):
        expr = artifacts.substitute(target.expr, artifacts.GRAFANA_VALUES)
        where = f"panel {target.panel!r} {target.ref_id}: {expr}"
        reply = prometheus.query(expr)
        if reply.get("status") != "success":
            failures.append(f"{where}\n  {reply.get('errorType')}: {reply.get('error')}")
            continue
        values = [float(sample["value"][1]) for sample in reply["data"]["result"]]
        if not values and (target.panel, target.ref_id) not in MAY_BE_EMPTY:
            failures.append(f"{where}\n  no series")
        elif target.panel in MAIN_PANELS and not any(math.isfinite(v) for v in values):
            failures.append(f"{where}\n  no number: {values}")
    for rule in artifacts.rules():
        reply = prometheus.query(rule.expr)
        if reply.get("status") != "success":
            failures.append(f"rule {rule.name}: {rule.expr}\n  {reply.get('error')}")
    assert not failures, "\n".join(failures)


def assert_rules_loaded_and_healthy(prometheus: Prometheus) -> None:
    """/api/v1/rules lists every group and rule of the file, each evaluated with health ok."""

    def evaluated() -> bool:
        loaded = [rule for group in prometheus.rules() for rule in group["rules"]]
        return bool(loaded) and all(rule["health"] != "unknown" for rule in loaded)

    prometheus.wait("every rule evaluated", evaluated, timeout_s=20)
    groups = prometheus.rules()
    assert sorted(group["name"] for group in groups) == sorted(artifacts.rule_groups())
    loaded = [(group["name"], rule["name"], rule) for group in groups for rule in group["rules"]]
    assert sorted((g, n) for g, n, _ in loaded) == sorted(
        (r.group, r.name) for r in artifacts.rules()
    )
    unhealthy = [
        (name, rule.get("lastError")) for _, name, rule in loaded if rule["health"] != "ok"
    ]
    assert not unhealthy


def rule_states(prometheus: Prometheus, alert: str) -> list[str]:
    """The states (inactive, pending, firing) of the alerting rules named ``alert``."""
    return [
        rule["state"]
        for group in prometheus.rules()
        for rule in group["rules"]
        if rule["name"] == alert
    ]
