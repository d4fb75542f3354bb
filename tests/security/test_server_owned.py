"""Columns the database owns: whatever a client sends, it sets them (or refuses plainly).

The summaries count signals by ``created_at``; a client that could set it could rewrite its history.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from stackkit import DEFINITION, Actors, Api, db_now, seconds_ago, signal
from test_signal_guard import local_lease_backdated, write
from test_trades import open_op, signals

from signalguard.core.codes import GuardError

pytestmark = pytest.mark.stack

LONG_AGO = "2001-01-01T00:00:00Z"


def fresh(db: Any, value: Any) -> bool:
    """Whether a stored time is the database's own, just now."""
    return bool(abs(db_now(db) - value) < timedelta(seconds=30))


def test_a_direct_insert_gets_the_databases_id_created_at_and_updated_epoch(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    chosen_id = str(uuid.uuid4())
    row = signal(a, epoch, seconds_ago(db, 60)) | {
        "id": chosen_id,
        "created_at": LONG_AGO,
        "updated_at": LONG_AGO,
        "updated_epoch": epoch + 1000,
    }
    r = api.insert("signals", [row], a.token)
    assert r.status == 201, r.body
    got = db.execute(
        "select id::text, created_at, updated_at, updated_epoch, status from signals where user_id = %s",
        (a.user_id,),
    ).fetchone()
    assert got[0] != chosen_id
    assert fresh(db, got[1]) and fresh(db, got[2])
    assert got[3:] == (epoch, "new")
    # write_signals hands back the database's id.
    out = write(api, a, [signal(a, epoch, seconds_ago(db, 120)) | {"id": chosen_id}])
    assert out[0]["outcome"] == "inserted" and out[0]["id"] != chosen_id


@pytest.mark.parametrize("status", ["active", "expired", "closed"])
def test_a_signal_is_created_new_and_any_other_status_is_refused_plainly(
    api: Api, actors: Actors, db: Any, status: str
) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    r = api.insert("signals", [signal(a, epoch, seconds_ago(db, 60)) | {"status": status}], a.token)
    assert r.status == 400 and r.code == GuardError.INVALID_TRANSITION, r.body
    assert "created with status new" in r.body["message"]
    out = write(api, a, [signal(a, epoch, seconds_ago(db, 60)) | {"status": status}])
    assert (out[0]["outcome"], out[0]["code"]) == ("rejected", GuardError.INVALID_TRANSITION)
    assert db.execute("select count(*) from signals where user_id = %s", (a.user_id,)).fetchone() == (0,)


def test_created_at_and_id_never_change_afterwards(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    key = write(api, a, [signal(a, epoch, seconds_ago(db, 60))])[0]["signal_key"]
    before = db.execute("select id, created_at from signals where signal_key = %s", (key,)).fetchone()
    for patch in ({"created_at": LONG_AGO}, {"id": str(uuid.uuid4())}):
        r = api.update("signals", f"signal_key=eq.{key}", patch | {"updated_epoch": epoch}, a.token)
        assert r.status == 400 and r.code == GuardError.IMMUTABLE_FIELD, r.body
    assert db.execute("select id, created_at from signals where signal_key = %s", (key,)).fetchone() == before


def test_a_trade_gets_the_databases_id_and_times(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    key = signals(api, a, db, epoch)[0]
    chosen_id = str(uuid.uuid4())
    row = open_op(key, epoch) | {"created_at": LONG_AGO, "updated_at": LONG_AGO, "id": chosen_id}
    row.pop("op")
    r = api.insert("trades", [row], a.token)
    assert r.status == 201, r.body
    got = db.execute(
        "select id::text, created_at, updated_at from trades where signal_key = %s", (key,)
    ).fetchone()
    assert got[0] != chosen_id and fresh(db, got[1]) and fresh(db, got[2])


def test_a_traders_created_at_is_the_databases_and_stays(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    r = api.insert("traders", [{"name": "mine", "definition": DEFINITION, "created_at": LONG_AGO}], a.token)
    assert r.status == 201, r.body
    tid = r.body[0]["id"]
    created = db.execute("select created_at from traders where id = %s", (tid,)).fetchone()[0]
    assert fresh(db, created)
    other = str(uuid.uuid4())
    r = api.update(
        "traders", f"id=eq.{tid}", {"created_at": LONG_AGO, "id": other, "name": "renamed"}, a.token
    )
    assert r.status == 200, r.body
    assert db.execute("select id::text, created_at, name from traders where id = %s", (tid,)).fetchone() == (
        tid,
        created,
        "renamed",
    )
