"""Job state JSON: every state the state machine produces in whole simulated federations round-trips exactly,
and no secret (a secret nonce any member ever held, a key share) ever appears in it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from consensus.jobstate import JobState, Phase
from consensus.simulator import Scenario, Simulation


def _secret_texts(value: int) -> set[str]:
    return {value.to_bytes(32, "big").hex(), str(value)}


def _nonce_values(sim: Simulation, member: int) -> set[int]:
    """The secret nonces the member's process holds right now (read from its private store on purpose)."""
    values: set[int] = set()
    for held in sim.members[member]._nonces.values():
        for nonces in held.values():
            values.update(v for v in (nonces._hiding, nonces._binding) if v is not None)
    return values


SCENARIOS = {
    "honest": Scenario(5, 3),
    "bad shares": Scenario(5, 3, faulty=((1, "bad-share"), (2, "bad-share"))),
    "withheld shares": Scenario(7, 5, faulty=((3, "withhold"), (6, "withhold"))),
    "crash after share": Scenario(5, 3, faulty=((4, "crash"),), crash_point="after_share"),
    "no quorum": Scenario(5, 3, split=True),
    "restarts": Scenario(5, 3, restarts=((1, 0.4), (2, 0.5), (3, 0.7), (4, 1.0), (5, 2.0))),
}


def run_recording(scenario: Scenario, seed: int, phases: set[Phase]) -> None:
    """Run one federation; check every state as it is made, and after the run that none holds a secret."""
    nonces_seen: set[int] = set()
    texts: list[str] = []
    sim: Simulation

    def hook(member: int, thunk: Callable[[], object]) -> object:
        result = thunk()
        state = result[0]  # type: ignore[index]
        assert isinstance(state, JobState)
        nonces_seen.update(_nonce_values(sim, member))
        text = state.to_json()
        assert JobState.from_json(text) == state
        assert JobState.from_json(text).to_json() == text
        phases.add(state.phase)
        texts.append(text)
        return result

    sim = Simulation(scenario, seed, step_hook=hook)
    sim.run()
    assert nonces_seen, "the run made no nonces: the check below would check nothing"
    shares = {m.key_package.signing_share for m in sim.members.values()}
    forbidden = set().union(*(_secret_texts(v) for v in nonces_seen | shares))
    for text in texts:
        assert not [s for s in forbidden if s in text], "a secret in a stored job state"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_states_round_trip_and_hold_no_secret(name: str) -> None:
    phases: set[Phase] = set()
    for seed in range(4):
        run_recording(SCENARIOS[name], seed, phases)
    assert {Phase.RUNNING, Phase.ANNOUNCED, Phase.DONE} <= phases
    if name != "no quorum":
        assert Phase.SIGNING in phases


def test_from_json_refuses_what_it_did_not_write() -> None:
    sim = Simulation(Scenario(3, 2), 1)
    sim.run()
    state = sim.states[1]
    assert state is not None
    good = json.loads(state.to_json())
    for broken in (
        "", "[]", "{}", "null",
        json.dumps({k: v for k, v in good.items() if k != "phase"}),
        json.dumps({**good, "phase": "finished"}),
        json.dumps({**good, "digest": "zz"}),
        json.dumps({**good, "fresh": {"1": "00"}}),
        json.dumps({**good, "sessions": [{"number": 0}]}),
    ):
        with pytest.raises(ValueError):
            JobState.from_json(broken)


def test_evolve_is_replace() -> None:
    state = JobState(job_id="ab" * 32, phase=Phase.PENDING, created_at=1.0)
    evolved = state.evolve(phase=Phase.RUNNING, attempt=2)
    assert evolved == replace(state, phase=Phase.RUNNING, attempt=2) and evolved is not state
    assert state.phase is Phase.PENDING and state.attempt == 0  # the original is untouched
    assert evolved.to_json() == replace(state, phase=Phase.RUNNING, attempt=2).to_json()
    with pytest.raises(TypeError, match="no field"):
        state.evolve(phases=Phase.DONE)
