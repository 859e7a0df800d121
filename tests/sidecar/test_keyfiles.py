"""Key files: round trips, modes, strict refusal of every damaged or foreign file, and no secret in any text.

Real parts throughout: real files in a temporary directory, nostr-sdk's NIP-49 encryption (at the lowest scrypt
cost, to stay fast), the real FROST core for the shares and their checks.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from nostr_sdk import Keys, PublicKey, SecretKey

from consensus.frost import SECP256K1_TR, N, PublicKeyPackage, SecretShare, trusted_dealer_keygen
from sidecar.keyfiles import (
    PASSPHRASE_ENV,
    PUBLIC_MODE,
    SECRET_MODE,
    KeyFileError,
    Keyset,
    ShareFile,
    check_new_files,
    encode_identity,
    encode_keyset,
    encode_share,
    load_identity,
    load_keyset,
    load_share,
    read_identity_file,
    read_key_file,
    read_passphrase,
    read_share_file,
    write_files,
)

FAST = 1  # scrypt log_n for tests; the default (16) is covered by one test
PASSPHRASE = "correct horse battery staple"


def secret_forms(scalar: int) -> list[str]:
    """Every way a secret scalar could leak into text: hex (both cases), decimal, bech32 nsec.

    The decimal form only for scalars of 20 digits and more: a test vector's secret key 3 is in "3 of 5".
    """
    raw = scalar.to_bytes(32, "big")
    decimal = [str(scalar)] if scalar >= 10**19 else []
    return [raw.hex(), raw.hex().upper(), *decimal, SecretKey.from_bytes(raw).to_bech32()]


def assert_no_secret(text: str, scalars: list[int]) -> None:
    for scalar in scalars:
        for form in secret_forms(scalar):
            assert form not in text


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def split() -> tuple[dict[int, SecretShare], PublicKeyPackage]:
    return trusted_dealer_keygen(SECP256K1_TR, 2, 3)


def put(path: Path, data: bytes) -> Path:
    """Overwrite ``path`` with ``data``, mode 0600 (damaged copies of key files)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    return path


def write_group(directory: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]) -> Path:
    shares, package = split
    files = {"keyset.json": (encode_keyset(package), PUBLIC_MODE)}
    for identifier, share in shares.items():
        files[f"share-{identifier}.json"] = (encode_share(share, package, PASSPHRASE, kdf_log_n=FAST), SECRET_MODE)
    write_files(directory, files)
    return directory


def test_keyset_round_trip(tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]) -> None:
    shares, package = split
    directory = write_group(tmp_path / "group", split)
    keyset = load_keyset(directory / "keyset.json")
    assert keyset.public_key_package == package
    assert (keyset.threshold, keyset.members, keyset.identifiers) == (2, 3, (1, 2, 3))
    assert keyset.group_npub == PublicKey.from_bytes(package.xonly_public_key).to_bech32()
    document = json.loads((directory / "keyset.json").read_text())
    assert document["group_npub"] == keyset.group_npub
    assert "encrypted" not in json.dumps(document)
    assert read_key_file(directory / "keyset.json") == keyset
    assert_no_secret((directory / "keyset.json").read_text(), [s.signing_share for s in shares.values()])


def test_share_round_trip(tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]) -> None:
    shares, _ = split
    directory = write_group(tmp_path / "group", split)
    keyset = load_keyset(directory / "keyset.json")
    for identifier, share in shares.items():
        path = directory / f"share-{identifier}.json"
        key_package = load_share(path, PASSPHRASE, keyset)
        assert key_package.identifier == identifier
        assert key_package.signing_share == share.signing_share
        assert key_package.verifying_share == keyset.verifying_share(identifier)
        public = read_share_file(path)
        assert (public.identifier, public.group_npub, public.threshold) == (identifier, keyset.group_npub, 2)
        assert read_key_file(path) == public
        text = path.read_text() + repr(public) + repr(key_package) + repr(keyset)
        assert_no_secret(text, [s.signing_share for s in shares.values()])


def test_identity_round_trip(tmp_path: Path) -> None:
    keys = Keys.generate()
    write_files(tmp_path, {"identity.json": (encode_identity(keys, PASSPHRASE, kdf_log_n=FAST), SECRET_MODE)})
    loaded = load_identity(tmp_path / "identity.json", PASSPHRASE)
    assert loaded.public_key().to_hex() == keys.public_key().to_hex()
    assert loaded.secret_key().to_hex() == keys.secret_key().to_hex()
    public = read_identity_file(tmp_path / "identity.json")
    assert public.npub == keys.public_key().to_bech32()
    secret = int(keys.secret_key().to_hex(), 16)
    assert_no_secret((tmp_path / "identity.json").read_text() + repr(public) + repr(loaded), [secret])


def test_default_kdf_cost_round_trip(tmp_path: Path) -> None:
    keys = Keys.generate()
    write_files(tmp_path, {"identity.json": (encode_identity(keys, PASSPHRASE), SECRET_MODE)})
    assert load_identity(tmp_path / "identity.json", PASSPHRASE).public_key() == keys.public_key()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_modes_are_set_at_creation_whatever_the_umask(
    tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage], umask: int
) -> None:
    previous = os.umask(umask)
    try:
        directory = write_group(tmp_path / "group", split)
    finally:
        os.umask(previous)
    assert (directory.stat().st_mode & 0o777) == 0o700
    for identifier in (1, 2, 3):
        assert ((directory / f"share-{identifier}.json").stat().st_mode & 0o777) == SECRET_MODE
    assert ((directory / "keyset.json").stat().st_mode & 0o777) == PUBLIC_MODE & ~umask


def test_write_into_existing_directory_and_refuse_to_overwrite(
    tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage], umask_022: None
) -> None:
    (tmp_path / "share-2.json").write_text("someone else's file")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(KeyFileError, match=r"share-2\.json already exists"):
        write_group(tmp_path, split)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial write, no staging left behind
    assert (tmp_path / "share-2.json").read_text() == "someone else's file"
    (tmp_path / "share-2.json").unlink()
    write_group(tmp_path, split)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyset.json", "share-1.json", "share-2.json",
                                                          "share-3.json"]


def test_check_new_files_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(KeyFileError, match="is not a directory"):
        check_new_files(tmp_path / "file", ["a"])
    with pytest.raises(KeyFileError, match=r"parent directory .* does not exist"):
        check_new_files(tmp_path / "missing" / "out", ["a"])
    (tmp_path / "link").symlink_to(tmp_path / "dangling")
    with pytest.raises(KeyFileError, match="already exists"):
        check_new_files(tmp_path, ["link"])


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o660, 0o644, 0o601])
def test_secret_files_readable_by_others_are_refused(
    tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage], mode: int
) -> None:
    directory = write_group(tmp_path / "group", split)
    keyset = load_keyset(directory / "keyset.json")
    write_files(tmp_path, {"identity.json": (encode_identity(Keys.generate(), PASSPHRASE, kdf_log_n=FAST),
                                             SECRET_MODE)})
    share_path, identity_path = directory / "share-1.json", tmp_path / "identity.json"
    share_path.chmod(mode)
    identity_path.chmod(mode)
    for load in (lambda: load_share(share_path, PASSPHRASE, keyset), lambda: read_share_file(share_path),
                 lambda: read_key_file(share_path)):
        with pytest.raises(KeyFileError, match=rf"mode 0{mode:o}.*run: chmod 600 {re.escape(str(share_path))}"):
            load()
    for load in (lambda: load_identity(identity_path, PASSPHRASE), lambda: read_key_file(identity_path)):
        with pytest.raises(KeyFileError, match=f"run: chmod 600 {re.escape(str(identity_path))}"):
            load()


def test_wrong_passphrase(tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]) -> None:
    directory = write_group(tmp_path / "group", split)
    keyset = load_keyset(directory / "keyset.json")
    with pytest.raises(KeyFileError, match="wrong passphrase for share file") as caught:
        load_share(directory / "share-1.json", PASSPHRASE + "!", keyset)
    assert PASSPHRASE not in str(caught.value)
    write_files(tmp_path, {"id.json": (encode_identity(Keys.generate(), PASSPHRASE, kdf_log_n=FAST), SECRET_MODE)})
    with pytest.raises(KeyFileError, match="wrong passphrase for identity file"):
        load_identity(tmp_path / "id.json", "")


def test_every_truncation_is_refused_in_one_line(
    tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]
) -> None:
    shares, _ = split
    directory = write_group(tmp_path / "group", split)
    keyset = load_keyset(directory / "keyset.json")
    for name in ("keyset.json", "share-1.json"):
        data = (directory / name).read_bytes()
        for length in range(len(data.rstrip())):
            cut = put(tmp_path / "cut.json", data[:length])
            with pytest.raises(KeyFileError) as caught:
                load_keyset(cut) if name == "keyset.json" else load_share(cut, PASSPHRASE, keyset)
            message = str(caught.value)
            assert "\n" not in message and str(cut) in message
            assert_no_secret(message, [s.signing_share for s in shares.values()])


def test_every_changed_character_is_refused_or_harmless(
    tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]
) -> None:
    """Changing any one character either gives one clean refusal or leaves the same keys (e.g. whitespace)."""
    shares, _ = split
    directory = write_group(tmp_path / "group", split)
    keyset = load_keyset(directory / "keyset.json")
    original_share = load_share(directory / "share-2.json", PASSPHRASE, keyset)
    for name in ("keyset.json", "share-2.json"):
        data = (directory / name).read_bytes()
        for index in range(len(data)):
            replacement = b"0" if data[index:index + 1] != b"0" else b"1"
            path = put(tmp_path / "changed.json", data[:index] + replacement + data[index + 1:])
            try:
                if name == "keyset.json":
                    assert load_keyset(path) == keyset
                else:
                    assert load_share(path, PASSPHRASE, keyset) == original_share
            except KeyFileError as exc:
                assert "\n" not in str(exc)
                assert_no_secret(str(exc), [s.signing_share for s in shares.values()])


def test_foreign_files_and_versions(tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]) -> None:
    directory = write_group(tmp_path / "group", split)
    keyset = load_keyset(directory / "keyset.json")
    with pytest.raises(KeyFileError, match="is a keyset file, not a share file"):
        read_share_file(directory / "keyset.json")
    with pytest.raises(KeyFileError, match="is a share file, not a keyset file"):
        load_keyset(directory / "share-1.json")
    document = json.loads((directory / "keyset.json").read_text())

    def variant(name: str, **changes: object) -> Path:
        path = tmp_path / name
        write_files(tmp_path, {name: (json.dumps({**document, **changes}).encode(), SECRET_MODE)})
        return path

    cases = [
        (variant("v2.json", version=2), "format version 2; this dvm-sidecar reads version 1"),
        (variant("vs.json", version="1"), "'version' must be an integer"),
        (variant("other.json", format="something-else"), "not a dvm-sidecar keyset file"),
        (variant("suite.json", suite="FROST-ed25519-SHA512-v1"), "'suite' must be"),
        (variant("extra.json", comment="hi"), "unknown field 'comment'"),
        (variant("t.json", threshold=4), r"'threshold' must be an integer in 2\.\.3"),
        (variant("npub.json", group_npub=Keys.generate().public_key().to_bech32()), "'group_npub' is not the npub"),
        (variant("vss.json", vss_commitment=document["vss_commitment"][::-1]), "does not start with the group"),
    ]
    for path, message in cases:
        with pytest.raises(KeyFileError, match=message):
            load_keyset(path)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(KeyFileError, match="is not a JSON object"):
        load_keyset(tmp_path / "list.json")
    (tmp_path / "dup.json").write_text('{"format": "dvm-sidecar-keyset", "format": "dvm-sidecar-keyset"}')
    with pytest.raises(KeyFileError, match="duplicate keys"):
        load_keyset(tmp_path / "dup.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(KeyFileError, match="not UTF-8"):
        load_keyset(tmp_path / "bin.json")
    (tmp_path / "empty.json").write_text("  \n")
    with pytest.raises(KeyFileError, match="is empty"):
        load_keyset(tmp_path / "empty.json")
    with pytest.raises(KeyFileError, match="does not exist"):
        load_keyset(tmp_path / "missing.json")
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_keyset(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_keyset(tmp_path / "fifo")
    assert load_keyset(directory / "keyset.json") == keyset


def test_a_verifying_share_off_the_vss_commitment_is_refused(
    tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]
) -> None:
    _, package = split
    directory = write_group(tmp_path / "group", split)
    document = json.loads((directory / "keyset.json").read_text())
    document["verifying_shares"][1]["verifying_share"] = package.group_public_key.hex()  # a valid, wrong point
    write_files(tmp_path, {"bad.json": (json.dumps(document).encode(), PUBLIC_MODE)})
    with pytest.raises(KeyFileError, match="verifying share of member 2 does not match the VSS commitment"):
        load_keyset(tmp_path / "bad.json")


def test_share_that_fails_vss_verify_is_refused(
    tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]
) -> None:
    shares, package = split
    directory = write_group(tmp_path / "group", split)
    keyset = load_keyset(directory / "keyset.json")
    genuine = shares[3]
    forged = SecretShare(3, genuine.signing_share + 1, genuine.vss_commitment)
    write_files(tmp_path, {"forged.json": (encode_share(forged, package, PASSPHRASE, kdf_log_n=FAST), SECRET_MODE)})
    with pytest.raises(KeyFileError, match="does not match the keyset's VSS commitment") as caught:
        load_share(tmp_path / "forged.json", PASSPHRASE, keyset)
    assert_no_secret(str(caught.value), [genuine.signing_share, forged.signing_share])


def test_share_from_another_group_or_split_is_refused(
    tmp_path: Path, split: tuple[dict[int, SecretShare], PublicKeyPackage]
) -> None:
    directory = write_group(tmp_path / "group", split)
    other = write_group(tmp_path / "other", trusted_dealer_keygen(SECP256K1_TR, 2, 3))
    keyset = load_keyset(directory / "keyset.json")
    with pytest.raises(KeyFileError, match=r"is for group npub1.*not the keyset's npub1"):
        load_share(other / "share-1.json", PASSPHRASE, keyset)
    # The same group key split again: same npub, different polynomial.
    shares, _ = split
    secret = (shares[1].signing_share * 2 - shares[2].signing_share) % N  # f(0) from f(1), f(2), t = 2
    resplit = write_group(tmp_path / "resplit", trusted_dealer_keygen(
        SECP256K1_TR, 2, 3, secret_key=secret.to_bytes(32, "big")))
    assert load_keyset(resplit / "keyset.json").group_npub == keyset.group_npub
    with pytest.raises(KeyFileError, match="VSS commitment differs from the keyset's"):
        load_share(resplit / "share-1.json", PASSPHRASE, keyset)
    bigger = write_group(tmp_path / "bigger", trusted_dealer_keygen(SECP256K1_TR, 2, 4,
                                                                    secret_key=secret.to_bytes(32, "big")))
    with pytest.raises(KeyFileError, match="is 2-of-4, the keyset is 2-of-3"):
        load_share(bigger / "share-1.json", PASSPHRASE, keyset)


def test_identity_whose_npub_is_not_its_key(tmp_path: Path) -> None:
    document = json.loads(encode_identity(Keys.generate(), PASSPHRASE, kdf_log_n=FAST))
    document["npub"] = Keys.generate().public_key().to_bech32()
    write_files(tmp_path, {"id.json": (json.dumps(document).encode(), SECRET_MODE)})
    with pytest.raises(KeyFileError, match="does not belong to its npub"):
        load_identity(tmp_path / "id.json", PASSPHRASE)


def test_kdf_cost_bounds() -> None:
    for log_n in (0, 23):
        with pytest.raises(KeyFileError, match=r"log_n must be 1\.\.22"):
            encode_identity(Keys.generate(), PASSPHRASE, kdf_log_n=log_n)


def test_passphrase_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    path = tmp_path / "pass"
    path.write_text(" spaced out \n")
    assert read_passphrase(path) == " spaced out "
    path.write_bytes("pässwörd\r\n".encode())
    assert read_passphrase(path, environ={PASSPHRASE_ENV: "from env"}) == "pässwörd"  # the file wins
    assert read_passphrase(environ={PASSPHRASE_ENV: "from env"}) == "from env"
    monkeypatch.setenv(PASSPHRASE_ENV, "from the process")
    assert read_passphrase(confirm=True) == "from the process"
    for content, message in ((b"\n", "is empty"), (b"\xff\n", "not UTF-8")):
        path.write_bytes(content)
        with pytest.raises(KeyFileError, match=message):
            read_passphrase(path)
    with pytest.raises(KeyFileError, match="cannot read passphrase file"):
        read_passphrase(tmp_path / "missing")
    with pytest.raises(KeyFileError, match="SIDECAR_PASSPHRASE is set but empty"):
        read_passphrase(environ={PASSPHRASE_ENV: ""})
    with pytest.raises(KeyFileError, match="no passphrase: give --passphrase-file FILE or set SIDECAR_PASSPHRASE"):
        read_passphrase(environ={})  # pytest's stdin is no terminal


def test_dataclass_reprs_hold_no_ciphertext() -> None:
    public = ShareFile(1, "npub1x", 2, 3, (), "ncryptsec1secretish")
    assert "ncryptsec" not in repr(public)
    assert "Keyset(" in repr(Keyset(trusted_dealer_keygen(SECP256K1_TR, 2, 2)[1]))
