"""Many seeded simulator runs of one federation configuration, summed up: what ``dvm-sidecar simulate`` prints.

A ``Configuration`` (t-of-n, how many members are faulty and how, how many runs, a seed, the network's loss)
expands into one ``Scenario`` and run seed per run. The configuration's seed decides everything: each run's
seed, which members are faulty, the behaviour of each under ``mixed``, and the crash point, so the same
command prints the same figures. ``Summary`` holds what an operator asks before forming a federation: how
often a result was published, how often the federation fell back to a co-signed no-quorum error, whether any
safety rule broke (it must not), how many signing sessions one coordinator needed at most, and the simulated
time to publish.

Pure: no I/O, no clock; the CLI (``sidecar.commands.simulate``) only parses arguments and prints.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from consensus.simulator import BEHAVIOURS, CRASH_POINTS, Network, Outcome, Scenario, Simulation

MIXED = "mixed"
BEHAVIOUR_CHOICES = BEHAVIOURS + (MIXED,)
MAX_FAILURES_KEPT = 5  # failing runs named in a summary, to replay them


@dataclass(frozen=True)
class Configuration:
    n: int
    t: int
    faulty: int
    behaviour: str
    runs: int
    seed: int
    drop: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        if not 2 <= self.t <= self.n:
            raise ValueError(f"need 2 <= threshold <= members, got {self.t}-of-{self.n}")
        if not 0 <= self.faulty <= self.n:
            raise ValueError(f"faulty must be 0..{self.n}, got {self.faulty}")
        if self.behaviour not in BEHAVIOUR_CHOICES:
            raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOUR_CHOICES)}")
        if self.runs < 1:
            raise ValueError("runs must be at least 1")
        for name in ("drop", "duplicate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1)")

    @property
    def label(self) -> str:
        return f"{self.t}-of-{self.n}, {self.faulty} {self.behaviour}"


@dataclass(frozen=True)
class Failure:
    """A run that broke a safety rule: enough to replay it (``Simulation(scenario, seed)``)."""

    seed: int
    scenario: Scenario
    violation: str


@dataclass(frozen=True)
class Summary:
    configuration: Configuration
    runs: int
    published: int  # a co-signed result
    no_quorum: int  # a co-signed kind 7000 error instead
    unfinished: int  # nothing published before the simulation's horizon
    violations: int  # runs that broke a safety rule
    max_sessions: int  # the most signing sessions one coordinator started for the job
    p50: float | None  # simulated seconds from the request to the first publication
    p99: float | None
    failures: tuple[Failure, ...] = ()


def runs(config: Configuration) -> Iterator[tuple[Scenario, int]]:
    """The configuration's runs, each a scenario and the seed of its simulation."""
    rand = random.Random(f"{config.seed}/{config.n}/{config.t}/{config.faulty}/{config.behaviour}")
    network = Network(drop=config.drop, duplicate=config.duplicate)
    for _ in range(config.runs):
        members = sorted(rand.sample(range(1, config.n + 1), config.faulty))
        faulty = tuple(
            (member, rand.choice(BEHAVIOURS) if config.behaviour == MIXED else config.behaviour)
            for member in members
        )
        crash_point = rand.choice(CRASH_POINTS)
        yield Scenario(config.n, config.t, faulty, network, crash_point=crash_point), rand.getrandbits(32)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (``q`` in 0..100) of ``values``; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(config: Configuration, outcomes: Iterable[tuple[Scenario, Outcome]]) -> Summary:
    counts = {"published": 0, "no_quorum": 0, "none": 0}
    times: list[float] = []
    failures: list[Failure] = []
    violations = max_sessions = total = 0
    for scenario, outcome in outcomes:
        total += 1
        counts[outcome.kind] += 1
        max_sessions = max(max_sessions, outcome.max_sessions)
        if outcome.first_publish_at is not None:
            times.append(outcome.first_publish_at)
        if outcome.violations:
            violations += 1
            if len(failures) < MAX_FAILURES_KEPT:
                failures.append(Failure(outcome.seed, scenario, outcome.violations[0]))
    return Summary(
        config, total, counts["published"], counts["no_quorum"], counts["none"], violations, max_sessions,
        percentile(times, 50), percentile(times, 99), tuple(failures),
    )


def run_configuration(
    config: Configuration, step_hook: Callable[[int, Callable[[], object]], object] | None = None
) -> Summary:
    """Simulate every run of the configuration and sum them up."""
    return summarize(
        config,
        ((scenario, Simulation(scenario, seed, step_hook).run()) for scenario, seed in runs(config)),
    )


# (header, width): fixed, so rows can be printed one at a time as their runs finish
_COLUMNS = (("t-of-n", 9), ("faulty", 6), ("behaviour", 12), ("runs", 6), ("published", 9), ("no-quorum", 9),
            ("unfinished", 10), ("violations", 10), ("sessions", 8), ("p50 s", 7), ("p99 s", 7))


def _line(cells: Sequence[str]) -> str:
    return "  ".join(cell.ljust(w) if i in (0, 2) else cell.rjust(w)
                     for i, (cell, (_, w)) in enumerate(zip(cells, _COLUMNS))).rstrip()


def format_header() -> str:
    return _line([name for name, _ in _COLUMNS])


def format_row(s: Summary) -> str:
    c = s.configuration
    return _line([
        f"{c.t}-of-{c.n}", str(c.faulty), c.behaviour, str(s.runs), str(s.published), str(s.no_quorum),
        str(s.unfinished), str(s.violations), str(s.max_sessions), _seconds(s.p50), _seconds(s.p99),
    ])


def format_failures(s: Summary) -> list[str]:
    """One line per kept failing run, with what it takes to replay it."""
    return [f"SAFETY VIOLATION in {s.configuration.label}: seed {f.seed}, faulty {list(f.scenario.faulty)}, "
            f"crash point {f.scenario.crash_point}: {f.violation}" for f in s.failures]


def format_table(summaries: Sequence[Summary]) -> str:
    """A short table for people, one row per configuration, and the failing runs under it."""
    lines = [format_header()] + [format_row(s) for s in summaries]
    for s in summaries:
        lines.extend(format_failures(s))
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def to_json(summaries: Sequence[Summary]) -> dict[str, Any]:
    """The same figures for machines (``json.dumps`` ready)."""
    return {
        "configurations": [
            {
                "members": s.configuration.n,
                "threshold": s.configuration.t,
                "faulty": s.configuration.faulty,
                "behaviour": s.configuration.behaviour,
                "seed": s.configuration.seed,
                "drop": s.configuration.drop,
                "duplicate": s.configuration.duplicate,
                "runs": s.runs,
                "published": s.published,
                "no_quorum": s.no_quorum,
                "unfinished": s.unfinished,
                "safety_violations": s.violations,
                "max_sessions": s.max_sessions,
                "publish_seconds_p50": s.p50,
                "publish_seconds_p99": s.p99,
                "failures": [
                    {"seed": f.seed, "faulty": [list(m) for m in f.scenario.faulty],
                     "crash_point": f.scenario.crash_point, "violation": f.violation}
                    for f in s.failures
                ],
            }
            for s in summaries
        ],
        "safety_violations": sum(s.violations for s in summaries),
    }
