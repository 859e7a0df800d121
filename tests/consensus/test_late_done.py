"""A member that missed DONE (it restarted, or the message was lost) is told by the members that finished,
once it announces again, instead of waiting for the job to expire."""

from __future__ import annotations

from consensus.jobstate import Phase
from consensus.simulator import Scenario, Simulation


def test_a_member_restarted_after_done_is_told_and_finishes() -> None:
    told = 0
    for seed in range(8):
        # member 3 announces, then its process dies; 1 and 2 finish without it; it restarts at t=5 s
        scenario = Scenario(3, 2, faulty=((3, "crash"),), crash_point="after_announce", restarts=((3, 5.0),))
        sim = Simulation(scenario, seed)
        assert sim.run().kind == "published"
        state = sim.states[3]
        assert state is not None and state.phase is Phase.DONE and state.outcome == "cosigned"
        assert state.done_event is not None and state.done_event.id in sim.published
        others = [sim.states[m] for m in (1, 2)]
        if all(o is not None and o.finished_at is not None and o.finished_at < 5.0 for o in others):
            # the others were done before it came back: it was told at once, not left to expire
            assert state.finished_at is not None and state.finished_at < 6.0
            told += 1
    assert told >= 3  # most seeds exercise the path
