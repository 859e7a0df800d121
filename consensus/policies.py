"""Digest policies: what "the same result" means for a federation, as pure functions of a DVM's result.

The rule: a policy maps a ``DvmResult`` (the DVM's kind 6xxx answer with the request-linking tags already
stripped) to a canonical ``ResultPayload``. That payload is what the group PUBLISHES (its content and tags go
into the co-signed result), and the digest members announce is the sha256 of the payload's canonical JSON. So
members that agree on a digest hold byte-identical payloads and build byte-identical events.

- ``exact``: the content and the result tags exactly as the DVM gave them.
- ``json``: the content parsed as JSON and re-serialized canonically (sorted keys, compact separators,
  non-ASCII kept as UTF-8); of the tags only ``amount`` is kept. ``1`` and ``1.0`` stay different; NaN,
  Infinity and duplicate keys are refused.
- ``tag:NAME``: empty content; the tags are ``[NAME, value]`` from the DVM's single ``NAME`` tag, plus
  ``amount`` if the DVM set one. For DVMs whose answer is identified by one value (an artifact's sha256).

A result that does not fit the policy (not JSON, no such tag) is a ``ValueError``: the member announces it as
an unusable result rather than guessing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from consensus.jsontext import dumps_compact, loads_bounded
from consensus.nip90 import AMOUNT_TAG, DvmResult, Tags, check_tags

MAX_PAYLOAD_BYTES = 65536
_CONTENT_JSON_DEPTH = 64  # deeper DVM output is refused rather than risking the parser's recursion
_PAYLOAD_DEPTH = 3  # object > tags array > tag array
_PAYLOAD_FIELDS = ("content", "tags")
_TAG_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class ResultPayload:
    """The canonical result a federation agrees on and publishes: content plus result tags."""

    content: str
    tags: Tags

    def __post_init__(self) -> None:
        if not isinstance(self.content, str):
            raise ValueError("payload content must be a string")
        object.__setattr__(self, "tags", check_tags(self.tags))
        try:
            self.to_json().encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("payload holds a string that is not valid Unicode (a lone surrogate)") from None

    def to_json(self) -> str:
        """Canonical: keys in the order content, tags; compact; non-ASCII as UTF-8."""
        return self._json

    @cached_property
    def _json(self) -> str:  # checked, hashed and stored with every job state: computed once
        return dumps_compact({"content": self.content, "tags": [list(tag) for tag in self.tags]})

    @classmethod
    def from_json(cls, text: str | bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> ResultPayload:
        return cls.from_obj(loads_bounded(text, max_bytes=max_bytes, max_depth=_PAYLOAD_DEPTH, what="result payload"))

    @classmethod
    def from_obj(cls, data: object) -> ResultPayload:
        """From parsed JSON (a peer message's field, say): the same checks as ``from_json`` past the parser."""
        if not isinstance(data, dict):
            raise ValueError("a result payload must be a JSON object")
        if set(data) != set(_PAYLOAD_FIELDS):
            raise ValueError(
                f"a result payload has exactly the fields {list(_PAYLOAD_FIELDS)}, got {list(data)}"
            )
        return cls(content=data["content"], tags=data["tags"])

    def digest(self) -> bytes:
        return hashlib.sha256(self.to_json().encode("utf-8")).digest()


class DigestPolicy(Protocol):
    @property
    def name(self) -> str: ...

    def canonical(self, result: DvmResult) -> ResultPayload: ...


def _amount_tags(result: DvmResult) -> Tags:
    return tuple(tag for tag in result.tags if tag[0] == AMOUNT_TAG)


@dataclass(frozen=True)
class ExactPolicy:
    @property
    def name(self) -> str:
        return "exact"

    def canonical(self, result: DvmResult) -> ResultPayload:
        return ResultPayload(content=result.content, tags=result.tags)


@dataclass(frozen=True)
class JsonPolicy:
    @property
    def name(self) -> str:
        return "json"

    def canonical(self, result: DvmResult) -> ResultPayload:
        value = _parse_content(result.content)
        content = json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
        )
        return ResultPayload(content=content, tags=_amount_tags(result))


def _parse_content(content: str) -> Any:
    # the content is capped by the event size limit already; the payload cap applies to what is published
    return loads_bounded(
        content, max_bytes=MAX_PAYLOAD_BYTES, max_depth=_CONTENT_JSON_DEPTH, what="result content"
    )


@dataclass(frozen=True)
class TagPolicy:
    tag: str

    def __post_init__(self) -> None:
        if not isinstance(self.tag, str) or _TAG_NAME.fullmatch(self.tag) is None:
            raise ValueError(
                f"tag policy name {self.tag!r} must be 1-64 letters, digits, '_', '.', ':' or '-'"
            )

    @property
    def name(self) -> str:
        return f"tag:{self.tag}"

    def canonical(self, result: DvmResult) -> ResultPayload:
        found = [tag for tag in result.tags if tag[0] == self.tag]
        if len(found) != 1 or len(found[0]) < 2:
            raise ValueError(f"result must carry exactly one [{self.tag!r}, value] tag, found {len(found)}")
        tags: Tags = ((self.tag, found[0][1]),)
        if self.tag != AMOUNT_TAG:
            tags += _amount_tags(result)
        return ResultPayload(content="", tags=tags)


def parse_policy(spec: str) -> DigestPolicy:
    """``exact``, ``json`` or ``tag:NAME``."""
    if spec == "exact":
        return ExactPolicy()
    if spec == "json":
        return JsonPolicy()
    if isinstance(spec, str) and spec.startswith("tag:"):
        return TagPolicy(spec[len("tag:") :])
    raise ValueError(f"unknown digest policy {spec!r}: use 'exact', 'json' or 'tag:NAME'")
