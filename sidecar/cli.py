"""The ``dvm-sidecar`` command: one subcommand per task, each in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sidecar import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dvm-sidecar",
        description="Threshold-signing sidecar for NIP-90 Data Vending Machines.",
    )
    parser.add_argument("--version", action="version", version=f"dvm-sidecar {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
