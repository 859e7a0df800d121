"""A federation of real processes for the tests: ``ProcessFederation`` lives in ``bench/processes.py``, shared
with the benchmark; see there."""

from bench.processes import CLI, KIND, PASSPHRASE, MemberProcess, ProcessFederation, RedisServer, cli  # noqa: F401
from sidecar.example_dvm import honest_answer  # noqa: F401  (re-exported for the tests)
