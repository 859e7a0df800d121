"""One module per ``dvm-sidecar`` subcommand; each exposes ``register(subparsers)``.

A module registers its parser and sets ``handler=`` to a function taking the parsed arguments and returning the
exit code. Add a new subcommand by adding its module name to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from consensus.errors import InvalidContribution

COMMANDS: tuple[str, ...] = ("keys", "example_dvm", "demo", "federation", "simulate", "verify", "run")


def guarded(command: str, run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn every expected failure into one line on stderr and exit code 1."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (ValueError, InvalidContribution) as exc:
            message = str(exc)
        except OSError as exc:
            message = f"{exc.strerror or 'input/output error'}: {exc.filename}"
        print(f"dvm-sidecar {command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 1

    return handler
