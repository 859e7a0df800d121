"""Whole federations, t-of-n on both peer transports and in both forwarding modes: every job ends in one
co-signed result with the honest answer, and nothing but the federation's events reaches the public relay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from nostr_sdk import Event, Filter, Keys, Kind, PublicKey, ReqTarget

from sidecar.example_dvm import ExampleDvm
from sidecar.local import KIND
from sidecar.relay import connect_client
from tests.e2e.conftest import StartFederation, eventually, metric
from tests.e2e.customer import RESULT_KIND, Customer, assert_result

JOBS = 3


@pytest.mark.parametrize("transport", ["nostr", "redis"])
@pytest.mark.parametrize(("threshold", "members"), [(2, 3), (3, 5)])
async def test_every_job_is_cosigned(
    start_federation: StartFederation, threshold: int, members: int, transport: str
) -> None:
    local = await start_federation(threshold=threshold, members=members, transport=transport)
    async with Customer(local.public_url, local.group_pubkey) as customer:
        jobs = [await customer.request(f"job {n} for {threshold}-of-{members}") for n in range(JOBS)]
        outcomes = await customer.outcomes(jobs, timeout=30)
        for job in jobs:
            assert_result(outcomes[job.id], job, local.group_pubkey)
            assert [e.id() for e in await customer.stored(job)] == [outcomes[job.id].id()]
        customer.check_all_federation()

    def cosigned() -> list[float]:
        return [metric(local, member, "dvm_sidecar_jobs_total", outcome="cosigned") for member in local.sidecars]

    async def every_signer_counted() -> bool:
        # The members that did not publish learn of the end from the coordinator's DONE, which may still be
        # on its way when the customer already has the result.
        return sum(1 for count in cosigned() if count == JOBS) >= threshold

    assert await eventually(every_signer_counted), cosigned()


async def _held(url: str, query: Filter) -> list[Event]:
    """What the relay at ``url`` holds for ``query``, asked by a new client."""
    client = await connect_client(url)
    try:
        return list(await client.fetch_events(ReqTarget.auto([query]), timedelta(seconds=2)))
    finally:
        await client.shutdown()


@pytest.mark.parametrize("mode", ["reissue", "passthrough"])
async def test_forwarding_modes_and_no_dvm_event_gets_out(start_federation: StartFederation, mode: str) -> None:
    """Each DVM gets the request as the mode says (a copy re-signed by its operator for itself, or the
    customer's own event), answers on its private relay, and only co-signed events reach the public relay,
    even with one DVM answering wrongly."""
    local = await start_federation(mode=mode, wrong=frozenset({3}))
    async with Customer(local.public_url, local.group_pubkey) as customer:
        job = await customer.request(f"forwarded in {mode} mode")
        assert_result(await customer.outcome(job, timeout=30), job, local.group_pubkey)
        dvm_keys = [PublicKey.parse(k.public_key().to_hex()) for k in local.dvm_keys.values()]
        for member, sidecar in local.sidecars.items():
            private = sidecar.private_relay_url
            dvm_key = local.dvm_keys[member].public_key().to_hex()
            forwarded = await _held(private, Filter().kind(Kind(KIND)))
            assert len(forwarded) == 1
            if mode == "passthrough":
                assert forwarded[0].id().to_hex() == job.id
            else:
                assert forwarded[0].id().to_hex() != job.id
                assert forwarded[0].author().to_hex() == local.identities[member].public_key().to_hex()
                assert forwarded[0].verify()
                assert [t.to_vec() for t in forwarded[0].tags() if t.to_vec()[0] == "p"] == [["p", dvm_key]]
            # The DVM did answer, with its own key, where only its sidecar listens.
            answers = await _held(private, Filter().kind(Kind(RESULT_KIND)).author(PublicKey.parse(dvm_key)))
            assert len(answers) == 1
        assert await _held(local.public_url, Filter().authors(dvm_keys)) == []
        customer.check_all_federation()
        assert any(e.kind().as_u16() == RESULT_KIND for e in customer.seen)


async def test_the_listener_catches_a_dvm_answering_on_the_public_relay(start_federation: StartFederation) -> None:
    """The check above can fail: a DVM wired to the public relay by mistake is caught answering with its own
    key."""
    local = await start_federation()
    rogue = ExampleDvm(Keys.generate(), local.public_url, kinds=(KIND,), answer_for=local.group_pubkey)
    await rogue.start()
    try:
        async with Customer(local.public_url, local.group_pubkey) as customer:
            job = await customer.request("also seen by a DVM on the public relay")
            await customer.outcome(job, timeout=30)

            async def rogue_seen() -> bool:
                return any(e.author().to_hex() == rogue.pubkey for e in customer.seen)

            assert await eventually(rogue_seen)
            with pytest.raises(AssertionError, match="got out"):
                customer.check_all_federation()
    finally:
        await rogue.stop()
