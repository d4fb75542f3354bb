"""The write guard on signals: source, epoch history, candle windows, the unique key, updates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from stackkit import Actor, Actors, Api, backdate_lease, seconds_ago, signal
from test_lease import claim, cloud_claim, heartbeat

from signalguard.core.codes import GuardError

pytestmark = pytest.mark.stack

UPSERT = "resolution=ignore-duplicates,return=representation"


def local_lease_backdated(api: Api, a: Actor, db: Any, seconds: float = 600) -> int:
    """Claim a browser lease and move it `seconds` into the past (still live: renewed after)."""
    epoch = claim(api, a)["lease"]["epoch"]
    backdate_lease(db, a.user_id, seconds)
    # Renew so it is live again; the epoch's window now spans [now - seconds, now + 30 s).
    db.execute(
        "update execution_leases set expires_at = clock_timestamp() + interval '30 s' where user_id = %s",
        (a.user_id,),
    )
    db.execute(
        "update lease_epochs set valid_until = clock_timestamp() + interval '30 s' "
        "where user_id = %s and epoch = %s",
        (a.user_id, epoch),
    )
    return epoch


def write(api: Api, a: Actor, rows: list[dict[str, Any]], token: str | None = None) -> list[Any]:
    r = api.rpc("write_signals", {"p_signals": rows}, token or a.token)
    assert r.status == 200, r.body
    return r.body


def count(db: Any, a: Actor) -> int:
    return db.execute("select count(*) from signals where user_id = %s", (a.user_id,)).fetchone()[0]


def test_browser_writes_local_signal_with_its_epoch(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    row = signal(a, epoch, seconds_ago(db, 60))
    r = api.insert("signals", [row], a.token, query="on_conflict=signal_key", prefer=UPSERT)
    assert r.status == 201, r.body
    stored = db.execute(
        "select source, machine_id, epoch, updated_epoch, status, signal_key from signals where user_id = %s",
        (a.user_id,),
    ).fetchone()
    assert stored[:5] == ("local", None, epoch, epoch, "new")
    open_ms = int(datetime.fromisoformat(row["candle_open_time"]).timestamp() * 1000)
    assert stored[5] == f"{a.user_id}:{a.trader_id}:BTCUSDT:1m:{open_ms}"


def test_duplicate_key_is_one_row(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    row = signal(a, epoch, seconds_ago(db, 120))
    first = write(api, a, [row])
    assert first[0]["outcome"] == "inserted"
    # A retry, a second tab, a replayed outbox: same key, one row.
    again = write(api, a, [row, row])
    assert [o["outcome"] for o in again] == ["duplicate", "duplicate"]
    assert again[0]["signal_key"] == first[0]["signal_key"]
    r = api.insert("signals", [row], a.token, query="on_conflict=signal_key", prefer=UPSERT)
    assert r.status in (200, 201) and r.body == []
    assert count(db, a) == 1
    # Without ignore-duplicates the constraint itself answers.
    r = api.insert("signals", [row], a.token)
    assert r.status == 409 and r.code == "23505"


def test_same_key_twice_in_one_batch(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    row = signal(a, epoch, seconds_ago(db, 60))
    other = signal(a, epoch, seconds_ago(db, 60), symbol="ETHUSDT")
    out = write(api, a, [row, other, row])
    assert [o["outcome"] for o in out] == ["inserted", "inserted", "duplicate"]
    assert out[0]["signal_key"] == out[2]["signal_key"]
    assert count(db, a) == 2


def test_write_signals_reports_each_outcome(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    good = signal(a, epoch, seconds_ago(db, 60))
    future = signal(a, epoch, seconds_ago(db, -120), symbol="ETHUSDT")
    wrong_epoch = signal(a, epoch + 5, seconds_ago(db, 60), symbol="SOLUSDT")
    out = write(api, a, [good, future, wrong_epoch, {"nonsense": True}, "x"])
    assert [o["outcome"] for o in out] == [
        "inserted",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert [o["index"] for o in out] == [0, 1, 2, 3, 4]
    assert out[1]["code"] == GuardError.CANDLE_NOT_CLOSED
    assert out[2]["code"] == GuardError.LEASE_NOT_HELD
    assert out[4]["code"] == GuardError.INVALID_ARGUMENT
    assert count(db, a) == 1


def test_write_signals_limits(api: Api, actors: Actors) -> None:
    a = actors.make()
    r = api.rpc("write_signals", {"p_signals": {"not": "an array"}}, a.token)
    assert r.code == GuardError.INVALID_ARGUMENT
    r = api.rpc("write_signals", {"p_signals": [{}] * 501}, a.token)
    assert r.code == GuardError.INVALID_ARGUMENT
    assert api.rpc("write_signals", {"p_signals": []}, None).status == 401


def test_signal_generated_under_old_lease_is_kept_after_lease_moved(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make()
    old = local_lease_backdated(api, a, db, 600)
    inside = signal(a, old, seconds_ago(db, 300))
    # The lease moves to the cloud before the browser's outbox drains.
    claim(api, a)
    heartbeat(api, a, "starting")
    claim(api, a)  # yields
    cloud = cloud_claim(api, a)
    assert cloud["granted"]
    out = write(api, a, [inside])
    assert out[0]["outcome"] == "inserted"  # generated under a lease it legitimately held
    # A candle that closed after the old lease ended is refused.
    after = signal(a, old, seconds_ago(db, -1), symbol="ETHUSDT")
    out = write(api, a, [after])
    assert out[0]["outcome"] == "rejected" and out[0]["code"] == GuardError.OUTSIDE_LEASE_WINDOW


def test_candle_before_the_catch_up_horizon_is_refused(api: Api, actors: Actors, db: Any) -> None:
    # Before its window an epoch signs only its gap: for 1m candles, the hour before it began (see
    # test_gapless_handoff.py).
    a = actors.make()
    epoch = local_lease_backdated(api, a, db, 100)
    out = write(api, a, [signal(a, epoch, seconds_ago(db, 100 + 3600 + 60))])
    assert out[0]["code"] == GuardError.BEFORE_CATCH_UP


def test_epoch_never_held_by_writer_is_refused(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    out = write(api, a, [signal(a, 1, seconds_ago(db, 60))])
    assert out[0]["code"] == GuardError.LEASE_NOT_HELD  # no epoch at all yet
    # The cloud's epoch is not the browser's to use, and vice versa.
    heartbeat(api, a, "starting")
    cloud_epoch = cloud_claim(api, a)["lease"]["epoch"]
    backdate_lease(db, a.user_id, 300)
    db.execute(
        "update lease_epochs set valid_until = clock_timestamp() + interval '30 s' where user_id = %s",
        (a.user_id,),
    )
    out = write(api, a, [signal(a, cloud_epoch, seconds_ago(db, 60))])
    assert out[0]["code"] == GuardError.LEASE_NOT_HELD
    cloud_row = signal(a, cloud_epoch, seconds_ago(db, 60), source="cloud")
    assert write(api, a, [cloud_row], a.machine_token)[0]["outcome"] == "inserted"


def test_cloud_signal_written_by_machine(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    heartbeat(api, a, "starting")
    epoch = cloud_claim(api, a)["lease"]["epoch"]
    backdate_lease(db, a.user_id, 300)
    db.execute(
        "update lease_epochs set valid_until = clock_timestamp() + interval '30 s' where user_id = %s",
        (a.user_id,),
    )
    row = signal(a, epoch, seconds_ago(db, 60), source="cloud")
    r = api.insert("signals", [row], a.machine_token, query="on_conflict=signal_key", prefer=UPSERT)
    assert r.status == 201, r.body
    stored = db.execute(
        "select source, machine_id::text, epoch from signals where user_id = %s", (a.user_id,)
    ).fetchone()
    assert stored == ("cloud", a.machine_uuid, epoch)


def test_source_and_machine_must_match_the_token(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    b = actors.make()
    epoch = local_lease_backdated(api, a, db)
    close = seconds_ago(db, 60)
    # A browser token can never write a cloud signal or name a machine.
    out = write(
        api,
        a,
        [
            signal(a, epoch, close, source="cloud"),
            {**signal(a, epoch, close), "machine_id": a.machine_uuid},
        ],
    )
    assert [o["code"] for o in out] == [GuardError.SOURCE_MISMATCH] * 2
    # A machine token can write neither local signals nor another machine's.
    heartbeat(api, a, "starting")
    out = write(api, a, [signal(a, epoch, close)], a.machine_token)
    assert out[0]["code"] == GuardError.SOURCE_MISMATCH
    out = write(
        api,
        a,
        [{**signal(a, epoch, close, source="cloud"), "machine_id": b.machine_uuid}],
        a.machine_token,
    )
    assert out[0]["code"] == GuardError.SOURCE_MISMATCH
    assert count(db, a) == 0


def test_status_updates_need_the_live_lease(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    key = write(api, a, [signal(a, epoch, seconds_ago(db, 60))])[0]["signal_key"]
    q = f"signal_key=eq.{key}"
    r = api.update("signals", q, {"status": "active", "updated_epoch": epoch}, a.token)
    assert r.status == 200 and r.body[0]["status"] == "active"
    r = api.update("signals", q, {"status": "closed", "updated_epoch": epoch + 1}, a.token)
    assert r.code == GuardError.LEASE_NOT_HELD
    r = api.update("signals", q, {"status": "new", "updated_epoch": epoch}, a.token)
    assert r.code == GuardError.INVALID_TRANSITION
    r = api.update("signals", q, {"price": 1, "updated_epoch": epoch}, a.token)
    assert r.code == GuardError.IMMUTABLE_FIELD
    r = api.update("signals", q, {"source": "cloud", "updated_epoch": epoch}, a.token)
    assert r.code == GuardError.IMMUTABLE_FIELD
    # After the lease moves to the cloud, the browser can no longer change it; the cloud can.
    heartbeat(api, a, "starting")
    claim(api, a)
    cloud_epoch = cloud_claim(api, a)["lease"]["epoch"]
    r = api.update("signals", q, {"status": "closed", "updated_epoch": epoch}, a.token)
    assert r.code == GuardError.LEASE_NOT_HELD
    r = api.update("signals", q, {"status": "expired", "updated_epoch": cloud_epoch}, a.machine_token)
    assert r.status == 200 and r.body[0]["status"] == "expired"
    assert db.execute(
        "select status, updated_epoch from signals where signal_key = %s", (key,)
    ).fetchone() == ("expired", cloud_epoch)


def test_candle_not_closed_is_refused(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = claim(api, a)["lease"]["epoch"]
    # A candle closing 20 s from now: beyond the 5 s allowance for clock skew.
    out = write(api, a, [signal(a, epoch, seconds_ago(db, -20), interval="1s")])
    assert out[0]["code"] == GuardError.CANDLE_NOT_CLOSED


def test_signals_are_never_deleted_through_the_api(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    key = write(api, a, [signal(a, epoch, seconds_ago(db, 60))])[0]["signal_key"]
    r = api.delete("signals", f"signal_key=eq.{key}", a.token)
    # No privilege to delete at all: refused plainly, not silently filtered to no rows.
    assert r.status == 403 and r.code == "42501", r.body
    assert count(db, a) == 1


def test_engine_rows_and_keys_are_the_databases(api: Api, actors: Actors, db: Any) -> None:
    """A signal made by the core engine is written as is, and its key is the one the database makes."""
    from signalguard.core.engine import Signal, signal_key

    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    open_ms = int(seconds_ago(db, 120).timestamp()) // 60 * 60_000
    key = signal_key(a.user_id.upper(), a.trader_id, "BTCUSDT", "1m", open_ms)
    s = Signal(key, a.trader_id, "BTCUSDT", "1m", open_ms, 64_123.45, ("RSI(14) < 30",), epoch)
    out = write(api, a, [s.row(source="local")])
    assert out[0]["outcome"] == "inserted" and out[0]["signal_key"] == key
    stored = db.execute(
        "select price, matched_conditions, candle_open_time from signals where signal_key = %s", (key,)
    ).fetchone()
    assert float(stored[0]) == 64_123.45 and stored[1] == ["RSI(14) < 30"]
    assert int(stored[2].timestamp() * 1000) == open_ms
