"""docs/metrics.md and the code agree: every pipelined_* series the registry holds is listed
there with its type and labels, and every listed one exists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import pipelined.app  # noqa: F401  (imports every module that could define a series)
from pipelined import metrics

CATALOGUE = Path(__file__).parents[2] / "docs" / "metrics.md"
ROW = re.compile(r"^\|\s*`(pipelined_\w+)`\s*\|\s*(\w+)\s*\|([^|]*)\|([^|]*)\|\s*$")


@dataclass(frozen=True)
class Series:
    type: str
    labels: tuple[str, ...]


def documented() -> dict[str, Series]:
    found: dict[str, Series] = {}
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        name, kind, labels, meaning = match.groups()
        assert name not in found, f"{name} is listed twice"
        assert meaning.strip(), f"{name} has no meaning written"
        # Label names are in backticks; their values follow in parentheses, plain.
        found[name] = Series(kind, tuple(re.findall(r"`(\w+)`", labels)))
    return found


def defined() -> dict[str, Series]:
    """The series metrics.py defines, under the names a scrape shows (counters with _total)."""
    found: dict[str, Series] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if value._type == "counter" else "")
            found[name] = Series(str(value._type), tuple(value._labelnames))
    return found


def registered() -> set[str]:
    """Every pipelined_* family in the default registry, wherever it was defined."""
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("pipelined_"):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_the_page_lists_series() -> None:
    assert len(documented()) >= 30, "the table's rows were not recognised"


def test_every_series_is_defined_in_metrics_py() -> None:
    assert registered() - set(defined()) == set(), "a series defined outside metrics.py"


@pytest.mark.parametrize("name", sorted(defined()))
def test_each_defined_series_is_documented_alike(name: str) -> None:
    page = documented()
    assert name in page, f"{name} is not in docs/metrics.md"
    assert page[name] == defined()[name], f"{name}: docs/metrics.md says {page[name]}"


def test_each_documented_series_exists() -> None:
    assert set(documented()) - set(defined()) == set()


def test_the_old_error_counter_is_gone() -> None:
    assert "pipelined_aws_errors_total" not in registered()
