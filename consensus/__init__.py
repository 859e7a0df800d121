"""The pure protocol core of dvm-sidecar.

Rules kept by every module in this package: no asyncio, no sockets, no Redis, no clock reads, no global
mutable state, and no import of ``sidecar``. State is passed in and returned; time is an input.

Errors come in two kinds, as in the BIP reference code: ``ValueError`` when the caller broke a precondition,
and ``InvalidContribution(signer, what)`` when a named member sent something invalid.
"""
