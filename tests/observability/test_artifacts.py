"""The dashboard, the alert rules, their promtool tests and their runbooks, checked as files:
what Grafana and Alertmanager users rely on, and that everything names real series."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import REGISTRY

import pipelined.metrics  # noqa: F401  (registers every series the daemon exports)
from tests.observability import artifacts

# The issue's rows, in this order.
ROWS = ["Throughput", "Latency", "Errors", "Saturation", "Queue & DLQ", "Pool", "Cloud calls"]
SEVERITIES = {"critical", "warning", "info"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The series the dashboard and the rules may name: ours, and the client library's process
# collector's (the main process's CPU).
SERIES_PREFIXES = ("pipelined_", "process_")
# Such a name, not part of a recording rule's name (level:metric:operations).
SERIES = re.compile(r"(?<![\w:])(?:" + "|".join(SERIES_PREFIXES) + r")\w+")
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_series() -> set[str]:
    """Every sample name the daemon's registry can produce (labelled metrics included, which
    have no samples until first used)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith(SERIES_PREFIXES):
            names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES[family.type])
    return names


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return artifacts.dashboard()


def test_dashboard_has_the_issues_rows_in_order(board: dict[str, Any]) -> None:
    assert artifacts.rows(board) == ROWS


def test_dashboard_is_importable_with_a_datasource_variable(board: dict[str, Any]) -> None:
    assert board["schemaVersion"] >= 36
    assert board["id"] is None  # Grafana assigns its own on import
    assert board["uid"]
    variables = artifacts.template_variables(board)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
    assert variables["instance"]["includeAll"]
    assert variables["instance"]["allValue"] == ".*"


def test_every_panel_and_query_uses_the_datasource_variable(board: dict[str, Any]) -> None:
    for panel in artifacts.panels(board):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_panels_have_unique_ids_and_fit_the_grid(board: dict[str, Any]) -> None:
    every = artifacts.panels(board) + [p for p in board["panels"] if p["type"] == "row"]
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids))
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_query_selects_by_job_and_instance(board: dict[str, Any]) -> None:
    """A panel that ignored the variables would mix deployments; the burn-rate panel reads the
    per-job recording rules, which have no instance."""
    for target in artifacts.targets(board):
        for selector in re.findall(SERIES.pattern + r"(\{[^}]*\})?", target.expr):
            assert 'job=~"$job", instance=~"$instance"' in selector, (target.panel, target.expr)
        for selector in re.findall(r"job:pipelined_\w+:\w+(\{[^}]*\})?", target.expr):
            assert 'job=~"$job"' in selector, (target.panel, target.expr)


def test_every_variable_in_a_query_has_a_test_value(board: dict[str, Any]) -> None:
    for target in artifacts.targets(board):
        assert "$" not in artifacts.substitute(target.expr, artifacts.GRAFANA_VALUES)


def test_queries_and_rules_name_only_series_the_daemon_exports(board: dict[str, Any]) -> None:
    texts = [target.expr for target in artifacts.targets(board)]
    texts += [rule.expr for rule in artifacts.rules()]
    texts.append(artifacts.ALERT_TESTS.read_text())
    used = {name for text in texts for name in SERIES.findall(text)}
    assert used - exported_series() == set()


def test_every_alert_is_in_the_mixin_style() -> None:
    alerts = [rule for rule in artifacts.rules() if rule.is_alert]
    assert alerts
    for rule in alerts:
        assert re.fullmatch(r"Pipelined(?:[A-Z][a-z0-9]+)+", rule.name), rule.name
        assert rule.labels.get("severity") in SEVERITIES, rule.name
        for annotation in ("summary", "description", "runbook_url"):
            assert rule.annotations.get(annotation), (rule.name, annotation)
        assert rule.annotations["runbook_url"] == f"docs/operations.md#{rule.name.lower()}"


def test_every_alert_has_a_runbook_section() -> None:
    anchors = artifacts.heading_anchors(artifacts.OPERATIONS.read_text())
    missing = {name for name in artifacts.alert_names() if name.lower() not in anchors}
    assert not missing


def test_every_alert_has_a_promtool_case_firing_and_one_not() -> None:
    cases = artifacts.alert_cases()
    firing = {case.alertname for case in cases if case.fires}
    quiet = {case.alertname for case in cases if not case.fires}
    assert artifacts.alert_names() - firing == set()
    assert artifacts.alert_names() - quiet == set()
    assert {case.alertname for case in cases} <= artifacts.alert_names()


def test_every_burn_rate_window_has_its_recording_rule() -> None:
    records = {rule.name for rule in artifacts.rules() if not rule.is_alert}
    for rule in artifacts.rules():
        if rule.name == "PipelinedLatencyBudgetBurn":
            windows = {rule.labels["long"], rule.labels["short"]}
            for window in windows:
                assert f"job:pipelined_end_to_end_slow:ratio_rate{window}" in rule.expr
                assert f"job:pipelined_end_to_end_slow:ratio_rate{window}" in records


def test_the_slo_rules_share_one_latency_bound() -> None:
    """The SLO's 60 s is written in each recording rule: they must all say the same."""
    bounds = {
        bound
        for rule in artifacts.rules()
        if rule.name.startswith("job:pipelined_end_to_end_slow:")
        for bound in re.findall(r'le="([^"]+)"', rule.expr)
    }
    assert bounds == {"60.0"}
