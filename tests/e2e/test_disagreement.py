"""DVMs that answer wrongly: within what the threshold allows, the honest answer is co-signed and the divergent
member is on record (evidence in the store and the divergence metric); beyond it, the federation co-signs a
kind 7000 error and publishes no result at all."""

from __future__ import annotations

import pytest

from consensus.federation import Timeouts
from sidecar.local import LocalFederation
from tests.e2e.conftest import StartFederation, eventually, metric
from tests.e2e.customer import Customer, assert_error, assert_result

# No quorum is only declared at the deadline: a short one keeps the test in seconds.
SHORT_DEADLINE = Timeouts(dvm=2.0, deadline=2.5, coordinator=2.0, session=0.5)


def divergent_count(local: LocalFederation, member: int, peer: int) -> float:
    return metric(local, member, "dvm_sidecar_divergent_results_total", peer=str(peer))


async def divergent(local: LocalFederation, member: int, job_id: str) -> list[int]:
    """The members that ``member``'s store names divergent for ``job_id``."""
    evidence = await local.sidecars[member].store.evidence()
    return [e.member for e in evidence if e.job_id == job_id and e.kind == "divergent"]


@pytest.mark.parametrize("transport", ["nostr", "redis"])
async def test_one_wrong_dvm_is_outvoted_and_recorded(start_federation: StartFederation, transport: str) -> None:
    local = await start_federation(wrong=frozenset({3}), transport=transport)
    async with Customer(local.public_url, local.group_pubkey) as customer:
        job = await customer.request("two honest DVMs and one wrong")
        result = await customer.outcome(job, timeout=30)
        assert_result(result, job, local.group_pubkey)
        for honest in (1, 2):

            async def recorded(member: int = honest) -> bool:
                return bool(await divergent(local, member, job.id))

            assert await eventually(recorded)
            assert await divergent(local, honest, job.id) == [3]
            assert divergent_count(local, honest, 3) == 1
            assert divergent_count(local, honest, 1 if honest == 2 else 2) == 0
        assert [e.id() for e in await customer.stored(job)] == [result.id()]
        customer.check_all_federation()


@pytest.mark.parametrize(("threshold", "members", "wrong"), [(2, 3, {2, 3}), (3, 5, {1, 4, 5})])
async def test_too_many_wrong_dvms_give_a_cosigned_error_and_no_result(
    start_federation: StartFederation, threshold: int, members: int, wrong: set[int]
) -> None:
    """Wrong DVMs disagree with the honest ones and with each other: no answer reaches t."""
    local = await start_federation(
        threshold=threshold, members=members, wrong=frozenset(wrong), timeouts=SHORT_DEADLINE
    )
    async with Customer(local.public_url, local.group_pubkey) as customer:
        job = await customer.request("more wrong DVMs than the threshold allows")
        error = await customer.outcome(job, timeout=30)
        assert_error(error, job, local.group_pubkey)
        assert await customer.stored(job) == []
        customer.check_all_federation()

    async def enough_finished() -> bool:
        done = [metric(local, m, "dvm_sidecar_jobs_total", outcome="no_quorum") for m in local.sidecars]
        return sum(1 for n in done if n == 1) >= threshold

    assert await eventually(enough_finished)
