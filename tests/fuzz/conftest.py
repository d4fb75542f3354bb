"""Fuzzing and hostile input.

The in-process families (trader definitions, kline messages, configuration) need nothing. The RPC and
HTTP families run against the real local stack, as tests/integration does (its ``stackkit`` helpers are
imported from there): one stack for the session, on free ports in a throwaway state folder, started only
when a test asks for it; every test makes its own users.

``SIGNALGUARD_FUZZ_CASES`` sets the number of cases of each family (the in-process ones never run fewer
than 10,000; the RPC family runs 2,000 unless told otherwise, see ``test_fuzz_rpc``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from stackkit import actors, api, db, stack_fixture

stack = stack_fixture("signalguard-fuzz-")

__all__ = ["actors", "api", "db", "stack"]
