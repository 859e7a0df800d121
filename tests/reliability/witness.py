"""A member's sidecar with a witness: the real ``dvm-sidecar run``, plus a record of every secret nonce pair
its process draws, so a test can look for those nonces in everything the run left behind (a secret nonce
never leaves the process otherwise).

Run as ``python -m tests.reliability.witness run --config FILE`` (a ``ProcessFederation`` member's
``program``) with ``$WITNESS_NONCES`` naming a directory OUTSIDE the run's own directories: one file per
process there, one line per nonce pair (hiding and binding, hex). It only observes: ``frost.commit`` is
called exactly as before and its result handed on unchanged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consensus import frost
from sidecar import cli


def main(argv: Sequence[str]) -> int:
    record = Path(os.environ["WITNESS_NONCES"]) / f"nonces-{os.getpid()}.txt"
    commit = frost.commit

    def witnessed_commit(*args: Any, **kwargs: Any) -> tuple[frost.SigningNonces, frost.SigningCommitments]:
        nonces, commitments = commit(*args, **kwargs)
        with record.open("a") as out:  # read the slots directly: nothing else may see them
            out.write(f"{nonces._hiding:064x} {nonces._binding:064x}\n")
        return nonces, commitments

    frost.commit = witnessed_commit  # type: ignore[assignment]  # consensus.quorum calls frost.commit
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
