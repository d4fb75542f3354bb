"""The cloud worker's tests: with in-memory doubles, and against the real local stack and replay server.

The stack fixtures are tests/integration's (stackkit is imported from there). One replay server, on the
``1s`` interval so that candles close every second in real time, serves every test of the session;
each test makes its own user, so lease state never leaks between tests. ``async def`` tests run with
asyncio.run (no pytest-asyncio here), each bounded in time.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from cloudkit import Market
from stackkit import actors, api, db, stack_fixture

from signalguard.replay.server import running_replay

ASYNC_TEST_TIMEOUT = 60.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in inspect.signature(pyfuncitem.obj).parameters}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT))
    return True


stack = stack_fixture("signalguard-cloud-")

__all__ = ["actors", "api", "db", "market", "stack"]


@pytest.fixture(scope="session")
def market() -> Iterator[Market]:
    m = Market.synthetic()
    with running_replay(m.series, history=m.history, loop=True) as server:
        m.server = server
        yield m
