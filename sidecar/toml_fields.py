"""Typed fields read out of TOML (and ``SIDECAR_*`` environment variables) for the config and federation files.

Rules: every refusal is one ``ConfigError`` line saying where (the file or the environment variable), which
field, what is wrong and how to fix it. Values are echoed only shortened: config files hold paths and public
keys, never secrets, but a line must stay readable. Nothing here touches the file system except ``read_toml``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from nostr_sdk import NostrSdkError, PublicKey

MAX_TOML_BYTES = 1 << 20  # far above any real config; a bigger file is a mistake, not a config
_SHOWN_CHARS = 60
_ENV_INT = re.compile(r"-?[0-9]+")
_ENV_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_ENV_BOOLS = {"true": True, "1": True, "false": False, "0": False}
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ConfigError(ValueError):
    """A config or federation file cannot be used; one line: file, field, what is wrong, how to fix it."""


def fail(where: str, field: str, problem: str, fix: str) -> NoReturn:
    raise ConfigError(f"{where}: {field}: {problem}; {fix}")


def shown(value: object) -> str:
    """``value`` for an error line: its repr, shortened."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "a table"}
    return names.get(type(value), "a date or time")


def read_toml(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The TOML document in the file at ``path``; ``what`` names the file in errors ("config file")."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_TOML_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: the {what} does not exist; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a {what}; give the file's path") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}; check its permissions") from None
    if len(data) > MAX_TOML_BYTES:
        raise ConfigError(f"{path}: the {what} is larger than {MAX_TOML_BYTES} bytes; is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the {what} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return parse_toml(text, str(path), what)


def parse_toml(text: str, where: str, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: the {what} is not valid TOML: {' '.join(str(exc).split())}; "
                          "fix the syntax there") from None
    except RecursionError:
        raise ConfigError(f"{where}: the {what} is nested too deeply; it is not a config file") from None


def reject_unknown(table: Mapping[str, Any], known: Iterable[str], where: str, prefix: str = "",
                   elsewhere: Iterable[str] = ()) -> None:
    """``ConfigError`` naming the first key of ``table`` not in ``known``, with the closest known one (among
    ``known`` and the dotted names ``elsewhere``, for a key put in the wrong section)."""
    known = list(known)
    for key in table:
        if key not in known:
            dotted = [f"{prefix}{k}" for k in known]
            close = difflib.get_close_matches(f"{prefix}{key}", dotted + list(elsewhere), n=1, cutoff=0.6)
            fix = f"did you mean {close[0]!r}?" if close else f"known keys here: {', '.join(dotted)}"
            plain = key.replace("_", "a").isalnum() and key.isascii() and len(key) <= 40
            fail(where, f"{prefix}{key}" if plain else f"{prefix}{shown(key)}", "unknown key", fix)


def table(value: object, where: str, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        fail(where, field, f"must be a table, got {type_name(value)}", f"write it as a [{field}] section")
    return value


# ---------------------------------------------------------------------------------------------- scalars


def text(value: object, where: str, field: str, *, empty: bool = False, example: str = '"..."') -> str:
    if not isinstance(value, str):
        fail(where, field, f"must be a string, got {type_name(value)}", f"write it in quotes, e.g. {example}")
    if not empty and not value.strip():
        fail(where, field, "is empty", f"give a value, e.g. {example}")
    if "\x00" in value:
        fail(where, field, "contains a NUL character", "remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        fail(where, field, "is not valid UTF-8 text", "give it as UTF-8 text")
    return value


def integer(value: object, where: str, field: str, low: int, high: int) -> int:
    if type(value) is not int:
        fail(where, field, f"must be an integer, got {type_name(value)}", f"give a whole number in {low}..{high}")
    if not low <= value <= high:
        fail(where, field, f"{shown(value)} is out of range", f"give a whole number in {low}..{high}")
    return value


def seconds(value: object, where: str, field: str) -> float:
    """A positive, finite duration in seconds (an integer or a number)."""
    if type(value) not in (int, float):
        fail(where, field, f"must be a number of seconds, got {type_name(value)}", "give e.g. 30 or 2.5")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number <= 0:
        fail(where, field, f"{shown(value)} is not a positive number of seconds", "give e.g. 30 or 2.5")
    return number


def boolean(value: object, where: str, field: str) -> bool:
    if type(value) is not bool:
        fail(where, field, f"must be true or false, got {type_name(value)}", "write true or false (no quotes)")
    return value


def choice(value: object, where: str, field: str, choices: tuple[str, ...]) -> str:
    options = " or ".join(repr(c) for c in choices)
    if not isinstance(value, str) or value not in choices:
        fail(where, field, f"{shown(value)} is not one of the choices", f"use {options}")
    return value


def pubkey(value: object, where: str, field: str, *, npub_only: bool = False) -> str:
    """A Nostr public key given as an npub (or, unless ``npub_only``, 64 hex characters), as x-only hex."""
    example = '"npub1..."' if npub_only else '"npub1..." or 64 hex characters'
    key = text(value, where, field, example=example)
    try:
        if key.startswith("npub1"):
            parsed = PublicKey.parse(key)
            if parsed.to_bech32() != key:
                raise ValueError
            return parsed.to_hex()
        if not npub_only and _HEX64.fullmatch(key):
            return PublicKey.parse(key).to_hex()
    except (ValueError, NostrSdkError):
        fail(where, field, f"{shown(key)} is not a valid public key", f"copy the key again, as {example}")
    fail(where, field, f"{shown(key)} is not a public key", f"give it as {example}")


def path(value: object, where: str, field: str, base: Path) -> Path:
    """A path; a relative one is taken relative to ``base`` (the config file's directory)."""
    given = Path(text(value, where, field, example='"/path/to/file"'))
    return given if given.is_absolute() else base / given


# ---------------------------------------------------------------------------------------------- environment


def env_value(raw: str, kind: type, where: str, field: str) -> object:
    """An environment variable's text as the TOML value it stands for, parsed strictly."""
    if kind is str:
        return raw
    if kind is bool:
        if raw.lower() not in _ENV_BOOLS:
            fail(where, field, f"{shown(raw)} is not a boolean", "set it to true or false")
        return _ENV_BOOLS[raw.lower()]
    pattern = _ENV_INT if kind is int else _ENV_FLOAT
    if pattern.fullmatch(raw) is None:
        if kind is int:
            fail(where, field, f"{shown(raw)} is not an integer", "set it to a whole number, digits only")
        fail(where, field, f"{shown(raw)} is not a number", "set it to a number such as 30 or 2.5")
    return int(raw) if kind is int else float(raw)
