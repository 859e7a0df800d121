"""deploy/federation-example: three operators whose config files agree with each other and with the README."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from nostr_sdk import PublicKey

from tests.deploy.tools import FEDERATION_EXAMPLE

OPERATORS = sorted(FEDERATION_EXAMPLE.glob("operator-*"))


def load(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted key paths of a TOML document; array-of-table entries as ``[[name]] key``."""
    found: set[str] = set()
    for key, value in table.items():
        if isinstance(value, dict):
            found |= keys(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            found |= {f"[[{prefix}{key}]] {k}" for v in value for k in v}
        else:
            found.add(f"{prefix}{key}")
    return found


def test_three_operators_share_one_federation_file() -> None:
    assert [p.name for p in OPERATORS] == ["operator-1", "operator-2", "operator-3"]
    copies = {(p / "federation.toml").read_bytes() for p in OPERATORS}
    assert len(copies) == 1, "every member must hold the same federation.toml"


def test_federation_is_consistent() -> None:
    federation = load(OPERATORS[0] / "federation.toml")
    members = federation["members"]
    assert [m["index"] for m in members] == [1, 2, 3]
    assert 1 <= federation["threshold"] <= len(members)
    for npub in [federation["group_npub"], *(m["identity_npub"] for m in members)]:
        PublicKey.parse(npub)  # raises on a malformed npub
    assert len({m["identity_npub"] for m in members}) == len(members)
    assert all(5000 <= k <= 5999 for k in federation["kinds"])
    assert federation["relays"] and all(r.startswith("wss://") for r in federation["relays"])


def test_each_operator_is_a_distinct_member_with_its_own_dvm() -> None:
    federation = load(OPERATORS[0] / "federation.toml")
    configs = [load(p / "sidecar.toml") for p in OPERATORS]
    assert [c["member"]["index"] for c in configs] == [m["index"] for m in federation["members"]]
    dvms = [c["dvm"]["pubkey"] for c in configs]
    assert len(set(dvms)) == 3
    for config in configs:
        PublicKey.parse(config["dvm"]["pubkey"])
        assert config["federation_file"] == "/etc/dvm-sidecar/federation.toml"  # where compose mounts it
        assert all(config["member"][k].startswith("/run/secrets/")
                   for k in ("share_file", "identity_key_file", "password_file"))
        assert config["canary"]["kind"] in federation["kinds"]
        assert config["dvm"]["mode"] in ("reissue", "passthrough")
        assert config["peers"]["transport"] in ("nostr", "redis")


def test_configs_hold_no_secret() -> None:
    for path in FEDERATION_EXAMPLE.rglob("*.toml"):
        text = path.read_text()
        assert not re.search(r"\b(nsec1|ncryptsec1)[0-9a-z]+", text), path
        assert not re.search(r"\b[0-9a-f]{64}\b", text), f"{path}: a 64-hex value could be a secret key"


def test_readme_documents_every_key_used() -> None:
    readme = (FEDERATION_EXAMPLE / "README.md").read_text()
    documented = set(re.findall(r"^\| (.+?) \|", readme, flags=re.M))
    cells: set[str] = set()
    for cell in documented:
        section = re.match(r"`\[\[?(\w+)\]\]?`", cell)
        names = re.findall(r"`(\w+)`", cell)
        if section:
            cells |= {f"{section.group(1)}.{n}" for n in names}
        else:
            cells |= set(names)
    used = keys(load(OPERATORS[0] / "federation.toml")) | keys(load(OPERATORS[0] / "sidecar.toml"))
    used = {re.sub(r"^\[\[(\w+)\]\] ", r"\1.", k) for k in used}
    assert used <= cells, f"undocumented: {sorted(used - cells)}"
