"""Paper trades under the execution lease: write_trades, the trade guard, trade_summary."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from stackkit import Actor, Actors, Api, backdate_lease, db_now, seconds_ago, signal
from test_lease import claim, cloud_claim, heartbeat
from test_signal_guard import local_lease_backdated, write

from signalguard.core.codes import GuardError

pytestmark = pytest.mark.stack

PRICE = 100.5  # stackkit's signal price: every trade below enters there


def trades(api: Api, a: Actor, ops: Any, token: str | None = None) -> list[dict[str, Any]]:
    r = api.rpc("write_trades", {"p_ops": ops}, token or a.token)
    assert r.status == 200, r.body
    return r.body


def signals(
    api: Api, a: Actor, db: Any, epoch: int, n: int = 1, *, source: str = "local", symbol: str = "BTCUSDT"
) -> list[str]:
    """n signals of `a`, written through the API under `epoch`; their keys."""
    rows = [signal(a, epoch, seconds_ago(db, 60 * (i + 1)), source=source, symbol=symbol) for i in range(n)]
    out = write(api, a, rows, a.machine_token if source == "cloud" else a.token)
    assert [o["outcome"] for o in out] == ["inserted"] * n, out
    return [o["signal_key"] for o in out]


def open_op(key: str, epoch: int, side: str = "long", size: float = 1, **plan: Any) -> dict[str, Any]:
    return {"op": "open", "signal_key": key, "side": side, "size": size, "epoch": epoch, **plan}


def close_op(
    db: Any, key: str, epoch: int, price: float, reason: str = "manual", exit_time: Any = None
) -> dict[str, Any]:
    if exit_time is None:
        exit_time = int(db_now(db).timestamp() * 1000)
    return {
        "op": "close",
        "signal_key": key,
        "exit_price": price,
        "exit_time": exit_time,
        "exit_reason": reason,
        "epoch": epoch,
    }


def cancel_op(key: str, epoch: int) -> dict[str, Any]:
    return {"op": "cancel", "signal_key": key, "epoch": epoch}


def row(db: Any, key: str) -> dict[str, Any] | None:
    found = db.execute("select to_jsonb(t) from trades t where signal_key = %s", (key,)).fetchone()
    return found[0] if found else None


def status_of(db: Any, key: str) -> str | None:
    t = row(db, key)
    return t["status"] if t else None


def row_text(db: Any, key: str) -> str:
    """The whole stored row, as text: equal means nothing at all changed (updated_at included)."""
    return db.execute("select t::text from trades t where signal_key = %s", (key,)).fetchone()[0]


def count(db: Any, a: Actor) -> int:
    return db.execute("select count(*) from trades where user_id = %s", (a.user_id,)).fetchone()[0]


def hand_over_to_cloud(api: Api, a: Actor) -> int:
    """The machine starts, the browser yields on its next poll, the cloud takes the lease."""
    heartbeat(api, a, "starting")
    claim(api, a)
    granted = cloud_claim(api, a)
    assert granted["granted"], granted
    return granted["lease"]["epoch"]


def opener_fields(t: dict[str, Any]) -> dict[str, Any]:
    """What an open fixes: everything but the status, the exit, the close and the P&L."""
    changing = ("status", "profit_loss", "updated_at")
    return {k: v for k, v in t.items() if k not in changing and not k.startswith(("exit_", "close_"))}


def codes(out: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(o["outcome"], o.get("code")) for o in out]


# -- open ---------------------------------------------------------------------------------------


def test_open_under_the_live_lease_takes_the_signal_and_the_token(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    key, key2 = signals(api, a, db, epoch, 2)
    expires = db_now(db) + timedelta(hours=4)
    expires = expires.replace(microsecond=expires.microsecond // 1000 * 1000)  # epoch ms below
    out = trades(
        api,
        a,
        [
            open_op(
                key,
                epoch,
                "long",
                0.25,
                take_profit_price=110,
                stop_loss_price=95,
                expires_at=expires.isoformat(),
            ),
            open_op(key2, epoch, "short", 3, expires_at=round(expires.timestamp() * 1000)),
        ],
    )
    assert [(o["index"], o["signal_key"], o["outcome"]) for o in out] == [
        (0, key, "opened"),
        (1, key2, "opened"),
    ]
    t = row(db, key)
    assert t is not None and t["id"] == out[0]["id"]
    s = db.execute(
        "select id, trader_id, symbol, interval, price, candle_open_time + interval '1 minute' "
        "from signals where signal_key = %s",
        (key,),
    ).fetchone()
    stored_entry = db.execute("select entry_time from trades where signal_key = %s", (key,)).fetchone()[0]
    assert (t["signal_id"], t["trader_id"], t["symbol"], t["interval"]) == (str(s[0]), str(s[1]), s[2], s[3])
    assert Decimal(str(t["entry_price"])) == s[4] == Decimal("100.5")
    assert stored_entry == s[5]  # the candle's close
    assert (t["user_id"], t["source"], t["machine_id"], t["epoch"]) == (a.user_id, "local", None, epoch)
    assert (t["side"], t["size"], t["take_profit_price"], t["stop_loss_price"]) == ("long", 0.25, 110, 95)
    assert t["status"] == "open" and t["profit_loss"] is None and t["exit_price"] is None
    assert t["close_source"] is None and t["close_epoch"] is None
    both = db.execute("select expires_at from trades where signal_key = any(%s)", ([key, key2],)).fetchall()
    assert both == [(expires,), (expires,)]  # ISO 8601 and epoch milliseconds alike

    # A machine token under the cloud's lease opens as the cloud, for its machine.
    cloud_epoch = hand_over_to_cloud(api, a)
    assert cloud_epoch == epoch + 1
    db.execute(
        "update lease_epochs set started_at = started_at - interval '10 minutes' "
        "where user_id = %s and epoch = %s",
        (a.user_id, cloud_epoch),
    )
    (ckey,) = signals(api, a, db, cloud_epoch, source="cloud", symbol="ETHUSDT")
    out = trades(api, a, [open_op(ckey, cloud_epoch, "short", 1)], a.machine_token)
    assert out[0]["outcome"] == "opened", out
    t = row(db, ckey)
    assert t is not None
    assert (t["source"], t["machine_id"], t["epoch"], t["symbol"]) == (
        "cloud",
        a.machine_uuid,
        cloud_epoch,
        "ETHUSDT",
    )


def test_open_refused_without_the_live_lease(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    keys = signals(api, a, db, epoch, 3)
    # The wrong epoch, while the lease is live.
    out = trades(api, a, [open_op(keys[0], epoch + 1), open_op(keys[0], epoch - 1)])
    assert codes(out) == [("rejected", GuardError.LEASE_NOT_HELD)] * 2
    assert "lease_not_held" in out[0]["message"]
    # The lease expired (the tab went quiet): its epoch opens nothing any more, though its signals stand.
    backdate_lease(db, a.user_id, 31)
    out = trades(api, a, [open_op(keys[0], epoch)])
    assert codes(out) == [("rejected", GuardError.LEASE_NOT_HELD)]
    # Another tab takes the lease: the old epoch is stale, the new one opens.
    new = claim(api, a, a.other_holder())["lease"]["epoch"]
    assert new == epoch + 1
    out = trades(api, a, [open_op(keys[0], epoch), open_op(keys[1], new)])
    assert codes(out) == [("rejected", GuardError.LEASE_NOT_HELD), ("opened", None)]
    # The machine token may not open under the browser's lease, nor name another source.
    out = trades(api, a, [open_op(keys[2], new)], a.machine_token)
    assert codes(out) == [("rejected", GuardError.LEASE_NOT_HELD)]
    out = trades(api, a, [{**open_op(keys[2], new), "source": "cloud"}])
    assert codes(out) == [("rejected", GuardError.SOURCE_MISMATCH)]
    out = trades(api, a, [{**open_op(keys[2], new), "machine_id": a.machine_uuid}])
    assert codes(out) == [("rejected", GuardError.SOURCE_MISMATCH)]
    assert count(db, a) == 1


def test_user_who_never_held_a_lease_opens_nothing(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    # A signal written by maintenance (the database owner is not fenced); the user never claimed.
    db.execute(
        'insert into signals (trader_id, user_id, symbol, "interval", candle_open_time, price, source, '
        "epoch) values (%s, %s, 'BTCUSDT', '1m', date_trunc('minute', now()) - interval '5 minutes', "
        "100.5, 'local', 1)",
        (a.trader_id, a.user_id),
    )
    key = db.execute("select signal_key from signals where user_id = %s", (a.user_id,)).fetchone()[0]
    out = trades(api, a, [open_op(key, 1), open_op(key, 0)])
    assert codes(out) == [("rejected", GuardError.LEASE_NOT_HELD)] * 2
    assert count(db, a) == 0


def test_after_handoff_only_the_cloud_manages_the_browsers_trades(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    k_open, k_late, k_cancel = signals(api, a, db, epoch, 3)
    assert (
        codes(trades(api, a, [open_op(k_open, epoch, "long", 2), open_op(k_cancel, epoch)]))
        == [("opened", None)] * 2
    )
    opened = row(db, k_open)

    cloud_epoch = hand_over_to_cloud(api, a)
    # The browser's outbox drains late: its open and its close are refused, nothing changes.
    out = trades(
        api,
        a,
        [open_op(k_late, epoch), close_op(db, k_open, epoch, 120), cancel_op(k_cancel, epoch)],
    )
    assert codes(out) == [("rejected", GuardError.LEASE_NOT_HELD)] * 3
    # Not even with the cloud's epoch: a browser token is not the cloud.
    out = trades(api, a, [open_op(k_late, cloud_epoch), close_op(db, k_open, cloud_epoch, 120)])
    assert codes(out) == [("rejected", GuardError.LEASE_NOT_HELD)] * 2
    assert row(db, k_open) == opened and row(db, k_late) is None

    # The cloud closes the trade the browser opened, and opens the one the browser could not.
    out = trades(
        api,
        a,
        [
            close_op(db, k_open, cloud_epoch, 120.5, "take_profit"),
            open_op(k_late, cloud_epoch, "short", 1),
            cancel_op(k_cancel, cloud_epoch),
        ],
        a.machine_token,
    )
    assert [o["outcome"] for o in out] == ["closed", "opened", "cancelled"], out
    assert out[0]["profit_loss"] == 40  # 2 x (120.5 - 100.5)
    closed = row(db, k_open)
    assert closed is not None
    assert (closed["status"], closed["close_source"], closed["close_machine_id"], closed["close_epoch"]) == (
        "closed",
        "cloud",
        a.machine_uuid,
        cloud_epoch,
    )
    # The opener's fields are the browser's still; nothing but the close changed.
    assert (closed["source"], closed["machine_id"], closed["epoch"]) == ("local", None, epoch)
    assert opened is not None and opener_fields(closed) == opener_fields(opened)
    late = row(db, k_late)
    assert late is not None and (late["source"], late["machine_id"], late["epoch"]) == (
        "cloud",
        a.machine_uuid,
        cloud_epoch,
    )
    # The browser's replayed open of a trade the cloud opened is a duplicate: nothing changes.
    before = row_text(db, k_late)
    out = trades(api, a, [open_op(k_late, epoch, "long", 9)])
    assert codes(out) == [("duplicate", None)] and out[0]["id"] == late["id"]
    assert row_text(db, k_late) == before


def test_a_trade_write_in_flight_holds_off_a_handoff(api: Api, actors: Actors, db: Any, stack: Any) -> None:
    """The guard locks the lease row until the writing transaction ends: no grant slips in between."""
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    (key,) = signals(api, a, db, epoch)
    claims = Jsonb({"sub": a.user_id, "role": "authenticated"})
    with stack.connect() as writer, stack.connect() as claimer:
        with writer.transaction():
            writer.execute("set local role authenticated")
            writer.execute("select set_config('request.jwt.claims', %s::text, true)", (claims,))
            out = writer.execute("select public.write_trades(%s)", (Jsonb([open_op(key, epoch)]),))
            assert out.fetchone()[0][0]["outcome"] == "opened"
            # A claim, a renewal or a handoff locks the lease row for update: it waits.
            claimer.execute("set lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                claimer.execute("select 1 from execution_leases where user_id = %s for update", (a.user_id,))
        # Committed: the next executor reads the trade after its grant.
        claimer.execute("select 1 from execution_leases where user_id = %s for update", (a.user_id,))
    assert count(db, a) == 1


def test_duplicate_open_is_one_row(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    (key,) = signals(api, a, db, epoch)
    out = trades(api, a, [open_op(key, epoch, "long", 1), open_op(key, epoch, "short", 5)])
    assert [o["outcome"] for o in out] == ["opened", "duplicate"]
    assert out[0]["id"] == out[1]["id"]
    before = row_text(db, key)
    again = trades(api, a, [open_op(key, epoch, "short", 7, take_profit_price=90)])
    assert codes(again) == [("duplicate", None)] and again[0]["id"] == out[0]["id"]
    assert row_text(db, key) == before and count(db, a) == 1
    t = row(db, key)
    assert t is not None and (t["side"], t["size"]) == ("long", 1)


# -- close and cancel ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "size", "exit_price", "reason", "expected"),
    [
        ("long", 2, 110.25, "take_profit", Decimal("19.50")),  # 2 x (110.25 - 100.5)
        ("long", 0.5, 98.5, "stop_loss", Decimal("-1.00")),  # 0.5 x (98.5 - 100.5)
        ("short", 0.5, 90.5, "take_profit", Decimal("5.00")),  # 0.5 x (100.5 - 90.5)
        ("short", 3, 104.5, "expiry", Decimal("-12.00")),  # 3 x (100.5 - 104.5)
    ],
)
def test_close_computes_profit_loss(
    api: Api,
    actors: Actors,
    db: Any,
    side: str,
    size: float,
    exit_price: float,
    reason: str,
    expected: Decimal,
) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    (key,) = signals(api, a, db, epoch)
    assert trades(api, a, [open_op(key, epoch, side, size)])[0]["outcome"] == "opened"
    exit_time = db_now(db).replace(microsecond=0)
    out = trades(api, a, [close_op(db, key, epoch, exit_price, reason, exit_time.isoformat())])
    assert out[0]["outcome"] == "closed", out
    assert Decimal(str(out[0]["profit_loss"])) == expected
    stored = db.execute(
        "select status, profit_loss, exit_price, exit_time, exit_reason, close_source, close_machine_id, "
        "close_epoch from trades where signal_key = %s",
        (key,),
    ).fetchone()
    assert stored == ("closed", expected, Decimal(str(exit_price)), exit_time, reason, "local", None, epoch)


def test_close_is_idempotent(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    (key,) = signals(api, a, db, epoch)
    trades(api, a, [open_op(key, epoch, "long", 1)])
    first = trades(api, a, [close_op(db, key, epoch, 101.5)])
    assert codes(first) == [("closed", None)] and first[0]["profit_loss"] == 1
    stored = row_text(db, key)
    # The same close again, another price, a cancel, in one batch: already closed, nothing changes.
    again = trades(
        api,
        a,
        [
            close_op(db, key, epoch, 101.5),
            close_op(db, key, epoch, 150, "take_profit"),
            cancel_op(key, epoch),
        ],
    )
    assert [(o["outcome"], o["status"], o["id"]) for o in again] == [
        ("already_closed", "closed", first[0]["id"])
    ] * 3
    assert row_text(db, key) == stored
    # Whatever the caller's lease: after the handoff, from the old epoch and from the other side.
    cloud_epoch = hand_over_to_cloud(api, a)
    assert codes(trades(api, a, [close_op(db, key, epoch, 99)])) == [("already_closed", None)]
    out = trades(api, a, [close_op(db, key, cloud_epoch, 200, "manual")], a.machine_token)
    assert codes(out) == [("already_closed", None)]
    assert row_text(db, key) == stored
    t = row(db, key)
    assert t is not None and (t["exit_price"], t["profit_loss"], t["close_source"]) == (101.5, 1.0, "local")


def test_cancel(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    key, other = signals(api, a, db, epoch, 2)
    trades(api, a, [open_op(key, epoch), open_op(other, epoch)])
    out = trades(api, a, [cancel_op(key, epoch + 1), cancel_op(key, epoch), cancel_op("no-such-key", epoch)])
    assert codes(out) == [
        ("rejected", GuardError.LEASE_NOT_HELD),
        ("cancelled", None),
        ("rejected", "not_found"),
    ]
    t = row(db, key)
    assert t is not None
    assert (t["status"], t["exit_price"], t["profit_loss"], t["close_source"], t["close_epoch"]) == (
        "cancelled",
        None,
        None,
        "local",
        epoch,
    )
    stored = row_text(db, key)
    out = trades(api, a, [close_op(db, key, epoch, 120), cancel_op(key, epoch)])
    assert [(o["outcome"], o["status"]) for o in out] == [("already_closed", "cancelled")] * 2
    assert row_text(db, key) == stored
    # The lease gone, an open trade can neither be cancelled nor closed.
    backdate_lease(db, a.user_id, 31)
    out = trades(api, a, [cancel_op(other, epoch), close_op(db, other, epoch, 101)])
    assert codes(out) == [("rejected", GuardError.LEASE_NOT_HELD)] * 2
    assert status_of(db, other) == "open"


# -- direct writes through PostgREST ------------------------------------------------------------


def test_direct_patch_is_guarded(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    k_open, k_closed, k_cancelled = signals(api, a, db, epoch, 3)
    trades(api, a, [open_op(k_open, epoch), open_op(k_closed, epoch), open_op(k_cancelled, epoch)])
    trades(api, a, [close_op(db, k_closed, epoch, 105), cancel_op(k_cancelled, epoch)])
    before = {k: row_text(db, k) for k in (k_open, k_closed, k_cancelled)}

    def patch(key: str, body: dict[str, Any], token: str | None = None) -> Any:
        return api.update("trades", f"signal_key=eq.{key}", body, token or a.token)

    # Fields fixed at the open.
    for field, value in [
        ("entry_price", 1),
        ("size", 100),
        ("side", "short"),
        ("source", "cloud"),
        ("epoch", epoch + 1),
        ("take_profit_price", 500),
        ("signal_key", "other"),
        ("user_id", "00000000-0000-4000-8000-000000000000"),
    ]:
        r = patch(k_open, {field: value})
        assert r.code == GuardError.IMMUTABLE_FIELD, (field, r.body)
    # The client never writes the profit.
    r = patch(k_open, {"profit_loss": 1000})
    assert r.status >= 400, r.body
    # Only open -> closed | cancelled.
    reopen = {"status": "open", "exit_price": None, "exit_time": None, "exit_reason": None}
    reopen |= {"close_source": None, "close_epoch": None}
    assert patch(k_closed, reopen).code == GuardError.INVALID_TRANSITION
    assert patch(k_closed, {"exit_price": 500}).code == GuardError.INVALID_TRANSITION
    assert (
        patch(k_cancelled, {"status": "closed", "close_epoch": epoch}).code == GuardError.INVALID_TRANSITION
    )
    assert patch(k_open, {"status": "open"}).code == GuardError.INVALID_TRANSITION
    # A close through PATCH meets the same guard as write_trades.
    close = {
        "status": "closed",
        "exit_price": 110.5,
        "exit_time": db_now(db).isoformat(),
        "exit_reason": "manual",
        "close_epoch": epoch + 1,
    }
    assert patch(k_open, close).code == GuardError.LEASE_NOT_HELD
    assert patch(k_open, close | {"close_epoch": epoch}, a.machine_token).code == GuardError.LEASE_NOT_HELD
    assert (
        patch(k_open, close | {"close_epoch": epoch, "close_source": "cloud"}).code
        == GuardError.SOURCE_MISMATCH
    )
    early = close | {"close_epoch": epoch, "exit_time": "2020-01-01T00:00:00Z"}
    assert patch(k_open, early).code == GuardError.INVALID_ARGUMENT
    assert {k: row_text(db, k) for k in before} == before
    r = patch(k_open, close | {"close_epoch": epoch})
    assert r.status == 200, r.body
    assert (r.body[0]["status"], r.body[0]["profit_loss"], r.body[0]["close_source"]) == (
        "closed",
        10,
        "local",
    )


def test_direct_post_is_guarded_and_delete_refused(api: Api, actors: Actors, db: Any) -> None:
    a, b = actors.make(), actors.make()
    epoch = local_lease_backdated(api, a, db)
    k1, k2 = signals(api, a, db, epoch, 2)
    b_epoch = local_lease_backdated(api, b, db)
    (b_key,) = signals(api, b, db, b_epoch)
    base = {"signal_key": k1, "side": "long", "size": 1}
    refused = [
        (base | {"epoch": epoch + 1}, GuardError.LEASE_NOT_HELD),
        (base, GuardError.LEASE_NOT_HELD),  # no epoch
        (base | {"epoch": epoch, "source": "cloud"}, GuardError.SOURCE_MISMATCH),
        (base | {"epoch": epoch, "status": "closed", "exit_price": 1}, GuardError.INVALID_TRANSITION),
        (
            base | {"epoch": epoch, "take_profit_price": 90},
            GuardError.INVALID_ARGUMENT,
        ),  # below a long's entry
        (base | {"epoch": epoch, "signal_key": b_key}, GuardError.INVALID_ARGUMENT),  # b's signal
        (base | {"epoch": epoch, "user_id": b.user_id}, "42501"),
        (base | {"epoch": epoch, "profit_loss": 5}, None),  # generated by the database
    ]
    for body, code in refused:
        r = api.insert("trades", body, a.token)
        assert r.status >= 400 and (code is None or r.code == code), (body, r.body)
    r = api.insert("trades", base | {"epoch": epoch}, a.machine_token)
    assert r.code == GuardError.LEASE_NOT_HELD, r.body
    assert count(db, a) == 0 and count(db, b) == 0
    # Under the lease it is an open like write_trades': what the client claims about the signal is ignored.
    r = api.insert(
        "trades",
        base
        | {
            "epoch": epoch,
            "entry_price": 1,
            "symbol": "DOGEUSDT",
            "interval": "1d",
            "entry_time": "2020-01-01",
        },
        a.token,
    )
    assert r.status == 201, r.body
    t = r.body[0]
    assert (t["entry_price"], t["symbol"], t["interval"], t["source"]) == (PRICE, "BTCUSDT", "1m", "local")
    # A direct open may name the signal by id; the key is filled in.
    sid = db.execute("select id::text from signals where signal_key = %s", (k2,)).fetchone()[0]
    r = api.insert("trades", {"signal_id": sid, "side": "short", "size": 2, "epoch": epoch}, a.token)
    assert r.status == 201 and r.body[0]["signal_key"] == k2, r.body
    # A second open of a signal is the unique key's conflict.
    r = api.insert("trades", base | {"epoch": epoch}, a.token)
    assert r.status == 409 and r.code == "23505"
    # Trades are never deleted through the API.
    r = api.delete("trades", f"signal_key=eq.{k1}", a.token)
    assert r.status in (401, 403) and r.code == "42501", r.body
    assert count(db, a) == 2


# -- who sees what ------------------------------------------------------------------------------


def test_other_users_signals_and_trades_are_invisible(api: Api, actors: Actors, db: Any) -> None:
    a, b = actors.make(), actors.make()
    a_epoch = local_lease_backdated(api, a, db)
    b_epoch = local_lease_backdated(api, b, db)
    (a_key,) = signals(api, a, db, a_epoch)
    b_open, b_signal = signals(api, b, db, b_epoch, 2)
    trades(api, b, [open_op(b_open, b_epoch)])
    stored = row_text(db, b_open)
    out = trades(
        api,
        a,
        [
            open_op(b_signal, a_epoch),
            open_op(b_open, a_epoch),
            close_op(db, b_open, a_epoch, 120),
            cancel_op(b_open, a_epoch),
            open_op(a_key, a_epoch),
        ],
    )
    assert [(o["outcome"], o.get("code"), o.get("message")) for o in out] == [
        ("rejected", "not_found", "no such signal"),
        ("rejected", "not_found", "no such signal"),
        ("rejected", "not_found", "no such trade"),
        ("rejected", "not_found", "no such trade"),
        ("opened", None, None),
    ]
    assert row_text(db, b_open) == stored and row(db, b_signal) is None
    seen = api.select("trades", a.token, "select=signal_key")
    assert seen.status == 200 and seen.body == [{"signal_key": a_key}]
    assert api.select("trades", a.machine_token, "select=signal_key").body == [{"signal_key": a_key}]
    assert api.select("trades", b.machine_token, "select=signal_key").body == [{"signal_key": b_open}]


def test_the_anon_key_reaches_nothing(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    (key,) = signals(api, a, db, epoch)
    for r in (
        api.rpc("write_trades", {"p_ops": [open_op(key, epoch)]}, None),
        api.rpc("trade_summary", {}, None),
        api.select("trades", None),
        api.insert("trades", {"signal_key": key, "side": "long", "size": 1, "epoch": epoch}, None),
    ):
        assert r.status == 401 and r.code == "42501", r.body
    assert count(db, a) == 0


# -- malformed input ----------------------------------------------------------------------------


def test_malformed_operations_are_rejected_one_by_one(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    key, key2 = signals(api, a, db, epoch, 2)
    bad = [
        "open",
        {"op": "buy", "signal_key": key, "epoch": epoch},
        {"signal_key": key, "side": "long", "size": 1, "epoch": epoch},
        open_op(key, epoch, "up"),
        open_op(key, epoch, size=0),
        open_op(key, epoch, size="1"),
        open_op(key, 1.5),
        {**open_op(key, epoch), "epoch": None},
        {**open_op(key, epoch), "signal_key": 7},
        {**open_op(key, epoch), "entry_price": 90},
        {**open_op(key, epoch), "profit_loss": 5},
        open_op(key, epoch, take_profit_price=-1),
        open_op(key, epoch, "long", take_profit_price=99),  # below a long's entry
        open_op(key, epoch, "short", stop_loss_price=99),  # below a short's entry
        open_op(key, epoch, expires_at="next tuesday"),
        open_op(key, epoch, expires_at="2020-01-01T00:00:00Z"),  # before the entry
        {**open_op(key, epoch), "machine_id": "machine-1"},
        {**close_op(db, key, epoch, 101), "exit_reason": "bored"},
        {**close_op(db, key, epoch, 101), "exit_price": 0},
        {**close_op(db, key, epoch, 101), "exit_time": None},
        {**cancel_op(key, epoch), "exit_price": 100},
    ]
    out = trades(api, a, [*bad, open_op(key2, epoch)])
    assert [o["index"] for o in out] == list(range(len(bad) + 1))
    assert codes(out) == [("rejected", GuardError.INVALID_ARGUMENT)] * len(bad) + [("opened", None)]
    assert all(o["message"].startswith("invalid_argument: ") for o in out[:-1])
    assert 'an open is {"op": "open", "signal_key": text, "side": "long" | "short"' in out[3]["message"]
    assert "size must be a number > 0" in out[4]["message"]
    assert 'a close is {"op": "close"' in out[17]["message"]
    assert "unexpected field(s) entry_price" in out[9]["message"]
    assert [o["signal_key"] for o in out[:3]] == [None, key, key]
    assert count(db, a) == 1
    # A close before the entry is refused the same way.
    trades(api, a, [open_op(key, epoch)])
    out = trades(api, a, [close_op(db, key, epoch, 101, exit_time="2020-01-01T00:00:00Z")])
    assert (
        codes(out) == [("rejected", GuardError.INVALID_ARGUMENT)] and "before the entry" in out[0]["message"]
    )
    assert status_of(db, key) == "open"


def test_bad_arguments_are_refused_whole(api: Api, actors: Actors) -> None:
    a = actors.make()
    for bad in ({"op": "open"}, "ops", None, 5):
        r = api.rpc("write_trades", {"p_ops": bad}, a.token)
        assert r.status == 400 and r.code == GuardError.INVALID_ARGUMENT, r.body
    r = api.rpc("write_trades", {"p_ops": [{}] * 501}, a.token)
    assert r.code == GuardError.INVALID_ARGUMENT and "at most 500" in r.body["message"]
    assert len(trades(api, a, [{}] * 500)) == 500
    assert trades(api, a, []) == []


# -- the seed's analysis query and the summary ---------------------------------------------------

SEED_PROFIT_BY_SOURCE = (
    "SELECT s.source, COUNT(*) as total_signals, COUNT(t.id) as trades_executed, "
    "AVG(t.profit_loss) as avg_profit FROM signals s LEFT JOIN trades t ON s.id = t.signal_id "
    "GROUP BY s.source;"
)


def insert_signal(db: Any, a: Actor, minutes_ago: int, source: str, created_ago: timedelta) -> str:
    """A signal written by maintenance (not fenced), created `created_ago` ago; its key."""
    row_ = signal(a, 1, db_now(db) - timedelta(minutes=minutes_ago), source=source)
    cols = [*row_, "created_at"]
    return db.execute(
        f"insert into public.signals ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))}) "
        "returning signal_key",
        [*row_.values(), db_now(db) - created_ago],
    ).fetchone()[0]


def insert_trade(db: Any, key: str, side: str, size: float, exit_price: float | None, source: str) -> None:
    """A trade written by maintenance; the database fills the rest from the signal."""
    closed = exit_price is not None
    db.execute(
        "insert into public.trades (signal_key, side, size, source, epoch, status, exit_price, exit_time, "
        "exit_reason, close_source, close_epoch) values (%s, %s, %s, %s, 1, %s, %s, "
        "case when %s then clock_timestamp() end, case when %s then 'manual' end, "
        "case when %s then 'local' end, case when %s then 1 end)",
        (key, side, size, source, "closed" if closed else "open", exit_price, closed, closed, closed, closed),
    )


def trade_fixture(db: Any, a: Actor) -> None:
    """3 cloud signals (2 traded: +4, -1), 2 local (one closed +3, one open), 1 old cloud signal (+10)."""
    c = [insert_signal(db, a, i + 1, "cloud", timedelta(hours=i)) for i in range(3)]
    loc = [insert_signal(db, a, i + 10, "local", timedelta(days=i)) for i in range(2)]
    old = insert_signal(db, a, 30, "cloud", timedelta(days=8))
    insert_trade(db, c[0], "long", 2, 102.5, "cloud")  # 2 x (102.5 - 100.5) = +4
    insert_trade(db, c[1], "short", 1, 101.5, "cloud")  # 1 x (100.5 - 101.5) = -1
    insert_trade(db, loc[0], "short", 1.5, 98.5, "local")  # 1.5 x (100.5 - 98.5) = +3
    insert_trade(db, loc[1], "long", 1, None, "local")  # open
    insert_trade(db, old, "long", 5, 102.5, "cloud")  # +10, created 8 days ago


def test_seed_profitability_query_runs_unchanged(
    api: Api, actors: Actors, db: psycopg.Connection[Any]
) -> None:
    a, b = actors.make(), actors.make()
    trade_fixture(db, a)
    insert_signal(db, b, 1, "local", timedelta(0))
    # Stored as computed, by the database.
    pnl = db.execute(
        "select t.side, t.profit_loss, t.entry_price from trades t where t.user_id = %s "
        "order by t.profit_loss",
        (a.user_id,),
    ).fetchall()
    assert [(s, p) for s, p, _ in pnl] == [
        ("short", Decimal("-1.0")),
        ("short", Decimal("3.00")),
        ("long", Decimal("4.0")),
        ("long", Decimal("10.0")),
        ("long", None),
    ]
    assert {e for _, _, e in pnl} == {Decimal("100.5")}
    # The query as written, as the owner: over every user's rows, so alone with a's here (rolled back).
    with db.transaction(force_rollback=True):
        db.execute("delete from public.signals where user_id <> %s", (a.user_id,))
        rows = db.execute(SEED_PROFIT_BY_SOURCE).fetchall()
    got = sorted((s, n, t, round(float(avg), 9)) for s, n, t, avg in rows)
    assert got == [("cloud", 4, 3, round(13 / 3, 9)), ("local", 2, 2, 3.0)]
    assert db.execute("select count(*) from signals where user_id = %s", (b.user_id,)).fetchone() == (1,)


def test_trade_summary(api: Api, actors: Actors, db: psycopg.Connection[Any]) -> None:
    a, b = actors.make(), actors.make(machine=False)
    trade_fixture(db, a)

    def summary(actor: Actor, days: int | None = None, token: str | None = None) -> dict[str, Any]:
        r = api.rpc("trade_summary", {} if days is None else {"p_days": days}, token or actor.token)
        assert r.status == 200, r.body
        return r.body

    def figures(s: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
        keys = (
            "total_signals",
            "trades_executed",
            "avg_profit",
            "realised_pnl",
            "open_trades",
            "wins",
            "losses",
        )
        return {r["source"]: tuple(r[k] for k in keys) for r in s["by_source"]}

    week = summary(a)
    assert week["days"] == 7
    assert figures(week) == {
        "cloud": (3, 2, 1.5, 3, 0, 1, 1),  # +4 and -1; the third signal untraded
        "local": (2, 2, 3, 3, 1, 1, 0),  # +3 closed, one open (no P&L yet)
    }
    nine = figures(summary(a, 9))
    assert nine["cloud"][:2] == (4, 3) and nine["cloud"][3] == 13 and nine["cloud"][5:] == (2, 1)
    assert abs(nine["cloud"][2] - 13 / 3) < 1e-9
    # A machine token sees its owner's; another user sees zeros.
    assert figures(summary(a, token=a.machine_token)) == figures(week)
    assert summary(b)["by_source"] == [
        {
            "source": s,
            "total_signals": 0,
            "trades_executed": 0,
            "avg_profit": None,
            "realised_pnl": 0,
            "open_trades": 0,
            "wins": 0,
            "losses": 0,
        }
        for s in ("cloud", "local")
    ]
    for days in (0, 367):
        r = api.rpc("trade_summary", {"p_days": days}, a.token)
        assert r.status == 400 and r.code == "22023", r.body
