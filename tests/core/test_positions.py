"""Paper trades: plans, exit rules, P&L, and the SignalManager's book under the guard."""

from __future__ import annotations

import pytest

from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.engine import (
    SignalCreated,
    SignalManager,
    SignalStatus,
    StatusChanged,
    TradeClosed,
    TradeOpened,
    TraderRecord,
)
from signalguard.core.outbox import ACKNOWLEDGED
from signalguard.core.positions import (
    ExitReason,
    Side,
    Trade,
    TradePlan,
    TradeStatus,
    exit_on,
    open_trade,
    profit_loss,
    trade_from_row,
)
from signalguard.core.traders import TraderDefinitionError, parse_trader

USER = "a11ce000-0000-4000-8000-000000000001"
TID = "a11ce000-0000-4000-8000-0000000000b1"
MINUTE = INTERVALS["1m"]
START = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE

#: Signals on any candle that closes 2% or more below the previous close.
DROP = {
    "version": 1,
    "symbols": ["BTCUSDT"],
    "interval": "1m",
    "conditions": [{"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -2}],
}


def with_plan(**plan: object) -> dict[str, object]:
    return DROP | {"trade": {"side": "long", "notional": 100} | plan}


def candle(i: int, o: float, h: float, lo: float, c: float, symbol: str = "BTCUSDT") -> Candle:
    return Candle(symbol, "1m", START + i * MINUTE, o, h, lo, c, 10.0, True)


def flat(i: int, price: float) -> Candle:
    return candle(i, price, price, price, price)


def long_trade(**levels: float | int | None) -> Trade:
    plan = TradePlan(Side.LONG, 100.0, levels.get("tp"), levels.get("sl"), levels.get("hold"))
    return open_trade(
        plan, key="k", trader_id=TID, symbol="BTCUSDT", interval="1m", open_time=START, price=100.0, epoch=3
    )


# -- plans ----------------------------------------------------------------------------------------


def test_a_plan_parses_and_round_trips() -> None:
    d = parse_trader(with_plan(take_profit_pct=2.5, stop_loss_pct=1, max_hold_candles=30))
    assert d.trade == TradePlan(Side.LONG, 100, 2.5, 1, 30)
    assert parse_trader(d.to_json()) == d
    assert parse_trader(DROP).trade is None
    assert "trade" not in parse_trader(DROP).to_json()


@pytest.mark.parametrize(
    ("plan", "path"),
    [
        ({"side": "long", "notional": 100}, "trade"),  # no exit rule
        ({"side": "sideways", "notional": 100, "max_hold_candles": 3}, "trade.side"),
        ({"side": "long", "notional": 0, "max_hold_candles": 3}, "trade.notional"),
        ({"side": "long", "notional": True, "max_hold_candles": 3}, "trade.notional"),
        ({"side": "long", "notional": 1e10, "max_hold_candles": 3}, "trade.notional"),
        ({"side": "long", "notional": 100, "stop_loss_pct": 100}, "trade.stop_loss_pct"),
        ({"side": "short", "notional": 100, "take_profit_pct": 100}, "trade.take_profit_pct"),
        ({"side": "long", "notional": 100, "take_profit_pct": float("nan")}, "trade.take_profit_pct"),
        ({"side": "long", "notional": 100, "max_hold_candles": 0}, "trade.max_hold_candles"),
        ({"side": "long", "notional": 100, "max_hold_candles": 2.5}, "trade.max_hold_candles"),
        ({"side": "long", "notional": 100, "max_hold_candles": 3, "leverage": 10}, "trade.leverage"),
        ("long", "trade"),
    ],
)
def test_a_bad_plan_names_its_field(plan: object, path: str) -> None:
    with pytest.raises(TraderDefinitionError) as err:
        parse_trader(DROP | {"trade": plan})
    assert err.value.path == path
    assert str(err.value).startswith(f"{path}: ")


def test_a_short_may_stop_far_above_and_a_long_may_target_far_above() -> None:
    assert parse_trader(DROP | {"trade": {"side": "short", "notional": 5, "stop_loss_pct": 500}}).trade
    assert parse_trader(DROP | {"trade": {"side": "long", "notional": 5, "take_profit_pct": 500}}).trade


# -- levels, exits and P&L ---------------------------------------------------------------------


def test_open_trade_sets_size_levels_and_expiry_from_the_plan() -> None:
    t = long_trade(tp=2.0, sl=1.0, hold=3)
    assert t.size == pytest.approx(1.0)  # 100 quote at 100
    assert (t.take_profit_price, t.stop_loss_price) == (pytest.approx(102.0), pytest.approx(99.0))
    assert t.entry_time == START + MINUTE  # the signal's candle closes when the next one opens
    assert t.expires_at == START + 4 * MINUTE
    short = open_trade(
        TradePlan(Side.SHORT, 50.0, 10.0, 5.0), key="s", trader_id=TID, symbol="BTCUSDT",
        interval="1m", open_time=START, price=200.0, epoch=1,
    )  # fmt: skip
    assert (short.size, short.take_profit_price, short.stop_loss_price) == (0.25, 180.0, 210.0)
    assert short.expires_at is None


def test_profit_loss_by_side() -> None:
    assert profit_loss(Side.LONG, 2.0, 100.0, 103.0) == pytest.approx(6.0)
    assert profit_loss(Side.SHORT, 2.0, 100.0, 103.0) == pytest.approx(-6.0)
    assert profit_loss(Side.SHORT, 0.5, 100.0, 90.0) == pytest.approx(5.0)


def test_exit_rules_on_one_candle() -> None:
    t = long_trade(tp=2.0, sl=1.0, hold=3)
    assert exit_on(t, candle(0, 100, 110, 90, 100)) is None  # the signal's own candle: before entry
    assert exit_on(t, flat(1, 100.5)) is None
    tp = exit_on(t, candle(1, 100, 102.5, 99.5, 101))
    assert tp is not None and (tp.reason, tp.price, tp.time) == (
        ExitReason.TAKE_PROFIT,
        102.0,
        START + 2 * MINUTE,
    )
    sl = exit_on(t, candle(1, 100, 100.5, 98.0, 100))
    assert sl is not None and (sl.reason, sl.price) == (ExitReason.STOP_LOSS, 99.0)
    both = exit_on(t, candle(1, 100, 103, 98, 101))
    assert both is not None and both.reason is ExitReason.STOP_LOSS  # the worse is assumed first
    gap_down = exit_on(t, candle(1, 97, 97.5, 96, 97))
    assert gap_down is not None and gap_down.price == 97  # a gap through the stop fills at the open
    gap_up = exit_on(t, candle(1, 105, 106, 104.5, 105))
    assert gap_up is not None and gap_up.price == 105
    assert exit_on(t, flat(2, 100.2)) is None
    expiry = exit_on(t, flat(3, 100.7))
    assert expiry is not None and (expiry.reason, expiry.price, expiry.time) == (
        ExitReason.EXPIRY, 100.7, START + 4 * MINUTE,
    )  # fmt: skip
    assert (
        exit_on(t, flat(1, 150).__class__("ETHUSDT", "1m", START + MINUTE, 150, 150, 150, 150, 1, True))
        is None
    )
    assert exit_on(t, Candle("BTCUSDT", "1m", START + MINUTE, 100, 200, 50, 100, 1, False)) is None


def test_short_exits_mirror_the_long_ones() -> None:
    t = open_trade(
        TradePlan(Side.SHORT, 100.0, 2.0, 1.0), key="s", trader_id=TID, symbol="BTCUSDT",
        interval="1m", open_time=START, price=100.0, epoch=1,
    )  # fmt: skip
    up = exit_on(t, candle(1, 100, 101.5, 99.5, 100))
    assert up is not None and (up.reason, up.price) == (ExitReason.STOP_LOSS, 101.0)
    down = exit_on(t, candle(1, 100, 100.5, 97.0, 98))
    assert down is not None and (down.reason, down.price) == (ExitReason.TAKE_PROFIT, 98.0)


def test_stored_rows_become_trades() -> None:
    row = {
        "signal_key": "k1", "trader_id": TID.upper(), "symbol": "BTCUSDT", "interval": "1m",
        "side": "short", "size": 0.5, "entry_price": "200.5", "entry_time": "2023-11-14T22:14:00+00:00",
        "take_profit_price": 190, "stop_loss_price": None, "expires_at": None, "status": "open", "epoch": 4,
    }  # fmt: skip
    got = trade_from_row(row)
    assert got is not None
    trade, status = got
    assert status is TradeStatus.OPEN and trade.side is Side.SHORT and trade.trader_id == TID
    assert (trade.entry_price, trade.take_profit_price, trade.stop_loss_price) == (200.5, 190.0, None)
    assert trade.entry_time == 1_700_000_040_000
    for broken in ({"status": "half"}, {"entry_time": "yesterday"}, {"epoch": "4"}, {"size": None}):
        assert trade_from_row(row | broken) is None
    assert trade_from_row({k: v for k, v in row.items() if k != "side"}) is None


def test_the_outbox_acknowledges_every_trade_outcome() -> None:
    assert {"opened", "closed", "already_closed", "cancelled", "duplicate"} <= ACKNOWLEDGED
    assert "rejected" not in ACKNOWLEDGED


# -- the manager's book -------------------------------------------------------------------------


def manager(definition: dict[str, object], epoch: int | None = 5) -> SignalManager:
    m = SignalManager(USER)
    m.set_traders([TraderRecord(TID, "Drop", definition)])
    m.authorize(epoch is not None, epoch)
    m.drain()  # the streams to watch (StreamsChanged)
    return m


def feed(m: SignalManager, candles: list[Candle]) -> list[object]:
    out: list[object] = []
    for c in candles:
        m.feed(c)
        out += m.drain()
    return out


def drop_then(path: list[float]) -> list[Candle]:
    """100 flat, then a 3% drop (the signal, at 97), then ``path`` as flat candles."""
    candles = [flat(0, 100.0), candle(1, 100, 100, 97, 97)]
    return candles + [flat(2 + i, p) for i, p in enumerate(path)]


def test_a_signal_opens_its_trade_and_an_exit_closes_both() -> None:
    m = manager(with_plan(take_profit_pct=3, stop_loss_pct=2))
    effects = feed(m, drop_then([98.0, 99.0, 100.0]))
    kinds = [type(e).__name__ for e in effects]
    assert kinds == ["SignalCreated", "TradeOpened", "StatusChanged", "TradeClosed", "StatusChanged"]
    opened = effects[1]
    assert isinstance(opened, TradeOpened)
    assert opened.trade.key == effects[0].signal.key
    assert (opened.trade.entry_price, opened.trade.epoch) == (97.0, 5)
    closed = effects[3]
    assert isinstance(closed, TradeClosed)
    # The candle opened above the target: it fills at its open (100), as a resting order would.
    assert closed.exit.reason is ExitReason.TAKE_PROFIT and closed.exit.price == 100.0
    assert closed.profit_loss == pytest.approx(100 / 97 * 3)
    last = effects[4]
    assert isinstance(last, StatusChanged) and last.new is SignalStatus.CLOSED
    assert m.open_trades() == [] and m.tracked() == []


def test_a_traded_signal_outlives_its_age_and_closes_with_its_trade() -> None:
    m = manager(with_plan(max_hold_candles=90))
    m.expire_after_candles = 5
    effects = feed(m, drop_then([97.0] * 89))
    assert not any(isinstance(e, TradeClosed) for e in effects)
    assert [s.status for s, _ in m.tracked()] == [SignalStatus.NEW]  # tracked, not expired
    effects = feed(m, [flat(91, 96.0)])
    assert [type(e).__name__ for e in effects] == ["TradeClosed", "StatusChanged"]
    assert effects[0].exit.reason is ExitReason.EXPIRY
    # A signal without a trade still expires by age.
    plain = manager(DROP)
    plain.expire_after_candles = 5
    changes = [e for e in feed(plain, drop_then([97.0] * 6)) if isinstance(e, StatusChanged)]
    assert [c.new for c in changes] == [SignalStatus.ACTIVE, SignalStatus.EXPIRED]


def test_no_trade_is_opened_or_managed_without_the_lease() -> None:
    m = manager(with_plan(stop_loss_pct=1))
    feed(m, drop_then([]))
    assert len(m.open_trades()) == 1
    m.authorize(False, None)  # the lease moved: stop at once, forget the book
    assert m.open_trades() == []
    assert feed(m, [flat(2, 50.0)]) == []
    m.authorize(True, 6)
    # Nothing to manage until the database says what is open (the signal itself still moves on).
    assert [type(e).__name__ for e in feed(m, [flat(3, 50.0)])] == ["StatusChanged"]


def test_adopted_trades_are_checked_against_what_they_missed() -> None:
    cloud = manager(with_plan(take_profit_pct=3, stop_loss_pct=2))
    opened = [e for e in feed(cloud, drop_then([97.5])) if isinstance(e, TradeOpened)]
    trade = opened[0].trade
    # The browser saw the same candles without the lease, plus two more while nobody held it.
    browser = manager(with_plan(take_profit_pct=3, stop_loss_pct=2), epoch=None)
    feed(browser, drop_then([97.5, 98.0, 100.5]))
    browser.authorize(True, 8)
    browser.adopt(s for s, _ in cloud.tracked())
    browser.adopt_trades([trade], traded={trade.key})
    effects = browser.drain()
    assert [type(e).__name__ for e in effects] == ["TradeClosed", "StatusChanged"]
    closed = effects[0]
    assert isinstance(closed, TradeClosed)
    assert (closed.exit.reason, closed.exit.time, closed.epoch) == (
        ExitReason.TAKE_PROFIT,
        START + 5 * MINUTE,
        8,
    )
    assert closed.trade.epoch == 5  # opened by the cloud, closed by the browser
    # The same candles give the cloud the same exit had it kept the lease.
    stayed = [e for e in feed(cloud, [flat(3, 98.0), flat(4, 100.5)]) if isinstance(e, TradeClosed)]
    assert stayed[0].exit == closed.exit
    # Adopting again changes nothing: the trade is over.
    browser.adopt_trades([], traded={trade.key})
    assert browser.drain() == []


def test_an_open_signal_without_its_trade_gets_one_and_one_whose_trade_ended_is_closed() -> None:
    source = manager(with_plan(stop_loss_pct=50))
    feed(source, drop_then([]))
    signals = [s for s, _ in source.tracked()]
    m = manager(with_plan(stop_loss_pct=50), epoch=None)
    feed(m, drop_then([97.2]))
    m.authorize(True, 9)
    m.adopt(signals)
    m.adopt_trades([], traded=())
    effects = m.drain()
    assert [type(e).__name__ for e in effects] == ["TradeOpened"]
    assert effects[0].trade.epoch == 9 and effects[0].trade.entry_price == 97.0
    other = manager(with_plan(stop_loss_pct=50), epoch=None)
    other.authorize(True, 9)
    other.adopt(signals)
    other.adopt_trades([], traded={signals[0].key})
    assert [(type(e).__name__, getattr(e, "new", None)) for e in other.drain()] == [
        ("StatusChanged", SignalStatus.CLOSED)
    ]


def test_manual_close_at_the_last_price_and_streams_keep_open_trades() -> None:
    m = manager(with_plan(max_hold_candles=100))
    feed(m, drop_then([98.0]))
    (trade,) = m.open_trades()
    m.set_traders([])  # the trader is gone; its open trade is still managed on its stream
    assert [(n.symbol, n.interval) for n in m.streams()] == [("BTCUSDT", "1m")]
    assert m.last_price("BTCUSDT", "1m") == 98.0
    assert m.close_trade("nope") is False
    assert m.close_trade(trade.key) is True
    (closed, status) = m.drain()
    assert (
        isinstance(closed, TradeClosed)
        and closed.exit.reason is ExitReason.MANUAL
        and closed.exit.price == 98.0
    )
    assert isinstance(status, StatusChanged) and status.new is SignalStatus.CLOSED
    assert m.streams() == [] and m.open_trades() == []
    m.authorize(False, None)
    assert m.close_trade(trade.key) is False


def test_signals_without_a_plan_open_nothing() -> None:
    m = manager(DROP)
    effects = feed(m, drop_then([50.0, 10.0]))
    assert [type(e) for e in effects if isinstance(e, TradeOpened | TradeClosed)] == []
    assert any(isinstance(e, SignalCreated) for e in effects)


def test_an_adopted_trade_older_than_the_recent_candles_waits_for_the_candles_it_missed() -> None:
    cloud = manager(with_plan(take_profit_pct=3, stop_loss_pct=2))
    (trade,) = [e.trade for e in feed(cloud, drop_then([97.5])) if isinstance(e, TradeOpened)]
    # Nobody held the lease from candle 3 on; the target (99.91) was hit at candle 5. A new executor
    # starts at candle 20: its first candles are far past the exit, and say nothing of it.
    later = manager(with_plan(take_profit_pct=3, stop_loss_pct=2), epoch=None)
    missed = [flat(2, 97.5), flat(3, 98.0), flat(4, 99.0), flat(5, 100.5)]
    missed += [flat(i, 96.0) for i in range(6, 20)]
    feed(later, [flat(i, 96.0) for i in range(20, 23)])
    later.authorize(True, 8)
    later.adopt_trades([trade], traded={trade.key})
    assert later.drain() == []  # not closed at candle 22's price: its candles since entry are unknown
    assert later.open_trades() == [trade]
    assert feed(later, [candle(23, 96, 96, 94, 95.5)]) == []  # nor does a live candle (stop at 95.06)
    (need,) = later.trade_history_needs()
    assert (need.symbol, need.interval, need.start, need.end) == (
        "BTCUSDT", "1m", trade.entry_time, START + 20 * MINUTE,
    )  # fmt: skip
    later.fill_trade_history("BTCUSDT", "1m", missed[2:])  # does not reach back to the entry: waits
    assert later.drain() == [] and later.trade_history_needs() == [need]
    later.fill_trade_history("BTCUSDT", "1m", [c for c in missed if c.open_time != START + 10 * MINUTE])
    assert later.drain() == [] and later.trade_history_needs() == [need]  # a hole: waits
    later.fill_trade_history("BTCUSDT", "1m", missed)
    (closed,) = later.drain()
    assert isinstance(closed, TradeClosed)
    assert (closed.exit.reason, closed.exit.time, closed.exit.price, closed.epoch) == (
        ExitReason.TAKE_PROFIT,
        START + 6 * MINUTE,
        100.5,
        8,
    )  # fmt: skip  (candle 5 closes at minute 6)
    assert later.open_trades() == [] and later.trade_history_needs() == []
    # Without the lease, nothing waits: the book is forgotten.
    again = manager(with_plan(take_profit_pct=3), epoch=None)
    again.authorize(True, 9)
    again.adopt_trades([trade], traded={trade.key})
    assert again.open_trades() == [trade]  # no candles at all yet: it waits for the warm-up
    again.authorize(False, None)
    assert again.open_trades() == [] and again.trade_history_needs() == []


def test_a_waiting_trade_is_managed_once_the_warm_up_covers_its_entry() -> None:
    cloud = manager(with_plan(stop_loss_pct=2))
    (trade,) = [e.trade for e in feed(cloud, drop_then([])) if isinstance(e, TradeOpened)]
    m = manager(with_plan(stop_loss_pct=2))
    m.adopt_trades([trade], traded={trade.key})  # adopted before the stream's warm-up
    assert m.trade_history_needs()[0].end is None
    # Primed candles 0 and 1 cover its entry (candle 2); candle 3 reaches its stop (95.06).
    m.warm_up([flat(0, 100.0), candle(1, 100, 100, 97, 97), flat(2, 96.0), candle(3, 96, 96, 95, 95.5)])
    closed = [e for e in m.drain() if isinstance(e, TradeClosed)]
    assert [(c.exit.reason, c.exit.time) for c in closed] == [(ExitReason.STOP_LOSS, START + 4 * MINUTE)]
    assert m.open_trades() == [] and m.trade_history_needs() == []
