"""Digest policies: what each keeps of a DVM result, and the canonical payload's strict encoding."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.nip90 import DvmResult
from consensus.policies import ExactPolicy, JsonPolicy, ResultPayload, TagPolicy, parse_policy

AMOUNT = ("amount", "21000", "lnbc1...")

CANONICAL: list[tuple[str, str, DvmResult, ResultPayload]] = [
    (
        "exact keeps all",
        "exact",
        DvmResult("a  b", (("alt", "x"), AMOUNT)),
        ResultPayload("a  b", (("alt", "x"), AMOUNT)),
    ),
    ("exact empty", "exact", DvmResult("", ()), ResultPayload("", ())),
    (
        "json sorts and compacts",
        "json",
        DvmResult('{ "b": 1, "a": [true, null, "é"] }', (("alt", "x"),)),
        ResultPayload('{"a":[true,null,"é"],"b":1}', ()),
    ),
    (
        "json keeps amount only",
        "json",
        DvmResult('"text"', (("alt", "x"), AMOUNT, ("status", "ok"))),
        ResultPayload('"text"', (AMOUNT,)),
    ),
    (
        "json unescapes unicode",
        "json",
        DvmResult('["\\u00e9", 1.50, 1e2]', ()),
        ResultPayload('["é",1.5,100.0]', ()),
    ),
    (
        "json nested objects",
        "json",
        DvmResult('{"z":{"y":1,"x":2}}', ()),
        ResultPayload('{"z":{"x":2,"y":1}}', ()),
    ),
    (
        "tag value only",
        "tag:sha256",
        DvmResult("ignored", (("alt", "x"), ("sha256", "ab", "extra"))),
        ResultPayload("", (("sha256", "ab"),)),
    ),
    (
        "tag keeps amount",
        "tag:sha256",
        DvmResult("", (AMOUNT, ("sha256", "ab"))),
        ResultPayload("", (("sha256", "ab"), AMOUNT)),
    ),
]


@pytest.mark.parametrize(
    ("spec", "result", "expected"), [c[1:] for c in CANONICAL], ids=[c[0] for c in CANONICAL]
)
def test_canonical_payload(spec: str, result: DvmResult, expected: ResultPayload) -> None:
    payload = parse_policy(spec).canonical(result)
    assert payload == expected
    assert payload.digest() == expected.digest()


def test_tag_policy_on_amount_does_not_repeat_it() -> None:
    assert TagPolicy("amount").canonical(DvmResult("", (AMOUNT,))) == ResultPayload(
        "", (("amount", "21000"),)
    )


NOT_FITTING: list[tuple[str, str, DvmResult, str]] = [
    ("json not json", "json", DvmResult("plain text", ()), "not valid JSON"),
    ("json NaN", "json", DvmResult('{"a": NaN}', ()), "NaN"),
    ("json Infinity", "json", DvmResult("[Infinity]", ()), "Infinity"),
    ("json duplicate key", "json", DvmResult('{"a":1,"a":2}', ()), "duplicate"),
    ("json too deep", "json", DvmResult("[" * 100 + "]" * 100, ()), "nested deeper"),
    ("json lone surrogate", "json", DvmResult('"\\ud800"', ()), "surrogate"),
    ("tag missing", "tag:sha256", DvmResult("x", (("alt", "y"),)), "found 0"),
    ("tag twice", "tag:sha256", DvmResult("x", (("sha256", "a"), ("sha256", "b"))), "found 2"),
    ("tag without value", "tag:sha256", DvmResult("x", (("sha256",),)), "exactly one"),
]


@pytest.mark.parametrize(
    ("spec", "result", "message"), [c[1:] for c in NOT_FITTING], ids=[c[0] for c in NOT_FITTING]
)
def test_result_not_fitting_policy(spec: str, result: DvmResult, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_policy(spec).canonical(result)


def test_json_policy_agrees_across_formatting() -> None:
    policy = JsonPolicy()
    a = policy.canonical(DvmResult('{"x": [1, 2], "y": {"b": "c", "a": 0.1}}', ()))
    b = policy.canonical(DvmResult('{"y":{"a":1e-1,"b":"\\u0063"},"x":[1,2]}', ()))
    assert a.digest() == b.digest()
    assert policy.canonical(DvmResult("1", ())).digest() != policy.canonical(DvmResult("1.0", ())).digest()


def test_exact_policy_is_sensitive_to_every_byte() -> None:
    digests = {
        ExactPolicy().canonical(DvmResult(c, t)).digest()
        for c, t in [("a", ()), ("a ", ()), ("a", (("x", "1"),)), ("a", (("x", "1", ""),))]
    }
    assert len(digests) == 4


@pytest.mark.parametrize(
    ("spec", "name"),
    [("exact", "exact"), ("json", "json"), ("tag:sha256", "tag:sha256"), ("tag:x.y-z_1:2", "tag:x.y-z_1:2")],
)
def test_parse_policy(spec: str, name: str) -> None:
    assert parse_policy(spec).name == name


@pytest.mark.parametrize(
    "spec", ["", "EXACT", "exact ", "tag:", "tag", "tag:a b", "tag:" + "x" * 65, "tag:é", "hash"]
)
def test_parse_policy_refuses(spec: str) -> None:
    with pytest.raises(ValueError, match="policy"):
        parse_policy(spec)


# ----------------------------------------------------------------------------------------------------
# The payload's canonical JSON

payloads = st.builds(
    ResultPayload,
    st.text(max_size=50),
    st.lists(st.lists(st.text(max_size=10), min_size=1, max_size=4).map(tuple), max_size=5).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(payloads)
def test_payload_round_trips(payload: ResultPayload) -> None:
    text = payload.to_json()
    assert ResultPayload.from_json(text) == payload
    assert ResultPayload.from_json(text.encode()).digest() == payload.digest()
    assert json.loads(text) == {"content": payload.content, "tags": [list(t) for t in payload.tags]}
    assert list(json.loads(text)) == ["content", "tags"]


def test_payload_encoding_is_fixed() -> None:
    payload = ResultPayload("é\n", (("amount", "1"),))
    assert payload.to_json() == '{"content":"é\\n","tags":[["amount","1"]]}'
    assert payload.digest() == hashlib.sha256('{"content":"é\\n","tags":[["amount","1"]]}'.encode()).digest()
    assert ResultPayload("a", [["x", "y"]]).tags == (("x", "y"),)  # lists are normalized to tuples


BAD_PAYLOADS: list[tuple[str, Any, str]] = [
    ("not json", "{", "not valid JSON"),
    ("array", "[]", "JSON object"),
    ("missing tags", '{"content":""}', "exactly the fields"),
    ("extra field", '{"content":"","tags":[],"x":1}', "exactly the fields"),
    ("duplicate content", '{"content":"","content":"","tags":[]}', "duplicate"),
    ("content number", '{"content":1,"tags":[]}', "content"),
    ("tags object", '{"content":"","tags":{}}', "tags"),
    ("empty tag", '{"content":"","tags":[[]]}', "non-empty"),
    ("tag number", '{"content":"","tags":[["a",1]]}', "only strings"),
    ("too deep", '{"content":"","tags":[[["a"]]]}', "nested deeper"),
    ("lone surrogate", '{"content":"\\udc00","tags":[]}', "surrogate"),
    ("oversize", '{"content":"' + "x" * 70000 + '","tags":[]}', "limit"),
    ("not utf-8", b'{"content":"\xc3"}', "UTF-8"),
]


@pytest.mark.parametrize(("text", "message"), [b[1:] for b in BAD_PAYLOADS], ids=[b[0] for b in BAD_PAYLOADS])
def test_payload_from_json_refuses(text: str | bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResultPayload.from_json(text)


def test_payload_from_json_honours_max_bytes() -> None:
    text = ResultPayload("x" * 100, ()).to_json()
    assert ResultPayload.from_json(text, max_bytes=len(text)).content == "x" * 100
    with pytest.raises(ValueError, match="limit"):
        ResultPayload.from_json(text, max_bytes=len(text) - 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_payload_from_json_raises_only_value_error(data: bytes | str) -> None:
    with pytest.raises(ValueError):
        ResultPayload.from_json(data)


@settings(max_examples=300, deadline=None)
@given(
    content=st.text(max_size=100),
    tags=st.lists(st.lists(st.text(max_size=8), min_size=1, max_size=3).map(tuple), max_size=4).map(tuple),
    spec=st.sampled_from(["exact", "json", "tag:sha256", "tag:amount"]),
)
def test_policies_raise_only_value_error(content: str, tags: tuple[tuple[str, ...], ...], spec: str) -> None:
    try:
        payload = parse_policy(spec).canonical(DvmResult(content, tags))
    except ValueError:
        return
    assert ResultPayload.from_json(payload.to_json()) == payload
