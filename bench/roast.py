"""ROAST under a coordinated attack, in the simulator: signing sessions, and the busiest member's compute time
as a ratio to one coincurve BIP-340 signature measured in the same run.

For 11-of-15 and 67-of-100, the n - t members right after the first coordinator in the job's rotation attack
signing together (the ROAST paper's worst case): in every session exactly one of them withholds its share, or
sends an invalid one, and the coordinator puts them all in its sessions. The run prints the most sessions one
coordinator used (ROAST bound: n - t + 1), the simulated time to publish, and the compute time of the busiest
member: the wall time of each of its state-machine steps (``Simulation`` ``step_hook`` + ``time.perf_counter``),
summed. One ``PrivateKey.sign_schnorr`` is timed in batches before and after every run; the median is the unit.

The coordinator timeout is sized so that one coordinator can run all n - t + 1 sessions (coordinator >=
(n - t + 1) x session): with a shorter one the role moves on before a withholding attack is exhausted.

Usage: .venv/bin/python bench/roast.py [--seeds K] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time
from collections.abc import Callable

from coincurve import PrivateKey

from consensus.federation import Federation, Timeouts
from consensus.simulator import Outcome, Scenario, Simulation, _Keys, make_request

CONFIGS = ((11, 15), (67, 100))  # (t, n)
ATTACKS = ("withhold", "bad-share")
TARGETS = {(67, 100): 5000.0}  # busiest member, in single signatures
SESSION = 1.0


def schnorr_samples(count: int = 300) -> list[float]:
    key, message = PrivateKey(), os.urandom(32)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        key.sign_schnorr(message)
        samples.append(time.perf_counter() - start)
    return samples


def attacked(t: int, n: int, attack: str, seed: int) -> Scenario:
    """The worst placement: the attackers follow the first coordinator in the job's rotation."""
    public, _ = _Keys.get(n, t)
    rotation = Federation(public).rotation(make_request(seed).id)
    sessions = n - t + 1
    timeouts = Timeouts(dvm=10, deadline=20, coordinator=2 * sessions * SESSION + 10, session=SESSION)
    return Scenario(n, t, tuple((m, attack) for m in rotation[1 : n - t + 1]), timeouts=timeouts,
                    horizon=4 * sessions * SESSION + 100)


def run(scenario: Scenario, seed: int, profile_member: int | None) -> tuple[dict[int, float], Outcome, str]:
    spent: dict[int, float] = {}
    profiler = cProfile.Profile() if profile_member is not None else None

    def hook(member: int, thunk: Callable[[], object]) -> object:
        if profiler is not None and member == profile_member:
            profiler.enable()
        start = time.perf_counter()
        result = thunk()
        spent[member] = spent.get(member, 0.0) + time.perf_counter() - start
        if profiler is not None and member == profile_member:
            profiler.disable()
        return result

    outcome = Simulation(scenario, seed, step_hook=hook).run()
    report = ""
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        report = out.getvalue()
    return spent, outcome, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="runs per configuration and attack (default 2)")
    parser.add_argument("--profile", action="store_true", help="cProfile the first coordinator of each run")
    args = parser.parse_args()
    for t, n in CONFIGS:
        _Keys.get(n, t)  # keygen outside the measurements
    print("busiest member's compute time in single coincurve sign_schnorr, measured beside each run")
    print(f"{'t-of-n':>9} {'attack':>9} {'seed':>4} {'sessions':>8} {'bound':>5} {'publish s':>9} "
          f"{'busiest s':>9} {'schnorr us':>10} {'ratio':>8}  notes")
    failed = False
    for t, n in CONFIGS:
        for attack in ATTACKS:
            for seed in range(args.seeds):
                scenario = attacked(t, n, attack, seed)
                first = Federation(_Keys.get(n, t)[0]).rotation(make_request(seed).id)[0]
                samples = schnorr_samples()
                spent, outcome, report = run(scenario, seed, first if args.profile else None)
                samples += schnorr_samples()
                unit = statistics.median(samples)
                busiest = max(spent.values())
                ratio = busiest / unit
                notes = []
                if outcome.kind != "published" or outcome.violations:
                    notes.append(f"NOT PUBLISHED ({outcome.kind}, {outcome.violations[:1]})")
                    failed = True
                bound = n - t + 1
                sessions = outcome.max_sessions
                if sessions > bound:
                    notes.append("sessions over n - t + 1")
                if (t, n) in TARGETS:
                    notes.append(f"<= {TARGETS[(t, n)]:g}x: {'ok' if ratio <= TARGETS[(t, n)] else 'MISSED'}")
                publish = outcome.first_publish_at
                print(f"{f'{t}-of-{n}':>9} {attack:>9} {seed:>4} {sessions:>8} {bound:>5} "
                      f"{publish if publish is None else round(publish, 2)!s:>9} {busiest:>9.3f} "
                      f"{unit * 1e6:>10.1f} {ratio:>8.0f}  {'; '.join(notes)}", flush=True)
                if report:
                    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
