"""Whole federations in the simulator: safety, liveness, accountability, no quorum, restarts, lossy networks.

Every seed that ever failed is kept in ``regression_seeds.json`` and replayed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consensus.simulator import Network, Scenario, Simulation

REGRESSION_SEEDS = Path(__file__).with_name("regression_seeds.json")


def scenario_from(description: dict[str, Any]) -> Scenario:
    network = Network(drop=description.get("drop", 0.0), duplicate=description.get("duplicate", 0.0))
    return Scenario(
        description["n"], description["t"],
        faulty=tuple((member, behaviour) for member, behaviour in description.get("faulty", ())),
        network=network, split=description.get("split", False),
        crash_point=description.get("crash_point", "start"),
        restarts=tuple((member, at) for member, at in description.get("restarts", ())),
    )


def _regression_cases() -> list[Any]:
    return [pytest.param(case, id=f"seed{case['seed']}-{case['scenario']['t']}-of-{case['scenario']['n']}")
            for case in json.loads(REGRESSION_SEEDS.read_text())]


@pytest.mark.parametrize("case", _regression_cases())
def test_regression_seed(case: dict[str, Any]) -> None:
    outcome = Simulation(scenario_from(case["scenario"]), case["seed"]).run()
    assert outcome.violations == [], case["description"]
    assert outcome.kind == case.get("expect", "published"), case["description"]
