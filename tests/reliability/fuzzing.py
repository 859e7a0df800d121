"""What the decoder fuzzing stands on: valid examples of every input (real FROST keys, a real request and
result, a stored job state, the example federation's config files, key files), strategies for JSON and TOML
values, and edits that turn a valid document into a nearly valid one at any depth.

Volume: ``FUZZ_EXAMPLES`` (environment) is the number of generated cases for all fuzz tests together, split
over them by ``WEIGHTS`` (cheap decoders get more; key files and signed envelopes cost milliseconds); without it,
``CI_EXAMPLES``. The cases actually run are counted and printed in the terminal summary.

Nothing here is random at import: keys and nonces come from a seeded generator, so a failing case replays.
"""

from __future__ import annotations

import functools
import json
import os
import random
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nostr_sdk import Keys

from consensus import frost
from consensus.effects import LocalResult, RequestSeen
from consensus.federation import Federation
from consensus.jsontext import dumps_compact
from consensus.messages import Announce, Done, GiveUp, Share, SignRequest, Target, encode
from consensus.nip90 import DvmResult, UnsignedEvent, parse_job_request
from consensus.policies import ResultPayload
from consensus.quorum import Member, step
from sidecar.keyfiles import encode_identity, encode_keyset, encode_share
from sidecar.peers.envelope import PEER_MESSAGE_KIND, event_id

CI_EXAMPLES = 3000
TOTAL = int(os.environ.get("FUZZ_EXAMPLES") or CI_EXAMPLES)
WEIGHTS: dict[str, float] = {
    "message_bytes": 8, "message_edits": 10, "message_byte_flips": 8,
    "envelope_text": 6, "envelope_edits": 6, "envelope_signed": 3,
    "event_text": 5, "event_edits": 8, "job_request": 8, "dvm_response": 6,
    "payload": 8, "job_state": 5,
    "config_text": 3, "config_edits": 4, "config_env": 4, "federation_text": 3, "federation_edits": 4,
    "keyfile_bytes": 2, "keyset_edits": 3, "share_edits": 3, "identity_edits": 3,
}
RAN: Counter[str] = Counter()


def fuzz(name: str, *strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``@given(*strategies)`` with this test's share of ``TOTAL`` examples, each one counted under ``name``;
    no deadline (a loaded CI machine)."""
    examples = max(10, round(TOTAL * WEIGHTS[name] / sum(WEIGHTS.values())))

    def apply(test: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(test)
        def counted(*args: Any, **kwargs: Any) -> None:
            RAN[name] += 1
            test(*args, **kwargs)

        return settings(  # type: ignore[no-any-return]
            max_examples=examples, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        )(given(*strategies)(counted))

    return apply


@pytest.fixture(scope="module", autouse=True)
def fuzz_report(request: pytest.FixtureRequest) -> Iterator[None]:
    """Import into a test module: after it, the cases run so far (all modules) in the terminal summary."""
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None and RAN:
        with capture.global_and_fixture_disabled():  # shown even when output is captured
            reporter.write_line(f"\nfuzzed decoders: {sum(RAN.values())} generated cases so far (budget {TOTAL}): "
                                + ", ".join(f"{name} {count}" for name, count in sorted(RAN.items())))


# ---------------------------------------------------------------------------------------------- material

SUITE = frost.SECP256K1_TR
NOW = 1_750_000_000
_RNG = random.Random("fuzz decoders")
SHARES, PUBLIC = frost.trusted_dealer_keygen(SUITE, 2, 3, rng=_RNG.randbytes)
KEY_PACKAGES = {m: frost.vss_verify(SUITE, s) for m, s in SHARES.items()}
FEDERATION = Federation(PUBLIC)
JOB = "cd" * 32
PAYLOAD = ResultPayload('{"answer":"é"}', (("amount", "1000"), ("alt", "x")))
_NONCES = {m: frost.commit(SUITE, KEY_PACKAGES[m], _RNG.randbytes) for m in (1, 2, 3)}
COMMITMENTS = tuple(_NONCES[m][1] for m in (1, 2, 3))
SIGNATURE_SHARE = frost.sign(SUITE, bytes(32), COMMITMENTS, _NONCES[1][0], KEY_PACKAGES[1])
MESSAGES = [
    Announce(JOB, PAYLOAD.digest(), PAYLOAD, COMMITMENTS[0]),
    Announce(JOB, b"\x00" * 31 + b"\x01", None, COMMITMENTS[1]),
    GiveUp(JOB, COMMITMENTS[2]),
    SignRequest(JOB, 1, Target.RESULT, PAYLOAD.digest(), bytes(32), COMMITMENTS),
    Share(JOB, 0, SIGNATURE_SHARE, COMMITMENTS[0]),
    Done(JOB, Target.RESULT, PAYLOAD.digest(), bytes(32), bytes(range(64)), (1, 2)),
]
ENCODED = [encode(m) for m in MESSAGES]

IDENTITIES = {m: Keys.parse(f"{m:064x}") for m in (1, 2, 3)}
DIRECTORY = {m: k.public_key().to_hex() for m, k in IDENTITIES.items()}
CUSTOMER = Keys.parse("77" * 32)
REQUEST = UnsignedEvent(
    CUSTOMER.public_key().to_hex(), NOW, 5050,
    (("i", "hello", "text"), ("param", "lang", "en"), ("bid", "1000"), ("output", "text/plain"),
     ("relays", "wss://a", "wss://b"), ("p", FEDERATION.pubkey)), "",
).with_signature(bytes(64))
RESULT = UnsignedEvent(
    "ab" * 32, NOW, 6050, (("request", REQUEST.to_json()), ("e", REQUEST.id), ("p", REQUEST.pubkey),
                           ("i", "hello", "text"), ("amount", "5")), "an answer",
).with_signature(bytes(64))


def _stored_state() -> str:
    """A job state as the store holds it: request seen, own result announced (commitments in it)."""
    member = Member(FEDERATION, KEY_PACKAGES[1], rng=_RNG.randbytes)
    state, _ = step(member, None, RequestSeen(parse_job_request(REQUEST)), NOW)
    state, _ = step(member, state, LocalResult(REQUEST.id, DvmResult("an answer", (("amount", "5"),))), NOW + 1)
    return state.to_json()


STORED_STATE = _stored_state()

# ---------------------------------------------------------------------------------------------- strategies

HEX = "0123456789abcdef"
NAMES = sorted({"type", "job", "digest", "payload", "commitment", "session", "target", "event_id", "commitments",
                "share", "next_commitment", "signature", "signers", "content", "tags", "id", "pubkey", "kind",
                "created_at", "sig", "format", "version", "suite", "identifier", "npub", "members", "threshold"})
SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=12) | st.sampled_from(["", "result", "error", "no_quorum", "announce", "share", "p", "i",
                                               "e", "batch", "part", "status", "dvm-sidecar-share", "ncryptsec1"])
)
HEXISH = (
    st.text(HEX, max_size=140) | st.text(HEX.upper(), min_size=64, max_size=66)
    | st.builds(lambda n: n.to_bytes(32, "big").hex(), st.integers(0, 2**256 - 1))
    | st.sampled_from([c.hex() for c in COMMITMENTS] + [SIGNATURE_SHARE.hex(), "02" + "ff" * 32, "00" * 33])
)
JSON_VALUES = st.recursive(
    SCALARS | HEXISH,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
TOML_VALUES = st.recursive(
    st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=20) | HEXISH,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def edit(value: Any, data: st.DataObject, values: st.SearchStrategy[Any] = JSON_VALUES) -> Any:
    """``value`` (a JSON-like document) with one random edit somewhere: a field or element replaced, removed,
    added or duplicated, at any depth."""
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)), label="key")
        how = data.draw(st.sampled_from(["descend", "descend", "replace", "delete", "add"]), label="edit")
        changed = dict(value)
        if how == "descend":
            changed[key] = edit(value[key], data, values)
        elif how == "replace":
            changed[key] = data.draw(values, label="value")
        elif how == "delete":
            del changed[key]
        else:
            changed[data.draw(st.sampled_from(NAMES) | st.text(max_size=8), label="new key")] = data.draw(values)
        return changed
    if isinstance(value, list) and value:
        at = data.draw(st.integers(0, len(value) - 1), label="index")
        how = data.draw(st.sampled_from(["descend", "descend", "replace", "delete", "repeat", "append"]))
        changed = list(value)
        if how == "descend":
            changed[at] = edit(value[at], data, values)
        elif how == "replace":
            changed[at] = data.draw(values, label="value")
        elif how == "delete":
            del changed[at]
        elif how == "repeat":
            changed.insert(at, value[at])
        else:
            changed.append(data.draw(values, label="value"))
        return changed
    return data.draw(values, label="value")


def edits(value: Any, data: st.DataObject, values: st.SearchStrategy[Any] = JSON_VALUES) -> Any:
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        value = edit(value, data, values)
    return value


def flip_bytes(raw: bytes, data: st.DataObject) -> bytes:
    """``raw`` with 1-4 bytes replaced, inserted or deleted."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4), label="byte edits")):
        at = data.draw(st.integers(0, max(0, len(out) - 1)), label="at")
        how = data.draw(st.sampled_from(["set", "insert", "delete"]), label="how")
        if how == "set" and out:
            out[at] = data.draw(st.integers(0, 255))
        elif how == "insert":
            out.insert(at, data.draw(st.integers(0, 255)))
        elif out:
            del out[at]
    return bytes(out)


def as_json(value: Any, data: st.DataObject) -> str | bytes:
    """A document as the wire would carry it: JSON text, sometimes as bytes (lone surrogates as invalid UTF-8)."""
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans(), label="ascii"))
    if data.draw(st.booleans(), label="bytes"):
        return text.encode("utf-8", "surrogatepass")
    return text



def sign_envelope(keys: Keys, created_at: int, tags: list[list[str]], content: str) -> str:
    """A peer envelope's JSON with any tags and content, id and signature made with ``keys``."""
    digest = event_id(keys.public_key().to_hex(), created_at, tags, content)
    return dumps_compact({"id": digest.hex(), "pubkey": keys.public_key().to_hex(), "created_at": created_at,
                          "kind": PEER_MESSAGE_KIND, "tags": tags, "content": content,
                          "sig": keys.sign_schnorr(digest)})


# ---------------------------------------------------------------------------------------------- files

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "federation-example" / "operator-1"
CONFIG_TEXT = (EXAMPLE / "sidecar.toml").read_text()
FEDERATION_TEXT = (EXAMPLE / "federation.toml").read_text()
CONFIG_DOC = tomllib.loads(CONFIG_TEXT)
FEDERATION_DOC = tomllib.loads(FEDERATION_TEXT)
PASSPHRASE = "fuzz"
KEYSET_DOC = json.loads(encode_keyset(PUBLIC))
SHARE_DOC = json.loads(encode_share(SHARES[1], PUBLIC, PASSPHRASE, kdf_log_n=1))
IDENTITY_DOC = json.loads(encode_identity(IDENTITIES[1], PASSPHRASE, kdf_log_n=1))


def toml_value(value: Any) -> str:
    """A TOML literal for ``value`` (inline arrays and tables; strings as basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        return repr(value) if abs(value) != float("inf") else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return '""'


def toml_doc(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in doc.items())


def text_edits(text: str, data: st.DataObject) -> str:
    """Lines of a TOML file deleted, repeated, swapped for random TOML, or given a random value."""
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 3), label="line edits")):
        at = data.draw(st.integers(0, len(lines) - 1), label="line")
        how = data.draw(st.sampled_from(["value", "value", "delete", "repeat", "random"]), label="how")
        if how == "value" and "=" in lines[at]:
            lines[at] = lines[at].split("=", 1)[0] + "= " + toml_value(data.draw(TOML_VALUES))
        elif how == "delete":
            del lines[at]
        elif how == "repeat":
            lines.insert(at, lines[at])
        else:
            lines.insert(at, data.draw(st.text(max_size=40), label="line"))
        if not lines:
            break
    return "\n".join(lines)
