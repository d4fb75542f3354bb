"""Hostile requests to the database API: every table and RPC, with broken filters, headers and bodies.

Each is made with a user's token and with a machine's, and must get a 4xx (or a 2xx that changes
nothing) with a JSON body; none may get a 5xx, and no row of any table may change. The requests here
are the ones the gateway forwards as they are, so they reach PostgREST and the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from stackkit import Actor, Actors, Api
from test_signal_guard import local_lease_backdated

from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

TABLES = ("signals", "traders", "trades", "cloud_machines", "execution_leases", "lease_epochs")
RPCS = (
    "write_signals", "write_trades", "update_signal_statuses", "execution_status", "claim_local_lease",
    "release_local_lease", "machine_heartbeat", "claim_cloud_lease", "release_cloud_lease", "signal_summary",
    "trade_summary", "schema_version", "no_such_function", "pg_sleep",
)  # fmt: skip

QUERIES = (
    "select=nope", "select=id,traders(*)", "select=" + ",".join(["id"] * 500), "id=eq.not-a-uuid",
    "id=eq.%00",
    "price=gt.1e999999", "price=gt.NaN", "price=gt." + "9" * 3000, "order=id.desc.nullsfirst.extra",
    "order=%27%3B--", "limit=-1", "limit=99999999999999999999", "offset=abc", "candle_open_time=gt.notatime",
    "candle_open_time=gt.99999-01-01", "symbol=like.*" + "%" * 500, "symbol=match.(((((", "symbol=imatch.[",
    "matched_conditions=cs.{a", "definition->x->y->z=eq.1", "or=(id.eq.1", "and=" + "(" * 300,
    "name=eq.%FF%FE", "id=is.maybe", "status=fts.a&b", "epoch=eq.99999999999999999999999",
)  # fmt: skip
HEADERS: tuple[dict[str, str], ...] = (
    {"Range": "0-abc"}, {"Range": "999999999999999999999-1"}, {"Prefer": "count=exact,garbage"},
    {"Accept": "application/vnd.pgrst.object+json"}, {"Accept": "application/x-nonsense"},
    {"Accept-Profile": "private"}, {"Accept-Profile": "auth"}, {"Content-Profile": "pg_catalog"},
    {"Prefer": "tx=rollback"}, {"Prefer": "max-affected=-1"},
)  # fmt: skip
BODIES: tuple[bytes, ...] = (
    b"{", b"[]", b"null", b'"x"', b'{"price": 1e99999}', b'[{"symbol": "\\u0000"}]', b'[{"name": "\\ud800"}]',
    b"[" * 3000 + b"]" * 3000, b'{"a":' * 3000 + b"1" + b"}" * 3000, bytes(range(256)),
)  # fmt: skip
RPC_BODIES: tuple[bytes, ...] = (
    b"{", b'{"p_days": 1e999}', b'{"p_days": "x"}', b'{"p_days": 2147483648}',
    b'{"p_holder_id": "\\u0000"}', b'{"p_signals": "x"}', b'{"p_ops": [' + b"{}," * 499 + b"{}]}",
    b'{"p_signals": [{"trader_id": "x", "candle_open_time": 1e30}]}',
    b'{"p_signals": [{"candle_open_time": "infinity"}]}', b'{"p_signals": [{"candle_open_time": -1e20}]}',
    b'{"p_changes": [{"signal_key": "a", "status": "new", "updated_epoch": 1e300}]}',
    b'{"p_ops": [{"op": "close", "signal_key": "x", "exit_price": 1, "exit_time": 1e300,'
    b' "exit_reason": "manual", "epoch": 1}]}',
    b'{"p_ops": [{"op": "open", "signal_key": "x", "side": "long", "size": 1, "epoch": 1e30}]}',
    b'{"p_status": "' + b"x" * 100_000 + b'"}',
    b'{"p_status": "nonsense", "p_error_message": "' + b"x" * 100_000 + b'"}',
    b'{"p_signals": ' + b"[" * 3000 + b"]" * 3000 + b"}",
)  # fmt: skip


def snapshot(stack: LocalStack) -> list[Any]:
    """Every row of every table the API reaches, as text."""
    with stack.connect() as conn:
        return [
            conn.execute(
                f"select coalesce(array_agg(t::text order by t::text), '{{}}') from public.{t} t"
            ).fetchone()
            for t in TABLES
        ]


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


def requests(stack: LocalStack, actor: Actor) -> Iterator[tuple[str, str, dict[str, str], bytes | None]]:
    base = f"{stack.url}/rest/v1"
    for table in TABLES:
        for query in QUERIES:
            yield "GET", f"{base}/{table}?{query}", {}, None
        for headers in HEADERS:
            yield "GET", f"{base}/{table}?select=*", headers, None
        for body in BODIES:
            yield "POST", f"{base}/{table}", {"Content-Type": "application/json"}, body
            yield (
                "PATCH",
                f"{base}/{table}?id=eq.{actor.trader_id}",
                {"Content-Type": "application/json"},
                body,
            )
        if table != "traders":  # a user may delete their own trader: that is no hostile request
            yield "DELETE", f"{base}/{table}?user_id=eq.{actor.user_id}", {}, None
    for rpc in RPCS:
        for body in RPC_BODIES:
            yield "POST", f"{base}/rpc/{rpc}", {"Content-Type": "application/json"}, body
        yield "GET", f"{base}/rpc/{rpc}?p_days=abc&p_holder_id=%00", {}, None


def test_no_hostile_request_to_the_database_api_gets_a_5xx_or_changes_a_row(
    stack: LocalStack, api: Api, actors: Actors, db: Any, http: httpx.Client
) -> None:
    actor = actors.make()
    local_lease_backdated(api, actor, db)
    before = snapshot(stack)
    failures, sent = [], 0
    for token in (actor.token, actor.machine_token):
        assert token is not None
        for method, url, headers, body in requests(stack, actor):
            h = {"apikey": api.anon, "Authorization": f"Bearer {token}", **headers}
            r = http.request(method, url, headers=h, content=body)
            sent += 1
            json_body = (
                r.headers.get("content-type", "").startswith("application/") and r.content[:1] in b"[{"
            )
            if r.status_code >= 500 or (r.status_code >= 400 and not json_body):
                failures.append((method, url[:120], headers, (body or b"")[:60], r.status_code, r.text[:200]))
    assert failures == [], failures
    assert snapshot(stack) == before
    assert sent > 1000
