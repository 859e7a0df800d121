"""Figures the reliability tests measured, kept for the report (``docs/reliability.md``).

``record(scenario, **figures)`` appends one JSON line to the file named by ``$RELIABILITY_RECORD`` when it is
set (nothing otherwise) and prints it, so ``pytest -s`` shows the figures too.
"""

from __future__ import annotations

import json
import os
import time


def record(scenario: str, **figures: object) -> None:
    line = json.dumps({"scenario": scenario, "at": round(time.time()), **figures}, sort_keys=True)
    print(f"\nreliability: {line}")
    path = os.environ.get("RELIABILITY_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
