"""FROST signing cost, as ratios to one coincurve BIP-340 signature measured in the same run.

For each t-of-n (BIP-340 suite, a random signer set of size t, 32-byte messages like Nostr event ids) it prints
the median CPU time (this thread's) of: one signer's round one (``commit``), one signer's round two (``sign``), the coordinator's
part (``aggregate``: group commitment, sum, final BIP-340 verification, which covers every share; shares are
only checked one by one when it fails), and the whole signing (all t commits + all t signs + aggregate).
For scale it also prints "curve": the elliptic-curve calls alone that the whole signing makes (the same
libsecp256k1 operations, no hashing, checks or objects), the floor under any implementation on coincurve.

Usage: .venv/bin/python bench/frost.py [--rounds-scale X]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from coincurve import PrivateKey

from consensus.frost import (
    SECP256K1_TR,
    KeyPackage,
    PublicKeyPackage,
    aggregate,
    commit,
    sign,
    trusted_dealer_keygen,
    verify,
    vss_verify,
)
from consensus.frost.group import N, base_mul, encode, mul, point_sum

CONFIGS = [(2, 3, 300), (3, 5, 200), (7, 10, 80), (67, 100, 12)]  # t, n, rounds
TARGETS = {(2, 3): {"whole": 5.0}, (67, 100): {"round two": 40.0, "coordinator": 100.0}}


T = TypeVar("T")


def timed(call: Callable[[], T]) -> tuple[float, T]:
    # The thread's CPU time: on a machine shared with other work, time spent descheduled is not ours.
    start = time.thread_time_ns()
    result = call()
    return time.thread_time_ns() - start, result


def curve_calls(t: int, public: PublicKeyPackage, message: bytes, signature: bytes) -> None:
    """The curve operations of one whole signing: 2t nonce points, per signer its own term, t-1 products and a
    sum, for the coordinator t products, a sum and the BIP-340 verification."""
    scalar = N // 3
    points = [base_mul(scalar + k) for k in range(2 * t)]
    for point in points:
        encode(point)
    for _ in range(t):
        encode(point_sum([base_mul(scalar)] + [mul(p, scalar) for p in points[1:t]] + points[t + 1:]))
    encode(point_sum([mul(p, scalar) for p in points[:t]] + points[t:]))
    public.xonly_point.verify(signature, message)


def signing_round(t: int, n: int, rng: random.Random, key_packages: dict[int, KeyPackage],
                  public: PublicKeyPackage, baseline: list[float]) -> tuple[list[float], list[float], float, float]:
    """One signing by a random set of t members; one sign_schnorr is timed beside every FROST step."""
    key = PrivateKey()
    signers = sorted(rng.sample(range(1, n + 1), t))
    message = os.urandom(32)
    baseline.extend(timed(partial(key.sign_schnorr, message))[0] for _ in range(2 * t + 1))
    round_one, round_two = [], []
    made = {}
    for i in signers:
        elapsed, made[i] = timed(partial(commit, SECP256K1_TR, key_packages[i]))
        round_one.append(elapsed)
    commitments = [made[i][1] for i in signers]
    shares = []
    for i in signers:
        elapsed, share = timed(partial(sign, SECP256K1_TR, message, commitments, made[i][0], key_packages[i]))
        round_two.append(elapsed)
        shares.append(share)
    elapsed, signature = timed(partial(aggregate, SECP256K1_TR, message, commitments, shares, public))
    assert isinstance(signature, bytes) and verify(SECP256K1_TR, message, signature, public.xonly_public_key)
    curve, _ = timed(partial(curve_calls, t, public, message, signature))
    return round_one, round_two, elapsed, curve


def run_config(t: int, n: int, rounds: int, rng: random.Random, baseline: list[float]) -> dict[str, float]:
    """Median times for one t-of-n."""
    shares, public = trusted_dealer_keygen(SECP256K1_TR, t, n)
    key_packages = {i: vss_verify(SECP256K1_TR, s) for i, s in shares.items()}
    round_one: list[float] = []
    round_two: list[float] = []
    coordinator: list[float] = []
    whole: list[float] = []
    curve: list[float] = []
    for _ in range(rounds):
        ones, twos, aggregation, curve_time = signing_round(t, n, rng, key_packages, public, baseline)
        curve.append(curve_time)
        round_one += ones
        round_two += twos
        coordinator.append(aggregation)
        whole.append(sum(ones) + sum(twos) + aggregation)
    return {
        "round one": statistics.median(round_one),
        "round two": statistics.median(round_two),
        "coordinator": statistics.median(coordinator),
        "whole": statistics.median(whole),
        "curve": statistics.median(curve),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds-scale", type=float, default=1.0, help="multiply the number of rounds")
    args = parser.parse_args()
    rng = random.Random(1)  # the signer sets; keys and nonces use os.urandom
    print("ratios to one coincurve sign_schnorr, timed beside each configuration's FROST steps (medians)")
    print(f"{'t-of-n':>9} {'schnorr us':>10} {'round one':>10} {'round two':>10} {'coordinator':>12} {'whole':>8}"
          f" {'curve':>8}  targets")
    for t, n, rounds in CONFIGS:
        samples: list[float] = []
        figures = run_config(t, n, max(3, int(rounds * args.rounds_scale)), rng, samples)
        baseline = statistics.median(samples)
        ratios = {k: v / baseline for k, v in figures.items()}
        notes = [f"{k} <= {limit:g}x: {'ok' if ratios[k] <= limit else 'MISSED'}"
                 for k, limit in TARGETS.get((t, n), {}).items()]
        print(f"{f'{t}-of-{n}':>9} {baseline / 1000:>10.1f} {ratios['round one']:>10.2f} {ratios['round two']:>10.2f} "
              f"{ratios['coordinator']:>12.2f} {ratios['whole']:>8.2f} {ratios['curve']:>8.2f}  {'; '.join(notes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
