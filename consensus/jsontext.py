"""JSON text read with bounds and written compactly, for events, relay and peer messages and result payloads.

Such text comes from peers, relays and customers, so its size and nesting depth are checked before the parser
runs: an oversized or deeply nested input costs one linear scan, not the parser's memory or a RecursionError
midway. Duplicate keys and NaN/Infinity are refused, so no two parsers can read one text two ways.
"""

from __future__ import annotations

import json
import re
from typing import Any

# a string literal, or an unterminated one up to the end: always matches, so stripping strings is linear
_STRING_LITERAL = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]++")
_ONE_BRACKET_KIND = str.maketrans("{}", "[]")


def loads_bounded(text: str | bytes, *, max_bytes: int, max_depth: int, what: str) -> Any:
    """Parse JSON text of at most ``max_bytes`` (UTF-8) nested at most ``max_depth`` deep.

    Size and depth are checked before the parser runs, so a huge or deeply nested input costs one linear scan.
    Duplicate object keys and the non-standard constants NaN/Infinity are refused.
    """
    if isinstance(text, (bytes, bytearray)):
        if len(text) > max_bytes:
            raise ValueError(f"{what} is {len(text)} bytes, over the {max_bytes}-byte limit")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") from None
    elif not isinstance(text, str):
        raise ValueError(f"{what} must be str or bytes, not {type(text).__name__}")
    # a str has at most 4 UTF-8 bytes per character: skip encoding when that bound already fits
    if len(text) > max_bytes or (
        len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        raise ValueError(f"{what} is over the {max_bytes}-byte limit")
    if _nesting_exceeds(text, max_depth):
        raise ValueError(f"{what} is nested deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None


def _nesting_exceeds(text: str, max_depth: int) -> bool:
    """Whether the brackets outside string literals nest deeper than ``max_depth``.

    Each round deletes the innermost pairs, so balanced brackets vanish after exactly as many rounds as they
    are deep. Unbalanced text is left to the parser, which refuses it (and stops at its recursion limit).
    """
    shape = _NOT_BRACKETS.sub("", _STRING_LITERAL.sub("", text)).translate(_ONE_BRACKET_KIND)
    if shape.count("[") != shape.count("]"):
        return False
    for _ in range(max_depth):
        if not shape:
            return False
        shape = shape.replace("[]", "")
    return bool(shape)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def dumps_compact(value: Any) -> str:
    """Compact JSON with non-ASCII kept as is: the form NIP-01 hashes and nostr-sdk emits."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
