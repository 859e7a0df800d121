"""sidecar.config: the federation file and sidecar.toml round trip, take SIDECAR_* overrides, and refuse every
mistake with one line naming the file, the field and the fix; random input gives only ConfigError."""

from __future__ import annotations

import dataclasses
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nostr_sdk import Keys, PublicKey

from consensus.federation import Timeouts
from sidecar.config import (
    ConfigError,
    FederationFile,
    SidecarConfig,
    load_config,
    load_federation,
    parse_federation,
)
from tests.sidecar.fedkit import dump_toml, make_federation

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "federation-example"
DVM = Keys.generate().public_key()

# ---------------------------------------------------------------------------------------------- federation file


def test_federation_file_round_trips_through_toml(tmp_path: Path) -> None:
    dealt = make_federation(3, 5, name='quotes " and \\ and \x7f and ünïcode', kinds=(5050, 5100),
                            digest_policy="tag:sha256", relays=("wss://a.example", "ws://127.0.0.1:7000/x"),
                            timeouts=Timeouts(dvm=1.5, deadline=90, coordinator=7, session=0.25))
    fed = dealt.file
    path = tmp_path / "federation.toml"
    path.write_text(fed.to_toml())
    assert load_federation(path) == fed
    assert parse_federation(fed.to_toml()).to_toml() == fed.to_toml()
    federation = fed.federation()
    assert (federation.threshold, federation.n, federation.pubkey) == (3, 5, fed.group_pubkey)
    assert federation.policy.name == "tag:sha256" and federation.timeouts.dvm == 1.5
    assert fed.identities() == {i: k.public_key().to_hex() for i, k in dealt.identities.items()}
    assert PublicKey.parse(fed.npub).to_hex() == fed.group_pubkey
    assert fed.public_key_package().xonly_public_key.hex() == fed.group_pubkey


def test_a_member_without_name_or_timeouts_gets_the_defaults(tmp_path: Path) -> None:
    doc = tomllib.loads(make_federation().file.to_toml())
    del doc["timeouts"], doc["name"], doc["digest_policy"], doc["members"][0]["name"]
    path = tmp_path / "f.toml"
    path.write_text(dump_toml(doc))
    fed = load_federation(path)
    assert (fed.timeouts, fed.name, fed.digest_policy, fed.members[0].name) == (Timeouts(), "", "exact", "")


def test_the_example_federation_loads_and_every_operator_fits_it() -> None:
    copies = [load_federation(p / "federation.toml") for p in sorted(EXAMPLE.glob("operator-*"))]
    assert len(copies) == 3 and copies[0] == copies[1] == copies[2]
    assert (copies[0].threshold, len(copies[0].members)) == (2, 3)
    for index, operator in enumerate(sorted(EXAMPLE.glob("operator-*")), start=1):
        config = load_config(operator / "sidecar.toml", env={})
        assert config.index == index
        config.check_federation(copies[0])


Mutation = Callable[[dict[str, Any]], None]


def _set(key: str, value: Any) -> Mutation:
    return lambda doc: doc.__setitem__(key, value)


def _member(position: int, key: str, value: Any) -> Mutation:
    return lambda doc: doc["members"][position].__setitem__(key, value)


def _other_npub(doc: dict[str, Any]) -> None:
    doc["group_npub"] = make_federation().file.npub


def _timeouts(**values: Any) -> Mutation:
    return lambda doc: doc["timeouts"].update(values)


FEDERATION_MISTAKES: list[tuple[str, Mutation, str, str]] = [
    ("threshold above n", _set("threshold", 4), "threshold", "at most 3"),
    ("threshold 1", _set("threshold", 1), "threshold", "whole number in 2..65535"),
    ("threshold a string", _set("threshold", "2"), "threshold", "whole number"),
    ("npub of another key", _other_npub, "group_npub", "keys show KEYSET"),
    ("npub malformed", _set("group_npub", "npub1qqqq"), "group_npub", "copy the key again"),
    ("npub as hex", _set("group_npub", "ab" * 32), "group_npub", 'as "npub1..."'),
    ("kind not a request", _set("kinds", [4999]), "kinds", "5000..5999"),
    ("kind twice", _set("kinds", [5050, 5050]), "kinds", "each job request kind once"),
    ("no kinds", _set("kinds", []), "kinds", "kinds = [5050]"),
    ("relay over http", _set("relays", ["https://relay.example"]), "relays", "wss://host"),
    ("relay twice", _set("relays", ["wss://a.example", "wss://a.example"]), "relays", "each relay once"),
    ("unknown policy", _set("digest_policy", "fuzzy"), "digest_policy", "'exact', 'json' or 'tag:NAME'"),
    ("commitment short", lambda d: d["vss_commitment"].pop(), "vss_commitment", "exactly t"),
    ("commitment off curve", lambda d: d["vss_commitment"].__setitem__(1, "02" + "00" * 32),
     "vss_commitment[1]", "copy it again"),
    ("share not the commitment's", lambda d: d["members"][1].__setitem__(
        "verifying_share", d["members"][0]["verifying_share"]), "members.verifying_share",
     "copy the verifying shares"),
    ("index twice", _member(2, "index", 2), "members.index", "each once"),
    ("index beyond n", _member(0, "index", 4), "members[0].index", "1..3"),
    ("identity twice", lambda d: d["members"][1].__setitem__("identity_npub", d["members"][0]["identity_npub"]),
     "members.identity_npub", "its own identity key"),
    ("identity missing", lambda d: d["members"][0].pop("identity_npub"), "members[0].identity_npub", "add it"),
    ("unknown key", lambda d: d.__setitem__("treshold", d.pop("threshold")), "treshold",
     "did you mean 'threshold'"),
    ("unknown key with a newline", _set("a\nb", 1), "'a\\nb'", "known keys here"),
    ("unknown member key", _member(0, "indx", 1), "members[0].indx", "did you mean 'members[0].index'"),
    ("relays missing", lambda d: d.pop("relays"), "relays", "federation init"),
    ("no members", _set("members", []), "members", "one [[members]] table per member"),
    ("dvm after deadline", _timeouts(dvm_seconds=100), "timeouts.dvm_seconds", "make the deadline longer"),
    ("session beyond coordinator", _timeouts(session_seconds=30), "timeouts.session_seconds",
     "at least one signing session"),
    ("negative timeout", _timeouts(dvm_seconds=-1), "timeouts.dvm_seconds", "e.g. 30"),
    ("unknown timeout", _timeouts(dvm=3), "timeouts.dvm", "did you mean 'timeouts.dvm_seconds'"),
    ("timeouts not a table", _set("timeouts", 5), "timeouts", "[timeouts] section"),
    ("name not a string", _set("name", 5), "name", "in quotes"),
]


@pytest.mark.parametrize(("mutate", "field", "fix"), [m[1:] for m in FEDERATION_MISTAKES],
                         ids=[m[0] for m in FEDERATION_MISTAKES])
def test_every_federation_mistake_names_the_field_and_the_fix(tmp_path: Path, mutate: Mutation, field: str,
                                                              fix: str) -> None:
    doc = tomllib.loads(make_federation().file.to_toml())
    mutate(doc)
    path = tmp_path / "federation.toml"
    path.write_text(dump_toml(doc))
    with pytest.raises(ConfigError) as caught:
        load_federation(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert fix in message.split("; ", 1)[1], message
    assert "\n" not in message


@pytest.mark.parametrize(("content", "problem"), [
    (b"threshold = \n", "not valid TOML"),
    (b"name = \"\xff\"\n", "not UTF-8"),
    (b"x" * ((1 << 20) + 1), "larger than"),
])
def test_a_broken_file_says_what_is_wrong(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "federation.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=problem):
        load_federation(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_federation(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


# ---------------------------------------------------------------------------------------------- sidecar.toml


def _minimal() -> dict[str, Any]:
    return {
        "federation_file": "federation.toml",
        "member": {"index": 2, "share_file": "secrets/share", "identity_key_file": "/abs/identity"},
        "dvm": {"pubkey": DVM.to_bech32()},
    }


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "conf" / "sidecar.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(dump_toml(doc))
    return path


def test_a_minimal_config_gets_the_documented_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, _minimal())
    monkeypatch.chdir(tmp_path)  # relative paths follow the config file, not the working directory
    config = load_config(path, env={})
    conf = path.parent
    assert config == SidecarConfig(
        federation_file=conf / "federation.toml", index=2, share_file=conf / "secrets/share",
        identity_key_file=Path("/abs/identity"), password_file=None, redis_url=None, state_dir=conf / "state",
        dvm_pubkey=DVM.to_hex(), dvm_mode="reissue", dvm_timeout=30.0, private_relay_host="127.0.0.1",
        private_relay_port=7777, transport="nostr", accept_unaddressed=False, canary_interval=300.0,
        canary_timeout=60.0, canary_kind=5050, canary_input="dvm-sidecar canary", canary_expected=None,
        http_host="127.0.0.1", http_port=8080, log_level="INFO", job_ttl=3600.0, max_request_age=900.0,
        replay_window=120.0,
    )


def test_every_key_is_read_from_the_file(tmp_path: Path) -> None:
    doc = {
        "federation_file": "/etc/f.toml", "state_dir": "/var/state", "log_level": "debug",
        "member": {"index": 3, "share_file": "s", "identity_key_file": "i", "password_file": "p"},
        "redis": {"url": "unix:///run/redis.sock", "job_ttl_seconds": 60},
        "dvm": {"pubkey": DVM.to_hex(), "mode": "passthrough", "timeout_seconds": 12},
        "private_relay": {"host": "0.0.0.0", "port": 0},
        "peers": {"transport": "redis", "replay_window_seconds": 30},
        "public": {"accept_unaddressed": True, "max_request_age_seconds": 120},
        "canary": {"interval_seconds": 60, "timeout_seconds": 2.5, "kind": 5100, "input": "ping",
                   "expected": ""},
        "http": {"host": "::1", "port": 9090},
    }
    config = load_config(_write(tmp_path, doc), env={})
    conf = tmp_path / "conf"
    assert dataclasses.asdict(config) == {
        "federation_file": Path("/etc/f.toml"), "index": 3, "share_file": conf / "s", "identity_key_file": conf / "i",
        "password_file": conf / "p", "redis_url": "unix:///run/redis.sock", "state_dir": Path("/var/state"),
        "dvm_pubkey": DVM.to_hex(), "dvm_mode": "passthrough", "dvm_timeout": 12.0,
        "private_relay_host": "0.0.0.0", "private_relay_port": 0, "transport": "redis",
        "accept_unaddressed": True, "canary_interval": 60.0, "canary_timeout": 2.5, "canary_kind": 5100,
        "canary_input": "ping", "canary_expected": "", "http_host": "::1", "http_port": 9090,
        "log_level": "DEBUG", "job_ttl": 60.0, "max_request_age": 120.0, "replay_window": 30.0,
    }


@pytest.mark.parametrize(("name", "raw", "attr", "expected"), [
    ("SIDECAR_HTTP_PORT", "9000", "http_port", 9000),
    ("SIDECAR_PUBLIC_ACCEPT_UNADDRESSED", "true", "accept_unaddressed", True),
    ("SIDECAR_PUBLIC_ACCEPT_UNADDRESSED", "1", "accept_unaddressed", True),
    ("SIDECAR_PUBLIC_ACCEPT_UNADDRESSED", "False", "accept_unaddressed", False),
    ("SIDECAR_DVM_TIMEOUT_SECONDS", "2.5", "dvm_timeout", 2.5),
    ("SIDECAR_DVM_TIMEOUT_SECONDS", "45", "dvm_timeout", 45.0),
    ("SIDECAR_DVM_MODE", "passthrough", "dvm_mode", "passthrough"),
    ("SIDECAR_DVM_PUBKEY", "cd" * 32, "dvm_pubkey", None),  # any valid key: checked below
    ("SIDECAR_REDIS_URL", "redis://10.0.0.5:6379/1", "redis_url", "redis://10.0.0.5:6379/1"),
    ("SIDECAR_MEMBER_PASSWORD_FILE", "", "password_file", None),
    ("SIDECAR_CANARY_EXPECTED", "42", "canary_expected", "42"),
    ("SIDECAR_FEDERATION_FILE", "other.toml", "federation_file", "conf/other.toml"),
    ("SIDECAR_STATE_DIR", "/tmp/state", "state_dir", Path("/tmp/state")),
    ("SIDECAR_LOG_LEVEL", "warning", "log_level", "WARNING"),
    ("SIDECAR_PRIVATE_RELAY_PORT", "7001", "private_relay_port", 7001),
    ("SIDECAR_PEERS_TRANSPORT", "redis", "transport", "redis"),
])
def test_an_environment_variable_overrides_the_file(tmp_path: Path, name: str, raw: str, attr: str,
                                                    expected: Any) -> None:
    doc = _minimal()
    doc["member"]["password_file"] = "pw"
    doc["redis"] = {"url": "redis://redis:6379/0"}
    path = _write(tmp_path, doc)
    config = load_config(path, env={name: raw, "SIDECAR_PASSPHRASE": "not a config key", "HOME": "/"})
    if attr == "dvm_pubkey":
        expected = raw  # hex in, the same x-only hex out
    if isinstance(expected, str) and expected.startswith("conf/"):
        expected = tmp_path / expected
    assert getattr(config, attr) == expected
    redis_env = load_config(path, env={"SIDECAR_REDIS_URL": ""})
    assert redis_env.redis_url is None  # empty unsets an optional key: embedded Redis


def _config_with(section: str, key: str, value: Any) -> dict[str, Any]:
    doc = _minimal()
    if section:
        doc.setdefault(section, {})[key] = value
    else:
        doc[key] = value
    return doc


CONFIG_MISTAKES: list[tuple[str, dict[str, Any], str, str]] = [
    ("index 0", _config_with("member", "index", 0), "member.index", "1..65535"),
    ("mode misspelt", _config_with("dvm", "mode", "reisue"), "dvm.mode", "'reissue' or 'passthrough'"),
    ("timeout zero", _config_with("dvm", "timeout_seconds", 0), "dvm.timeout_seconds", "e.g. 30"),
    ("timeout inf", _config_with("dvm", "timeout_seconds", float("inf")), "dvm.timeout_seconds", "e.g. 30"),
    ("redis over http", _config_with("redis", "url", "http://redis"), "redis.url", "redis://host:port/db"),
    ("transport unknown", _config_with("peers", "transport", "udp"), "peers.transport", "'nostr' or 'redis'"),
    ("bool as string", _config_with("public", "accept_unaddressed", "yes"), "public.accept_unaddressed",
     "true or false"),
    ("port too big", _config_with("http", "port", 70000), "http.port", "0..65535"),
    ("host with space", _config_with("http", "host", "local host"), "http.host", "127.0.0.1"),
    ("canary kind", _config_with("canary", "kind", 7000), "canary.kind", "5000..5999"),
    ("canary slower than interval", _config_with("canary", "timeout_seconds", 600), "canary.timeout_seconds",
     "at most the interval"),
    ("log level", _config_with("", "log_level", "loud"), "log_level", "'DEBUG'"),
    ("empty path", _config_with("", "federation_file", " "), "federation_file", "give a value"),
    ("secret key as dvm key", _config_with("dvm", "pubkey", "nsec1" + "q" * 58), "dvm.pubkey", "npub1"),
    ("unknown section", _config_with("dvmm", "mode", "reissue"), "dvmm", "did you mean 'dvm'"),
    ("unknown key", _config_with("dvm", "pubky", "x"), "dvm.pubky", "did you mean 'dvm.pubkey'"),
    ("top-level key of a section", _config_with("", "port", 1), "port", "did you mean 'http.port'"),
    ("section not a table", {**_minimal(), "http": 5}, "http", "[http] section"),
    ("ports clash", _config_with("http", "port", 7777), "http.port", "different ports"),
    ("dvm key missing", {k: v for k, v in _minimal().items() if k != "dvm"}, "dvm.pubkey",
     'add pubkey = "npub1..." under [dvm], or set SIDECAR_DVM_PUBKEY'),
]


@pytest.mark.parametrize(("doc", "field", "fix"), [m[1:] for m in CONFIG_MISTAKES],
                         ids=[m[0] for m in CONFIG_MISTAKES])
def test_every_config_mistake_names_the_field_and_the_fix(tmp_path: Path, doc: dict[str, Any], field: str,
                                                          fix: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert fix in message.split("; ", 1)[1], message


@pytest.mark.parametrize(("env", "start", "fix"), [
    ({"SIDECAR_HTTP_PORT": "80a"}, "environment variable SIDECAR_HTTP_PORT: http.port: ", "whole number"),
    ({"SIDECAR_HTTP_PORT": "0x50"}, "environment variable SIDECAR_HTTP_PORT: http.port: ", "whole number"),
    ({"SIDECAR_HTTP_PORT": " 80"}, "environment variable SIDECAR_HTTP_PORT: http.port: ", "whole number"),
    ({"SIDECAR_HTTP_PORT": "99999"}, "environment variable SIDECAR_HTTP_PORT: http.port: ", "0..65535"),
    ({"SIDECAR_PUBLIC_ACCEPT_UNADDRESSED": "yes"}, "environment variable SIDECAR_PUBLIC_ACCEPT_UNADDRESSED: ",
     "true or false"),
    ({"SIDECAR_DVM_TIMEOUT_SECONDS": "nan"}, "environment variable SIDECAR_DVM_TIMEOUT_SECONDS: ", "2.5"),
    ({"SIDECAR_DVM_TIMEOUT_SECONDS": "-3"}, "environment variable SIDECAR_DVM_TIMEOUT_SECONDS: ", "e.g. 30"),
    ({"SIDECAR_MEMBER_INDEX": ""}, "environment variable SIDECAR_MEMBER_INDEX: member.index: ", "whole number"),
    ({"SIDECAR_CANARY_INPUT": "bad \udcff"}, "environment variable SIDECAR_CANARY_INPUT: ", "UTF-8"),
    ({"SIDECAR_HTTP_PORTT": "80"}, "environment: SIDECAR_HTTP_PORTT: ", "did you mean 'SIDECAR_HTTP_PORT'"),
    ({"SIDECAR_PRIVATE_RELAY_HOTS": "x"}, "environment: SIDECAR_PRIVATE_RELAY_HOTS: ",
     "did you mean 'SIDECAR_PRIVATE_RELAY_HOST'"),
])
def test_every_environment_mistake_names_the_variable_and_the_fix(tmp_path: Path, env: dict[str, str],
                                                                  start: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, _minimal()), env=env)
    message = str(caught.value)
    assert message.startswith(start), message
    assert fix in message.split("; ", 1)[1], message


def test_check_federation_refuses_a_config_that_does_not_fit(tmp_path: Path) -> None:
    fed: FederationFile = make_federation(2, 3).file
    config = load_config(_write(tmp_path, _minimal()), env={})
    config.check_federation(fed)
    misfits: list[tuple[dict[str, Any], str]] = [
        ({"index": 4}, "member.index"),
        ({"canary_kind": 5100, "canary_expected": "x"}, "canary.kind"),
        ({"dvm_timeout": 60.0}, "dvm.timeout_seconds"),
    ]
    for changes, field in misfits:
        with pytest.raises(ConfigError, match=f"^{field}: "):
            dataclasses.replace(config, **changes).check_federation(fed)


# ---------------------------------------------------------------------------------------------- fuzz

_KEYS = ["federation_file", "state_dir", "log_level", "index", "share_file", "identity_key_file", "password_file",
         "url", "pubkey", "mode", "timeout_seconds", "host", "port", "transport", "accept_unaddressed",
         "interval_seconds", "kind", "input", "expected", "x"]
_SECTIONS = ["member", "redis", "dvm", "private_relay", "peers", "public", "canary", "http", "dvm.x", "q"]
_VALUES = ["1", "0", "-5", "70000", "1.5", "nan", "-inf", "true", "false", '"x"', '""', '"reissue"', '"redis"',
           f'"{DVM.to_bech32()}"', f'"{DVM.to_hex()}"', '"redis://h/0"', '"/a/b"', '"\\u0000"', "[1, 2]", "{}",
           '{ a = 1 }', "1979-05-27T07:32:00Z", "07:32:00", "[[1]]", '"""multi\nline"""', "'lit'", "0x1f"]
_LINE = st.one_of(
    st.sampled_from(_SECTIONS).map(lambda s: f"[{s}]"),
    st.sampled_from(_SECTIONS).map(lambda s: f"[[{s}]]"),
    st.tuples(st.sampled_from(_KEYS), st.sampled_from(_VALUES)).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.text(max_size=30),
)
_BASE = dump_toml(_minimal())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_LINE, max_size=12), keep_base=st.booleans(),
       env=st.dictionaries(st.sampled_from(["SIDECAR_HTTP_PORT", "SIDECAR_DVM_MODE", "SIDECAR_CANARY_KIND",
                                            "SIDECAR_PUBLIC_ACCEPT_UNADDRESSED", "SIDECAR_REDIS_URL",
                                            "SIDECAR_DVM_TIMEOUT_SECONDS", "SIDECAR_DVM_X"]),
                           st.text(max_size=12), max_size=3))
def test_random_toml_ish_text_gives_only_config_errors(lines: list[str], keep_base: bool,
                                                       env: dict[str, str]) -> None:
    text = (_BASE if keep_base else "") + "\n".join(lines)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sidecar.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            config = load_config(path, env=env)
        except ConfigError as exc:
            assert "\n" not in str(exc)
        else:
            assert isinstance(config, SidecarConfig)


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(["name", "group_npub", "threshold", "kinds", "digest_policy", "relays",
                            "vss_commitment", "members", "timeouts"]),
       value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3),
                          max_leaves=8))
def test_random_federation_values_give_only_config_errors(key: str, value: Any) -> None:
    doc = tomllib.loads(_FUZZ_FEDERATION)
    if value is None:
        del doc[key]
    else:
        doc[key] = value
    try:
        parse_federation(dump_toml(_drop_none(doc)))
    except ConfigError as exc:
        assert "\n" not in str(exc)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


_FUZZ_FEDERATION = make_federation().file.to_toml()
