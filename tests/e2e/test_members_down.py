"""Members that are down from the start: with only t of n running, and with n - 1 of n, every job still ends
in the honest co-signed result."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StartFederation
from tests.e2e.customer import Customer, assert_result


@pytest.mark.parametrize(
    ("threshold", "members", "up", "transport"),
    [
        (2, 3, {1, 3}, "nostr"),  # t of n
        (2, 3, {2, 3}, "redis"),
        (3, 5, {2, 4, 5}, "redis"),  # t of n
        (3, 5, {1, 2, 3, 5}, "nostr"),  # n - 1 of n
    ],
)
async def test_jobs_complete_with_members_down(
    start_federation: StartFederation, threshold: int, members: int, up: set[int], transport: str
) -> None:
    local = await start_federation(up, threshold=threshold, members=members, transport=transport)
    assert set(local.sidecars) == up
    async with Customer(local.public_url, local.group_pubkey) as customer:
        jobs = [await customer.request(f"{len(up)} of {members} up, job {n}") for n in range(2)]
        outcomes = await customer.outcomes(jobs, timeout=30)
        for job in jobs:
            assert_result(outcomes[job.id], job, local.group_pubkey)
            assert [e.id() for e in await customer.stored(job)] == [outcomes[job.id].id()]
        customer.check_all_federation()
