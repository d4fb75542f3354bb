"""The "by source" summary (signal_summary): the seed's analysis queries, per user, by the database clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from stackkit import Actor, Actors, Api, db_now, signal

pytestmark = pytest.mark.stack


def insert(db: psycopg.Connection[Any], row: dict[str, Any], created_ago: timedelta) -> None:
    # Written as the table's owner: the summary is about reading, and the write guard has its own tests.
    cols = [*row, "created_at"]
    db.execute(
        f"insert into public.signals ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))})",
        [*row.values(), db_now(db) - created_ago],
    )


def summary(api: Api, actor: Actor, days: int | None = None) -> dict[str, Any]:
    r = api.rpc("signal_summary", {} if days is None else {"p_days": days}, actor.token)
    assert r.status == 200, r.body
    return r.body


def test_counts_by_source_and_by_machine_for_the_caller_only(
    api: Api, actors: Actors, db: psycopg.Connection[Any]
) -> None:
    a, b = actors.make(), actors.make()
    now = db_now(db)
    minute = timedelta(minutes=1)
    for i in range(3):
        insert(db, signal(a, 1, now - (i + 1) * minute), timedelta(hours=i))
    for i in range(2):
        insert(db, signal(a, 2, now - (i + 10) * minute, source="cloud"), timedelta(days=i))
    insert(db, signal(a, 2, now - 30 * minute, source="cloud"), timedelta(days=8))  # outside 7 days
    insert(db, signal(b, 1, now - minute, source="cloud"), timedelta(0))

    got = summary(api, a)
    assert got["days"] == 7
    counts = {r["source"]: (r["signals"], r["traders"]) for r in got["by_source"]}
    assert counts == {"cloud": (2, 1), "local": (3, 1)}
    assert [(m["machine_id"], m["region"], m["signals"]) for m in got["by_machine"]] == [
        (f"vyx-{a.user_id[:8]}", "ams", 2)
    ]
    # The window follows the argument; the older cloud signal comes in at 9 days.
    nine = summary(api, a, 9)
    assert {r["source"]: r["signals"] for r in nine["by_source"]} == {"cloud": 3, "local": 3}
    # b sees only b's signal; a machine token sees its owner's.
    assert {r["source"]: r["signals"] for r in summary(api, b)["by_source"]} == {"cloud": 1, "local": 0}
    r = api.rpc("signal_summary", {}, a.machine_token)
    assert r.status == 200 and {x["source"]: x["signals"] for x in r.body["by_source"]}["local"] == 3


def test_a_user_without_signals_gets_zeros_and_bad_windows_are_refused(api: Api, actors: Actors) -> None:
    a = actors.make(machine=False)
    got = summary(api, a)
    assert got["by_source"] == [
        {"source": "cloud", "signals": 0, "traders": 0, "last_signal_at": None},
        {"source": "local", "signals": 0, "traders": 0, "last_signal_at": None},
    ]
    assert got["by_machine"] == []
    for days in (0, 367, -1):
        r = api.rpc("signal_summary", {"p_days": days}, a.token)
        assert r.status == 400 and r.code == "22023" and "between 1 and 366" in r.body["message"]
    anon = api.rpc("signal_summary", {}, None)
    assert anon.status in (401, 403)
