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
    s = LocalStack(StackConfig.for_tests(Path(tempfile.mkdtemp(prefix="signalguard-fuzz-"))))
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
