"""Whole federations in the simulator: safety, liveness, accountability, no quorum, restarts, lossy networks.

The property runs: 2-of-3, 3-of-5, 5-of-7 and 7-of-10, each with 0 up to n - t faulty members of every
behaviour (and mixed), the faulty members, their behaviours under mixed and the crash points drawn from the
seed by ``consensus.simulation_report.runs`` (what ``dvm-sidecar simulate`` runs): 2,016 runs, each checked for
safety, liveness and accountability. Every seed that ever failed is kept in ``regression_seeds.json`` and
replayed here.

The liveness bound (also in ``consensus.simulator``'s docstring), for t honest, live, agreeing members and a
network that loses nothing: with d the largest message delay (plus ``slow_extra`` when slow members exist),

    dvm_latency max (+ slow_extra)              the last DVM needed answers
  + faulty x coordinator timeout                each faulty member ahead in the rotation holds the role once
  + (n - t + 1) x session timeout               the ROAST sessions, each failed one costing at most the patience
  + 4 d                                         announce, sign request, share (and a refresh), done
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import nostr_sdk
import pytest

from consensus import frost
from consensus.errors import InvalidContribution
from consensus.jobstate import JobState
from consensus.messages import Target
from consensus.simulation_report import BEHAVIOUR_CHOICES, Configuration, runs
from consensus.simulator import BEHAVIOURS, REQUEST_KIND, Network, Outcome, Scenario, Simulation

REGRESSION_SEEDS = Path(__file__).with_name("regression_seeds.json")
CONFIGS = ((2, 3), (3, 5), (5, 7), (7, 10))  # (t, n)
RUNS_PER_FAULTY_COUNT = {3: 36, 5: 24, 7: 24, 10: 18}  # 72 runs per t-of-n and behaviour, 2,016 in all
RESULT_KIND = REQUEST_KIND + 1000
FEEDBACK_KIND = 7000


def liveness_bound(sc: Scenario) -> float:
    """Simulated seconds within which a result is published (the derivation is in the module docstring)."""
    to, net = sc.timeouts, sc.network
    slow = net.slow_extra if any(b == "slow" for _, b in sc.faulty) else 0.0
    delay = net.delay_max + slow
    return (sc.dvm_latency[1] + slow + len(sc.faulty) * to.coordinator + (sc.n - sc.t + 1) * to.session
            + 4 * delay)


@dataclass(frozen=True)
class Run:
    """One simulated federation, with the facts the property tests read (not the whole simulation)."""

    scenario: Scenario
    seed: int
    outcome: Outcome
    honest: frozenset[int]
    honest_answer: str
    invalid_shares: dict[int, set[int]]  # honest coordinator -> senders of invalid shares in a completed session
    wrong_seen: dict[int, set[int]]  # honest member -> wrong-result members whose announcement it holds
    agreed: dict[int, bool]  # honest member -> it knows the agreed result

    @property
    def label(self) -> str:
        sc = self.scenario
        return f"{sc.t}-of-{sc.n} seed {self.seed} faulty {list(sc.faulty)} crash point {sc.crash_point}"


def _invalid_in_completed_sessions(state: JobState, public: frost.PublicKeyPackage) -> set[int]:
    senders = set()
    for session in state.sessions:
        if len(session.shares) < len(session.commitments):
            continue
        for share in session.shares:
            try:
                frost.verify_signature_share(frost.SECP256K1_TR, share, session.event_id, session.commitments, public)
            except InvalidContribution:
                senders.add(share.identifier)
    return senders


def simulate(scenario: Scenario, seed: int) -> tuple[Simulation, Run]:
    sim = Simulation(scenario, seed)
    outcome = sim.run()
    honest = frozenset(m for m in sim.members if sim.behaviour(m) in ("honest", "slow"))
    wrong = {m for m in sim.members if sim.behaviour(m) == "wrong-result"}
    states = {m: sim.states[m] for m in honest}
    run = Run(
        scenario, seed, outcome, honest, sim.honest_digest,
        invalid_shares={m: _invalid_in_completed_sessions(s, sim.fed.keys) for m, s in states.items() if s},
        wrong_seen={m: set(s.announcements) & wrong for m, s in states.items() if s},
        agreed={m: s is not None and s.target is Target.RESULT for m, s in states.items()},
    )
    return sim, run


@cache
def property_runs(t: int, n: int, behaviour: str) -> tuple[Run, ...]:
    """The seeded runs of one t-of-n and behaviour, made once for the three property tests."""
    out: list[Run] = []
    for faulty in range(n - t + 1):
        config = Configuration(n, t, faulty, behaviour, RUNS_PER_FAULTY_COUNT[n], seed=2024)
        out.extend(simulate(scenario, seed)[1] for scenario, seed in runs(config))
    return tuple(out)


PROPERTY_CASES = [pytest.param(t, n, b, id=f"{t}-of-{n}-{b}") for t, n in CONFIGS for b in BEHAVIOUR_CHOICES]


def check_published_events(run: Run, *, result_expected: bool | None) -> None:
    """Every published event verifies with nostr-sdk; a result is the honest DVMs' answer; an error is 7000."""
    kinds = set()
    for event in run.outcome.published.values():
        parsed = nostr_sdk.Event.from_json(event.to_json())
        assert parsed.verify(), f"{run.label}: event {event.id} does not verify"
        assert event.pubkey == parsed.author().to_hex()
        kinds.add(event.kind)
        if event.kind == RESULT_KIND:
            assert event.content == run.honest_answer, f"{run.label}: published a result the honest DVMs did not"
        else:
            assert event.kind == FEEDBACK_KIND and event.tags[0][:2] == ("status", "error"), run.label
    if result_expected is not None:
        assert (RESULT_KIND in kinds) == result_expected, f"{run.label}: published kinds {sorted(kinds)}"


@pytest.mark.parametrize(("t", "n", "behaviour"), PROPERTY_CASES)
def test_safety(t: int, n: int, behaviour: str) -> None:
    """No safety rule broken (the simulator's checks: signatures, t producers, no honest double share, nobody
    honest blamed) and every published event verifies with nostr-sdk, independently."""
    for run in property_runs(t, n, behaviour):
        assert run.outcome.violations == [], run.label
        check_published_events(run, result_expected=True)


@pytest.mark.parametrize(("t", "n", "behaviour"), PROPERTY_CASES)
def test_liveness(t: int, n: int, behaviour: str) -> None:
    for run in property_runs(t, n, behaviour):
        assert run.outcome.kind == "published", run.label
        at = run.outcome.first_publish_at
        assert at is not None and at <= liveness_bound(run.scenario), f"{run.label}: published at {at}"
        assert set(run.outcome.finished.values()) == {"cosigned"}, f"{run.label}: {run.outcome.finished}"


@pytest.mark.parametrize(("t", "n", "behaviour"), PROPERTY_CASES)
def test_accountability(t: int, n: int, behaviour: str) -> None:
    attacks = 0
    for run in property_runs(t, n, behaviour):
        for member in run.honest:
            blamed = run.outcome.blamed[member]
            assert run.invalid_shares.get(member, set()) <= blamed, f"{run.label}: member {member} missed blame"
            assert not blamed & run.honest, f"{run.label}: member {member} blamed honest {blamed & run.honest}"
            divergent = run.outcome.divergent[member]
            assert not divergent & run.honest, f"{run.label}: honest members recorded divergent"
            assert run.agreed[member], f"{run.label}: member {member} never learnt the agreed result"
            assert run.wrong_seen[member] <= divergent, f"{run.label}: member {member} missed divergence"
        attacks += sum(len(run.outcome.blamed[m]) + len(run.outcome.divergent[m]) for m in run.honest)
    if behaviour in ("bad-share", "wrong-result", "equivocate"):
        assert attacks, "no run recorded any evidence: the faulty members did not misbehave"


def test_property_runs_are_at_least_two_thousand() -> None:
    total = sum(RUNS_PER_FAULTY_COUNT[n] * (n - t + 1) for t, n in CONFIGS) * len(BEHAVIOUR_CHOICES)
    assert total >= 2000


@pytest.mark.parametrize(("t", "n"), CONFIGS, ids=[f"{t}-of-{n}" for t, n in CONFIGS])
def test_split_dvms_co_sign_a_no_quorum_error(t: int, n: int) -> None:
    """Honest DVMs that all answer differently (or too many wrong ones): a kind 7000 error, never a result."""
    rand = random.Random(f"split {t}-of-{n}")
    for seed in range(12):
        faulty = tuple((m, rand.choice(BEHAVIOURS)) for m in rand.sample(range(1, n + 1), rand.randint(0, n - t)))
        _, run = simulate(Scenario(n, t, faulty, split=True, crash_point=rand.choice(("start", "after_share"))),
                          seed)
        assert run.outcome.violations == [], run.label
        assert run.outcome.kind == "no_quorum", run.label
        check_published_events(run, result_expected=False)
    for seed in range(6):  # only t - 1 honest DVMs agree: n - t + 1 wrong results
        wrong = tuple((m, "wrong-result") for m in rand.sample(range(1, n + 1), n - t + 1))
        _, run = simulate(Scenario(n, t, wrong), seed)
        assert run.outcome.violations == [] and run.outcome.kind == "no_quorum", run.label
        check_published_events(run, result_expected=False)


def _no_double_share(sim: Simulation, honest: frozenset[int]) -> None:
    used: set[bytes] = set()
    for signer, coordinator, session, _ in sim.shares_sent:
        if signer in honest:
            request = sim.requests[(coordinator, session)]
            commitment = next(c for c in request.commitments if c.identifier == signer).to_bytes()
            assert commitment not in used, f"member {signer} shared twice under one commitment"
            used.add(commitment)


@pytest.mark.parametrize(("t", "n"), CONFIGS, ids=[f"{t}-of-{n}" for t, n in CONFIGS])
def test_restarts_mid_job_still_publish_without_reusing_a_nonce(t: int, n: int) -> None:
    rand = random.Random(f"restarts {t}-of-{n}")
    restarted_signers = 0
    for seed in range(25):
        faulty = tuple((m, rand.choice(BEHAVIOURS)) for m in rand.sample(range(1, n + 1), rand.randint(0, n - t)))
        honest = [m for m in range(1, n + 1) if m not in dict(faulty)]
        restarts = tuple((m, round(rand.uniform(0.05, 3.0), 3)) for m in rand.sample(honest, rand.randint(1, t)))
        sim, run = simulate(Scenario(n, t, faulty, restarts=restarts, crash_point=rand.choice(("start",
                            "after_announce", "after_share"))), seed)
        assert run.outcome.violations == [], run.label
        assert run.outcome.kind == "published", f"{run.label}, restarts {restarts}"
        check_published_events(run, result_expected=True)
        _no_double_share(sim, run.honest)
        restarted_signers += len({s for s, *_ in sim.shares_sent} & {m for m, _ in restarts})
    assert restarted_signers, "no restarted member ever signed: the restarts tested nothing"


@pytest.mark.parametrize(("drop", "duplicate"), [(0.05, 0.0), (0.2, 0.2), (0.0, 0.3), (0.4, 0.4)])
def test_lossy_networks_never_break_safety(drop: float, duplicate: float) -> None:
    published = 0
    for t, n in CONFIGS:
        config = Configuration(n, t, n - t, "mixed", 15, seed=7, drop=drop, duplicate=duplicate)
        for scenario, seed in runs(config):
            sim, run = simulate(scenario, seed)
            assert run.outcome.violations == [], run.label
            check_published_events(run, result_expected=None)
            _no_double_share(sim, run.honest)
            published += run.outcome.kind == "published"
            if drop == 0:  # duplicates alone cost nothing: replays are tolerated
                assert run.outcome.kind == "published", run.label
                assert run.outcome.first_publish_at <= liveness_bound(run.scenario), run.label  # type: ignore[operator]
    assert published, "nothing was ever published: the runs tested nothing"


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


def test_scenario_descriptions_round_trip() -> None:
    sc = Scenario(5, 3, ((1, "crash"),), Network(drop=0.1), crash_point="after_share", restarts=((2, 1.5),))
    description = {"n": 5, "t": 3, "faulty": [[1, "crash"]], "drop": 0.1, "crash_point": "after_share",
                   "restarts": [[2, 1.5]]}
    assert scenario_from(description) == replace(sc)
