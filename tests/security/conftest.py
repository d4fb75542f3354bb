"""Security: what one account may learn or change of another's, and input that is too big or too strange.

These run against the real local stack, as tests/integration does (its ``stackkit`` helpers are imported
from there): one stack for the session, on free ports in a throwaway state folder, started only when a
test asks for it; every test makes its own users, so no test sees another's lease or rows.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from stackkit import Actors, Api

from signalguard.devstack.config import StackConfig
from signalguard.devstack.stack import LocalStack


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    # A state folder the cluster's system user can reach (pytest's own tmp folders are 0700).
    s = LocalStack(StackConfig.for_tests(Path(tempfile.mkdtemp(prefix="signalguard-security-"))))
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
