"""The sidecar's configuration: one TOML file, every value overridable by a ``SIDECAR_*`` environment variable.

``SIDECAR_<SECTION>_<KEY>`` overrides ``[section] key`` (``SIDECAR_<KEY>`` a top-level key), parsed as
strictly as TOML would (integers, numbers, ``true``/``false``/``1``/``0``); an empty value unsets an optional
key. Relative paths are taken relative to the config file's directory. Unknown keys are refused with the
closest known key, in the file and among ``SIDECAR_<SECTION>_*`` variables of a known section (other
``SIDECAR_*`` names, such as ``SIDECAR_PASSPHRASE``, belong to other parts and are left alone).
Rules: the config holds no secret (key files are named by path); every refusal is one ``ConfigError`` line.
The federation file's types live in ``sidecar.federation_file`` and are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sidecar.federation_file import FederationFile, MemberEntry, load_federation, parse_federation
from sidecar.toml_fields import (
    ConfigError,
    boolean,
    choice,
    env_value,
    fail,
    integer,
    pubkey,
    read_toml,
    reject_unknown,
    seconds,
    table,
    text,
)
from sidecar.toml_fields import path as path_field

__all__ = ["ConfigError", "FederationFile", "MemberEntry", "SidecarConfig", "load_config", "load_federation",
           "parse_federation"]

ENV_PREFIX = "SIDECAR_"
DVM_MODES = ("reissue", "passthrough")
TRANSPORTS = ("nostr", "redis")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class SidecarConfig:
    """One member's settings. ``redis_url`` None: start an embedded Redis under ``state_dir``; ``canary_expected``
    None: no canary."""

    federation_file: Path
    index: int
    share_file: Path
    identity_key_file: Path
    password_file: Path | None
    redis_url: str | None
    state_dir: Path
    dvm_pubkey: str
    dvm_mode: str
    dvm_timeout: float
    private_relay_host: str
    private_relay_port: int
    transport: str
    accept_unaddressed: bool
    canary_interval: float
    canary_timeout: float
    canary_kind: int
    canary_input: str
    canary_expected: str | None
    http_host: str
    http_port: int
    log_level: str
    job_ttl: float
    max_request_age: float
    replay_window: float

    def check_federation(self, federation: FederationFile) -> None:
        """``ConfigError`` unless this member, its canary and its DVM timeout fit ``federation``."""
        where = f"{self.federation_file}"
        indices = [m.index for m in federation.members]
        if self.index not in indices:
            raise ConfigError(f"member.index: {self.index} is not a member of the federation in {where} "
                              f"(members {indices[0]}..{indices[-1]}); set your own member index")
        if self.canary_expected is not None and self.canary_kind not in federation.kinds:
            raise ConfigError(f"canary.kind: {self.canary_kind} is not a kind the federation in {where} serves "
                              f"{list(federation.kinds)}; use one of those")
        if self.dvm_timeout >= federation.timeouts.deadline:
            raise ConfigError(f"dvm.timeout_seconds: {self.dvm_timeout:g} is not shorter than the federation's "
                              f"deadline ({federation.timeouts.deadline:g} s in {where}); lower it")


Parser = Callable[[Any, str, str, Path], Any]


@dataclass(frozen=True)
class _Field:
    section: str  # "" for a top-level key
    key: str
    attr: str
    kind: type  # what an environment variable's text is read as
    parse: Parser
    default: Any = ...  # ... = required
    example: str = ""

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.replace(".", "_").upper()

    @property
    def optional(self) -> bool:
        return self.default is None


def _path(value: Any, where: str, field: str, base: Path) -> Path:
    return path_field(value, where, field, base)


def _port(value: Any, where: str, field: str, base: Path) -> int:
    return integer(value, where, field, 0, 65535)


def _host(value: Any, where: str, field: str, base: Path) -> str:
    host = text(value, where, field, example='"127.0.0.1"')
    if any(c.isspace() or c in "/@" for c in host):
        fail(where, field, f"{host!r} is not a host name or address", 'give e.g. "127.0.0.1" or "0.0.0.0"')
    return host


def _redis_url(value: Any, where: str, field: str, base: Path) -> str:
    url = text(value, where, field, example='"redis://127.0.0.1:6379/0"')
    if not url.startswith(REDIS_SCHEMES):
        fail(where, field, "is not a Redis URL",
             "give redis://host:port/db, rediss:// (TLS) or unix:///path, or leave it out for an embedded server")
    return url


def _log_level(value: Any, where: str, field: str, base: Path) -> str:
    level = text(value, where, field, example='"info"').upper()
    return choice(level, where, field, LOG_LEVELS)


def _in(choices: tuple[str, ...]) -> Parser:
    return lambda value, where, field, base: choice(value, where, field, choices)


FIELDS: tuple[_Field, ...] = (
    _Field("", "federation_file", "federation_file", str, _path, example='"federation.toml"'),
    _Field("", "state_dir", "state_dir", str, _path, "state"),
    _Field("", "log_level", "log_level", str, _log_level, "info"),
    _Field("member", "index", "index", int, lambda v, w, f, b: integer(v, w, f, 1, 65535), example="1"),
    _Field("member", "share_file", "share_file", str, _path, example='"/run/secrets/share"'),
    _Field("member", "identity_key_file", "identity_key_file", str, _path, example='"/run/secrets/identity"'),
    _Field("member", "password_file", "password_file", str, _path, None),
    _Field("redis", "url", "redis_url", str, _redis_url, None),
    _Field("dvm", "pubkey", "dvm_pubkey", str, lambda v, w, f, b: pubkey(v, w, f), example='"npub1..."'),
    _Field("dvm", "mode", "dvm_mode", str, _in(DVM_MODES), "reissue"),
    _Field("dvm", "timeout_seconds", "dvm_timeout", float, lambda v, w, f, b: seconds(v, w, f), 30.0),
    _Field("private_relay", "host", "private_relay_host", str, _host, "127.0.0.1"),
    _Field("private_relay", "port", "private_relay_port", int, _port, 7777),
    _Field("peers", "transport", "transport", str, _in(TRANSPORTS), "nostr"),
    _Field("public", "accept_unaddressed", "accept_unaddressed", bool, lambda v, w, f, b: boolean(v, w, f), False),
    _Field("canary", "interval_seconds", "canary_interval", float, lambda v, w, f, b: seconds(v, w, f), 300.0),
    _Field("canary", "timeout_seconds", "canary_timeout", float, lambda v, w, f, b: seconds(v, w, f), 60.0),
    _Field("canary", "kind", "canary_kind", int, lambda v, w, f, b: integer(v, w, f, 5000, 5999), 5050),
    _Field("canary", "input", "canary_input", str, lambda v, w, f, b: text(v, w, f), "dvm-sidecar canary"),
    _Field("canary", "expected", "canary_expected", str, lambda v, w, f, b: text(v, w, f, empty=True), None),
    _Field("http", "host", "http_host", str, _host, "127.0.0.1"),
    _Field("http", "port", "http_port", int, _port, 8080),
    _Field("redis", "job_ttl_seconds", "job_ttl", float, lambda v, w, f, b: seconds(v, w, f), 3600.0),
    _Field("public", "max_request_age_seconds", "max_request_age", float, lambda v, w, f, b: seconds(v, w, f),
           900.0),
    _Field("peers", "replay_window_seconds", "replay_window", float, lambda v, w, f, b: seconds(v, w, f), 120.0),
)
SECTIONS = tuple(dict.fromkeys(f.section for f in FIELDS if f.section))
_BY_ENV = {f.env: f for f in FIELDS}
assert {f.attr for f in FIELDS} == {f.name for f in fields(SidecarConfig)}


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] = os.environ) -> SidecarConfig:
    """The config file at ``path`` with ``SIDECAR_*`` overrides from ``env``, checked (``ConfigError``)."""
    where = str(path)
    doc = read_toml(path, "config file")
    base = Path(path).absolute().parent
    reject_unknown(doc, [f.key for f in FIELDS if not f.section] + list(SECTIONS), where,
                   elsewhere=[f.name for f in FIELDS if f.section])
    tables = {section: table(doc.get(section, {}), where, section) for section in SECTIONS}
    for section, given in tables.items():
        reject_unknown(given, [f.key for f in FIELDS if f.section == section], where, f"{section}.")
    _reject_unknown_env(env)
    values: dict[str, Any] = {}
    for spec in FIELDS:
        given = tables[spec.section] if spec.section else doc
        if spec.env in env:
            source = f"environment variable {spec.env}"
            raw = env[spec.env]
            if raw == "" and spec.optional:
                values[spec.attr] = None
                continue
            value = env_value(raw, spec.kind, source, spec.name)
        elif spec.key in given:
            source, value = where, given[spec.key]
        elif spec.default is ...:
            section = f" under [{spec.section}]" if spec.section else ""
            fail(where, spec.name, "missing", f"add {spec.key} = {spec.example}{section}, or set {spec.env}")
        else:
            values[spec.attr] = spec.default if spec.default is None else spec.parse(spec.default, where,
                                                                                        spec.name, base)
            continue
        values[spec.attr] = spec.parse(value, source, spec.name, base)
    config = SidecarConfig(**values)
    _check_together(config, where)
    return config


def _reject_unknown_env(env: Mapping[str, str]) -> None:
    """A ``SIDECAR_<SECTION>_*`` variable of a known section must be a known key (a typo would be ignored)."""
    for name in env:
        if name in _BY_ENV or not name.startswith(ENV_PREFIX):
            continue
        for section in SECTIONS:
            prefix = f"{ENV_PREFIX}{section.upper()}_"
            if name.startswith(prefix):
                known = [f.env for f in FIELDS if f.section == section]
                reject_unknown({name: None}, known, "environment")


def _check_together(config: SidecarConfig, where: str) -> None:
    if config.canary_timeout > config.canary_interval:
        fail(where, "canary.timeout_seconds", f"{config.canary_timeout:g} is longer than interval_seconds "
             f"{config.canary_interval:g}", "make the timeout at most the interval, so canaries do not pile up")
    wildcard = ("0.0.0.0", "::")
    same_host = (config.http_host == config.private_relay_host or config.http_host in wildcard
                 or config.private_relay_host in wildcard)
    if same_host and config.http_port == config.private_relay_port != 0:
        fail(where, "http.port", f"{config.http_port} is also private_relay.port",
             "give the HTTP server and the private relay different ports")
