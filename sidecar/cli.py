"""The ``dvm-sidecar`` command: each subcommand lives in its own module under ``sidecar.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sidecar import __version__
from sidecar.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dvm-sidecar",
        description="Threshold-signing sidecar for NIP-90 Data Vending Machines.",
    )
    parser.add_argument("--version", action="version", version=f"dvm-sidecar {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"sidecar.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
