"""``dvm-sidecar keys``: the ceremony end to end, every bad input as one line with nothing written, no secrets.

Signatures made with the written shares are checked by nostr-sdk's ``Event.verify()``; a known nsec comes from
the BIP-340 vectors and its npub from nostr-sdk, both independent of the code under test.
"""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import random
import select
import subprocess
import sys
import termios
import time
from itertools import combinations
from pathlib import Path

import pytest
from nostr_sdk import EventBuilder, Keys, Kind, PublicKey, SecretKey

from consensus.errors import InvalidContribution
from consensus.frost import SECP256K1_TR, SecretShare, aggregate, commit, sign, trusted_dealer_keygen
from sidecar.cli import main
from sidecar.commands.keys import prove_split, signer_subsets
from sidecar.keyfiles import PASSPHRASE_ENV, load_identity, load_keyset, load_share
from tests.conftest import VECTORS
from tests.sidecar.test_keyfiles import FAST, PASSPHRASE, assert_no_secret

DVM_SIDECAR = Path(sys.executable).parent / "dvm-sidecar"


def bip340_secret_keys() -> list[tuple[str, str]]:
    """(secret key hex, x-only public key hex) of every BIP-340 vector row that has a secret key."""
    with (VECTORS / "bip340" / "test-vectors.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    return [(row["secret key"].lower(), row["public key"].lower()) for row in rows if row["secret key"]]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["keys", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)


def sign_event_with(directory: Path, members: list[int], passphrase: str = PASSPHRASE) -> bool:
    """Load the share files of ``members``, sign a Nostr event together, and ask nostr-sdk to verify it."""
    keyset = load_keyset(directory / "keyset.json")
    packages = [load_share(directory / f"share-{i}.json", passphrase, keyset) for i in members]
    unsigned = EventBuilder(Kind(1), "signed by the written shares").finalize_unsigned(
        PublicKey.parse(keyset.group_npub)).ensure_id()
    message = bytes.fromhex(unsigned.id().to_hex())
    rounds = [commit(SECP256K1_TR, package) for package in packages]
    commitments = [c for _, c in rounds]
    shares = [sign(SECP256K1_TR, message, commitments, nonces, package)
              for (nonces, _), package in zip(rounds, packages)]
    signature = aggregate(SECP256K1_TR, message, commitments, shares, keyset.public_key_package)
    return unsigned.add_signature(signature.hex()).verify()


def share_scalars(directory: Path, members: int) -> list[int]:
    keyset = load_keyset(directory / "keyset.json")
    return [load_share(directory / f"share-{i}.json", PASSPHRASE, keyset).signing_share
            for i in range(1, members + 1)]


def test_new_writes_a_working_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "group"
    code, stdout, stderr = run(capsys, "new", "--threshold", "3", "--members", "5", "--out", str(out),
                               "--kdf-log-n", str(FAST))
    assert (code, stderr) == (0, "")
    keyset = load_keyset(out / "keyset.json")
    assert f"group npub: {keyset.group_npub}" in stdout
    assert "proved: 10 signer sets" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["keyset.json"] + [f"share-{i}.json" for i in range(1, 6)]
    assert (out.stat().st_mode & 0o777) == 0o700
    for i in range(1, 6):
        assert ((out / f"share-{i}.json").stat().st_mode & 0o777) == 0o600
    assert sign_event_with(out, [2, 4, 5])
    assert sign_event_with(out, [1, 2, 3, 4, 5])
    assert_no_secret(stdout + stderr, share_scalars(out, 5))


@pytest.mark.parametrize("form", ["bech32", "hex", "HEX"])
def test_split_of_a_known_nsec_gives_its_npub(tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str) -> None:
    for index, (secret_hex, xonly_hex) in enumerate(bip340_secret_keys()):
        secret = SecretKey.parse(secret_hex)
        text = {"bech32": secret.to_bech32(), "hex": secret_hex, "HEX": secret_hex.upper()}[form]
        nsec_file = tmp_path / f"nsec-{index}"
        nsec_file.write_text(f"  {text}\n")
        out = tmp_path / f"split-{index}"
        code, stdout, stderr = run(capsys, "split", "-t", "2", "-n", "3", "--nsec-file", str(nsec_file),
                                   "--out", str(out), "--kdf-log-n", str(FAST))
        expected_npub = PublicKey.parse(xonly_hex).to_bech32()
        assert expected_npub == Keys(secret).public_key().to_bech32()
        assert (code, stderr) == (0, "")
        assert f"group npub: {expected_npub}" in stdout
        assert load_keyset(out / "keyset.json").group_npub == expected_npub
        assert sign_event_with(out, [1, 3])
        assert_no_secret(stdout, [int(secret_hex, 16), *share_scalars(out, 3)])


def test_passphrase_file_is_used_and_needed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV)
    passphrase_file = tmp_path / "pass"
    passphrase_file.write_text("from a file\n")
    out = tmp_path / "group"
    code, _, stderr = run(capsys, "new", "-t", "2", "-n", "2", "--out", str(out), "--kdf-log-n", str(FAST),
                          "--passphrase-file", str(passphrase_file))
    assert (code, stderr) == (0, "")
    assert sign_event_with(out, [1, 2], passphrase="from a file")
    code, stdout, stderr = run(capsys, "show", str(out / "share-2.json"), "--keyset", str(out / "keyset.json"),
                               "--passphrase-file", str(passphrase_file))
    assert code == 0 and "check: OK" in stdout
    code, stdout, stderr = run(capsys, "show", str(out / "share-2.json"), "--keyset", str(out / "keyset.json"))
    assert code == 1 and stdout == ""
    assert stderr.strip() == ("dvm-sidecar keys show: error: no passphrase: give --passphrase-file FILE or set "
                              "SIDECAR_PASSPHRASE (no terminal to ask on)")


def test_identity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "identity.json"
    code, stdout, stderr = run(capsys, "identity", "--out", str(out), "--kdf-log-n", str(FAST))
    assert (code, stderr) == (0, "")
    assert (out.stat().st_mode & 0o777) == 0o600
    keys = load_identity(out, PASSPHRASE)
    assert f"identity npub: {keys.public_key().to_bech32()}" in stdout
    code, shown, _ = run(capsys, "show", str(out))
    assert code == 0 and f"npub: {keys.public_key().to_bech32()}" in shown
    assert_no_secret(stdout + shown, [int(keys.secret_key().to_hex(), 16)])
    before = out.read_bytes()
    code, stdout, stderr = run(capsys, "identity", "--out", str(out), "--kdf-log-n", str(FAST))
    assert code == 1 and stdout == "" and len(stderr.splitlines()) == 1 and "already exists" in stderr
    assert out.read_bytes() == before


def test_show_keyset_and_share(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "group"
    assert run(capsys, "new", "-t", "2", "-n", "3", "--out", str(out), "--kdf-log-n", str(FAST))[0] == 0
    keyset = load_keyset(out / "keyset.json")
    code, stdout, _ = run(capsys, "show", str(out / "keyset.json"))
    assert code == 0
    assert f"group npub: {keyset.group_npub}" in stdout and "threshold: 2 of 3" in stdout
    for identifier, share in keyset.public_key_package.verifying_shares:
        assert f"member {identifier} verifying share: {share.hex()}" in stdout
    code, stdout, _ = run(capsys, "show", str(out / "share-3.json"))
    assert code == 0 and "member: 3" in stdout and "check" not in stdout
    code, stdout, _ = run(capsys, "show", str(out / "share-3.json"), "--keyset", str(out / "keyset.json"))
    assert code == 0
    assert f"verifying share: {keyset.public_key_package.verifying_share(3).hex()}" in stdout
    assert "check: OK" in stdout
    assert_no_secret(stdout, share_scalars(out, 3))


def one_line_failure(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, stdout, stderr = run(capsys, *argv)
    assert code != 0
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(("sizes", "message"), [
    (("-t", "4", "-n", "3"), "threshold 4 is larger than the 3 members"),
    (("-t", "1", "-n", "3"), "a 1-of-n split hands every member the whole key"),
    (("-t", "0", "-n", "0"), "must be at least 2"),
    (("-t", "2", "-n", "65536"), "65536 members is too many: at most 65535"),
])
def test_bad_group_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str], sizes: tuple[str, ...],
                         message: str) -> None:
    nsec_file = tmp_path / "nsec"
    nsec_file.write_text(Keys.generate().secret_key().to_bech32())
    for action in (["new"], ["split", "--nsec-file", str(nsec_file)]):
        line = one_line_failure(capsys, *action, *sizes, "--out", str(tmp_path / "out"))
        assert message in line
        assert sorted(p.name for p in tmp_path.iterdir()) == ["nsec"]


@pytest.mark.parametrize(("content", "message"), [
    (b"not a key\n", "does not hold a secret key"),
    (b"nsec1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq\n", "does not hold a valid secret key"),
    (b"0" * 64, "does not hold a valid secret key"),
    (b"f" * 64, "does not hold a valid secret key"),  # >= the group order
    (b"abc", "does not hold a secret key"),
    (b"\xff\xfe", "does not hold a secret key"),
    (b"", "does not hold a secret key"),
])
def test_invalid_nsec(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str) -> None:
    nsec_file = tmp_path / "nsec"
    nsec_file.write_bytes(content)
    line = one_line_failure(capsys, "split", "-t", "2", "-n", "3", "--nsec-file", str(nsec_file),
                            "--out", str(tmp_path / "out"))
    assert message in line and "expected a bech32 nsec1... or 64 hex characters" in line
    assert not (tmp_path / "out").exists()


def test_invalid_nsec_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = Keys.generate()
    good = keys.secret_key().to_bech32()
    flipped = good[:-1] + ("q" if good[-1] != "q" else "p")  # checksum broken
    cases = {"flipped": flipped, "short-hex": keys.secret_key().to_hex()[:-1],
             "ncryptsec": keys.secret_key().encrypt("x").to_bech32()}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        line = one_line_failure(capsys, "split", "-t", "2", "-n", "3", "--nsec-file", str(tmp_path / name),
                                "--out", str(tmp_path / "out"))
        assert f"nsec file {tmp_path / name}" in line
        assert_no_secret(line, [int(keys.secret_key().to_hex(), 16)])
        assert text not in line
    line = one_line_failure(capsys, "split", "-t", "2", "-n", "3", "--nsec-file", str(tmp_path / "missing"),
                            "--out", str(tmp_path / "out"))
    assert "cannot read nsec file" in line
    assert not (tmp_path / "out").exists()


def test_existing_output_is_never_touched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "group"
    out.mkdir()
    (out / "share-3.json").write_text("an earlier ceremony's share")
    line = one_line_failure(capsys, "new", "-t", "2", "-n", "3", "--out", str(out), "--kdf-log-n", str(FAST))
    assert f"output file {out / 'share-3.json'} already exists" in line
    assert sorted(p.name for p in out.iterdir()) == ["share-3.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group"]  # no staging directory left
    (tmp_path / "plain").write_text("x")
    line = one_line_failure(capsys, "new", "-t", "2", "-n", "3", "--out", str(tmp_path / "plain"))
    assert "is not a directory" in line


def test_bad_passphrases_and_kdf_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    line = one_line_failure(capsys, "new", "-t", "2", "-n", "3", "--out", str(tmp_path / "a"),
                            "--passphrase-file", str(empty))
    assert "is empty" in line
    for log_n in ("0", "23"):
        line = one_line_failure(capsys, "identity", "--out", str(tmp_path / "id.json"), "--kdf-log-n", log_n)
        assert "log_n must be 1..22" in line
    monkeypatch.setenv(PASSPHRASE_ENV, "")
    line = one_line_failure(capsys, "identity", "--out", str(tmp_path / "id.json"))
    assert "SIDECAR_PASSPHRASE is set but empty" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_show_refuses_bad_files_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "group"
    other = tmp_path / "other"
    for directory in (out, other):
        assert run(capsys, "new", "-t", "2", "-n", "3", "--out", str(directory), "--kdf-log-n", str(FAST))[0] == 0
    secrets = share_scalars(out, 3)
    share, keyset = out / "share-1.json", out / "keyset.json"
    lines = [
        one_line_failure(capsys, "show", str(share), "--keyset", str(other / "keyset.json")),
        one_line_failure(capsys, "show", str(keyset), "--keyset", str(keyset)),
        one_line_failure(capsys, "show", str(tmp_path / "nothing.json")),
    ]
    assert "is for group" in lines[0] and "--keyset checks share files" in lines[1] and "does not exist" in lines[2]
    monkeypatch.setenv(PASSPHRASE_ENV, "not the passphrase")
    lines.append(one_line_failure(capsys, "show", str(share), "--keyset", str(keyset)))
    assert f"wrong passphrase for share file {share}" in lines[-1]
    data = share.read_bytes()
    truncated = tmp_path / "truncated.json"
    fd = os.open(truncated, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, data[: len(data) // 2])
    os.close(fd)
    lines.append(one_line_failure(capsys, "show", str(truncated)))
    assert "is not valid JSON (truncated or corrupt)" in lines[-1]
    share.chmod(0o644)
    lines.append(one_line_failure(capsys, "show", str(share)))
    assert f"run: chmod 600 {share}" in lines[-1]
    assert_no_secret("\n".join(lines), secrets)


def test_signer_subsets() -> None:
    rng = random.Random(7)
    assert signer_subsets([1, 2, 3, 4, 5], 3, rng=rng) == list(combinations([1, 2, 3, 4, 5], 3))
    for members, threshold in ((10, 5), (30, 15), (100, 67), (65535, 2)):
        subsets = signer_subsets(list(range(1, members + 1)), threshold, rng=rng)
        assert len(subsets) == len(set(subsets)) == 200
        assert all(len(s) == threshold and list(s) == sorted(set(s)) for s in subsets)
        assert all(1 <= i <= members for s in subsets for i in s)


def test_prove_split_catches_a_bad_share() -> None:
    shares, package = trusted_dealer_keygen(SECP256K1_TR, 2, 3)
    assert prove_split(shares, package) == 3
    bad = dict(shares)
    bad[2] = SecretShare(2, shares[2].signing_share ^ 1, shares[2].vss_commitment)
    with pytest.raises(InvalidContribution) as caught:
        prove_split(bad, package)
    assert "member 2" in str(caught.value)
    assert_no_secret(str(caught.value), [shares[2].signing_share, bad[2].signing_share])


def test_console_script_prompts_on_a_terminal(tmp_path: Path) -> None:
    """The installed ``dvm-sidecar`` asks twice on its terminal and refuses two different passphrases."""
    environment = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}

    def take_terminal() -> None:  # a new session whose controlling terminal is the pty, as in a login shell
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    def echo_goes_off(controller: int) -> bool:
        """Wait (bounded) until getpass has switched echo off: an answer typed before that would be shown."""
        for _ in range(100):
            if not termios.tcgetattr(controller)[3] & termios.ECHO:
                return True
            time.sleep(0.05)
        return False

    def converse(out: Path, answers: list[str]) -> tuple[int, str]:
        controller, terminal = pty.openpty()
        process = subprocess.Popen(
            [str(DVM_SIDECAR), "keys", "identity", "--out", str(out), "--kdf-log-n", str(FAST)],
            stdin=terminal, stdout=terminal, stderr=terminal, env=environment, preexec_fn=take_terminal)
        os.close(terminal)
        transcript, deadline = b"", time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([controller], [], [], 0.5)
                if ready:
                    try:
                        chunk = os.read(controller, 4096)
                    except OSError:  # the other side closed: the process is done
                        break
                    if not chunk:
                        break
                    transcript += chunk
                    if answers and transcript.rstrip().endswith(b":") and echo_goes_off(controller):
                        os.write(controller, answers.pop(0).encode() + b"\n")
                elif process.poll() is not None:
                    break
            return process.wait(timeout=30), transcript.decode(errors="replace")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(controller)

    out = tmp_path / "identity.json"
    code, transcript = converse(out, ["typed at a prompt", "typed at a prompt"])
    assert code == 0, transcript
    assert "Passphrase for the identity key:" in transcript and "Repeat the passphrase:" in transcript
    assert "typed at a prompt" not in transcript  # no echo
    assert load_identity(out, "typed at a prompt").public_key().to_bech32() in transcript
    code, transcript = converse(tmp_path / "second.json", ["one passphrase", "another passphrase"])
    assert code == 1 and "the two passphrases differ" in transcript
    assert not (tmp_path / "second.json").exists()
