"""``dvm-sidecar demo``: a whole local federation, ending in verified co-signed events."""

from __future__ import annotations

import argparse
import logging

from sidecar import event_loop
from sidecar.demo import DemoOptions, run_demo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run a whole federation on this machine and verify its co-signed results",
        description="Start an embedded relay and Redis, then per member a sidecar, a private relay and an "
        "example DVM; send jobs as a customer and verify every co-signed result with nostr-sdk.",
    )
    p.add_argument("--members", type=int, default=3, help="n, the number of members (default 3)")
    p.add_argument("--threshold", type=int, default=2, help="t, members that must agree (default 2)")
    p.add_argument("--byzantine", type=int, default=0, metavar="K", help="K DVMs answer wrongly (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="jobs to send (default 1)")
    p.add_argument("--transport", choices=("nostr", "redis"), default="nostr", help="peer transport")
    p.add_argument("--relay", metavar="URL", help="use this relay as the public relay instead of an embedded one")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the results (default 60)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the sidecars do")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        options = DemoOptions(
            members=args.members, threshold=args.threshold, byzantine=args.byzantine, jobs=args.jobs,
            transport=args.transport, relay=args.relay, as_json=args.json, timeout=args.timeout,
        )
    except ValueError as exc:
        print(f"dvm-sidecar demo: {exc}")
        return 2
    report = event_loop.run(run_demo(options))
    return 0 if report.ok else 1
