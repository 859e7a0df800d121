"""FROST threshold Schnorr signatures on secp256k1 (RFC 9591), with the BIP-340 suite Nostr keys need.

Modules: ``group`` (order, strict point/scalar parsing), ``suite`` (the two ciphersuites and H1..H5), ``keys``
(trusted dealer with Feldman VSS, key objects), ``messages`` (commitments and signature shares on the wire),
``context`` (a session's public values computed once: binding factors, R, challenge), ``signing`` (a member's
rounds one and two), ``coordinator`` (share checks, aggregation naming every bad share, verification).

Errors: ``ValueError`` for a caller's mistake, ``InvalidContribution(signer, what)`` for a member's (or, with
``signer=None``, a dealer's) invalid contribution. Secrets never appear in a repr or an error.
"""

from consensus.errors import InvalidContribution
from consensus.frost.context import SigningContext, signing_context
from consensus.frost.coordinator import (
    InvalidShares,
    aggregate,
    invalid_shares,
    verify,
    verify_signature_share,
)
from consensus.frost.group import N, check_identifier, parse_point, parse_scalar
from consensus.frost.keys import KeyPackage, PublicKeyPackage, SecretShare, trusted_dealer_keygen, vss_verify
from consensus.frost.messages import SignatureShare, SigningCommitments
from consensus.frost.signing import SigningNonces, commit, sign
from consensus.frost.suite import SECP256K1, SECP256K1_TR, Ciphersuite

__all__ = [
    "SECP256K1",
    "SECP256K1_TR",
    "Ciphersuite",
    "InvalidContribution",
    "InvalidShares",
    "KeyPackage",
    "N",
    "PublicKeyPackage",
    "SecretShare",
    "SignatureShare",
    "SigningCommitments",
    "SigningContext",
    "SigningNonces",
    "aggregate",
    "check_identifier",
    "commit",
    "invalid_shares",
    "parse_point",
    "parse_scalar",
    "sign",
    "signing_context",
    "trusted_dealer_keygen",
    "verify",
    "verify_signature_share",
    "vss_verify",
]
