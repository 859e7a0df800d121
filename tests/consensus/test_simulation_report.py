"""Many-run summaries: the seed decides every run, mixed draws behaviours, figures add up, bad settings refused."""

from __future__ import annotations

import json

import pytest

from consensus.simulation_report import (
    Configuration,
    format_table,
    percentile,
    run_configuration,
    runs,
    summarize,
    to_json,
)
from consensus.simulator import BEHAVIOURS, CRASH_POINTS, Outcome, Scenario


def test_runs_are_decided_by_the_seed() -> None:
    config = Configuration(7, 5, 2, "mixed", 40, seed=3)
    first, again = list(runs(config)), list(runs(config))
    assert first == again
    assert first != list(runs(Configuration(7, 5, 2, "mixed", 40, seed=4)))
    assert len({seed for _, seed in first}) == 40
    assert all(len(sc.faulty) == 2 and len({m for m, _ in sc.faulty}) == 2 for sc, _ in first)
    drawn = {b for sc, _ in first for _, b in sc.faulty}
    assert drawn == set(BEHAVIOURS)  # 80 draws over six behaviours
    assert {sc.crash_point for sc, _ in first} == set(CRASH_POINTS)


def test_a_single_behaviour_is_kept_and_the_network_passed_on() -> None:
    for scenario, _ in runs(Configuration(5, 3, 2, "withhold", 5, seed=1, drop=0.1, duplicate=0.2)):
        assert {b for _, b in scenario.faulty} == {"withhold"}
        assert (scenario.network.drop, scenario.network.duplicate) == (0.1, 0.2)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_summary_counts_and_keeps_failing_runs_to_replay() -> None:
    config = Configuration(3, 2, 1, "crash", 3, seed=1)
    scenario = Scenario(3, 2, ((1, "crash"),))
    outcomes = [
        Outcome(11, {}, None, 0, [], {}, {}, {}, 5),
        Outcome(12, {}, 2.0, 3, ["member 2 blamed honest members [3]"], {}, {}, {}, 5),
        Outcome(13, {}, 1.0, 1, [], {}, {}, {}, 5),
    ]
    summary = summarize(config, [(scenario, o) for o in outcomes])
    assert (summary.runs, summary.unfinished, summary.violations, summary.max_sessions) == (3, 3, 1, 3)
    assert (summary.p50, summary.p99) == (1.0, 2.0)
    assert [(f.seed, f.violation) for f in summary.failures] == [(12, "member 2 blamed honest members [3]")]
    assert "SAFETY VIOLATION" in format_table([summary]) and "seed 12" in format_table([summary])
    assert to_json([summary])["safety_violations"] == 1


def test_run_configuration_adds_up() -> None:
    summary = run_configuration(Configuration(5, 3, 2, "mixed", 12, seed=9))
    assert summary.runs == 12 == summary.published + summary.no_quorum + summary.unfinished
    assert summary.published == 12 and summary.violations == 0
    assert summary.p50 is not None and summary.p99 is not None and 0 < summary.p50 <= summary.p99
    assert 1 <= summary.max_sessions <= 2 * (5 - 3 + 1)
    report = json.loads(json.dumps(to_json([summary])))
    assert report["configurations"][0]["published"] == 12
    header, row = format_table([summary]).splitlines()
    assert header.split()[:3] == ["t-of-n", "faulty", "behaviour"] and row.split()[:4] == ["3-of-5", "2", "mixed", "12"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 3, "t": 4}, {"n": 3, "t": 1}, {"faulty": -1}, {"faulty": 6}, {"behaviour": "lazy"}, {"runs": 0},
        {"drop": 1.0}, {"drop": -0.1}, {"duplicate": 1.5},
    ],
)
def test_configurations_that_make_no_federation_are_refused(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"n": 5, "t": 3, "faulty": 1, "behaviour": "crash", "runs": 1, "seed": 1}
    settings.update(kwargs)
    with pytest.raises(ValueError):
        Configuration(**settings)  # type: ignore[arg-type]
