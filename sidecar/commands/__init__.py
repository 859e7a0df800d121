"""One module per ``dvm-sidecar`` subcommand; each exposes ``register(subparsers)``.

A module registers its parser and sets ``handler=`` to a function taking the parsed arguments and returning the
exit code. Add a new subcommand by adding its module name to ``COMMANDS``.
"""

COMMANDS: tuple[str, ...] = ("keys", "example_dvm", "demo", "federation", "simulate", "verify", "run")
