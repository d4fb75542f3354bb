"""The real local stack for integration tests: PostgreSQL, PostgREST 12 and the gateway.

One stack serves the whole test session, in a throwaway state folder on free ports. Tests never share
users: each makes its own with the ``actors`` fixture, so lease state never leaks between tests. Time
rules are exercised by backdating timestamps with the superuser connection, never by sleeping.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from stackkit import Actors, Api

from signalguard.devstack.config import StackConfig
from signalguard.devstack.stack import LocalStack


def make_state_dir() -> Path:
    """A state folder the cluster's system user can reach (pytest's own tmp folders are 0700)."""
    return Path(tempfile.mkdtemp(prefix="signalguard-stack-"))


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    s = LocalStack(StackConfig.for_tests(make_state_dir()))
    s.start()
    yield s
    s.reset()


@pytest.fixture()
def db(stack: LocalStack) -> Iterator[psycopg.Connection[Any]]:
    with stack.connect() as conn:
        yield conn


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Api:
    return Api(stack)


@pytest.fixture()
def actors(stack: LocalStack) -> Actors:
    return Actors(stack)
