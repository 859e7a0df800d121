"""The two kinds of error the core raises.

``ValueError``: the caller broke a precondition (bad arguments, a nonce used twice, t > n).
``InvalidContribution``: a named member sent something invalid, so blame is assigned and can be shown.
"""

from __future__ import annotations


class InvalidContribution(Exception):
    """Member ``signer`` sent something invalid; ``what`` says what (never a secret).

    ``signer`` is the member's identifier (1..65535), or ``None`` when the sender is not a member (a dealer,
    an unknown peer).
    """

    def __init__(self, signer: int | None, what: str) -> None:
        super().__init__(signer, what)
        self.signer = signer
        self.what = what

    def __str__(self) -> str:
        who = "unknown sender" if self.signer is None else f"member {self.signer}"
        return f"invalid contribution from {who}: {self.what}"
