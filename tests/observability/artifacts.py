"""The observability artifacts of deploy/observability, read as data: the dashboard's panels and
query targets, the rule groups, the promtool test cases, the runbook sections.

Shared by the structure checks and the test against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
DASHBOARD = OBSERVABILITY / "pipelined-dashboard.json"
ALERTS = OBSERVABILITY / "pipelined-alerts.yaml"
ALERT_TESTS = OBSERVABILITY / "pipelined-alerts.test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Grafana's variables as Grafana would fill them in for the test's Prometheus (scrape interval
# 1 s) over the last few minutes; "$instance" is the dashboard's "All".
GRAFANA_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "datasource": "prometheus",
    "job": "pipelined",
    "instance": ".*",
}

_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


@dataclass(frozen=True)
class Target:
    panel: str
    ref_id: str
    expr: str


@dataclass(frozen=True)
class Rule:
    group: str
    name: str  # the alert's or the record's name
    expr: str
    is_alert: bool
    labels: dict[str, str]
    annotations: dict[str, str]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows are headings), collapsed rows' children included."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def rows(board: dict[str, Any]) -> list[str]:
    return [panel["title"] for panel in board["panels"] if panel["type"] == "row"]


def targets(board: dict[str, Any]) -> list[Target]:
    return [
        Target(panel["title"], target["refId"], target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


def template_variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in board["templating"]["list"]}


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana's variables ($name, ${name}, ${name:format}) by concrete values; a
    variable with no value given is an error, so a new one cannot slip through unevaluated."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for the dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def rules() -> list[Rule]:
    document = yaml.safe_load(ALERTS.read_text())
    return [
        Rule(
            group=group["name"],
            name=rule.get("alert") or rule["record"],
            expr=rule["expr"],
            is_alert="alert" in rule,
            labels=rule.get("labels", {}),
            annotations=rule.get("annotations", {}),
        )
        for group in document["groups"]
        for rule in group["rules"]
    ]


def rule_groups() -> list[str]:
    return [group["name"] for group in yaml.safe_load(ALERTS.read_text())["groups"]]


def alert_names() -> set[str]:
    return {rule.name for rule in rules() if rule.is_alert}


@dataclass(frozen=True)
class AlertCase:
    test: str
    alertname: str
    fires: bool


def alert_cases() -> list[AlertCase]:
    document = yaml.safe_load(ALERT_TESTS.read_text())
    return [
        AlertCase(test["name"], case["alertname"], bool(case.get("exp_alerts")))
        for test in document["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces
    to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors
