"""``dvm-sidecar federation``: ``init`` writes the federation file from the keyset, ``show`` prints one.

Rules: ``init`` never overwrites a file, and writes only text that ``load_federation`` accepts back unchanged
(it is parsed again before it is written). A threshold of at most half the members is allowed but warned
about: two disjoint quorums could then each co-sign a different result for the same job. Every failure is one
line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from nostr_sdk import NostrSdkError, PublicKey

from consensus.federation import Timeouts
from sidecar.commands import guarded
from sidecar.federation_file import FederationFile, MemberEntry, load_federation, parse_federation
from sidecar.keyfiles import PUBLIC_MODE, check_new_files, load_keyset, write_files

_TIMEOUT_OPTIONS = {"dvm": "--dvm-timeout", "deadline": "--deadline", "coordinator": "--coordinator-timeout",
                    "session": "--session-timeout"}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    federation = subparsers.add_parser(
        "federation", help="write or print the federation file every member shares",
        description="The federation file: public, the same at every member, no secret in it.")
    actions = federation.add_subparsers(dest="federation_action", metavar="ACTION", required=True)

    init = actions.add_parser(
        "init", help="write a federation file from the keyset and each member's identity npub",
        description="Write the federation file from the keyset file (made by `dvm-sidecar keys new|split`), "
                    "each member's identity npub (`dvm-sidecar keys identity`), the relays and the kinds served.")
    init.add_argument("--keyset", type=Path, required=True, metavar="KEYSET", help="the keyset file")
    init.add_argument("--member", action="append", required=True, metavar="INDEX=IDENTITY_NPUB",
                      help="a member's identity key; once per member of the keyset")
    init.add_argument("--member-name", action="append", default=[], metavar="INDEX=NAME",
                      help="a label for people (optional, once per member at most)")
    init.add_argument("--relay", action="append", required=True, metavar="URL", help="a public relay (wss://...)")
    init.add_argument("--kind", action="append", type=int, required=True, metavar="KIND",
                      help="a job request kind served (5000-5999)")
    init.add_argument("--policy", default="exact", metavar="POLICY",
                      help="how results are compared: exact (default), json or tag:NAME")
    init.add_argument("--name", default="", help="a label for people; also the name in the NIP-89 announcement")
    init.add_argument("--about", default="", help="what the federation's DVM does, for the NIP-89 announcement")
    init.add_argument("--no-announcement", action="store_true",
                      help="do not publish a NIP-89 kind 31990 announcement of the federation")
    defaults = Timeouts()
    for attr, option in _TIMEOUT_OPTIONS.items():
        init.add_argument(option, type=float, dest=f"timeout_{attr}", metavar="SECONDS",
                          help=f"timeouts.{attr}_seconds (default {getattr(defaults, attr):g})")
    init.add_argument("--out", type=Path, required=True, metavar="FILE", help="the federation file to create")
    init.set_defaults(handler=guarded("federation init", run_init))

    show = actions.add_parser("show", help="print a federation file's contents for people",
                              description="Check a federation file and print what it says.")
    show.add_argument("file", type=Path, metavar="FILE")
    show.set_defaults(handler=guarded("federation show", run_show))


def _pairs(values: list[str], option: str, what: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for value in values:
        index, sep, rest = value.partition("=")
        if not sep or not index.isdecimal() or not index.isascii() or not rest:
            raise ValueError(f"{option} {value!r}: write it as INDEX={what}")
        if int(index) in found:
            raise ValueError(f"{option}: member {int(index)} is given twice")
        found[int(index)] = rest
    return found


def run_init(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_new_files(out.parent, [out.name])
    keyset = load_keyset(args.keyset)
    identifiers = keyset.identifiers
    identities = _pairs(args.member, "--member", "IDENTITY_NPUB")
    names = _pairs(args.member_name, "--member-name", "NAME")
    for option, given in (("--member", identities), ("--member-name", names)):
        strangers = sorted(set(given) - set(identifiers))
        if strangers:
            raise ValueError(f"{option}: member {strangers[0]} is not in the keyset (members "
                             f"{identifiers[0]}..{identifiers[-1]})")
    missing = [i for i in identifiers if i not in identities]
    if missing:
        raise ValueError(f"--member: no identity npub for member {missing[0]}; give --member INDEX=IDENTITY_NPUB "
                         "for every member of the keyset")
    package = keyset.public_key_package
    members = tuple(MemberEntry(index=i, name=names.get(i, ""), identity_pubkey=_identity(i, identities[i]),
                                verifying_share=package.verifying_share(i)) for i in identifiers)
    chosen = {attr: getattr(args, f"timeout_{attr}") for attr in _TIMEOUT_OPTIONS}
    timeouts = dataclasses.replace(Timeouts(), **{k: v for k, v in chosen.items() if v is not None})
    draft = FederationFile(
        name=args.name, group_pubkey=package.xonly_public_key.hex(), threshold=keyset.threshold,
        kinds=tuple(args.kind), digest_policy=args.policy, relays=tuple(args.relay), members=members,
        vss_commitment=package.vss_commitment, timeouts=timeouts, about=args.about,
        announced_at=None if args.no_announcement else int(time.time()),
    )
    text = draft.to_toml()
    if parse_federation(text, str(out)) != draft:  # the file must read back as exactly what was meant
        raise ValueError("the federation file would not read back unchanged; nothing written")
    write_files(out.parent, {out.name: (text.encode("utf-8"), PUBLIC_MODE)})
    _warn_split_quorums(draft)
    print(f"group npub: {draft.npub}")
    print(f"threshold: {draft.threshold} of {len(draft.members)}")
    print(f"wrote: {out} (public: give the same file to every member)")
    return 0


def _identity(index: int, key: str) -> str:
    try:
        return PublicKey.parse(key).to_hex()
    except NostrSdkError:
        raise ValueError(f"--member {index}={key[:70]}: not a valid npub (or 64-hex public key)") from None


def _warn_split_quorums(federation: FederationFile) -> None:
    t, n = federation.threshold, len(federation.members)
    if 2 * t <= n:
        print(f"warning: threshold {t} of {n} is at most half the members: two disjoint groups of {t} could each "
              f"co-sign a different result for the same job; a threshold above {n // 2} prevents that",
              file=sys.stderr)


def run_show(args: argparse.Namespace) -> int:
    federation = load_federation(args.file)
    timeouts = federation.timeouts
    print(f"federation file: {args.file}")
    if federation.name:
        print(f"name: {federation.name}")
    print(f"npub: {federation.npub}")
    print(f"threshold: {federation.threshold} of {len(federation.members)} "
          f"(a result is published when {federation.threshold} members agree and co-sign it)")
    print(f"kinds: {', '.join(map(str, federation.kinds))}")
    print(f"relays: {', '.join(federation.relays)}")
    print(f"digest policy: {federation.digest_policy}")
    print(f"timeouts: dvm {timeouts.dvm:g} s, deadline {timeouts.deadline:g} s, "
          f"coordinator {timeouts.coordinator:g} s, session {timeouts.session:g} s")
    for member in federation.members:
        label = f" ({member.name})" if member.name else ""
        print(f"member {member.index}{label}: identity {member.identity_npub}, "
              f"verifying share {member.verifying_share.hex()}")
    _warn_split_quorums(federation)
    return 0
