"""compose.yaml, checked by the real Compose v2 (``docker compose config``; no engine needed) and by the
gaps ``config`` leaves open: bind-mount sources, build contexts and secret files that exist, healthchecks
behind every ``service_healthy`` dependency, host ports on loopback only, the DVM isolated on an internal
network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import COMPOSE_FILE, FEDERATION_EXAMPLE, REPO, Compose

SECRETS = ("share", "identity", "password")


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    return Compose.install(tmp_path_factory.mktemp("docker-config"))


@pytest.fixture(scope="module")
def example_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Operator 1 of the example federation, with placeholder key files (not keys: the files only exist)."""
    secrets = tmp_path_factory.mktemp("secrets")
    for name in SECRETS:
        (secrets / name).write_text("placeholder\n")
    return {"SIDECAR_CONFIG_DIR": str(FEDERATION_EXAMPLE / "operator-1"), "SIDECAR_SECRETS_DIR": str(secrets)}


def render(compose: Compose, env: dict[str, str], compose_file: Path = COMPOSE_FILE) -> dict[str, Any]:
    result = compose.run("--profile", "observability", "config", "--format", "json", env=env,
                         compose_file=compose_file)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def missing_paths(model: dict[str, Any]) -> list[str]:
    """What ``config`` does not check: bind sources, build contexts (with their Dockerfile), secret files."""
    problems = []
    for name, service in model["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind" and not Path(volume["source"]).exists():
                problems.append(f"{name}: bind source {volume['source']} does not exist")
        build = service.get("build")
        if build:
            dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{name}: build context has no {dockerfile}")
    for name, secret in model.get("secrets", {}).items():
        if "file" in secret and not Path(secret["file"]).is_file():
            problems.append(f"secret {name}: file {secret['file']} does not exist")
    return problems


def unchecked_dependencies(model: dict[str, Any]) -> list[str]:
    services = model["services"]
    return [
        f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
        for name, service in services.items()
        for dep, how in service.get("depends_on", {}).items()
        if how.get("condition") == "service_healthy"
        and (not services[dep].get("healthcheck") or services[dep]["healthcheck"].get("disable"))
    ]


def test_compose_v2_accepts_the_file(compose: Compose) -> None:
    version = compose.run("version", "--short")
    assert version.returncode == 0 and version.stdout.strip().startswith("2."), version
    for args in (("config", "-q"), ("--profile", "observability", "config", "-q")):
        result = compose.run(*args)
        assert result.returncode == 0, result.stderr


def test_compose_exit_code_is_honoured(compose: Compose, tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE_FILE.read_text().replace("healthcheck:", "healtcheck:", 1))
    result = compose.run("config", "-q", compose_file=broken)
    assert result.returncode != 0
    assert "healtcheck" in result.stderr


def test_every_path_exists_with_the_example_operator(compose: Compose, example_env: dict[str, str]) -> None:
    model = render(compose, example_env)
    assert set(model["services"]) == {"sidecar", "dvm", "redis", "prometheus", "grafana"}
    assert missing_paths(model) == []


def test_the_gap_checks_catch_what_config_lets_through(compose: Compose, tmp_path: Path) -> None:
    env = {"SIDECAR_CONFIG_DIR": str(tmp_path / "no-such-config"),
           "SIDECAR_SECRETS_DIR": str(tmp_path / "none")}
    problems = missing_paths(render(compose, env))
    assert any("no-such-config" in p for p in problems)
    assert sum("secret" in p for p in problems) == len(SECRETS)
    unhealthy = tmp_path / "compose.yaml"
    unhealthy.write_text(COMPOSE_FILE.read_text().replace(
        '      test: ["CMD", "redis-cli", "ping"]\n', '      disable: true\n', 1))
    assert unchecked_dependencies(render(compose, {}, unhealthy)) == [
        "sidecar waits for redis to be healthy, but redis has no healthcheck"
    ]


def test_every_healthy_dependency_has_a_healthcheck(compose: Compose, example_env: dict[str, str]) -> None:
    model = render(compose, example_env)
    assert unchecked_dependencies(model) == []
    waits = {(n, d) for n, s in model["services"].items() for d in s.get("depends_on", {})}
    assert {("sidecar", "redis"), ("dvm", "sidecar"), ("prometheus", "sidecar")} <= waits
    assert ("grafana", "prometheus") in waits


def test_host_ports_are_on_loopback_only(compose: Compose, example_env: dict[str, str]) -> None:
    model = render(compose, example_env)
    published = [(n, p) for n, s in model["services"].items() for p in s.get("ports", [])]
    assert published, "the status page and metrics should be published"
    assert [(n, p.get("host_ip")) for n, p in published if p.get("host_ip") != "127.0.0.1"] == []


def test_the_dvm_reaches_only_the_sidecar(compose: Compose, example_env: dict[str, str]) -> None:
    model = render(compose, example_env)
    services, networks = model["services"], model["networks"]
    dvm_networks = set(services["dvm"]["networks"])
    assert dvm_networks and all(networks[n].get("internal") for n in dvm_networks)
    sharing = {name for name, s in services.items() if dvm_networks & set(s.get("networks") or {})}
    assert sharing == {"dvm", "sidecar"}
    assert "ports" not in services["dvm"]
    # Redis is reachable by the sidecar alone, on an internal network too.
    redis_networks = set(services["redis"]["networks"])
    assert all(networks[n].get("internal") for n in redis_networks)
    redis_peers = {n for n, s in services.items() if redis_networks & set(s.get("networks") or {})}
    assert redis_peers == {"redis", "sidecar"}


def test_services_run_what_the_operator_expects(compose: Compose, example_env: dict[str, str]) -> None:
    model = render(compose, example_env)
    services = model["services"]
    sidecar = services["sidecar"]
    assert sidecar["command"] == ["dvm-sidecar", "run", "--config", "/etc/dvm-sidecar/sidecar.toml"]
    assert sidecar["build"] == {"context": str(REPO), "dockerfile": "deploy/Dockerfile"}
    assert services["dvm"]["command"] == ["dvm-sidecar", "example-dvm", "--relay", "ws://sidecar:7777"]
    assert services["dvm"]["image"] == sidecar["image"]
    # Config and key files are mounted read-only, never built in.
    config = [v for v in sidecar["volumes"] if v["target"] == "/etc/dvm-sidecar"]
    assert config and config[0]["read_only"] is True
    assert {s["source"] for s in sidecar["secrets"]} == set(SECRETS)
    # Redis keeps an append-only file on a named volume.
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    assert any(v["type"] == "volume" and v["target"] == "/data" for v in redis["volumes"])
    # Prometheus and Grafana only behind the profile.
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["observability"]
    assert all(not s.get("profiles") for n, s in services.items() if n not in ("prometheus", "grafana"))


def test_the_dvm_is_replaced_by_one_line(
    compose: Compose, example_env: dict[str, str], tmp_path: Path
) -> None:
    text = COMPOSE_FILE.read_text()
    assert text.count("    <<: *example-dvm\n") == 1
    own = tmp_path / "compose.yaml"
    own.write_text(text.replace("    <<: *example-dvm\n", "    image: example.org/my-dvm:1.0\n"))
    dvm = render(compose, example_env, own)["services"]["dvm"]
    assert dvm["image"] == "example.org/my-dvm:1.0"
    assert "build" not in dvm and not dvm.get("command")
