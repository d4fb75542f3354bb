"""Security: what one account may learn or change of another's, and input that is too big or too strange.

These run against the real local stack, as tests/integration does (its ``stackkit`` helpers are imported
from there): one stack for the session, on free ports in a throwaway state folder, started only when a
test asks for it; every test makes its own users, so no test sees another's lease or rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from stackkit import actors, api, db, stack_fixture

stack = stack_fixture("signalguard-security-")

__all__ = ["actors", "api", "db", "stack"]
