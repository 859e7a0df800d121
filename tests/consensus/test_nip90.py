"""Events and the NIP-90 job flow, checked against nostr-sdk as an independent implementation of NIP-01."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nostr_sdk import Event, EventBuilder, Keys, Kind, PublicKey, Tag, Timestamp

from consensus.nip90 import (
    FEEDBACK_KIND,
    HANDLER_INFO_KIND,
    DvmFeedback,
    DvmResult,
    JobInput,
    NostrEvent,
    UnsignedEvent,
    build_feedback_event,
    build_handler_info,
    build_result_event,
    is_request_kind,
    parse_dvm_response,
    parse_job_request,
    reissue_request,
    result_kind,
)
from consensus.policies import ResultPayload

CUSTOMER = Keys.generate()
DVM = Keys.generate()
GROUP = "aa" * 32
REQUEST_ID = "11" * 32


def sdk_signed(kind: int, content: str, tags: list[list[str]], keys: Keys = CUSTOMER) -> NostrEvent:
    event = EventBuilder(Kind(kind), content).tags([Tag.parse(t) for t in tags]).finalize(keys)
    return NostrEvent.from_json(event.as_json())


def sign(unsigned: UnsignedEvent, keys: Keys) -> Event:
    """Sign with nostr-sdk's key over OUR id, then let nostr-sdk check both id and signature."""
    signed = unsigned.with_signature(bytes.fromhex(keys.sign_schnorr(unsigned.event_id())))
    return Event.from_json(signed.to_json())


def request(tags: list[list[str]], content: str = "", kind: int = 5050) -> NostrEvent:
    return sdk_signed(kind, content, tags)


# ----------------------------------------------------------------------------------------------------
# Event ids and JSON, against nostr-sdk

tag_names = st.sampled_from(["e", "p", "i", "t", "param", "request", "amount", "x"]) | st.text(
    min_size=1, max_size=5
)
tag_lists = st.lists(
    st.lists(st.text(max_size=20), max_size=4).flatmap(
        lambda rest: tag_names.map(lambda name: [name, *rest])
    ),
    max_size=6,
)
escapes = st.text(
    alphabet=st.sampled_from(list('"\\/\n\r\t\b\f\x00\x01\x1f\x7f\u2028\u2029é€😀 a')), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(
    content=st.text(max_size=80) | escapes,
    tags=tag_lists,
    kind=st.integers(0, 65535),
    created_at=st.integers(0, 2**40),
)
def test_event_id_equals_nostr_sdk(content: str, tags: list[list[str]], kind: int, created_at: int) -> None:
    author = CUSTOMER.public_key()
    ours = UnsignedEvent(author.to_hex(), created_at, kind, tuple(map(tuple, tags)), content)
    theirs = (
        EventBuilder(Kind(kind), content)
        .tags([Tag.parse(t) for t in tags])
        .custom_created_at(Timestamp.from_secs(created_at))
        .finalize_unsigned(author)
        .ensure_id()
    )
    assert ours.event_id().hex() == theirs.id().to_hex()
    signed = sign(ours, CUSTOMER)
    assert signed.verify()
    assert signed.as_json() == ours.with_signature(bytes.fromhex(signed.signature())).to_json()


@settings(max_examples=100, deadline=None)
@given(content=st.text(max_size=200) | escapes, tags=tag_lists)
def test_json_round_trips_with_nostr_sdk(content: str, tags: list[list[str]]) -> None:
    sdk = EventBuilder(Kind(1), content).tags([Tag.parse(t) for t in tags]).finalize(CUSTOMER)
    ours = NostrEvent.from_json(sdk.as_json())
    assert ours.to_json() == sdk.as_json()
    assert NostrEvent.from_json(ours.to_json().encode()) == ours
    assert ours.unsigned().event_id().hex() == sdk.id().to_hex()


def good_event_dict() -> dict[str, Any]:
    return request([["i", "hello", "text"]], "hi").to_dict()


def mutated(**changes: Any) -> str:
    data = good_event_dict()
    data.update(changes)
    return json.dumps(data)


def without(field: str) -> str:
    data = good_event_dict()
    del data[field]
    return json.dumps(data)


BAD_EVENTS: list[tuple[str, str | bytes, str]] = [
    ("not json", "{", "not valid JSON"),
    ("array", "[1,2]", "must be a JSON object"),
    ("missing sig", without("sig"), "lacks field"),
    ("unknown field", mutated(extra=1), "unknown field"),
    ("duplicate key", json.dumps(good_event_dict())[:-1] + ',"kind":1}', "duplicate"),
    ("wrong id", mutated(id="00" * 32), "id does not match"),
    ("uppercase id", mutated(id=good_event_dict()["id"].upper()), "lowercase hex"),
    ("short pubkey", mutated(pubkey="ab" * 31), "pubkey"),
    ("short sig", mutated(sig="ab" * 63), "sig"),
    ("float created_at", mutated(created_at=1.5), "created_at"),
    ("negative created_at", mutated(created_at=-1), "created_at"),
    ("bool kind", mutated(kind=True), "kind"),
    ("kind too large", mutated(kind=70000), "kind"),
    ("string kind", mutated(kind="5050"), "kind"),
    ("tags not array", mutated(tags={}), "tags"),
    ("empty tag", mutated(tags=[[]]), "non-empty"),
    ("number in tag", mutated(tags=[["i", 1]]), "only strings"),
    ("content number", mutated(content=5), "content"),
    ("nested too deep", mutated(tags=[[["x"]]]), "nested deeper"),
    ("lone surrogate", mutated(content="\ud800"), "surrogate"),
    ("not utf-8", b'{"content":"\xff"}', "not UTF-8"),
    ("NaN", '{"kind":NaN}', "NaN"),
    ("oversize", mutated(content="x" * 70000), "limit"),
    ("very deep", "[" * 30000 + "]" * 30000, "nested deeper"),
    ("unterminated deep", '["' + "[" * 50000, "not valid JSON"),
]


@pytest.mark.parametrize(
    ("text", "message"), [(t, m) for _, t, m in BAD_EVENTS], ids=[n for n, _, _ in BAD_EVENTS]
)
def test_from_json_refuses(text: str | bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NostrEvent.from_json(text)


def test_from_json_honours_max_bytes() -> None:
    text = request([], "x" * 1000).to_json()
    assert NostrEvent.from_json(text, max_bytes=len(text)).content == "x" * 1000
    with pytest.raises(ValueError, match="limit"):
        NostrEvent.from_json(text, max_bytes=len(text) - 1)
    with pytest.raises(ValueError, match="limit"):
        NostrEvent.from_json(text.encode(), max_bytes=len(text) - 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_from_json_raises_only_value_error_on_noise(data: bytes | str) -> None:
    with pytest.raises(ValueError):
        NostrEvent.from_json(data)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, 10_000), replacement=st.text(max_size=3))
def test_from_json_on_mutated_event_gives_the_event_or_value_error(position: int, replacement: str) -> None:
    text = request([["i", "hello", "text"], ["param", "a", "b"]], "hi").to_json()
    position %= len(text)
    changed = text[:position] + replacement + text[position + 1 :]
    try:
        parsed = NostrEvent.from_json(changed)
    except ValueError:
        return
    assert parsed.unsigned().event_id().hex() == parsed.id  # whatever parses is self-consistent


# ----------------------------------------------------------------------------------------------------
# Job requests


def test_parse_job_request_reads_every_field() -> None:
    dvm = DVM.public_key().to_hex()
    event = request(
        [
            ["i", "hello", "text"],
            ["i", "b" * 64, "event", "wss://r", "source"],
            ["param", "model", "m1"],
            ["param", "model", "m2"],
            ["output", "text/plain"],
            ["bid", "21000"],
            ["relays", "wss://a", "wss://b"],
            ["p", GROUP],
            ["p", dvm],
            ["t", "x"],
        ]
    )
    job = parse_job_request(event)
    assert job.kind == 5050 and job.id == event.id and job.customer == event.pubkey
    assert job.inputs == (JobInput("hello", "text"), JobInput("b" * 64, "event", "wss://r", "source"))
    assert job.params == (("model", "m1"), ("model", "m2"))
    assert (job.output, job.bid, job.relays) == ("text/plain", 21000, ("wss://a", "wss://b"))
    assert job.service_providers == (GROUP, dvm) and job.addressee == dvm
    assert not job.encrypted


def test_parse_job_request_minimal_and_encrypted() -> None:
    job = parse_job_request(request([]))
    assert (job.inputs, job.params, job.output, job.bid, job.relays, job.addressee) == (
        (),
        (),
        None,
        None,
        (),
        None,
    )
    assert parse_job_request(request([["p", GROUP], ["encrypted"]], "ciphertext")).encrypted


BAD_REQUESTS: list[tuple[str, int, list[list[str]], str]] = [
    ("text note", 1, [], "not a NIP-90 job request kind"),
    ("result kind", 6050, [], "not a NIP-90 job request kind"),
    ("input without type", 5050, [["i", "x"]], "i tag 0"),
    ("unknown input type", 5050, [["i", "x", "blob"]], "input type"),
    ("input too long", 5050, [["i", "x", "text", "r", "m", "extra"]], "i tag 0"),
    ("event input not hex", 5050, [["i", "nothex", "event"]], "64-hex"),
    ("param without value", 5050, [["param", "k"]], "param tag 0"),
    ("param empty key", 5050, [["param", "", "v"]], "non-empty key"),
    ("param extra value", 5050, [["param", "k", "v", "w"]], "param tag 0"),
    ("bid not a number", 5050, [["bid", "ten"]], "bid"),
    ("bid negative", 5050, [["bid", "-1"]], "bid"),
    ("bid empty", 5050, [["bid"]], "bid"),
    ("bid huge", 5050, [["bid", "9" * 30]], "bid"),
    ("two bids", 5050, [["bid", "1"], ["bid", "2"]], "2 'bid' tags"),
    ("two outputs", 5050, [["output", "a"], ["output", "b"]], "2 'output' tags"),
    ("two relays tags", 5050, [["relays", "a"], ["relays", "b"]], "2 'relays' tags"),
    ("output without mime", 5050, [["output"]], "output tag"),
    ("p not hex", 5050, [["p", "npub1xyz"]], "p tag 0"),
    ("p empty", 5050, [["p"]], "p tag 0"),
]


@pytest.mark.parametrize(
    ("kind", "tags", "message"), [r[1:] for r in BAD_REQUESTS], ids=[r[0] for r in BAD_REQUESTS]
)
def test_parse_job_request_refuses(kind: int, tags: list[list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_job_request(request(tags, kind=kind))


@settings(max_examples=200, deadline=None)
@given(
    tags=st.lists(
        st.lists(
            st.sampled_from(
                [
                    "i",
                    "param",
                    "bid",
                    "p",
                    "output",
                    "relays",
                    "text",
                    "event",
                    "1",
                    "",
                    "a" * 64,
                    "-5",
                    "encrypted",
                ]
            ),
            min_size=1,
            max_size=5,
        ),
        max_size=6,
    ),
    kind=st.integers(4990, 6010),
)
def test_parse_job_request_raises_only_value_error(tags: list[list[str]], kind: int) -> None:
    event = UnsignedEvent(
        CUSTOMER.public_key().to_hex(), 1, kind, tuple(map(tuple, tags)), ""
    ).with_signature(bytes(64))
    try:
        job = parse_job_request(event)
    except ValueError:
        return
    assert is_request_kind(job.kind)


def test_kind_helpers() -> None:
    assert result_kind(5000) == 6000 and result_kind(5999) == 6999
    assert is_request_kind(5050) and not is_request_kind(4999) and not is_request_kind(6000)
    with pytest.raises(ValueError):
        result_kind(6050)


# ----------------------------------------------------------------------------------------------------
# DVM responses


def test_parse_dvm_response_strips_linking_tags() -> None:
    result = sdk_signed(
        6050,
        "answer",
        [
            ["request", "{}"],
            ["e", REQUEST_ID, "wss://r"],
            ["p", GROUP],
            ["i", "x", "text"],
            ["relays", "wss://a"],
            ["amount", "1000"],
            ["alt", "a result"],
        ],
        DVM,
    )
    parsed = parse_dvm_response(result, REQUEST_ID, request_kind=5050)
    assert parsed == DvmResult("answer", (("amount", "1000"), ("alt", "a result")))


def test_parse_dvm_response_reads_feedback() -> None:
    feedback = sdk_signed(FEEDBACK_KIND, "", [["status", "error", "out of memory"], ["e", REQUEST_ID]], DVM)
    assert parse_dvm_response(feedback, REQUEST_ID) == DvmFeedback("error", "out of memory")
    bare = sdk_signed(FEEDBACK_KIND, "", [["e", REQUEST_ID], ["status", "processing"]], DVM)
    assert parse_dvm_response(bare, REQUEST_ID) == DvmFeedback("processing", "")


BAD_RESPONSES: list[tuple[str, int, list[list[str]], int | None, str]] = [
    ("no e tag", 6050, [["p", GROUP]], None, "does not reference"),
    ("other request", 6050, [["e", "22" * 32]], None, "does not reference"),
    ("text note", 1, [["e", REQUEST_ID]], None, "neither a job result"),
    ("request kind", 5050, [["e", REQUEST_ID]], None, "neither a job result"),
    ("wrong result kind", 6001, [["e", REQUEST_ID]], 5050, "does not answer"),
    ("feedback without status", 7000, [["e", REQUEST_ID]], None, "exactly one"),
    (
        "two statuses",
        7000,
        [["e", REQUEST_ID], ["status", "error"], ["status", "success"]],
        None,
        "exactly one",
    ),
    ("unknown status", 7000, [["e", REQUEST_ID], ["status", "thinking"]], None, "not one of"),
]


@pytest.mark.parametrize(
    ("kind", "tags", "request_kind", "message"),
    [r[1:] for r in BAD_RESPONSES],
    ids=[r[0] for r in BAD_RESPONSES],
)
def test_parse_dvm_response_refuses(
    kind: int, tags: list[list[str]], request_kind: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dvm_response(sdk_signed(kind, "", tags, DVM), REQUEST_ID, request_kind=request_kind)


# ----------------------------------------------------------------------------------------------------
# What the group publishes


def test_result_event_links_the_request_and_verifies() -> None:
    job = parse_job_request(request([["i", "hello", "text", "", "m"], ["param", "a", "b"], ["p", GROUP]]))
    group = DVM  # any key stands in for the group key here
    payload = ResultPayload("answer", (("amount", "5"),))
    unsigned = build_result_event(job, payload, group.public_key().to_hex(), created_at=1_700_000_000)
    assert unsigned.kind == 6050 and unsigned.content == "answer"
    assert unsigned.tags == (
        ("request", job.event.to_json()),
        ("e", job.id),
        ("p", job.customer),
        ("i", "hello", "text", "", "m"),
        ("amount", "5"),
    )
    assert unsigned == build_result_event(job, payload, group.public_key().to_hex(), created_at=1_700_000_000)
    assert sign(unsigned, group).verify()
    # what a member parses back from the published result is the payload it agreed on
    published = NostrEvent.from_json(sign(unsigned, group).as_json())
    assert parse_dvm_response(published, job.id, request_kind=5050) == DvmResult(
        payload.content, payload.tags
    )


def test_result_event_of_encrypted_request_omits_inputs() -> None:
    job = parse_job_request(request([["p", GROUP], ["encrypted"]], "ciphertext"))
    unsigned = build_result_event(job, ResultPayload("x", ()), GROUP, created_at=1)
    assert [tag[0] for tag in unsigned.tags] == ["request", "e", "p"]


def test_feedback_event() -> None:
    job = parse_job_request(request([["p", GROUP]]))
    unsigned = build_feedback_event(job, "error", "no quorum", GROUP, created_at=7)
    assert unsigned.kind == FEEDBACK_KIND and unsigned.content == ""
    assert unsigned.tags == (("status", "error", "no quorum"), ("e", job.id), ("p", job.customer))
    assert build_feedback_event(job, "processing", "", GROUP, created_at=7).tags[0] == (
        "status",
        "processing",
    )
    assert sign(
        build_feedback_event(job, "partial", "", DVM.public_key().to_hex(), created_at=7, content="x"), DVM
    ).verify()
    with pytest.raises(ValueError, match="not one of"):
        build_feedback_event(job, "done", "", GROUP, created_at=7)


def test_handler_info() -> None:
    unsigned = build_handler_info(
        GROUP, [5050, 5001, 5050], {"name": "Quorum", "about": "é"}, "dvm-1", created_at=3
    )
    assert unsigned.kind == HANDLER_INFO_KIND
    assert unsigned.tags == (("d", "dvm-1"), ("k", "5001"), ("k", "5050"))
    assert unsigned.content == '{"about":"é","name":"Quorum"}'
    for kinds, metadata, d, message in [
        ([1], {}, "d", "not a NIP-90"),
        ([], {}, "d", "at least one"),
        ([5050], {}, "", "must not be empty"),
        ([5050], {"x": object()}, "d", "not JSON-serializable"),
    ]:
        with pytest.raises(ValueError, match=message):
            build_handler_info(GROUP, kinds, metadata, d, created_at=3)


def test_reissue_request_addresses_the_dvm_last() -> None:
    dvm = DVM.public_key().to_hex()
    operator = Keys.generate()
    job = parse_job_request(
        request(
            [
                ["i", "hello", "text"],
                ["p", GROUP],
                ["relays", "wss://public"],
                ["param", "a", "b"],
                ["p", "bb" * 32],
            ],
            "content",
        )
    )
    unsigned = reissue_request(job, author=operator.public_key().to_hex(), dvm_pubkey=dvm, created_at=9)
    assert (unsigned.kind, unsigned.content, unsigned.created_at) == (5050, "content", 9)
    assert unsigned.tags == (("i", "hello", "text"), ("param", "a", "b"), ("p", dvm))
    reissued = parse_job_request(NostrEvent.from_json(sign(unsigned, operator).as_json()))
    assert reissued.addressee == dvm and reissued.inputs == job.inputs and reissued.relays == ()
    with pytest.raises(ValueError, match="encrypted"):
        reissue_request(
            parse_job_request(request([["encrypted"]])), author=GROUP, dvm_pubkey=dvm, created_at=9
        )
    with pytest.raises(ValueError, match="dvm_pubkey"):
        reissue_request(job, author=GROUP, dvm_pubkey="npub", created_at=9)


def test_unsigned_event_validates_fields() -> None:
    for kwargs, message in [
        ({"pubkey": "x"}, "pubkey"),
        ({"created_at": -1}, "created_at"),
        ({"kind": 65536}, "kind"),
        ({"tags": [["a", 1]]}, "only strings"),
        ({"content": None}, "content"),
    ]:
        fields: dict[str, Any] = {"pubkey": GROUP, "created_at": 1, "kind": 1, "tags": (), "content": ""}
        fields.update(kwargs)
        with pytest.raises(ValueError, match=message):
            UnsignedEvent(**fields)
    with pytest.raises(ValueError, match="64 bytes"):
        UnsignedEvent(GROUP, 1, 1, (), "").with_signature(b"short")
    with pytest.raises(ValueError, match="surrogate"):
        UnsignedEvent(GROUP, 1, 1, (), "\ud800").event_id()
    assert PublicKey.parse(GROUP).to_hex() == GROUP
