"""``dvm-sidecar example-dvm``: run the example DVM against one relay until interrupted.

The key comes from a file holding an nsec (or 64-hex secret), never from the command line, or is made fresh
with ``--ephemeral-key``. The DVM's npub is printed first, so an operator can configure the sidecar with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import stat
import sys
from pathlib import Path
from typing import Any

from nostr_sdk import Keys, NostrSdkError, PublicKey

from consensus.nip90 import is_request_kind
from sidecar import event_loop
from sidecar.example_dvm import DEFAULT_KINDS, MAX_DELAY, ExampleDvm

MAX_KEY_FILE_BYTES = 4096


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "example-dvm",
        help="run a small deterministic NIP-90 DVM (a stand-in for your own DVM)",
        description="A deterministic NIP-90 DVM: answers kind 5xxx requests addressed to it (last p tag) "
        "with the sha256 of their text inputs and params. It speaks only to --relay.",
    )
    parser.add_argument("--relay", required=True, metavar="URL", help="the one relay to use (ws://...)")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--nsec-file", type=Path, metavar="FILE", help="file holding the DVM's nsec (mode 0600)")
    key.add_argument("--ephemeral-key", action="store_true", help="use a fresh key, printed as npub on start")
    parser.add_argument(
        "--kinds",
        type=parse_kinds,
        default=DEFAULT_KINDS,
        metavar="K[,K...]",
        help=f"request kinds to serve (default {','.join(map(str, DEFAULT_KINDS))})",
    )
    parser.add_argument(
        "--answer-for",
        type=parse_pubkey,
        metavar="PUBKEY",
        help="serve requests addressed to this key instead of its own (npub or hex; passthrough mode)",
    )
    parser.add_argument(
        "--wrong", action="store_true", help="answer wrongly (differently from every other DVM)"
    )
    parser.add_argument(
        "--fail", action="store_true", help="answer every request with kind 7000 error feedback"
    )
    parser.add_argument(
        "--delay", type=parse_delay, default=0.0, metavar="SECONDS", help="wait before answering"
    )
    parser.set_defaults(handler=run)


def parse_kinds(text: str) -> tuple[int, ...]:
    try:
        kinds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of kinds") from None
    bad = [kind for kind in kinds if not is_request_kind(kind)]
    if bad:
        raise argparse.ArgumentTypeError(f"not NIP-90 request kinds (5000-5999): {bad}")
    return kinds


def parse_pubkey(text: str) -> str:
    try:
        return str(PublicKey.parse(text).to_hex())
    except NostrSdkError:
        raise argparse.ArgumentTypeError("not a public key (npub1... or 64 hex characters)") from None


def parse_delay(text: str) -> float:
    try:
        delay = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.0 <= delay <= MAX_DELAY:
        raise argparse.ArgumentTypeError(f"delay must be between 0 and {MAX_DELAY:g} seconds")
    return delay


def read_nsec_file(path: Path) -> Keys:
    """The key in ``path``; errors name the file and never echo its content."""
    try:
        info = path.stat()
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise ValueError(f"{path}: too large for a key file")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise ValueError(f"{path}: readable by others; run: chmod 600 {path}")
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    try:
        return Keys.parse(text)
    except NostrSdkError:
        raise ValueError(f"{path}: does not hold an nsec or a 64-hex secret key") from None


def run(args: argparse.Namespace) -> int:
    try:
        keys = Keys.generate() if args.ephemeral_key else read_nsec_file(args.nsec_file)
        dvm = ExampleDvm(
            keys,
            args.relay,
            kinds=args.kinds,
            answer_for=args.answer_for,
            wrong=args.wrong,
            fail=args.fail,
            delay=args.delay,
        )
    except ValueError as exc:
        print(f"example-dvm: {exc}", file=sys.stderr)
        return 2
    return event_loop.run(_serve(dvm, args.relay))


async def _serve(dvm: ExampleDvm, relay: str) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopping.set)
    try:
        await dvm.start(
            require_relay=False
        )  # the relay may come up after the DVM (compose); nostr-sdk retries
    except ValueError as exc:
        print(f"example-dvm: {exc}", file=sys.stderr)
        return 2
    mode = (
        ""
        if dvm.answers_for == dvm.pubkey
        else f", answering for {PublicKey.parse(dvm.answers_for).to_bech32()}"
    )
    print(
        f"example-dvm {dvm.npub} serving kinds {','.join(map(str, dvm.kinds))} on {relay}{mode}", flush=True
    )
    try:
        await stopping.wait()
    finally:
        await dvm.stop()
    counts = dvm.counts
    print(
        f"example-dvm stopped: {counts.served} served, {counts.failed} failed, {counts.ignored} ignored",
        flush=True,
    )
    return 0
