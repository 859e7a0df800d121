"""The PromQL the dashboard and the alert rules run, taken out of their files, and the metric names it names.

Grafana variables are replaced by plain values (``$__rate_interval`` -> ``1m``, ``$instance`` -> ``.*``) so
the result is PromQL that promtool and Prometheus parse. ``metric_names`` is a small lexer, not a parser:
it drops strings, label matchers, range selectors and label lists, and keeps identifiers that are not
keywords and not followed by ``(``. The real parsers (promtool, a running Prometheus) check the syntax.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${instance}": ".*",
    "$instance": ".*",
}
KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
     "inf", "nan", "Inf", "NaN"}
)
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


def load_dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable left in {expr!r}")
    return expr


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    return [grafana_to_promql(t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]


def dashboard_variable_metrics(dashboard: dict[str, Any]) -> set[str]:
    """Metric names the dashboard's template variables query (``label_values(metric, label)``)."""
    names: set[str] = set()
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        names.update(_LABEL_VALUES.findall(text))
    return names


def alert_rules(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_expressions(path: Path) -> list[str]:
    return [str(rule["expr"]) for rule in alert_rules(path)]


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _LABEL_LIST.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if word in KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def as_recording_rules(expressions: list[str]) -> str:
    """The expressions as a rule file, so ``promtool check rules`` parses each with Prometheus' own parser."""
    rules = [{"record": f"dashboard:expression_{i}", "expr": e} for i, e in enumerate(expressions)]
    return yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False)
