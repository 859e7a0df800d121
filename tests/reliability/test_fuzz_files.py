"""Hostile input in files: the config file with its ``SIDECAR_*`` overrides and the federation file
(``load_config``, ``parse_federation``: ``ConfigError``) and the key files (``read_key_file``, ``load_keyset``,
``read_share_file``, ``read_identity_file``, ``load_share``, ``load_identity``: ``KeyFileError``), fed generated
input, refuse it only with that one error; a huge file is refused after reading no more than the limit, a
deeply nested one without a crash. The budget and the valid examples are in ``fuzzing``.
"""

from __future__ import annotations

import os
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import strategies as st

from sidecar.config import ConfigError, load_config, parse_federation
from sidecar.keyfiles import (
    KeyFileError,
    Keyset,
    load_identity,
    load_keyset,
    load_share,
    read_identity_file,
    read_key_file,
    read_share_file,
)
from tests.reliability.fuzzing import (
    CONFIG_DOC,
    CONFIG_TEXT,
    FEDERATION_DOC,
    FEDERATION_TEXT,
    IDENTITIES,
    IDENTITY_DOC,
    KEY_PACKAGES,
    KEYSET_DOC,
    PASSPHRASE,
    PUBLIC,
    SHARE_DOC,
    TOML_VALUES,
    as_json,
    edits,
    fuzz,
    fuzz_report,  # noqa: F401  (a fixture)
    text_edits,
    toml_doc,
)

pytestmark = pytest.mark.reliability
DEEP = 100_000
ENV_NAMES = ["SIDECAR_LOG_LEVEL", "SIDECAR_MEMBER_INDEX", "SIDECAR_MEMBER_SHARE_FILE", "SIDECAR_REDIS_URL",
             "SIDECAR_DVM_PUBKEY", "SIDECAR_DVM_TIMEOUT_SECONDS", "SIDECAR_PRIVATE_RELAY_PORT",
             "SIDECAR_PEERS_TRANSPORT", "SIDECAR_PUBLIC_ACCEPT_UNADDRESSED", "SIDECAR_CANARY_EXPECTED",
             "SIDECAR_CANARY_TIMEOUT_SECONDS", "SIDECAR_HTTP_PORT", "SIDECAR_HTTP_HOST", "SIDECAR_STATE_DIR",
             "SIDECAR_MEMBER_INDX", "SIDECAR_HTTP_", "SIDECAR_PASSPHRASE", "SIDECAR_FEDERATION_FILE"]
_SCRATCH = tempfile.TemporaryDirectory(prefix="fuzz-decoders-")
SCRATCH = Path(_SCRATCH.name)


def _load_config(text: str | bytes, env: dict[str, str] | None = None) -> None:
    path = SCRATCH / "sidecar.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    load_config(path, env=env or {})


def _config(text: str | bytes, env: dict[str, str] | None = None) -> None:
    try:
        _load_config(text, env)
    except ConfigError:
        return


def _federation(text: str) -> None:
    try:
        federation = parse_federation(text)
    except ConfigError:
        return
    assert parse_federation(federation.to_toml()) == federation


@fuzz("config_text", st.text(max_size=400) | st.binary(max_size=400))
def test_config_files_random_input(text: str | bytes) -> None:
    _config(text)


@fuzz("config_edits", st.data())
def test_config_files_edited(data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="as text"):
        _config(text_edits(CONFIG_TEXT, data))
    else:
        _config(toml_doc(edits(CONFIG_DOC, data, TOML_VALUES)))


ENV_VALUES = st.text(st.characters(blacklist_characters="\x00"), max_size=30)


@fuzz("config_env", st.dictionaries(st.sampled_from(ENV_NAMES), ENV_VALUES, max_size=4))
def test_config_environment_overrides(env: dict[str, str]) -> None:
    _config(CONFIG_TEXT, env)


@fuzz("federation_text", st.text(max_size=400))
def test_federation_files_random_input(text: str) -> None:
    _federation(text)


@fuzz("federation_edits", st.data())
def test_federation_files_edited(data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="as text"):
        _federation(text_edits(FEDERATION_TEXT, data))
    else:
        _federation(toml_doc(edits(FEDERATION_DOC, data, TOML_VALUES)))


# ---------------------------------------------------------------------------------------------- key files

KEYSET = Keyset(PUBLIC)


def _key_file(raw: str | bytes, mode: int = 0o600) -> Path:
    path = SCRATCH / "key.json"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as stream:
        stream.write(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))
    return path


def _refused_as_key_file(load: Callable[[], object]) -> object | None:
    try:
        return load()
    except KeyFileError:
        return None


@fuzz("keyfile_bytes", st.binary(max_size=600) | st.text(max_size=600).map(str.encode))
def test_key_files_random_input(raw: bytes) -> None:
    path = _key_file(raw)
    _refused_as_key_file(lambda: read_key_file(path))


@fuzz("keyset_edits", st.data())
def test_keyset_files_edited(data: st.DataObject) -> None:
    path = _key_file(as_json(edits(KEYSET_DOC, data), data))
    keyset = _refused_as_key_file(lambda: load_keyset(path))
    assert keyset is None or keyset == KEYSET  # an edit that still loads changed nothing that matters


@fuzz("share_edits", st.data())
def test_share_files_edited(data: st.DataObject) -> None:
    path = _key_file(as_json(edits(SHARE_DOC, data), data))
    _refused_as_key_file(lambda: read_share_file(path))
    loaded = _refused_as_key_file(lambda: load_share(path, PASSPHRASE, KEYSET))
    assert loaded is None or loaded == KEY_PACKAGES[1]


@fuzz("identity_edits", st.data())
def test_identity_files_edited(data: st.DataObject) -> None:
    path = _key_file(as_json(edits(IDENTITY_DOC, data), data))
    _refused_as_key_file(lambda: read_identity_file(path))
    keys = _refused_as_key_file(lambda: load_identity(path, PASSPHRASE))
    assert keys is None or keys.public_key() == IDENTITIES[1].public_key()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- early refusal


def _sparse(path: Path, size: int, head: bytes = b"{") -> Path:
    with path.open("wb") as stream:
        stream.write(head)
        stream.truncate(size)  # a hole: a gigabyte that costs no disk
    path.chmod(0o600)
    return path


def _peak_bytes(load: Callable[[], object], refusal: type[Exception], match: str) -> int:
    """The most memory Python held while ``load`` refused its input (with ``refusal`` matching ``match``)."""
    tracemalloc.start()
    try:
        with pytest.raises(refusal, match=match):
            load()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_oversize_and_deep_key_files_are_refused(tmp_path: Path) -> None:
    huge = _sparse(tmp_path / "huge.json", 1 << 30)
    assert _peak_bytes(lambda: read_key_file(huge), KeyFileError, "larger than") < 64 << 20  # never read whole
    with pytest.raises(KeyFileError, match=r"nesting too deep|not valid JSON"):
        read_key_file(_key_file(b"[" * DEEP + b"]" * DEEP))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):  # never blocks on a pipe
        read_key_file(fifo)


def test_oversize_and_deep_config_files_are_refused(tmp_path: Path) -> None:
    huge = _sparse(tmp_path / "huge.toml", 1 << 30, b"x = ")
    assert _peak_bytes(lambda: load_config(huge, env={}), ConfigError, "larger than") < 16 << 20
    for deep in ("x = " + "[" * DEEP + "]" * DEEP, "x = " + "{a = " * 5000 + "1" + "}" * 5000):
        with pytest.raises(ConfigError):
            _load_config(deep)
        with pytest.raises(ConfigError):
            parse_federation(deep)
