"""dvm-sidecar federation init/show: the file written reads back as meant, nothing is overwritten, half-member
thresholds are warned about, and every mistake is one line on stderr with exit code 1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nostr_sdk import Keys

from consensus.frost import SECP256K1_TR, trusted_dealer_keygen
from sidecar.cli import main
from sidecar.config import load_federation
from sidecar.keyfiles import encode_keyset

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "federation-example" / "operator-1" / "federation.toml"


@pytest.fixture
def keyset(tmp_path: Path) -> tuple[Path, str]:
    """A 2-of-3 keyset file and its group key (x-only hex)."""
    _, package = trusted_dealer_keygen(SECP256K1_TR, 2, 3)
    path = tmp_path / "keyset.json"
    path.write_bytes(encode_keyset(package))
    return path, package.xonly_public_key.hex()


def _identities(n: int) -> list[Keys]:
    return [Keys.generate() for _ in range(n)]


def _init(keyset: Path, out: Path, identities: list[Keys], *extra: str) -> int:
    members = [f"--member={i}={k.public_key().to_bech32()}" for i, k in enumerate(identities, start=1)]
    return main(["federation", "init", "--keyset", str(keyset), *members, "--relay", "wss://relay.example",
                 "--kind", "5050", "--out", str(out), *extra])


def test_init_writes_a_file_that_loads_as_meant(keyset: tuple[Path, str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, group = keyset
    out = tmp_path / "federation.toml"
    identities = _identities(3)
    code = _init(path, out, identities, "--relay", "ws://127.0.0.1:7000", "--kind", "5100", "--policy", "json",
                 "--name", "three friends", "--member-name", "2=bob", "--deadline", "90", "--session-timeout", "3")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""  # 2 of 3 is a majority: no warning
    fed = load_federation(out)
    assert fed.group_pubkey == group and f"group npub: {fed.npub}" in captured.out
    assert (fed.name, fed.threshold, fed.kinds, fed.digest_policy) == ("three friends", 2, (5050, 5100), "json")
    assert fed.relays == ("wss://relay.example", "ws://127.0.0.1:7000")
    assert fed.identities() == {i: k.public_key().to_hex() for i, k in enumerate(identities, start=1)}
    assert [m.name for m in fed.members] == ["", "bob", ""]
    assert (fed.timeouts.deadline, fed.timeouts.session, fed.timeouts.dvm) == (90.0, 3.0, 30.0)
    assert os.stat(out).st_mode & 0o022 == 0
    assert "npub1" in out.read_text() and "nsec1" not in out.read_text()


def test_init_accepts_a_hex_identity_and_writes_its_npub(keyset: tuple[Path, str], tmp_path: Path) -> None:
    identities = _identities(3)
    out = tmp_path / "f.toml"
    code = main(["federation", "init", "--keyset", str(keyset[0]), "--member", f"1={identities[0].public_key().to_hex()}",
                 "--member", f"2={identities[1].public_key().to_bech32()}",
                 "--member", f"3={identities[2].public_key().to_bech32()}", "--relay", "wss://r.example",
                 "--kind", "5050", "--out", str(out)])
    assert code == 0
    assert identities[0].public_key().to_bech32() in out.read_text()


def test_init_warns_when_two_quorums_could_disagree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, package = trusted_dealer_keygen(SECP256K1_TR, 2, 4)
    path = tmp_path / "keyset.json"
    path.write_bytes(encode_keyset(package))
    assert _init(path, tmp_path / "f.toml", _identities(4)) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: threshold 2 of 4 is at most half the members") and "above 2" in err
    assert main(["federation", "show", str(tmp_path / "f.toml")]) == 0
    assert "warning: threshold 2 of 4" in capsys.readouterr().err


def test_init_never_overwrites(keyset: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "federation.toml"
    out.write_text("kept")
    assert _init(keyset[0], out, _identities(3)) == 1
    assert out.read_text() == "kept"
    err = capsys.readouterr().err
    assert err == f"dvm-sidecar federation init: error: output file {out} already exists; refusing to overwrite it\n"


@pytest.mark.parametrize(("change", "message"), [
    (["--member", "1:npub1x"], "--member '1:npub1x': write it as INDEX=IDENTITY_NPUB"),
    (["--member", "4=npub1x"], "--member: member 4 is not in the keyset (members 1..3)"),
    (["--member", "2=npub1notakey"], "--member 2=npub1notakey: not a valid npub"),
    (["--member-name", "9=zed"], "--member-name: member 9 is not in the keyset"),
    (["--member-name", "1=a", "--member-name", "1=b"], "--member-name: member 1 is given twice"),
    (["--relay", "https://relay.example"], "relays: 'https://relay.example' is not a relay URL"),
    (["--kind", "7000"], "kinds: 7000 is out of range; give a whole number in 5000..5999"),
    (["--policy", "fuzzy"], "digest_policy: 'fuzzy' is not a digest policy"),
    (["--dvm-timeout", "100"], "timeouts.dvm_seconds: 100 is not shorter than deadline_seconds 60"),
])
def test_init_mistakes_are_one_line_and_write_nothing(keyset: tuple[Path, str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], change: list[str],
                                                      message: str) -> None:
    identities = _identities(3)
    out = tmp_path / "federation.toml"
    replaced = change[1][0] if change[0] == "--member" else None  # the member the change gives instead
    base = [f"--member={i}={k.public_key().to_bech32()}" for i, k in enumerate(identities, start=1)
            if str(i) != replaced]
    code = main(["federation", "init", "--keyset", str(keyset[0]), *base, *change, "--relay", "wss://r.example",
                 "--kind", "5050", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_init_needs_every_member_of_the_keyset(keyset: tuple[Path, str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _init(keyset[0], tmp_path / "f.toml", _identities(2)) == 1
    assert "no identity npub for member 3" in capsys.readouterr().err
    assert _init(tmp_path / "missing.json", tmp_path / "f.toml", _identities(3)) == 1
    assert "keyset file" in capsys.readouterr().err


def test_show_prints_the_federation_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    fed = load_federation(EXAMPLE)
    assert main(["federation", "show", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert f"npub: {fed.npub}\n" in out
    assert "threshold: 2 of 3 " in out
    assert "kinds: 5050\n" in out
    assert "relays: wss://relay.damus.io, wss://nos.lol, wss://relay.primal.net\n" in out
    assert "digest policy: exact\n" in out
    assert "timeouts: dvm 120 s, deadline 180 s, coordinator 20 s, session 2 s\n" in out
    for member in fed.members:
        assert f"member {member.index} ({member.name}): identity {member.identity_npub}" in out


def test_show_of_a_broken_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "federation.toml"
    broken.write_text(EXAMPLE.read_text().replace("threshold = 2", "threshold = 5"))
    assert main(["federation", "show", str(broken)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"dvm-sidecar federation show: error: {broken}: threshold: 5 is more than the 3 "
                            "members; set a threshold of at most 3, or list every member\n")
