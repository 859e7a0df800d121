"""deploy/grafana: provisioning that points where compose mounts things, and a dashboard with the panels an
operator looks for. (The dashboard's PromQL is checked in test_prometheus.py.)"""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy.promql import load_dashboard, panels
from tests.deploy.tools import COMPOSE_FILE, DASHBOARD, DEPLOY

PROVISIONING = DEPLOY / "grafana" / "provisioning"


def compose_targets(service: str) -> dict[str, str]:
    """Bind mounts of a compose service: source (relative to the repository) -> target."""
    spec = yaml.safe_load(COMPOSE_FILE.read_text())["services"][service]
    return {v["source"]: v["target"] for v in spec["volumes"] if isinstance(v, dict) and v["type"] == "bind"}


def test_datasource_is_the_compose_prometheus_with_the_uid_the_dashboard_uses() -> None:
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = load_dashboard(DASHBOARD)
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["query"] == "prometheus" and variable["current"]["value"] == source["uid"]


def test_dashboard_provider_reads_the_mounted_directory() -> None:
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "dvm-sidecar.yml").read_text())["providers"]
    mounts = compose_targets("grafana")
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert provider["type"] == "file"


def test_dashboard_has_the_panels_operators_look_for() -> None:
    dashboard = load_dashboard(DASHBOARD)
    assert dashboard["uid"] == "dvm-sidecar"
    titles = {p["title"] for p in panels(dashboard) if p["type"] != "row"}
    for wanted in ("Throughput by outcome", "Phase latency percentiles", "Jobs without a co-signed result",
                   "Peer matrix: since last heard", "Divergent results by member",
                   "Invalid shares and equivocations by member", "Canary results", "Relay connection",
                   "Relay publish results"):
        assert wanted in titles


def test_panels_are_well_formed() -> None:
    dashboard = load_dashboard(DASHBOARD)
    all_panels: list[dict[str, Any]] = list(panels(dashboard))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        # Every query is limited to the chosen sidecars.
        assert all('instance=~"$instance"' in t["expr"] for t in panel["targets"]), panel["title"]
