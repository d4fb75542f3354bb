"""Row level security, cell by cell: 5 callers x 5 tables x 4 operations = 100 cells.

Every operation targets user A's data. A cell passes when the database shows the effect exactly when
the table below says the caller may do it, and the API answers accordingly. Callers: the anon key
alone, user A, user B, A's machine token, B's machine token. Where a write needs a lease (signals), the
caller is given the lease its side would legitimately hold, so that only row level security (and the
source rules) can refuse it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from stackkit import DEFINITION, Actor, Actors, Api, Response, backdate_lease, seconds_ago, signal
from test_lease import claim, cloud_claim, heartbeat

pytestmark = pytest.mark.stack

CALLERS = ("anon", "user_a", "user_b", "machine_a", "machine_b")
TABLES = ("traders", "cloud_machines", "signals", "execution_leases", "lease_epochs")
OPS = ("select", "insert", "update", "delete")

# Who may do what to A's rows. Anything not listed is refused.
ALLOWED = {
    ("traders", "select"): {"user_a", "machine_a"},
    ("traders", "insert"): {"user_a"},
    ("traders", "update"): {"user_a"},
    ("traders", "delete"): {"user_a"},
    ("cloud_machines", "select"): {"user_a", "machine_a"},
    ("signals", "select"): {"user_a", "machine_a"},
    ("signals", "insert"): {"user_a", "machine_a"},
    ("signals", "update"): {"user_a", "machine_a"},
    ("execution_leases", "select"): {"user_a", "machine_a"},
    ("lease_epochs", "select"): {"user_a", "machine_a"},
}


@dataclass
class Cell:
    api: Api
    db: Any
    a: Actor
    b: Actor
    caller: str
    epoch: int = 0
    signal_key: str = ""

    @property
    def token(self) -> str | None:
        return {
            "anon": None,
            "user_a": self.a.token,
            "user_b": self.b.token,
            "machine_a": self.a.machine_token,
            "machine_b": self.b.machine_token,
        }[self.caller]

    def one(self, sql: str, *args: Any) -> Any:
        row = self.db.execute(sql, args).fetchone()
        return row[0] if row else None


def setup(api: Api, db: Any, actors: Actors, caller: str) -> Cell:
    a, b = actors.make(), actors.make()
    cell = Cell(api, db, a, b, caller)
    if caller == "machine_a":
        heartbeat(api, a, "starting")
        cell.epoch = cloud_claim(api, a)["lease"]["epoch"]
    else:
        cell.epoch = claim(api, a)["lease"]["epoch"]
    # Make the lease's window reach 10 minutes back, so a just-closed candle lies inside it.
    backdate_lease(db, a.user_id, 600)
    db.execute(
        "update execution_leases set expires_at = clock_timestamp() + interval '30 s' where user_id = %s",
        (a.user_id,),
    )
    db.execute(
        "update lease_epochs set valid_until = clock_timestamp() + interval '30 s' where user_id = %s",
        (a.user_id,),
    )
    # One existing signal of A's, written by maintenance (the superuser is not fenced).
    row = signal(a, cell.epoch, seconds_ago(db, 300), source="local")
    cell.signal_key = db.execute(
        'insert into signals (trader_id, user_id, symbol, "interval", candle_open_time, price, '
        "matched_conditions, source, machine_id, epoch) values "
        "(%(trader_id)s, %(user_id)s, %(symbol)s, %(interval)s, %(candle_open_time)s, %(price)s, "
        "%(matched_conditions)s, %(source)s, %(machine_id)s, %(epoch)s) returning signal_key",
        row,
    ).fetchone()[0]
    return cell


# -- the operations, each returning (response, whether A's data shows the effect) ---------------


def do_select(c: Cell, table: str) -> tuple[Response, bool]:
    key = {
        "cloud_machines": "id",
        "traders": "user_id",
        "signals": "user_id",
        "execution_leases": "user_id",
        "lease_epochs": "user_id",
    }[table]
    value = c.a.machine_uuid if table == "cloud_machines" else c.a.user_id
    r = c.api.select(table, c.token, f"select=*&{key}=eq.{value}")
    return r, r.status == 200 and isinstance(r.body, list) and len(r.body) > 0


def do_insert(c: Cell, table: str) -> tuple[Response, bool]:
    a = c.a
    if table == "traders":
        r = c.api.insert(table, {"user_id": a.user_id, "name": "intruder", "definition": DEFINITION}, c.token)
        return r, c.one(
            "select count(*) from traders where user_id = %s and name = 'intruder'", a.user_id
        ) == 1
    if table == "cloud_machines":
        before = c.one("select count(*) from cloud_machines")
        r = c.api.insert(table, {"user_id": a.user_id, "machine_id": f"vyx-x{uuid.uuid4().hex[:7]}"}, c.token)
        return r, c.one("select count(*) from cloud_machines") != before
    if table == "signals":
        machine_caller = c.caller.startswith("machine")
        row = signal(
            a,
            c.epoch,
            seconds_ago(c.db, 60),
            symbol="ETHUSDT",
            source="cloud" if machine_caller else "local",
        )
        if c.caller == "machine_b":
            row["machine_id"] = c.b.machine_uuid
        r = c.api.insert(table, [row], c.token)
        return r, c.one(
            "select count(*) from signals where user_id = %s and symbol = 'ETHUSDT'", a.user_id
        ) == 1
    if table == "execution_leases":
        c.db.execute("delete from execution_leases where user_id = %s", (a.user_id,))
        r = c.api.insert(table, {"user_id": a.user_id, "epoch": 99}, c.token)
        return r, c.one("select count(*) from execution_leases where user_id = %s", a.user_id) == 1
    r = c.api.insert(
        table,
        {
            "user_id": a.user_id,
            "epoch": 99,
            "holder_kind": "local",
            "holder_id": "intruder-1",
            "started_at": "2020-01-01T00:00:00Z",
            "valid_until": "2100-01-01T00:00:00Z",
        },
        c.token,
    )
    return r, c.one("select count(*) from lease_epochs where user_id = %s and epoch = 99", a.user_id) == 1


def do_update(c: Cell, table: str) -> tuple[Response, bool]:
    a = c.a
    if table == "traders":
        r = c.api.update(table, f"id=eq.{a.trader_id}", {"name": "renamed"}, c.token)
        return r, c.one("select name from traders where id = %s", a.trader_id) == "renamed"
    if table == "cloud_machines":
        r = c.api.update(
            table,
            f"id=eq.{a.machine_uuid}",
            {"status": "running", "last_health_check": "2100-01-01T00:00:00Z"},
            c.token,
        )
        return r, c.one("select status from cloud_machines where id = %s", a.machine_uuid) == "running"
    if table == "signals":
        r = c.api.update(
            table,
            f"signal_key=eq.{c.signal_key}",
            {"status": "active", "updated_epoch": c.epoch},
            c.token,
        )
        return r, c.one("select status from signals where signal_key = %s", c.signal_key) == "active"
    if table == "execution_leases":
        r = c.api.update(table, f"user_id=eq.{a.user_id}", {"epoch": 999}, c.token)
        return r, c.one("select epoch from execution_leases where user_id = %s", a.user_id) == 999
    r = c.api.update(table, f"user_id=eq.{a.user_id}", {"valid_until": "2100-01-01T00:00:00Z"}, c.token)
    return r, c.one(
        "select count(*) from lease_epochs where user_id = %s and valid_until > '2099-01-01'",
        a.user_id,
    ) > 0


def do_delete(c: Cell, table: str) -> tuple[Response, bool]:
    a = c.a
    key, value = {
        "traders": ("id", a.trader_id),
        "cloud_machines": ("id", a.machine_uuid),
        "signals": ("signal_key", c.signal_key),
        "execution_leases": ("user_id", a.user_id),
        "lease_epochs": ("user_id", a.user_id),
    }[table]
    before = c.one(f"select count(*) from {table} where {key} = %s", value)
    r = c.api.delete(table, f"{key}=eq.{value}", c.token)
    return r, c.one(f"select count(*) from {table} where {key} = %s", value) < before


OPERATIONS = {"select": do_select, "insert": do_insert, "update": do_update, "delete": do_delete}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("table", TABLES)
def test_rls_cell(api: Api, db: Any, actors: Actors, table: str, op: str, caller: str) -> None:
    cell = setup(api, db, actors, caller)
    response, effect = OPERATIONS[op](cell, table)
    allowed = caller in ALLOWED.get((table, op), set())
    assert effect is allowed, (response.status, response.body)
    if allowed:
        assert 200 <= response.status < 300, response.body
    elif caller == "anon":
        # The anon key reaches no table: PostgREST answers "permission denied" as 401.
        assert response.status == 401 and response.code == "42501", response.body
    else:
        # Refused outright (403 / a guard error) or filtered to nothing.
        assert response.status >= 400 or response.body in ([], None), response.body
