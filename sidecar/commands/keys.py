"""``dvm-sidecar keys``: the key ceremony (new, split), identity keys, and ``show`` for any key file.

Rules: ``new`` and ``split`` prove the split before writing anything (every t-subset of members, or a random
200 past 200, signs a test Nostr event checked with nostr-sdk's ``Event.verify()``) and then write all files
or none. Every failure is one line on stderr and exit code 1; nothing secret is ever printed.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Mapping
from itertools import combinations
from pathlib import Path

from nostr_sdk import EventBuilder, Keys, KeySecurity, Kind, NostrSdkError, PublicKey, SecretKey

from consensus.frost import (
    SECP256K1_TR,
    PublicKeyPackage,
    SecretShare,
    aggregate,
    commit,
    sign,
    trusted_dealer_keygen,
    vss_verify,
)
from sidecar.commands import guarded
from sidecar.keyfiles import (
    DEFAULT_KDF_LOG_N,
    MAX_MEMBERS,
    PASSPHRASE_ENV,
    PUBLIC_MODE,
    SECRET_MODE,
    KeyFileError,
    Keyset,
    ShareFile,
    check_kdf_log_n,
    check_new_files,
    encode_identity,
    encode_keyset,
    encode_share,
    load_keyset,
    load_share,
    read_key_file,
    read_passphrase,
    write_files,
)

PROOF_SUBSETS = 200
KEYSET_NAME = "keyset.json"
_MAX_NSEC_FILE_BYTES = 1024


def share_name(identifier: int) -> str:
    return f"share-{identifier}.json"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = subparsers.add_parser(
        "keys", help="make, split and inspect threshold keys and identity keys",
        description="Threshold key ceremony and key files. Passphrases come from --passphrase-file, "
                    f"${PASSPHRASE_ENV} or a prompt, never from the command line.")
    actions = keys.add_subparsers(dest="keys_action", metavar="ACTION", required=True)

    new = actions.add_parser("new", help="generate a new group key split t-of-n",
                             description="Generate a new group key and write a keyset file and one encrypted "
                                         "share file per member into DIR.")
    _add_split_options(new)
    new.set_defaults(handler=guarded("keys new", run_new))

    split = actions.add_parser("split", help="split an existing nsec t-of-n (the group npub is its npub)",
                               description="Split an existing secret key so that the group npub is its npub.")
    _add_split_options(split)
    split.add_argument("--nsec-file", type=Path, required=True, metavar="FILE",
                       help="file holding the secret key (bech32 nsec1... or 64 hex characters)")
    split.set_defaults(handler=guarded("keys split", run_split))

    identity = actions.add_parser("identity", help="make an operator identity key (signs peer messages)",
                                  description="Generate an operator identity key, encrypted, mode 0600.")
    identity.add_argument("--out", type=Path, required=True, metavar="FILE", help="identity key file to create")
    _add_passphrase_option(identity)
    _add_kdf_option(identity)
    identity.set_defaults(handler=guarded("keys identity", run_identity))

    show = actions.add_parser("show", help="print a key file's public facts; check a share against its keyset",
                              description="Print the public facts of a keyset, share or identity file. With "
                                          "--keyset, decrypt a share and check it against the keyset.")
    show.add_argument("file", type=Path, metavar="FILE")
    show.add_argument("--keyset", type=Path, metavar="KEYSET",
                      help="check the share file against this keyset (needs the passphrase)")
    _add_passphrase_option(show)
    show.set_defaults(handler=guarded("keys show", run_show))


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", "-t", type=int, required=True, metavar="T", help="signers needed (>= 2)")
    parser.add_argument("--members", "-n", type=int, required=True, metavar="N", help="members (<= 65535)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory for the key files")
    _add_passphrase_option(parser)
    _add_kdf_option(parser)


def _add_passphrase_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passphrase-file", type=Path, metavar="FILE",
                        help=f"read the passphrase from FILE (else ${PASSPHRASE_ENV}, else a prompt)")


def _add_kdf_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kdf-log-n", type=int, default=DEFAULT_KDF_LOG_N, metavar="LOG_N",
                        help=f"scrypt cost of the encryption, 2^LOG_N (NIP-49 default {DEFAULT_KDF_LOG_N})")


# ---------------------------------------------------------------------------------------------- the ceremony


def check_group_size(threshold: int, members: int) -> None:
    """``ValueError`` unless 2 <= threshold <= members <= 65535, with the reason."""
    if threshold < 2:
        raise ValueError(f"threshold {threshold} is too small: it must be at least 2 "
                         "(a 1-of-n split hands every member the whole key)")
    if members > MAX_MEMBERS:
        raise ValueError(f"{members} members is too many: at most {MAX_MEMBERS} (FROST identifiers are 1..65535)")
    if threshold > members:
        raise ValueError(f"threshold {threshold} is larger than the {members} members")


def run_new(args: argparse.Namespace) -> int:
    _check_ceremony_args(args)
    passphrase = read_passphrase(args.passphrase_file, confirm=True, prompt="Passphrase for the share files: ")
    shares, package = trusted_dealer_keygen(SECP256K1_TR, args.threshold, args.members)
    return _finish_ceremony(args, shares, package, passphrase, KeySecurity.MEDIUM)


def run_split(args: argparse.Namespace) -> int:
    _check_ceremony_args(args)
    secret = read_nsec_file(args.nsec_file)
    passphrase = read_passphrase(args.passphrase_file, confirm=True, prompt="Passphrase for the share files: ")
    shares, package = trusted_dealer_keygen(SECP256K1_TR, args.threshold, args.members,
                                            secret_key=bytes.fromhex(secret.to_hex()))
    if package.xonly_public_key.hex() != Keys(secret).public_key().to_hex():
        raise ValueError("the split's group key is not the nsec's public key")
    # NIP-49 key security 0x00: the key these shares come from was stored unencrypted.
    return _finish_ceremony(args, shares, package, passphrase, KeySecurity.WEAK)


def _check_ceremony_args(args: argparse.Namespace) -> None:
    check_group_size(args.threshold, args.members)
    check_kdf_log_n(args.kdf_log_n)
    names = [KEYSET_NAME] + [share_name(i) for i in range(1, args.members + 1)]
    check_new_files(args.out, names)


def _finish_ceremony(args: argparse.Namespace, shares: Mapping[int, SecretShare], package: PublicKeyPackage,
                     passphrase: str, key_security: KeySecurity) -> int:
    _progress(f"proving the split: signing test events with up to {PROOF_SUBSETS} signer sets ...")
    proved = prove_split(shares, package)
    _progress(f"encrypting {len(shares)} share files (scrypt log_n {args.kdf_log_n}) ...")
    files = {KEYSET_NAME: (encode_keyset(package), PUBLIC_MODE)}
    for identifier, share in sorted(shares.items()):
        files[share_name(identifier)] = (
            encode_share(share, package, passphrase, kdf_log_n=args.kdf_log_n, key_security=key_security),
            SECRET_MODE,
        )
    write_files(args.out, files)
    npub = PublicKey.from_bytes(package.xonly_public_key).to_bech32()
    print(f"group npub: {npub}")
    print(f"threshold: {package.min_signers} of {len(shares)}")
    print(f"proved: {proved} signer sets each signed a test event that verifies")
    print(f"wrote: {Path(args.out) / KEYSET_NAME} and {len(shares)} share files "
          f"({share_name(1)} .. {share_name(len(shares))}, mode 0600)")
    return 0


def signer_subsets(identifiers: list[int], threshold: int, limit: int = PROOF_SUBSETS,
                   rng: random.Random | None = None) -> list[tuple[int, ...]]:
    """Every ``threshold``-subset of ``identifiers`` when there are at most ``limit``, else ``limit`` distinct
    random ones."""
    rng = rng or random.SystemRandom()
    total = math.comb(len(identifiers), threshold)
    if total <= limit:
        return list(combinations(identifiers, threshold))
    if total <= 50 * limit:
        return sorted(rng.sample(list(combinations(identifiers, threshold)), limit))
    chosen: set[tuple[int, ...]] = set()
    while len(chosen) < limit:  # collisions are rare among more than 50 * limit subsets
        chosen.add(tuple(sorted(rng.sample(identifiers, threshold))))
    return sorted(chosen)


def prove_split(shares: Mapping[int, SecretShare], package: PublicKeyPackage,
                rng: random.Random | None = None) -> int:
    """Check every share against the VSS commitment and have signer sets sign a test event; the count of sets.

    Each signature is checked by nostr-sdk's ``Event.verify()``, an implementation independent of ours.
    ``ValueError`` naming the signer set if any fails.
    """
    package.verify_vss()
    key_packages = {identifier: vss_verify(SECP256K1_TR, share) for identifier, share in shares.items()}
    group_key = PublicKey.from_bytes(package.xonly_public_key)
    subsets = signer_subsets(sorted(shares), package.min_signers, rng=rng)
    for subset in subsets:
        text = f"dvm-sidecar key ceremony check: members {', '.join(map(str, subset))} sign for the group"
        unsigned = EventBuilder(Kind(1), text).finalize_unsigned(group_key).ensure_id()
        message = bytes.fromhex(unsigned.id().to_hex())
        rounds = [commit(SECP256K1_TR, key_packages[identifier]) for identifier in subset]
        commitments = [commitment for _, commitment in rounds]
        signature_shares = [sign(SECP256K1_TR, message, commitments, nonces, key_packages[identifier])
                            for identifier, (nonces, _) in zip(subset, rounds)]
        signature = aggregate(SECP256K1_TR, message, commitments, signature_shares, package)
        try:
            verified = unsigned.add_signature(signature.hex()).verify()
        except NostrSdkError:
            verified = False
        if not verified:
            raise ValueError(f"the split failed its check: members {list(subset)} made a signature "
                             "that nostr-sdk rejects")
    return len(subsets)


def read_nsec_file(path: Path) -> SecretKey:
    """The secret key in ``path``: bech32 ``nsec1...`` or 64 hex characters, surrounding whitespace ignored."""
    label = f"nsec file {path}"
    try:
        data = path.read_bytes()[: _MAX_NSEC_FILE_BYTES + 1]
    except OSError as exc:
        raise KeyFileError(f"cannot read {label}: {exc.strerror}") from None
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    expected = "expected a bech32 nsec1... or 64 hex characters"
    if text.startswith("ncryptsec1"):
        raise KeyFileError(f"{label} holds an encrypted key (ncryptsec); {expected}")
    try:
        if text.lower().startswith("nsec1"):
            return SecretKey.parse(text)
        if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
            return SecretKey.from_bytes(bytes.fromhex(text))
    except NostrSdkError:
        raise KeyFileError(f"{label} does not hold a valid secret key ({expected})") from None
    raise KeyFileError(f"{label} does not hold a secret key ({expected})")


# ---------------------------------------------------------------------------------------------- identity, show


def run_identity(args: argparse.Namespace) -> int:
    check_kdf_log_n(args.kdf_log_n)
    out = Path(args.out)
    check_new_files(out.parent, [out.name])
    passphrase = read_passphrase(args.passphrase_file, confirm=True, prompt="Passphrase for the identity key: ")
    keys = Keys.generate()
    write_files(out.parent, {out.name: (encode_identity(keys, passphrase, kdf_log_n=args.kdf_log_n),
                                        SECRET_MODE)})
    print(f"identity npub: {keys.public_key().to_bech32()}")
    print(f"wrote: {out} (mode 0600)")
    return 0


def run_show(args: argparse.Namespace) -> int:
    facts = read_key_file(args.file)
    if args.keyset is not None and not isinstance(facts, ShareFile):
        raise ValueError(f"--keyset checks share files; {args.file} is not a share file")
    if isinstance(facts, Keyset):
        package = facts.public_key_package
        print(f"keyset file: {args.file}")
        print(f"group npub: {facts.group_npub}")
        print(f"group public key: {package.group_public_key.hex()}")
        print(f"threshold: {facts.threshold} of {facts.members}")
        for identifier, share in package.verifying_shares:
            print(f"member {identifier} verifying share: {share.hex()}")
    elif isinstance(facts, ShareFile):
        checked = None
        if args.keyset is not None:  # checked before printing, so a failure prints only its one line
            keyset = load_keyset(args.keyset)
            passphrase = read_passphrase(args.passphrase_file, prompt=f"Passphrase for {args.file}: ")
            checked = load_share(args.file, passphrase, keyset)
        print(f"share file: {args.file}")
        print(f"member: {facts.identifier}")
        print(f"group npub: {facts.group_npub}")
        print(f"threshold: {facts.threshold} of {facts.members}")
        print("signing share: encrypted (NIP-49)")
        if checked is not None:
            print(f"verifying share: {checked.verifying_share.hex()}")
            print(f"check: OK, the share matches the keyset's VSS commitment and member "
                  f"{checked.identifier}'s verifying share")
    else:
        print(f"identity file: {args.file}")
        print(f"npub: {facts.npub}")
        print("secret key: encrypted (NIP-49)")
    return 0


def _progress(line: str) -> None:
    if sys.stderr.isatty():
        print(line, file=sys.stderr, flush=True)
