"""The real local stack for integration tests: PostgreSQL, PostgREST 12 and the gateway.

One stack serves the whole test session, in a throwaway state folder on free ports. Tests never share
users: each makes its own with the ``actors`` fixture, so lease state never leaks between tests. Time
rules are exercised by backdating timestamps with the superuser connection, never by sleeping.
"""

from __future__ import annotations

from stackkit import actors, api, db, stack_fixture

stack = stack_fixture("signalguard-stack-")

__all__ = ["actors", "api", "db", "stack"]
