"""Helpers for tests against the real stack: its fixtures, raw HTTP to the gateway, per-test users,
a gateway of a test's own, time travel.

The suites that need a stack (integration, fuzz, cloud, security) take its fixtures from here, each
with a state folder of its own: ``stack = stack_fixture("signalguard-fuzz-")`` in their conftest, and
``db``, ``api``, ``actors`` imported as they are.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from signalguard.devstack import tokens
from signalguard.devstack.config import StackConfig
from signalguard.devstack.gateway import Gateway
from signalguard.devstack.stack import LocalStack

# -- fixtures ----------------------------------------------------------------------------------


def stack_fixture(prefix: str) -> Callable[[], Iterator[LocalStack]]:
    """A session-wide stack fixture, in a throwaway state folder named ``prefix…``, on free ports."""

    @pytest.fixture(scope="session")
    def stack() -> Iterator[LocalStack]:
        # A state folder the cluster's system user can reach (pytest's own tmp folders are 0700).
        s = LocalStack(StackConfig.for_tests(Path(tempfile.mkdtemp(prefix=prefix))))
        s.start()
        yield s
        s.reset()

    return stack


@pytest.fixture()
def db(stack: LocalStack) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection to the stack's database (autocommit)."""
    with stack.connect() as conn:
        yield conn


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Api:
    """Raw HTTP to the stack's gateway."""
    return Api(stack)


@pytest.fixture()
def actors(stack: LocalStack) -> Actors:
    """Makes users of the test's own."""
    return Actors(stack)


@contextmanager
def serving(gateway: Gateway) -> Iterator[Gateway]:
    """Run ``gateway`` (a test's own, over the session's database) on its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        loop.run_until_complete(gateway.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(gateway.stop())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield gateway
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


DEFINITION = {
    "version": 1,
    "symbols": ["BTCUSDT"],
    "interval": "1m",
    "match": "all",
    "cooldown_candles": 1,
    "conditions": [{"indicator": "rsi", "period": 14, "op": "<", "value": 30}],
}


@dataclass
class Response:
    status: int
    body: Any

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


class Api:
    """Raw HTTP to the gateway, as a supabase client sends it."""

    def __init__(self, stack: LocalStack) -> None:
        self.base = stack.url
        self.anon = stack.config.anon_key()
        self.http = httpx.Client(timeout=30)

    def _headers(self, token: str | None, prefer: str | None = None) -> dict[str, str]:
        h = {"apikey": self.anon, "Content-Type": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        if prefer:
            h["Prefer"] = prefer
        return h

    def _wrap(self, r: httpx.Response) -> Response:
        try:
            body = r.json() if r.content else None
        except ValueError:
            body = r.text
        return Response(r.status_code, body)

    def rpc(self, name: str, args: dict[str, Any] | None = None, token: str | None = None) -> Response:
        r = self.http.post(f"{self.base}/rest/v1/rpc/{name}", json=args or {}, headers=self._headers(token))
        return self._wrap(r)

    def select(self, table: str, token: str | None, query: str = "select=*") -> Response:
        r = self.http.get(f"{self.base}/rest/v1/{table}?{query}", headers=self._headers(token))
        return self._wrap(r)

    def insert(
        self,
        table: str,
        rows: Any,
        token: str | None,
        *,
        query: str = "",
        prefer: str = "return=representation",
    ) -> Response:
        url = f"{self.base}/rest/v1/{table}" + (f"?{query}" if query else "")
        return self._wrap(self.http.post(url, json=rows, headers=self._headers(token, prefer)))

    def update(self, table: str, query: str, patch: dict[str, Any], token: str | None) -> Response:
        r = self.http.patch(
            f"{self.base}/rest/v1/{table}?{query}",
            json=patch,
            headers=self._headers(token, "return=representation"),
        )
        return self._wrap(r)

    def delete(self, table: str, query: str, token: str | None) -> Response:
        r = self.http.delete(
            f"{self.base}/rest/v1/{table}?{query}",
            headers=self._headers(token, "return=representation"),
        )
        return self._wrap(r)


_counter = itertools.count()


@dataclass
class Actor:
    """A user made for one test: their token, a trader, and optionally their cloud machine."""

    user_id: str
    email: str
    token: str
    trader_id: str
    machine_uuid: str | None
    machine_token: str | None
    holder: str

    def other_holder(self, n: int = 2) -> str:
        return f"{self.holder[:-2]}-{n}"


class Actors:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.secret = stack.config.secrets().jwt_secret

    def make(
        self,
        *,
        machine: bool = True,
        machine_status: str = "stopped",
        stopped_long_ago: bool = True,
    ) -> Actor:
        n = next(_counter)
        uid = str(uuid.uuid4())
        email = f"user{n}-{uid[:8]}@signalguard.test"
        trader = str(uuid.uuid4())
        machine_uuid = str(uuid.uuid4()) if machine else None
        with self.stack.connect() as conn:
            conn.execute("insert into auth.users (id, email) values (%s, %s)", (uid, email))
            conn.execute(
                "insert into public.traders (id, user_id, name, definition) values (%s, %s, %s, %s)",
                (trader, uid, f"trader {n}", psycopg.types.json.Jsonb(DEFINITION)),
            )
            if machine:
                conn.execute(
                    "insert into public.cloud_machines (id, user_id, machine_id, region, status) "
                    "values (%s, %s, %s, 'ams', %s)",
                    (machine_uuid, uid, f"vyx-{uid[:8]}", machine_status),
                )
                if stopped_long_ago:
                    conn.execute(
                        "update public.cloud_machines set status_changed_at = now() - interval '1 hour' "
                        "where id = %s",
                        (machine_uuid,),
                    )
        return Actor(
            user_id=uid,
            email=email,
            token=tokens.user_token(self.secret, uid, email),
            trader_id=trader,
            machine_uuid=machine_uuid,
            machine_token=tokens.machine_token(self.secret, uid, machine_uuid) if machine_uuid else None,
            holder=f"tab-{uid[:8]}-1",
        )


def password_account(
    stack: LocalStack, password: str, *, prefix: str = "user", cost: int = 8
) -> tuple[str, str]:
    """A new account that signs in with ``password`` (bcrypt at ``cost``, as the seed's): e-mail, id."""
    uid = str(uuid.uuid4())
    email = f"{prefix}-{uid[:8]}@signalguard.test"
    with stack.connect() as conn:
        conn.execute(
            "insert into auth.users (id, email, encrypted_password) "
            "values (%s, %s, extensions.crypt(%s, extensions.gen_salt('bf', %s)))",
            (uid, email, password, cost),
        )
    return email, uid


# -- time travel -------------------------------------------------------------------------------


def backdate_machine(conn: psycopg.Connection[Any], machine_uuid: str, seconds: float, *columns: str) -> None:
    """Move a machine's timestamps into the past (default: heartbeat, stop and status change)."""
    cols = columns or ("last_health_check", "stopped_at", "status_changed_at", "started_at")
    sets = ", ".join(f"{c} = {c} - make_interval(secs => %(s)s)" for c in cols)
    # The status trigger stamps status_changed_at on a status change only, so this keeps it.
    conn.execute(
        f"update public.cloud_machines set {sets} where id = %(id)s",
        {"s": seconds, "id": machine_uuid},
    )


def backdate_lease(conn: psycopg.Connection[Any], user_id: str, seconds: float) -> None:
    """Move a user's whole lease history into the past, as if it had happened `seconds` earlier."""
    conn.execute(
        "update public.execution_leases set acquired_at = acquired_at - make_interval(secs => %(s)s),"
        " expires_at = expires_at - make_interval(secs => %(s)s) where user_id = %(u)s",
        {"s": seconds, "u": user_id},
    )
    conn.execute(
        "update public.lease_epochs set started_at = started_at - make_interval(secs => %(s)s),"
        " valid_until = valid_until - make_interval(secs => %(s)s) where user_id = %(u)s",
        {"s": seconds, "u": user_id},
    )


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("select clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def signal(
    actor: Actor,
    epoch: int,
    close_at: datetime,
    *,
    source: str = "local",
    symbol: str = "BTCUSDT",
    interval: str = "1m",
    price: float = 100.5,
) -> dict[str, Any]:
    """A signal row whose 1m candle closes at ``close_at`` (truncated to the millisecond)."""
    close_ms = int(close_at.timestamp() * 1000)
    length = {"1s": 1_000, "1m": 60_000}[interval]
    open_ms = close_ms - length
    return {
        "trader_id": actor.trader_id,
        "user_id": actor.user_id,
        "symbol": symbol,
        "interval": interval,
        "candle_open_time": datetime.fromtimestamp(open_ms / 1000, tz=close_at.tzinfo).isoformat(),
        "price": price,
        "matched_conditions": ["RSI(14) < 30"],
        "source": source,
        "machine_id": actor.machine_uuid if source == "cloud" else None,
        "epoch": epoch,
    }


def seconds_ago(conn: psycopg.Connection[Any], s: float) -> datetime:
    return db_now(conn) - timedelta(seconds=s)
