"""``dvm-sidecar simulate``: what a t-of-n federation survives, from many seeded simulated runs.

Thin: parses the arguments into ``consensus.simulation_report.Configuration`` values, runs them, prints a table
(or JSON). Exit code 0, 1 if any run broke a safety rule (the failing seeds are printed so they can be
replayed), 2 for arguments that make no federation.
"""

from __future__ import annotations

import argparse
import json
import sys

from consensus.simulation_report import (
    BEHAVIOUR_CHOICES,
    MIXED,
    Configuration,
    format_failures,
    format_header,
    format_row,
    run_configuration,
    to_json,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate many federations with faulty members and report what they survive",
        description="Run the quorum protocol with real FROST signing on a simulated network, many times under "
        "one seed, and print per configuration: runs, published results, co-signed no-quorum errors, runs "
        "that published nothing, safety violations (must be 0), the most signing sessions one coordinator "
        "needed, and the p50/p99 simulated seconds to publish.",
    )
    p.add_argument("--members", type=int, required=True, metavar="N", help="n, the number of members")
    p.add_argument("--threshold", type=int, required=True, metavar="T", help="t, members that must agree")
    p.add_argument("--faulty", metavar="F", help="faulty members: a number, or a range A-B for one row each "
                   "(default: 0 to N-T, every count the federation is meant to survive)")
    p.add_argument("--behaviour", choices=BEHAVIOUR_CHOICES, default=MIXED,
                   help="how the faulty members fail; mixed draws one per member from the seed (default)")
    p.add_argument("--runs", type=int, default=100, metavar="R", help="runs per configuration (default 100)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="seed of everything random (default 1)")
    p.add_argument("--drop", type=float, default=0.0, metavar="P", help="probability a message is lost")
    p.add_argument("--duplicate", type=float, default=0.0, metavar="P",
                   help="probability a message is delivered twice")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_run)


def _faulty_counts(text: str | None, n: int, t: int) -> range:
    if text is None:
        return range(0, max(n - t, 0) + 1)
    low, sep, high = text.partition("-")
    try:
        first = int(low)
        last = int(high) if sep else first
    except ValueError:
        raise ValueError(f"--faulty must be a number or a range A-B, got {text!r}") from None
    if first > last:
        raise ValueError(f"--faulty range {text!r} is empty")
    return range(first, last + 1)


def _run(args: argparse.Namespace) -> int:
    try:
        configurations = [
            Configuration(args.members, args.threshold, faulty, args.behaviour, args.runs, args.seed,
                          drop=args.drop, duplicate=args.duplicate)
            for faulty in _faulty_counts(args.faulty, args.members, args.threshold)
        ]
    except ValueError as exc:
        print(f"dvm-sidecar simulate: {exc}", file=sys.stderr)
        return 2
    summaries = []
    if not args.json:
        print(format_header(), flush=True)
    for config in configurations:
        summary = run_configuration(config)
        summaries.append(summary)
        if not args.json:  # a row at a time: large federations take a while
            print(format_row(summary), flush=True)
    if not args.json:
        for summary in summaries:
            for line in format_failures(summary):
                print(line)
    if args.json:
        print(json.dumps(to_json(summaries), indent=2))
    return 1 if any(s.violations for s in summaries) else 0
