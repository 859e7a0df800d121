"""deploy/prometheus and the metrics exposition, checked with the real promtool and a real Prometheus server.

- ``promtool check config`` / ``check rules`` on the shipped files, ``promtool test rules`` on the alert unit
  tests beside this file, ``promtool check metrics`` on a real scrape of the sidecar's aiohttp app.
- every expression of the dashboard parses (as recording rules, through promtool) and every metric the
  dashboard and the alert rules name exists in ``Metrics``' registry.
- a real Prometheus scrapes the app and runs each expression through its HTTP API.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from tests.deploy.metrics_app import exercised_metrics, serve
from tests.deploy.prometheus_server import PrometheusServer
from tests.deploy.promql import (
    alert_expressions,
    as_recording_rules,
    dashboard_expressions,
    dashboard_variable_metrics,
    load_dashboard,
    metric_names,
)
from tests.deploy.tools import DASHBOARD, PROMETHEUS_DIR, require, run_tool

PROMTOOL = "apt-get install -y --no-install-recommends prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
# Series Prometheus records itself for every scrape target; the only non-sidecar name the alerts may use.
PROMETHEUS_OWN = frozenset({"up"})


def promtool(*args: str, stdin: str | bytes | None = None, cwd: Path | None = None) -> str:
    result = run_tool([require("promtool", PROMTOOL), *args], stdin=stdin, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def exposed() -> frozenset[str]:
    return exercised_metrics(0.0).exposed_names()


def test_promtool_accepts_the_config_and_rules() -> None:
    assert "SUCCESS" in promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert "SUCCESS: 10 rules found" in promtool("check", "rules", str(ALERTS))


def test_promtool_does_fail_on_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text(ALERTS.read_text().replace("> 900", "> > 900", 1))
    result = run_tool([require("promtool", PROMTOOL), "check", "rules", str(broken)])
    assert result.returncode != 0


def test_alerts_fire_when_they_should_and_only_then() -> None:
    here = Path(__file__).parent
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml", cwd=here)


def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    expressions = dashboard_expressions(load_dashboard(DASHBOARD))
    assert len(expressions) >= 20
    rules = tmp_path / "dashboard.yml"
    rules.write_text(as_recording_rules(expressions))
    assert f"SUCCESS: {len(expressions)} rules found" in promtool("check", "rules", str(rules))


def test_the_name_lexer_finds_metric_names_only() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, phase) (rate(a_bucket{x="y{z}",i=~".*"}[1m])))'
            ' / on () group_left b_total offset 5m > 1e3 and time() - c unless d{q="and"} or vector(1)')
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def test_dashboard_and_alerts_name_only_metrics_that_exist() -> None:
    names = exposed()
    dashboard = load_dashboard(DASHBOARD)
    for expr in dashboard_expressions(dashboard):
        used = metric_names(expr)
        assert used and used <= names, f"{expr}: unknown {sorted(used - names)}"
    assert dashboard_variable_metrics(dashboard) and dashboard_variable_metrics(dashboard) <= names
    for expr in alert_expressions(ALERTS):
        used = metric_names(expr)
        assert used and used <= names | PROMETHEUS_OWN, f"{expr}: unknown {sorted(used - names)}"


async def test_promtool_check_metrics_on_a_real_scrape() -> None:
    server = await serve(exercised_metrics(time.time()))
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as response:
            assert response.status == 200
            body = await response.read()
    finally:
        await server.stop()
    assert b"dvm_sidecar_phase_duration_seconds_bucket" in body
    promtool("check", "metrics", stdin=body)
    # And promtool does object to a badly named metric, so the pass above means something.
    bad = run_tool([require("promtool", PROMTOOL), "check", "metrics"],
                   stdin="# HELP x_ms t\n# TYPE x_ms counter\nx_ms 1\n")
    assert bad.returncode != 0


@pytest.mark.timeout(120)
async def test_a_real_prometheus_runs_every_expression(tmp_path: Path) -> None:
    server = await serve(exercised_metrics(time.time()))
    target = server.url.removeprefix("http://")
    try:
        async with PrometheusServer(tmp_path / "prometheus", [target]) as prometheus:
            await prometheus.wait_for_scrapes(2)
            present = await prometheus.metric_names()
            dashboard = load_dashboard(DASHBOARD)
            for expr in [*dashboard_expressions(dashboard), *alert_expressions(ALERTS)]:
                await prometheus.query(expr)  # raises with Prometheus' parse error
                missing = metric_names(expr) - present
                assert not missing, f"{expr}: not scraped {sorted(missing)}"
            rules = await prometheus.api("/api/v1/rules")
            loaded = [r for g in rules["groups"] for r in g["rules"]]
            assert len(loaded) == len(alert_expressions(ALERTS))
            assert all(r["health"] in ("ok", "unknown") for r in loaded), loaded
    finally:
        await server.stop()
