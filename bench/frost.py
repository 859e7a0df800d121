"""FROST signing cost, as ratios to one coincurve BIP-340 signature measured in the same run.

For each t-of-n (BIP-340 suite, a random signer set of size t, one of them the coordinator, 32-byte messages like
Nostr event ids) it prints the median CPU time (this thread's) of:

- "round one": one signer's ``commit``; "round two": one signer's ``sign``, computing everything itself;
- "coordinator": ``aggregate`` computing everything itself (group commitment, sum, final BIP-340 verification,
  which covers every share; shares are only checked one by one when it fails);
- "ctx sign": the coordinator's own round two when it makes the session's ``SigningContext`` (binding factors,
  R, challenge) and signs with it; "ctx aggregate": its ``aggregate`` reusing that context;
- "whole, separate": all t commits + all t signs + ``aggregate``, every call computing everything itself;
- "whole, ctx": all t commits + the t - 1 other signers' ``sign`` (separate machines, each computes its own
  values) + the coordinator's "ctx sign" + "ctx aggregate". This is how the quorum runs when the coordinator
  keeps its context with the session; the 2-of-3 target applies to it.

Each accounting is a signing of its own in the same round (a nonce pair signs once). For scale, "curve" beside
each whole is the elliptic-curve calls alone that it makes (the same libsecp256k1 operations, no hashing, checks
or objects), the floor under any implementation on coincurve.

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
    SignatureShare,
    SigningCommitments,
    SigningContext,
    SigningNonces,
    aggregate,
    commit,
    sign,
    signing_context,
    trusted_dealer_keygen,
    verify,
    vss_verify,
)
from consensus.frost.group import N, base_mul, encode, mul, point_sum

CONFIGS = [(2, 3, 300), (3, 5, 200), (7, 10, 80), (67, 100, 12)]  # t, n, rounds
TARGETS = {(2, 3): {"whole, ctx": 5.0}, (67, 100): {"round two": 40.0, "coordinator": 100.0}}


T = TypeVar("T")


def timed(call: Callable[[], T]) -> tuple[float, T]:
    # The thread's CPU time: on a machine shared with other work, time spent descheduled is not ours.
    start = time.thread_time_ns()
    result = call()
    return time.thread_time_ns() - start, result


def curve_calls(t: int, public: PublicKeyPackage, message: bytes, signature: bytes, context: bool) -> None:
    """The curve operations of one whole signing: 2t nonce points; per signer its own term, t-1 products and a
    sum; for the coordinator t products and a sum (in its context when it has one) and the BIP-340
    verification."""
    scalar = N // 3
    points = [base_mul(scalar + k) for k in range(2 * t)]
    for point in points:
        encode(point)
    for _ in range(t - 1 if context else t):
        encode(point_sum([base_mul(scalar)] + [mul(p, scalar) for p in points[1:t]] + points[t + 1:]))
    encode(point_sum([mul(p, scalar) for p in points[:t]] + points[t:]))
    public.xonly_point.verify(signature, message)


class Figures(dict[str, list[float]]):
    def add(self, name: str, elapsed: float) -> None:
        self.setdefault(name, []).append(elapsed)


def signing_round(t: int, n: int, rng: random.Random, key_packages: dict[int, KeyPackage],
                  public: PublicKeyPackage, baseline: list[float], figures: Figures) -> None:
    """Two signings by a random set of t members, one per accounting; sign_schnorr is timed beside them."""
    key = PrivateKey()
    signers = sorted(rng.sample(range(1, n + 1), t))
    coordinator = rng.choice(signers)
    message = os.urandom(32)
    baseline.extend(timed(partial(key.sign_schnorr, message))[0] for _ in range(4 * t + 2))
    for with_context in (False, True):
        whole = 0.0
        made = {}
        for i in signers:
            elapsed, made[i] = timed(partial(commit, SECP256K1_TR, key_packages[i]))
            figures.add("round one", elapsed)
            whole += elapsed
        commitments = [made[i][1] for i in signers]
        context = None
        shares = []
        for i in signers:
            if with_context and i == coordinator:
                elapsed, (context, share) = timed(partial(context_sign, message, commitments, made[i][0],
                                                          key_packages[i], public))
                figures.add("ctx sign", elapsed)
            else:
                elapsed, share = timed(partial(sign, SECP256K1_TR, message, commitments, made[i][0],
                                               key_packages[i]))
                figures.add("round two", elapsed)
            whole += elapsed
            shares.append(share)
        elapsed, signature = timed(partial(aggregate, SECP256K1_TR, message, commitments, shares, public, context))
        assert isinstance(signature, bytes) and verify(SECP256K1_TR, message, signature, public.xonly_public_key)
        figures.add("ctx aggregate" if with_context else "coordinator", elapsed)
        figures.add("whole, ctx" if with_context else "whole, separate", whole + elapsed)
        figures.add("curve, ctx" if with_context else "curve", timed(partial(curve_calls, t, public, message,
                                                                             signature, with_context))[0])


def context_sign(message: bytes, commitments: list[SigningCommitments], nonces: SigningNonces,
                 key_package: KeyPackage, public: PublicKeyPackage) -> tuple[SigningContext, SignatureShare]:
    """The coordinator's round two: the session's context, made once, then its share with it."""
    context = signing_context(SECP256K1_TR, message, commitments, public)
    return context, sign(SECP256K1_TR, message, commitments, nonces, key_package, context)


def run_config(t: int, n: int, rounds: int, rng: random.Random, baseline: list[float]) -> dict[str, float]:
    """Median times for one t-of-n."""
    shares, public = trusted_dealer_keygen(SECP256K1_TR, t, n)
    key_packages = {i: vss_verify(SECP256K1_TR, s) for i, s in shares.items()}
    figures = Figures()
    for _ in range(rounds):
        signing_round(t, n, rng, key_packages, public, baseline, figures)
    return {name: statistics.median(samples) for name, samples in figures.items()}


COLUMNS = ["round one", "round two", "coordinator", "ctx sign", "ctx aggregate", "whole, separate", "curve",
           "whole, ctx", "curve, ctx"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds-scale", type=float, default=1.0, help="multiply the number of rounds")
    args = parser.parse_args()
    rng = random.Random(1)  # the signer sets and coordinators; keys and nonces use os.urandom
    print("ratios to one coincurve sign_schnorr, timed beside each configuration's FROST steps (medians);")
    print("'whole, separate': every call computes everything itself; 'whole, ctx': the coordinator-signer makes")
    print("the session's SigningContext in its sign and its aggregate reuses it (the other signers compute their own)")
    print(f"{'t-of-n':>9} {'schnorr us':>10} " + " ".join(f"{name:>{max(8, len(name))}}" for name in COLUMNS)
          + "  targets")
    for t, n, rounds in CONFIGS:
        samples: list[float] = []
        figures = run_config(t, n, max(3, int(rounds * args.rounds_scale)), rng, samples)
        baseline = statistics.median(samples)
        ratios = {k: v / baseline for k, v in figures.items()}
        notes = [f"{k} <= {limit:g}x: {'ok' if ratios[k] <= limit else 'MISSED'}"
                 for k, limit in TARGETS.get((t, n), {}).items()]
        print(f"{f'{t}-of-{n}':>9} {baseline / 1000:>10.1f} "
              + " ".join(f"{ratios[name]:>{max(8, len(name))}.2f}" for name in COLUMNS) + f"  {'; '.join(notes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
