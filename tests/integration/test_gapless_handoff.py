"""The gapless handoff: a new holder signs the candles that closed in the gap before its epoch.

A signal of epoch E is accepted when its candle closed inside E's window ``[started_at, valid_until)``
or in E's gap ``[gap_start, started_at)``: ``gap_start`` is the end of epoch E-1's window or the
catch-up horizon before E began (2 hours, at most 60 candles), whichever is later. Gap signals are
stored ``caught_up``; the lease answers say where the gap starts (``signs_from``). Windows and gaps
never overlap, so each candle has one epoch to sign it, even when claims race.

Times are set by rewriting the lease history with the superuser connection, never by sleeping.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg.types.json import Jsonb
from stackkit import DEFINITION, Actor, Actors, Api, backdate_lease, db_now
from test_lease import claim, cloud_claim, heartbeat, status
from test_migrations import MIGRATIONS, components, empty_db

from signalguard.core.codes import GuardError
from signalguard.core.outbox import Entry, Outbox
from signalguard.core.writes import Answered, RefusedSignals, plan, settle
from signalguard.devstack import schema

pytestmark = pytest.mark.stack

__all__ = ["empty_db"]  # a fixture of test_migrations.py, used here

LENGTH = {"1s": timedelta(seconds=1), "1m": timedelta(minutes=1), "5m": timedelta(minutes=5)}
HORIZON = {"1s": timedelta(seconds=60), "1m": timedelta(hours=1), "5m": timedelta(hours=2)}


def row(
    a: Actor,
    epoch: int,
    close: datetime,
    *,
    interval: str = "1m",
    source: str = "local",
    symbol: str = "BTCUSDT",
) -> dict[str, Any]:
    """A signal of ``a``'s trader whose ``interval`` candle closes at ``close`` (whole milliseconds)."""
    return {
        "trader_id": a.trader_id,
        "symbol": symbol,
        "interval": interval,
        "candle_open_time": (close - LENGTH[interval]).isoformat(),
        "price": 100.5,
        "matched_conditions": ["RSI(14) < 30"],
        "source": source,
        "machine_id": a.machine_uuid if source == "cloud" else None,
        "epoch": epoch,
    }


def key(a: Actor, r: dict[str, Any]) -> str:
    open_ms = round(datetime.fromisoformat(r["candle_open_time"]).timestamp() * 1000)
    return f"{a.user_id}:{a.trader_id}:{r['symbol']}:{r['interval']}:{open_ms}"


def write(api: Api, a: Actor, rows: list[dict[str, Any]], token: str | None = None) -> list[dict[str, Any]]:
    r = api.rpc("write_signals", {"p_signals": rows}, token or a.token)
    assert r.status == 200, r.body
    assert [o["index"] for o in r.body] == list(range(len(rows)))
    return list(r.body)


def verdicts(out: Iterable[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(o["outcome"], o.get("code")) for o in out]


def caught_up(db: Any, a: Actor) -> dict[str, bool]:
    rows = db.execute("select signal_key, caught_up from signals where user_id = %s", (a.user_id,)).fetchall()
    return dict(rows)


def reshape(db: Any, a: Actor, *windows: tuple[float, float]) -> datetime:
    """Move epochs 1..n of ``a`` to ``windows``, each (start, end) in seconds before a whole second T
    of the database clock (negative: after it), keeping the lease row in step; returns T.

    The windows must keep the lease's order (each epoch starts at or after the one before ended).
    """
    t: datetime = db.execute("select date_trunc('second', clock_timestamp())").fetchone()[0]
    for epoch, (start, end) in enumerate(windows, 1):
        db.execute(
            "update lease_epochs set started_at = %s, valid_until = %s where user_id = %s and epoch = %s",
            (t - timedelta(seconds=start), t - timedelta(seconds=end), a.user_id, epoch),
        )
    start, end = windows[-1]
    db.execute(
        "update execution_leases set acquired_at = %s,"
        " expires_at = case when expires_at is null then null else %s end"
        " where user_id = %s and epoch = %s",
        (t - timedelta(seconds=start), t - timedelta(seconds=end), a.user_id, len(windows)),
    )
    return t


def browser_handoff(api: Api, a: Actor) -> None:
    """Epoch 1: the first tab, released; epoch 2: a second tab, live."""
    assert claim(api, a)["lease"]["epoch"] == 1
    assert api.rpc("release_local_lease", {"p_holder_id": a.holder}, a.token).body["released"]
    assert claim(api, a, a.other_holder())["lease"]["epoch"] == 2


def at(t: datetime, seconds_before: float) -> datetime:
    return t - timedelta(seconds=seconds_before)


# -- the rule ------------------------------------------------------------------------------------


def test_a_new_holder_signs_the_gap_before_its_epoch(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make(machine=False)
    browser_handoff(api, a)
    # Epoch 1 held [T-1200 s, T-600 s); epoch 2 began at T-5 s: the gap is [T-600 s, T-5 s).
    t = reshape(db, a, (1200, 600), (5, -30))
    gap_start, gap_mid, gap_end, own = (
        row(a, 2, at(t, 600)),
        row(a, 2, at(t, 300), symbol="ETHUSDT"),
        row(a, 2, at(t, 5.001), symbol="SOLUSDT"),
        row(a, 2, at(t, 5), symbol="BNBUSDT"),
    )
    out = write(api, a, [gap_start, gap_mid, gap_end, own])
    assert verdicts(out) == [("inserted", None)] * 4
    # Found late exactly when the candle closed before the epoch began.
    assert caught_up(db, a) == {
        key(a, gap_start): True,
        key(a, gap_mid): True,
        key(a, gap_end): True,
        key(a, own): False,
    }
    # The candle just before the gap is epoch 1's (its window's last millisecond), not epoch 2's.
    before = row(a, 2, at(t, 600.001), symbol="XRPUSDT")
    out = write(api, a, [before])
    assert verdicts(out) == [("rejected", GuardError.OUTSIDE_LEASE_WINDOW)]
    assert "inside epoch 1's lease" in out[0]["message"]
    assert verdicts(write(api, a, [{**before, "epoch": 1}])) == [("inserted", None)]
    # And the gap is not epoch 1's: its window ended where the gap begins.
    out = write(api, a, [{**gap_mid, "epoch": 1, "symbol": "ADAUSDT"}])
    assert verdicts(out) == [("rejected", GuardError.OUTSIDE_LEASE_WINDOW)]
    assert out[0]["message"].startswith("outside_lease_window: the candle closed at ")
    assert "outside epoch 1's lease" in out[0]["message"]


def test_the_first_epoch_signs_back_to_the_horizon(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make(machine=False)
    assert claim(api, a)["lease"]["epoch"] == 1
    t = reshape(db, a, (10, -30))
    out = write(
        api,
        a,
        [
            row(a, 1, at(t, 10 + 3600)),  # 60 1m candles before the start: the horizon's edge
            row(a, 1, at(t, 10 + 3600.001), symbol="ETHUSDT"),
            row(a, 1, at(t, 10 + 60), interval="1s"),
            row(a, 1, at(t, 10 + 60.001), interval="1s", symbol="ETHUSDT"),
            row(a, 1, at(t, 10 + 7200), interval="5m"),  # 24 candles: 2 hours bind first
            row(a, 1, at(t, 10 + 7200.001), interval="5m", symbol="ETHUSDT"),
        ],
    )
    assert verdicts(out) == [("inserted", None), ("rejected", GuardError.BEFORE_CATCH_UP)] * 3
    assert "beyond the catch-up horizon of 01:00:00" in out[1]["message"]
    assert "beyond the catch-up horizon of 00:01:00" in out[3]["message"]
    assert "beyond the catch-up horizon of 02:00:00" in out[5]["message"]
    assert all(o["message"].startswith("before_catch_up: the ") for o in out if o["outcome"] == "rejected")
    assert set(caught_up(db, a).values()) == {True}


def test_the_gap_is_bounded_by_the_horizon_after_a_long_pause(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make(machine=False)
    browser_handoff(api, a)
    # Epoch 1 ended three hours before epoch 2 began: the gap is the horizon before epoch 2.
    t = reshape(db, a, (4 * 3600, 3 * 3600 + 10), (10, -30))
    out = write(
        api,
        a,
        [
            row(a, 2, at(t, 10 + 3600)),
            row(a, 2, at(t, 10 + 3601), symbol="ETHUSDT"),
            row(a, 2, at(t, 10 + 7200), interval="5m"),
            row(a, 2, at(t, 10 + 7201), interval="5m", symbol="ETHUSDT"),
        ],
    )
    assert verdicts(out) == [("inserted", None), ("rejected", GuardError.BEFORE_CATCH_UP)] * 2
    assert "beyond the catch-up horizon" in out[1]["message"]


def test_candles_before_the_previous_epoch_ended_are_not_the_new_epochs(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make(machine=False)
    assert claim(api, a)["lease"]["epoch"] == 1
    backdate_lease(db, a.user_id, 31)
    assert claim(api, a, a.other_holder())["lease"]["epoch"] == 2
    backdate_lease(db, a.user_id, 31)
    assert claim(api, a)["lease"]["epoch"] == 3
    # Epoch 1 [T-900, T-800), gap of 2 [T-800, T-700), epoch 2 [T-700, T-600), gap of 3 [T-600, T-5).
    t = reshape(db, a, (900, 800), (700, 600), (5, -30))
    in_gap_of_2 = row(a, 3, at(t, 750))
    in_window_of_2 = row(a, 3, at(t, 650), symbol="ETHUSDT")
    before_1 = row(a, 3, at(t, 1000), symbol="SOLUSDT")
    out = write(api, a, [in_gap_of_2, in_window_of_2, before_1])
    assert verdicts(out) == [
        ("rejected", GuardError.BEFORE_CATCH_UP),
        ("rejected", GuardError.OUTSIDE_LEASE_WINDOW),
        ("rejected", GuardError.BEFORE_CATCH_UP),
    ]
    assert out[0]["message"].startswith("before_catch_up: the candle closed at ")
    assert "before epoch 2's lease ended at " in out[0]["message"]
    assert "inside epoch 2's lease" in out[1]["message"] and "not epoch 3's" in out[1]["message"]
    assert "before epoch 2's lease ended at " in out[2]["message"]
    # Each is its own epoch's: the gap of 2 and the window of 2 are epoch 2's, before 1 is epoch 1's.
    out = write(
        api, a, [{**in_gap_of_2, "epoch": 2}, {**in_window_of_2, "epoch": 2}, {**before_1, "epoch": 1}]
    )
    assert verdicts(out) == [("inserted", None)] * 3
    assert caught_up(db, a) == {
        key(a, in_gap_of_2): True,
        key(a, in_window_of_2): False,
        key(a, before_1): True,
    }


def test_each_candle_has_one_epoch_over_a_handoff_history(api: Api, actors: Actors, db: Any) -> None:
    """Every close of 1s candles over seven minutes, written under each of four epochs: windows and
    gaps tile the time from the first gap on, and each candle is accepted under exactly one epoch."""
    a = actors.make(machine=False)
    for n in range(1, 5):
        assert claim(api, a, a.other_holder(n))["lease"]["epoch"] == n
        backdate_lease(db, a.user_id, 31)
    # Gaps (1s candles: at most 60 s): [T-360, T-300) of 1, [T-240, T-235) of 2, [T-200, T-150) of 3
    # and [T-110, T-60) of 4, each up to its epoch's window.
    t = reshape(db, a, (300, 240), (235, 200), (150, 110), (60, 0))
    closes = [at(t, s) for s in range(420, 0, -1)]
    accepted: Counter[datetime] = Counter()
    for epoch in range(1, 5):
        out = write(api, a, [row(a, epoch, c, interval="1s", symbol=f"E{epoch}USDT") for c in closes])
        for c, o in zip(closes, out, strict=True):
            assert o["outcome"] in ("inserted", "rejected"), o
            if o["outcome"] == "inserted":
                accepted[c] += 1
            else:
                assert o["code"] in (GuardError.OUTSIDE_LEASE_WINDOW, GuardError.BEFORE_CATCH_UP), o
    # From 60 s before epoch 1 began until epoch 4's window ended, exactly once; nothing before.
    assert dict(accepted) == {c: 1 for c in closes if at(t, 360) <= c < t}
    assert all(accepted[c] == 0 for c in closes if c < at(t, 360))


# -- handoffs between the two sides --------------------------------------------------------------


def test_cloud_to_browser_handoff(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    heartbeat(api, a, "starting")
    assert cloud_claim(api, a)["lease"]["epoch"] == 1
    heartbeat(api, a, "stopped")  # a clean stop ends the cloud's lease
    db.execute(
        "update cloud_machines set last_health_check = last_health_check - interval '1 hour',"
        " stopped_at = stopped_at - interval '1 hour' where id = %s",
        (a.machine_uuid,),
    )
    browser = claim(api, a)
    assert browser["granted"] and browser["lease"]["epoch"] == 2
    # The cloud held [T-600, T-31); the tab was granted at T-1 (the grace in between is the gap).
    t = reshape(db, a, (600, 31), (1, -30))
    grace = row(a, 2, at(t, 15))
    out = write(api, a, [grace])
    assert verdicts(out) == [("inserted", None)]
    # The cloud's outbox drains late: the gap's candle is refused, its own window's kept.
    late = {**row(a, 1, at(t, 15), source="cloud"), "symbol": "ETHUSDT"}
    tail = row(a, 1, at(t, 32), source="cloud", symbol="SOLUSDT")
    out = write(api, a, [late, tail], a.machine_token)
    assert verdicts(out) == [("rejected", GuardError.OUTSIDE_LEASE_WINDOW), ("inserted", None)]
    assert "outside epoch 1's lease" in out[0]["message"]
    # The tab may not take the cloud's candle.
    out = write(api, a, [{**row(a, 2, at(t, 32)), "symbol": "BNBUSDT"}])
    assert verdicts(out) == [("rejected", GuardError.OUTSIDE_LEASE_WINDOW)]
    assert "inside epoch 1's lease" in out[0]["message"]
    assert caught_up(db, a) == {key(a, grace): True, key(a, tail): False}


def test_browser_to_cloud_handoff(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    assert claim(api, a)["lease"]["epoch"] == 1
    heartbeat(api, a, "starting")
    assert claim(api, a)["yielded"]  # the tab gives the lease up to the starting machine
    cloud = cloud_claim(api, a)
    assert cloud["granted"] and cloud["lease"]["epoch"] == 2
    t = reshape(db, a, (300, 200), (20, -30))
    gap = row(a, 2, at(t, 100), source="cloud")
    own = row(a, 2, at(t, 10), source="cloud", symbol="ETHUSDT")
    out = write(api, a, [gap, own], a.machine_token)
    assert verdicts(out) == [("inserted", None)] * 2
    assert caught_up(db, a) == {key(a, gap): True, key(a, own): False}
    # The tab's late write of the same candle: not its epoch's.
    out = write(api, a, [{**row(a, 1, at(t, 100)), "symbol": "SOLUSDT"}])
    assert verdicts(out) == [("rejected", GuardError.OUTSIDE_LEASE_WINDOW)]
    # The machine cannot sign the tab's window under its epoch.
    out = write(api, a, [row(a, 2, at(t, 250), source="cloud", symbol="BNBUSDT")], a.machine_token)
    assert verdicts(out) == [("rejected", GuardError.OUTSIDE_LEASE_WINDOW)]
    assert "inside epoch 1's lease" in out[0]["message"]


# -- caught_up through the API ---------------------------------------------------------------------


def test_caught_up_is_the_databases_and_readable(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make(machine=False)
    browser_handoff(api, a)
    t = reshape(db, a, (600, 300), (10, -30))
    window = {**row(a, 2, at(t, 5)), "user_id": a.user_id, "caught_up": True}
    gap = {**row(a, 2, at(t, 100), symbol="ETHUSDT"), "user_id": a.user_id, "caught_up": False}
    r = api.insert("signals", [window, gap], a.token)
    assert r.status == 201, r.body
    assert sorted((s["symbol"], s["caught_up"]) for s in r.body) == [("BTCUSDT", False), ("ETHUSDT", True)]
    listed = api.select("signals", a.token, "select=symbol,caught_up&order=symbol")
    assert listed.status == 200 and listed.body == [
        {"symbol": "BTCUSDT", "caught_up": False},
        {"symbol": "ETHUSDT", "caught_up": True},
    ]
    # Only the status moves on a signal.
    r = api.update("signals", "symbol=eq.ETHUSDT", {"caught_up": False, "updated_epoch": 2}, a.token)
    assert r.code == GuardError.IMMUTABLE_FIELD, r.body


def test_signals_written_before_the_migration_are_not_caught_up(empty_db: Any) -> None:
    schema.migrate(empty_db, MIGRATIONS, upto="20251003061100")
    user, trader = str(uuid.uuid4()), str(uuid.uuid4())
    empty_db.execute("insert into auth.users (id, email) values (%s, 'old@signalguard.test')", (user,))
    empty_db.execute(
        "insert into public.traders (id, user_id, name, definition) values (%s, %s, 'old', %s)",
        (trader, user, Jsonb(DEFINITION)),
    )
    empty_db.execute(
        "insert into public.signals (trader_id, user_id, symbol, interval, candle_open_time, price, epoch)"
        " values (%s, %s, 'BTCUSDT', '1m', '2025-10-01T00:00:00Z', 1.5, 1)",
        (trader, user),
    )
    schema.migrate(empty_db, MIGRATIONS)
    assert empty_db.execute("select caught_up from public.signals").fetchall() == [(False,)]
    assert "gapless_handoff" in components(empty_db)


# -- a release says where its holder stopped evaluating -------------------------------------------


def window_of(db: Any, a: Actor, epoch: int) -> tuple[datetime, datetime, str | None]:
    found = db.execute(
        "select started_at, valid_until, ended_reason from lease_epochs where user_id = %s and epoch = %s",
        (a.user_id, epoch),
    ).fetchone()
    assert found is not None
    return found[0], found[1], found[2]


def test_a_release_ends_the_window_where_its_holder_stopped_evaluating(
    api: Api, actors: Actors, db: Any
) -> None:
    """A tab closes before the kline of a candle that closed in its window reached it: the release
    says so, that candle is the next holder's gap, and no candle is left to nobody or to two."""
    a = actors.make(machine=False)
    assert claim(api, a)["lease"]["epoch"] == 1
    t = reshape(db, a, (600, -30))
    stopped = at(t, 100)
    r = api.rpc(
        "release_local_lease", {"p_holder_id": a.holder, "p_evaluated_until": stopped.isoformat()}, a.token
    )
    assert r.status == 200 and r.body["released"], r.body
    assert window_of(db, a, 1) == (at(t, 600), stopped, "released")
    # Epoch 1 signs what it evaluated, not the candle after it.
    assert verdicts(write(api, a, [row(a, 1, at(t, 100.001))])) == [("inserted", None)]
    out = write(api, a, [row(a, 1, stopped, symbol="ETHUSDT")])
    assert verdicts(out) == [("rejected", GuardError.OUTSIDE_LEASE_WINDOW)]
    # The next holder's gap starts there: it signs that candle, found late.
    second = claim(api, a, a.other_holder())
    assert second["lease"]["epoch"] == 2 and signs_from(second) == stopped
    gap = row(a, 2, stopped, symbol="ETHUSDT")
    assert verdicts(write(api, a, [gap])) == [("inserted", None)]
    assert caught_up(db, a)[key(a, gap)] is True
    out = write(api, a, [row(a, 2, at(t, 100.001), symbol="SOLUSDT")])
    assert verdicts(out) == [("rejected", GuardError.OUTSIDE_LEASE_WINDOW)]
    assert "inside epoch 1's lease" in out[0]["message"]


def test_a_renewal_that_yields_to_the_machine_ends_the_window_where_the_tab_stopped(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make()
    assert claim(api, a)["lease"]["epoch"] == 1
    t = reshape(db, a, (600, -30))
    heartbeat(api, a, "starting")
    stopped = at(t, 50)
    r = api.rpc(
        "claim_local_lease", {"p_holder_id": a.holder, "p_evaluated_until": stopped.isoformat()}, a.token
    )
    assert r.status == 200 and r.body["yielded"] is True, r.body
    assert window_of(db, a, 1) == (at(t, 600), stopped, "yielded_to_cloud")
    heartbeat(api, a, "running")
    cloud = cloud_claim(api, a)
    assert cloud["granted"] and cloud["lease"]["epoch"] == 2 and signs_from(cloud) == stopped
    # A renewal that is granted ignores it: the lease goes on.
    b = actors.make(machine=False)
    assert claim(api, b)["lease"]["epoch"] == 1
    r = api.rpc(
        "claim_local_lease", {"p_holder_id": b.holder, "p_evaluated_until": db_now(db).isoformat()}, b.token
    )
    assert r.body["renewed"] is True and status(api, b)["lease"]["live"] is True


def test_a_release_never_moves_the_window_later_or_before_its_start(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make()
    # A time after the release: the window ends at the release, as without one.
    assert claim(api, a)["lease"]["epoch"] == 1
    reshape(db, a, (600, -30))
    later = db_now(db) + timedelta(hours=1)
    r = api.rpc(
        "release_local_lease", {"p_holder_id": a.holder, "p_evaluated_until": later.isoformat()}, a.token
    )
    assert r.body["released"]
    _, end, _ = window_of(db, a, 1)
    assert end <= db_now(db)
    # Before the window's start: the window is empty, never reversed.
    assert claim(api, a)["lease"]["epoch"] == 2
    t = reshape(db, a, (900, 800), (600, -30))
    r = api.rpc(
        "release_local_lease",
        {"p_holder_id": a.holder, "p_evaluated_until": at(t, 700).isoformat()},
        a.token,
    )
    assert r.body["released"]
    assert window_of(db, a, 2)[:2] == (at(t, 600), at(t, 600))
    # Not a time: refused by the API, and the lease is untouched.
    assert claim(api, a)["lease"]["epoch"] == 3
    r = api.rpc("release_local_lease", {"p_holder_id": a.holder, "p_evaluated_until": "soon"}, a.token)
    assert r.status == 400, r.body
    assert status(api, a)["lease"]["live"] is True
    # Someone else's release changes nothing, whatever it says.
    r = api.rpc(
        "release_local_lease",
        {"p_holder_id": a.other_holder(), "p_evaluated_until": at(t, 650).isoformat()},
        a.token,
    )
    assert r.status == 200 and not r.body["released"]
    assert status(api, a)["lease"]["live"] is True
    # The machine's release takes it too.
    api.rpc("release_local_lease", {"p_holder_id": a.holder}, a.token)
    heartbeat(api, a, "running")
    assert cloud_claim(api, a)["lease"]["epoch"] == 4
    t = reshape(db, a, (900, 800), (700, 650), (600, 500), (300, -30))
    r = api.rpc("release_cloud_lease", {"p_evaluated_until": at(t, 20).isoformat()}, a.machine_token)
    assert r.status == 200 and r.body["released"], r.body
    assert window_of(db, a, 4) == (at(t, 300), at(t, 20), "released")


# -- signs_from in the lease answers ---------------------------------------------------------------


def signs_from(answer: dict[str, Any]) -> datetime | None:
    value = answer["lease"]["signs_from"]
    return None if value is None else datetime.fromisoformat(value)


def test_signs_from_in_every_lease_answer(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    assert signs_from(status(api, a)) is None  # no holder
    first = claim(api, a)
    acquired = datetime.fromisoformat(first["lease"]["acquired_at"])
    assert signs_from(first) == acquired - timedelta(hours=2)  # the first epoch: the horizon
    api.rpc("release_local_lease", {"p_holder_id": a.holder}, a.token)
    released = status(api, a)
    assert released["lease"]["holder_kind"] is None and signs_from(released) is None

    # A second tab: the gap starts where epoch 1 ended.
    second = claim(api, a, a.other_holder())
    assert second["lease"]["epoch"] == 2
    t = reshape(db, a, (700, 600), (5, -30))
    assert signs_from(claim(api, a, a.other_holder())) == at(t, 600)  # a renewal's answer
    assert signs_from(status(api, a, a.other_holder())) == at(t, 600)
    assert signs_from(status(api, a)) == at(t, 600)  # anyone's view of the lease

    # After a long pause the 2-hour bound: the per-interval bound is the executor's 60 candles.
    t = reshape(db, a, (5 * 3600, 4 * 3600), (5, -30))
    assert signs_from(status(api, a)) == at(t, 5 + 7200)

    # The machine's answers carry it too.
    api.rpc("release_local_lease", {"p_holder_id": a.other_holder()}, a.token)
    heartbeat(api, a, "starting")
    cloud = cloud_claim(api, a)
    assert cloud["lease"]["epoch"] == 3
    assert signs_from(cloud) == datetime.fromisoformat(second_end(db, a))
    assert signs_from(heartbeat(api, a, "running")) == signs_from(cloud)
    r = api.rpc("release_cloud_lease", {}, a.machine_token)
    assert r.body["released"] and r.body["lease"]["signs_from"] is None


def second_end(db: Any, a: Actor) -> str:
    row = db.execute(
        "select to_json(valid_until) #>> '{}' from lease_epochs where user_id = %s and epoch = 2",
        (a.user_id,),
    ).fetchone()
    return str(row[0])


def test_the_catch_up_horizon_per_interval(db: Any) -> None:
    rows = db.execute(
        "select i, extract(epoch from private.catch_up_horizon(i))::int from unnest(%s::text[]) i",
        (["1s", "1m", "3m", "5m", "1h", "1d", "1w", "1M"],),
    ).fetchall()
    assert dict(rows) == {
        "1s": 60,
        "1m": 3600,
        "3m": 7200,
        "5m": 7200,
        "1h": 7200,
        "1d": 7200,
        "1w": 7200,
        "1M": 7200,
    }


# -- refusals leave the outbox with their reason -----------------------------------------------------


def test_refused_gap_signals_are_dropped_with_their_reason(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make(machine=False)
    browser_handoff(api, a)
    t = reshape(db, a, (7200, 600), (10, -30))
    rows = [
        row(a, 2, at(t, 300)),  # the gap: inserted
        row(a, 2, at(t, 900), symbol="ETHUSDT"),  # epoch 1's window: SG002
        row(a, 2, at(t, 100), interval="1s", symbol="SOLUSDT"),  # beyond the 60 s horizon: SG011
        row(a, 2, at(t, 5), symbol="BNBUSDT"),  # its own window: inserted
    ]
    outbox = Outbox()
    for r in rows:
        assert outbox.add(Entry.signal(key(a, r), {**r}, 0.0))
    batch = outbox.take(0.0)
    assert batch is not None and len(batch.entries) == 4
    refused = RefusedSignals()
    call = plan(batch, live_epoch=2, refused=refused)
    answer = api.rpc(call.rpc or "", call.args, a.token)
    assert answer.status == 200, answer.body
    done = settle(outbox, refused, call, Answered(answer.body), 1.0)
    # Nothing waits to be retried; the refusals are kept with their code and message, to be shown.
    assert len(outbox) == 0 and outbox.acknowledged_total == 2 and done.lost is None
    assert [(r.entry.key, r.code) for r in done.refused] == [
        (key(a, rows[1]), GuardError.OUTSIDE_LEASE_WINDOW),
        (key(a, rows[2]), GuardError.BEFORE_CATCH_UP),
    ]
    assert done.refused[1].message.startswith("before_catch_up: ")
    assert key(a, rows[2]) in refused and key(a, rows[0]) not in refused
    # Beyond the horizon the writer is still the executor: only another epoch's candle moves the guard.
    assert done.verdicts == (GuardError.OUTSIDE_LEASE_WINDOW,)
    assert not GuardError.BEFORE_CATCH_UP.moves_guard


# -- racing claims ----------------------------------------------------------------------------------

THREADS = 6
#: Each tab's claims, and the grants it waits for among them.
CLAIMS = 100
GRANTS = 2


def test_a_gap_candle_is_signed_once_when_claims_race(api: Api, actors: Actors, db: Any) -> None:
    """Tabs race for the lease after epoch 1 ended 90 minutes ago; each winner writes every candidate
    candle under its epoch (a symbol per epoch, so no key hides a second acceptance), some before and
    some after releasing, while the others claim. The outcomes match the rule applied to the history
    afterwards, and every candle of the first winner's gap is accepted once."""
    a = actors.make(machine=False)
    assert claim(api, a)["lease"]["epoch"] == 1
    now = db_now(db)
    whole_minute = now.replace(second=0, microsecond=0)
    whole_second = now.replace(microsecond=0)
    # Epoch 1's 30 s window, 90 minutes back, holds the close of one 1m candle.
    backdate_lease(db, a.user_id, (now - whole_minute + timedelta(minutes=90, seconds=10)).total_seconds())
    candidates = [("1m", whole_minute - timedelta(minutes=m)) for m in range(1, 100)]
    candidates += [("1s", whole_second - timedelta(seconds=s)) for s in range(1, 100)]

    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()
    written: list[tuple[int, list[dict[str, Any]]]] = []
    errors: list[BaseException] = []

    def rpc(http: httpx.Client, name: str, args: dict[str, Any]) -> Any:
        r = http.post(
            f"{api.base}/rest/v1/rpc/{name}",
            json=args,
            headers={"apikey": api.anon, "Authorization": f"Bearer {a.token}"},
        )
        assert r.status_code == 200, r.text
        return r.json()

    def rounds(i: int) -> None:
        rnd = random.Random(i)
        holder = a.other_holder(10 + i)
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            grants = 0
            for _ in range(CLAIMS):
                got = rpc(http, "claim_local_lease", {"p_holder_id": holder})
                if not got["granted"]:
                    continue
                grants += 1
                epoch = got["lease"]["epoch"]
                rows = [row(a, epoch, c, interval=iv, symbol=f"E{epoch}USDT") for iv, c in candidates]
                # Half the writers release first: their writes meet the next grants.
                release_first = rnd.random() < 0.5
                if release_first:
                    rpc(http, "release_local_lease", {"p_holder_id": holder})
                out = rpc(http, "write_signals", {"p_signals": rows})
                if not release_first:
                    rpc(http, "release_local_lease", {"p_holder_id": holder})
                with lock:
                    written.append((epoch, out))
                if grants == GRANTS:
                    return

    def worker(i: int) -> None:
        try:
            rounds(i)
        except BaseException as exc:  # reported by the test, not lost in the thread
            with lock:
                errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads)
    assert errors == []

    history = {
        e: (s, v)
        for e, s, v in db.execute(
            "select epoch, started_at, valid_until from lease_epochs where user_id = %s order by epoch",
            (a.user_id,),
        ).fetchall()
    }
    assert len({e for e, _ in written}) >= 3, "the race made fewer than three epochs"

    def owner(interval: str, close: datetime) -> int | None:
        """The epoch whose window or gap holds ``close``, by the rule."""
        for e, (s, v) in history.items():
            previous_end = history[e - 1][1] if e > 1 else None
            gap_start = max(x for x in (previous_end, s - HORIZON[interval]) if x is not None)
            if s <= close < v or gap_start <= close < s:
                return e
        return None

    signed: Counter[tuple[str, datetime]] = Counter()
    for epoch, out in written:
        assert len(out) == len(candidates)
        for (interval, close), o in zip(candidates, out, strict=True):
            mine = owner(interval, close) == epoch
            assert o["outcome"] in (("inserted", "duplicate") if mine else ("rejected",)), (epoch, close, o)
            if o["outcome"] == "inserted":
                signed[(interval, close)] += 1
            elif not mine:
                in_window = next((e for e, (s, v) in history.items() if s <= close < v), None)
                if in_window is not None:
                    assert o["code"] == GuardError.OUTSIDE_LEASE_WINDOW, o
                    assert f"inside epoch {in_window}'s lease" in o["message"], o
                else:
                    assert o["code"] == GuardError.BEFORE_CATCH_UP, o
    # The first winner's gap: everything after epoch 1's end, within the horizon, signed exactly once.
    second_start = history[2][0]
    due = {
        (iv, c)
        for iv, c in candidates
        if history[1][1] <= c < second_start and c >= second_start - HORIZON[iv]
    }
    assert len(due) > 60
    assert dict(signed) == dict.fromkeys(due, 1)
    stored = db.execute(
        "select count(*), bool_and(caught_up) from signals where user_id = %s", (a.user_id,)
    ).fetchone()
    assert stored == (len(due), True)
