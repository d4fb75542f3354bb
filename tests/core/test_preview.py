"""The trader preview: the live engine's signals and trades on history, and a cache that changes nothing."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.engine import SignalCreated, SignalManager, TradeClosed, TraderRecord
from signalguard.core.positions import Exit, ExitReason, Side, TradePlan, open_trade
from signalguard.core.preview import (
    MAX_CACHED_CONDITIONS,
    MAX_CACHED_SERIES,
    Previewer,
    _drawdown,
    preview,
)
from signalguard.core.traders import TraderDefinition, parse_trader
from signalguard.core.traders.templates import TEMPLATES
from signalguard.replay.reference import candles_of
from signalguard.replay.synthetic import generate

USER = "a11ce000-0000-4000-8000-000000000001"
TRADER = "00000000-0000-4000-8000-000000000001"
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
MINUTE = INTERVALS["1m"]
START = 1_759_449_600_000


def history(
    symbols: list[str] = SYMBOLS, *, interval: str = "15m", n: int = 1000, seed: int = 3
) -> list[Candle]:
    """Seeded synthetic candles with planted setups, symbols interleaved by open time."""
    return candles_of(generate(symbols, interval=interval, candles=n, seed=seed).series)


def definition(conditions: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "symbols": list(fields.pop("symbols", SYMBOLS)),
        "interval": fields.pop("interval", "15m"),
        "match": fields.pop("match", "all"),
        "cooldown_candles": fields.pop("cooldown", 0),
        "conditions": conditions,
        **({"trade": fields.pop("trade")} if "trade" in fields else {}),
    }


@dataclass
class EngineRun:
    """What a SignalManager emitted: signals in order, and each trade's exit or its being open at the end."""

    signals: list[tuple[str, int, float, tuple[str, ...]]] = field(default_factory=list)
    exits: dict[tuple[str, int], Exit] = field(default_factory=dict)
    still_open: set[tuple[str, int]] = field(default_factory=set)


def engine(raw: dict[str, Any], candles: list[Candle], primed: int = 0) -> EngineRun:
    """Feed ``candles`` to a SignalManager allowed to generate; the first ``primed`` per symbol only prime."""
    manager = SignalManager(USER)
    manager.set_traders([TraderRecord(TRADER, "t", raw)])
    manager.authorize(True, 1)
    manager.drain()
    seen: dict[str, int] = {}
    out = EngineRun()
    for candle in candles:
        if seen.get(candle.symbol, 0) < primed:
            manager.prime(candle)
        else:
            manager.feed(candle)
        if candle.closed:
            seen[candle.symbol] = seen.get(candle.symbol, 0) + 1
        for effect in manager.drain():
            if isinstance(effect, SignalCreated):
                s = effect.signal
                out.signals.append((s.symbol, s.open_time, s.price, s.matched_conditions))
            elif isinstance(effect, TradeClosed):
                out.exits[(effect.trade.symbol, effect.trade.entry_time)] = effect.exit
    out.still_open = {(t.symbol, t.entry_time) for t in manager.open_trades()}
    return out


def assert_same_as_engine(raw: dict[str, Any], candles: list[Candle], primed: int = 0) -> None:
    d = parse_trader(raw)
    got = preview(d, candles, primed=primed)
    run = engine(raw, candles, primed)
    mine = [(s.symbol, t.open_time, t.price, t.labels) for s in got.symbols for t in s.triggers]
    # The engine emits in candle order across symbols; the preview groups by symbol.
    assert sorted(mine) == sorted(run.signals), raw
    trades = [(s.symbol, t.trade) for s in got.symbols for t in s.triggers if t.trade is not None]
    if d.trade is None:
        assert not trades and not run.exits and not run.still_open
        return
    assert len(trades) == len(mine)
    exits = {(symbol, t.entry_time): t.exit for symbol, t in trades if t.exit is not None}
    assert exits == run.exits, raw
    assert {(symbol, t.entry_time) for symbol, t in trades if t.exit is None} == run.still_open
    assert got.stats.open_trades == len(run.still_open)
    assert got.stats.trades == len(run.exits)


# --- the engine's signals and trades ------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.key)
def test_every_template_previews_as_the_engine_runs_it(template: Any) -> None:
    raw = template.as_json()
    raw["symbols"] = SYMBOLS
    candles = history(interval=str(raw["interval"]), n=1200)
    assert_same_as_engine(raw, candles)
    assert preview(parse_trader(raw), candles).stats.signals > 0  # the comparison compared something


def test_every_kind_of_condition_with_any_and_all_and_both_sides() -> None:
    candles = history(n=1000, seed=11)
    catalogue: list[dict[str, Any]] = [
        {"indicator": "rsi", "period": 14, "op": "<", "value": 40},
        {"indicator": "volume_spike", "period": 20, "op": ">", "value": 1.3},
        {"indicator": "price_change_pct", "period": 3, "op": "<=", "value": -0.2},
        {"indicator": "close_vs_sma", "period": 30, "op": ">"},
        {"indicator": "close_vs_ema", "period": 50, "op": "<="},
        {"indicator": "close_vs_bollinger", "period": 20, "k": 1.5, "band": "lower", "op": "<"},
        {"indicator": "close_vs_bollinger", "period": 20, "k": 1, "band": "middle", "op": ">="},
        {"indicator": "ema_cross", "fast": 5, "slow": 13, "direction": "down"},
        {"indicator": "sma_cross", "fast": 5, "slow": 20, "direction": "up"},
        {"indicator": "macd_histogram", "fast": 12, "slow": 26, "signal": 9, "op": ">", "value": 0},
        {"indicator": "macd_cross", "fast": 8, "slow": 21, "signal": 5, "direction": "up"},
    ]
    long = {
        "side": "long",
        "notional": 100,
        "take_profit_pct": 1.5,
        "stop_loss_pct": 1,
        "max_hold_candles": 30,
    }
    short = {"side": "short", "notional": 250, "take_profit_pct": 0.8, "stop_loss_pct": 2.5}
    for condition in catalogue:
        assert_same_as_engine(definition([condition], cooldown=2, trade=long), candles)
    assert_same_as_engine(definition(catalogue[:3], match="any", cooldown=3, trade=short), candles)
    assert_same_as_engine(definition(catalogue[3:6], match="all", trade={**long, "side": "short"}), candles)
    assert_same_as_engine(definition(catalogue[7:], match="any"), candles)


def random_condition(rnd: random.Random) -> dict[str, Any]:
    op = rnd.choice(["<", "<=", ">", ">="])
    kind = rnd.choice(
        [
            "rsi",
            "volume_spike",
            "price_change_pct",
            "close_vs_sma",
            "close_vs_ema",
            "close_vs_bollinger",
            "ema_cross",
            "sma_cross",
            "macd_histogram",
            "macd_cross",
        ]
    )
    if kind == "rsi":
        return {"indicator": kind, "period": rnd.randint(2, 30), "op": op, "value": rnd.randint(20, 80)}
    if kind == "volume_spike":
        return {
            "indicator": kind,
            "period": rnd.randint(2, 30),
            "op": op,
            "value": rnd.choice([0.8, 1, 1.5, 3]),
        }
    if kind == "price_change_pct":
        return {"indicator": kind, "period": rnd.randint(1, 10), "op": op, "value": rnd.uniform(-1, 1)}
    if kind in ("close_vs_sma", "close_vs_ema"):
        return {"indicator": kind, "period": rnd.randint(2, 60), "op": op}
    if kind == "close_vs_bollinger":
        band = rnd.choice(["upper", "middle", "lower"])
        return {
            "indicator": kind,
            "period": rnd.randint(2, 40),
            "k": rnd.choice([1, 1.5, 2]),
            "band": band,
            "op": op,
        }
    fast = rnd.randint(2, 20)
    slow = rnd.randint(fast + 1, 40)
    if kind in ("ema_cross", "sma_cross"):
        return {"indicator": kind, "fast": fast, "slow": slow, "direction": rnd.choice(["up", "down"])}
    if kind == "macd_histogram":
        return {
            "indicator": kind,
            "fast": fast,
            "slow": slow,
            "signal": rnd.randint(1, 12),
            "op": op,
            "value": 0,
        }
    return {"indicator": kind, "fast": fast, "slow": slow, "signal": rnd.randint(1, 12), "direction": "down"}


def random_plan(rnd: random.Random) -> dict[str, Any] | None:
    if rnd.random() < 0.15:
        return None
    plan: dict[str, Any] = {"side": rnd.choice(["long", "short"]), "notional": rnd.choice([10, 100, 1234.5])}
    rules = rnd.sample(["take_profit_pct", "stop_loss_pct", "max_hold_candles"], rnd.randint(1, 3))
    for rule in rules:
        # Tiny percentages put a level on the entry price itself; large ones are never reached.
        plan[rule] = rnd.randint(1, 80) if rule == "max_hold_candles" else rnd.choice([1e-9, 0.3, 1, 2.5, 50])
    return plan


def random_definition(
    rnd: random.Random, symbols: list[str] = SYMBOLS, interval: str = "15m"
) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = []
    while len(conditions) < rnd.randint(1, 3):
        c = random_condition(rnd)
        if c not in conditions:
            conditions.append(c)
    plan = random_plan(rnd)
    return definition(
        conditions,
        symbols=symbols,
        interval=interval,
        match=rnd.choice(["all", "any"]),
        cooldown=rnd.choice([0, 0, 1, 5]),
        **({"trade": plan} if plan is not None else {}),
    )


def test_random_definitions_preview_as_the_engine_runs_them() -> None:
    rnd = random.Random(20)
    candles = history(SYMBOLS[:2], n=700, seed=5)
    for _ in range(25):
        assert_same_as_engine(random_definition(rnd, SYMBOLS[:2]), candles)


def test_priming_the_warm_up_rule_history_is_the_engine_primed_so() -> None:
    candles = history(n=900, seed=7)
    raw = definition(
        [
            {"indicator": "rsi", "period": 14, "op": "<", "value": 45},
            {"indicator": "close_vs_ema", "period": 9, "op": "<"},
        ],
        cooldown=1,
        trade={"side": "long", "notional": 100, "take_profit_pct": 1, "stop_loss_pct": 1},
    )
    d = parse_trader(raw)
    assert_same_as_engine(raw, candles, primed=d.history)
    got = preview(d, candles, primed=d.history)
    for s in got.symbols:
        assert s.settled_from is not None and s.triggers
        assert all(t.open_time >= s.settled_from for t in s.triggers)


def test_gaps_duplicates_unclosed_and_late_candles_are_taken_as_the_engine_takes_them() -> None:
    candles = history(SYMBOLS[:2], n=600, seed=9)
    rnd = random.Random(4)
    messy: list[Candle] = []
    for i, c in enumerate(candles):
        if i % 53 == 7:
            continue  # a gap: cooldowns and holds count it
        messy.append(c)
        if i % 41 == 3:
            messy.append(c)  # a repeat
        if i % 67 == 5:
            messy.append(
                Candle(c.symbol, c.interval, c.open_time, c.open, c.high, c.low, c.close, 1e9, False)
            )
        if i % 71 == 9 and i > 20:
            messy.append(candles[i - 10])  # late: older than the stream's last
    for _ in range(10):
        assert_same_as_engine(random_definition(rnd, SYMBOLS[:2]), messy)


def test_a_calendar_month_interval_expires_trades_as_the_engine_does() -> None:
    rnd = random.Random(8)
    candles, price = [], 100.0
    for k in range(90):
        year, month = 2015 + k // 12, k % 12 + 1
        t = int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000
        close = price * (1 + rnd.uniform(-0.08, 0.08))
        candles.append(
            Candle(
                "BTCUSDT",
                "1M",
                t,
                price,
                max(price, close) * 1.01,
                min(price, close) * 0.99,
                close,
                1.0,
                True,
            )
        )
        price = close
    raw = definition(
        [{"indicator": "price_change_pct", "period": 1, "op": ">", "value": 0}],
        symbols=["BTCUSDT"],
        interval="1M",
        trade={"side": "long", "notional": 100, "take_profit_pct": 30, "max_hold_candles": 5},
    )
    assert_same_as_engine(raw, candles)
    reasons = {
        t.trade.exit.reason
        for t in preview(parse_trader(raw), candles).symbols[0].triggers
        if t.trade and t.trade.exit
    }
    assert ExitReason.EXPIRY in reasons


def test_the_expiry_is_open_trades_on_every_interval() -> None:
    # The preview adds max_hold_candles intervals at once where open_trade steps through them.
    plan = TradePlan(Side.LONG, 100.0, max_hold_candles=37)
    for interval, length in INTERVALS.items():
        t0 = 1_700_006_400_000 - 1_700_006_400_000 % length
        if interval == "1w":
            t0 = 1_699_833_600_000  # a Monday
        flat = [Candle("BTCUSDT", interval, t0 + i * length, 1.0, 1.0, 1.0, 1.0, 1.0, True) for i in range(4)]
        raw = definition(
            [{"indicator": "price_change_pct", "period": 1, "op": ">=", "value": 0}],
            symbols=["BTCUSDT"],
            interval=interval,
            trade=plan.to_json(),
        )
        trigger = preview(parse_trader(raw), flat).symbols[0].triggers[0]
        expected = open_trade(
            plan,
            key="",
            trader_id="",
            symbol="BTCUSDT",
            interval=interval,
            open_time=trigger.open_time,
            price=1.0,
            epoch=0,
        )
        assert trigger.trade is not None and trigger.trade.expires_at == expected.expires_at, interval


# --- warm-up ------------------------------------------------------------------------------------


def test_nothing_triggers_before_every_condition_is_warm() -> None:
    candles = history(["BTCUSDT"], n=300)
    always = [
        {"indicator": "rsi", "period": 14, "op": "<=", "value": 100},
        {"indicator": "price_change_pct", "period": 25, "op": ">", "value": -100},
    ]
    for match in ("all", "any"):
        d = parse_trader(definition(always, symbols=["BTCUSDT"], match=match))
        s = preview(d, candles).symbols[0]
        # Every condition holds once warm: RSI(14) from the 15th candle, the change over 25 from the 26th.
        assert d.warmup == 26
        assert s.warm_from == candles[25].open_time == s.triggers[0].open_time
        assert len(s.triggers) == 300 - 25
        assert s.settled_from == candles[d.history].open_time
        primed = preview(d, candles, primed=d.history).symbols[0]
        assert primed.triggers[0].open_time == candles[d.history].open_time


def test_a_condition_never_warm_means_no_triggers() -> None:
    candles = history(["BTCUSDT"], n=150)
    d = parse_trader(
        definition(
            [
                {"indicator": "rsi", "period": 5, "op": "<=", "value": 100},
                {"indicator": "close_vs_sma", "period": 200, "op": ">"},
            ],
            symbols=["BTCUSDT"],
            match="any",
        )
    )
    s = preview(d, candles).symbols[0]
    assert s.triggers == () and s.warm_from is None and s.settled_from is None


# --- figures ------------------------------------------------------------------------------------


def bar(i: int, open_: float, high: float, low: float, close: float) -> Candle:
    return Candle("BTCUSDT", "1m", START + i * MINUTE, open_, high, low, close, 10.0, True)


def test_the_figures_of_a_hand_made_history() -> None:
    candles = [
        bar(0, 100, 100.5, 99.5, 100),
        bar(1, 100, 100.5, 99.5, 100),
        bar(2, 100, 105, 100, 105),  # +5 %: trigger A at 105 (target 115.5, stop 99.75)
        bar(3, 105, 116, 104, 110),  # A takes its profit at 115.5: +10 %
        bar(4, 110, 110.2, 109.8, 110),
        bar(5, 110, 121, 110, 121),  # +10 %: trigger B at 121 (stop 114.95)
        bar(6, 121, 121.5, 114, 114),  # B stopped at 114.95: -5 %
        bar(7, 114, 120, 114, 120),  # +5.3 %: trigger C at 120
        bar(8, 120, 122, 119, 121),
        bar(9, 121, 121.5, 120.5, 121),
        bar(10, 121, 122.5, 120.5, 122),  # C expires at the close, 122: +1.67 %
        bar(11, 122, 130, 122, 130),  # +6.6 %: trigger D at 130
        bar(12, 130, 131, 129, 131),  # D still open, marked at 131
    ]
    raw = definition(
        [{"indicator": "price_change_pct", "period": 1, "op": ">=", "value": 5}],
        symbols=["BTCUSDT"],
        interval="1m",
        trade={
            "side": "long",
            "notional": 200,
            "take_profit_pct": 10,
            "stop_loss_pct": 5,
            "max_hold_candles": 3,
        },
    )
    assert_same_as_engine(raw, candles)
    got = preview(parse_trader(raw), candles)
    s = got.symbols[0]
    assert [t.open_time for t in s.triggers] == [candles[i].open_time for i in (2, 5, 7, 11)]
    a, b, c, d = (t.trade for t in s.triggers)
    assert a is not None and b is not None and c is not None and d is not None
    assert a.exit is not None and b.exit is not None
    assert (a.exit.reason, a.exit.time) == (ExitReason.TAKE_PROFIT, candles[4].open_time)
    assert a.price == a.exit.price == pytest.approx(115.5)
    assert (b.exit.reason, b.exit.time) == (ExitReason.STOP_LOSS, candles[7].open_time)
    assert b.price == pytest.approx(114.95)
    assert c.exit == Exit(ExitReason.EXPIRY, 122, candles[11].open_time)
    assert d.exit is None and d.price == 131
    assert [t.return_pct for t in (a, b, c, d)] == pytest.approx([10, -5, 100 * 2 / 120, 100 * 1 / 130])
    assert [t.hold_candles for t in (a, b, c, d)] == [1, 1, 3, 1]
    assert [t.hold_ms for t in (a, b, c, d)] == [MINUTE, MINUTE, 3 * MINUTE, MINUTE]
    st = s.stats
    assert (st.signals, st.trades, st.wins, st.open_trades) == (4, 3, 2, 1)
    assert st.win_rate == pytest.approx(2 / 3)
    assert st.summed_return_pct == pytest.approx(10 - 5 + 100 * 2 / 120)
    assert st.profit_loss == pytest.approx(st.summed_return_pct * 2)  # notional 200
    assert st.max_drawdown_pct == pytest.approx(5)  # the curve 0, 10, 5, 6.67
    assert st.avg_hold_candles == pytest.approx(5 / 3)
    assert st.avg_hold_ms == pytest.approx(5 * MINUTE / 3)
    assert st.open_profit_loss == pytest.approx(200 / 130)
    assert st.open_return_pct == pytest.approx(100 / 130)
    assert got.stats == st
    (reading,) = s.triggers[0].readings
    assert reading.label == "Price change(1) >= 5%" and reading.matched and reading.value == pytest.approx(5)


def test_drawdown_is_the_largest_fall_of_the_summed_returns_from_a_peak() -> None:
    assert _drawdown([3, -2, -2, 3]) == 4
    assert _drawdown([-1, -1]) == 2  # from the start, 0
    assert _drawdown([1, 2, 3]) == 0
    assert _drawdown([]) == 0


def test_all_symbols_together_add_up_and_a_symbol_without_candles_is_missing() -> None:
    candles = history(SYMBOLS[:2], n=800, seed=13)
    raw = TEMPLATES[0].as_json()
    raw["symbols"] = [*SYMBOLS[:2], "XRPUSDT"]
    raw["interval"] = "15m"
    got = preview(parse_trader(raw), candles)
    assert got.missing == ("XRPUSDT",)
    assert [s.symbol for s in got.symbols] == SYMBOLS[:2]
    parts = [s.stats for s in got.symbols]
    assert got.stats.signals == sum(p.signals for p in parts)
    assert got.stats.trades == sum(p.trades for p in parts)
    assert got.stats.wins == sum(p.wins for p in parts)
    assert got.stats.open_trades == sum(p.open_trades for p in parts)
    assert got.stats.summed_return_pct == pytest.approx(sum(p.summed_return_pct for p in parts))
    assert got.stats.max_drawdown_pct >= 0
    # Another interval's candles are not this definition's.
    raw["interval"] = "1h"
    assert preview(parse_trader(raw), candles).missing == tuple(raw["symbols"])


def test_readings_name_every_condition_and_any_lists_only_those_that_held() -> None:
    candles = history(["BTCUSDT"], n=500, seed=2)
    raw = definition(
        [
            {"indicator": "rsi", "period": 14, "op": "<", "value": 35},
            {"indicator": "close_vs_bollinger", "period": 20, "k": 2, "band": "lower", "op": "<"},
            {"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"},
        ],
        symbols=["BTCUSDT"],
        match="any",
    )
    d = parse_trader(raw)
    triggers = preview(d, candles).symbols[0].triggers
    assert triggers
    for t in triggers:
        assert tuple(r.label for r in t.readings) == d.labels
        matched = [r for r in t.readings if r.matched]
        assert len(t.labels) == len(matched)
        # What the signal will record: each matched label with its figures.
        for text, r in zip(t.labels, matched, strict=True):
            head = r.label.partition(" crosses ")[0].partition(" < ")[0]
            assert text.startswith(head) and text != r.label
        rsi, band, _cross = t.readings
        assert rsi.value is not None and rsi.matched == (rsi.value < 35)
        assert band.value is not None and band.matched == (t.price < band.value)


# --- the cache ----------------------------------------------------------------------------------


def edit(raw: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    """One change a person makes in the editor."""
    raw = copy.deepcopy(raw)
    conditions = raw["conditions"]
    what = rnd.random()
    c = rnd.choice(conditions)
    if what < 0.35 and "value" in c:
        c["value"] = (
            round(c["value"] + rnd.uniform(-10, 10), 1) if c["indicator"] == "rsi" else c["value"] * 1.1
        )
    elif what < 0.5 and "op" in c:
        c["op"] = rnd.choice(["<", "<=", ">", ">="])
    elif what < 0.6:
        raw["match"] = "any" if raw["match"] == "all" else "all"
    elif what < 0.68:
        raw["cooldown_candles"] = rnd.choice([0, 1, 3, 10])
    elif what < 0.8:
        plan = random_plan(rnd)
        raw.pop("trade", None)
        if plan is not None:
            raw["trade"] = plan
    elif what < 0.9 and len(conditions) < 4:
        new = random_condition(rnd)
        if new not in conditions:
            conditions.append(new)
    elif len(conditions) > 1:
        conditions.remove(c)
    elif "period" in c:
        c["period"] = max(2, c["period"] + rnd.choice([-1, 1]))
    return raw


def test_previews_after_random_edits_equal_previews_from_scratch() -> None:
    rnd = random.Random(31)
    candles = history(SYMBOLS[:2], n=600, seed=21)
    previewer = Previewer(candles)
    raw = random_definition(rnd, SYMBOLS[:2])
    for _ in range(60):
        raw = edit(raw, rnd)
        try:
            d = parse_trader(raw)
        except ValueError:
            continue
        assert previewer.preview(d) == preview(d, candles)
        primed = rnd.choice([0, 5, d.history])
        assert previewer.preview(d, primed=primed) == preview(d, candles, primed=primed)


def test_a_threshold_edit_computes_no_indicator_again() -> None:
    candles = history(["BTCUSDT"], n=1000)
    previewer = Previewer(candles)
    raw = TEMPLATES[0].as_json()
    raw["symbols"], raw["interval"] = ["BTCUSDT"], "15m"
    raw["conditions"].append({"indicator": "close_vs_ema", "period": 50, "op": "<"})
    previewer.preview(parse_trader(raw))
    assert previewer.cached("BTCUSDT", "15m") == (2, 2)
    for value in (25, 26, 27.5, 40):
        raw["conditions"][0]["value"] = value
        raw["conditions"][1]["op"] = ">" if raw["conditions"][1]["op"] == "<" else "<"
        d = parse_trader(raw)
        assert previewer.preview(d) == preview(d, candles)
    # The RSI and the EMA series were computed once; each new threshold or operator is a new condition.
    series, conditions = previewer.cached("BTCUSDT", "15m")
    assert series == 2 and conditions == 2 + 4 + 1  # the EMA condition alternates between two


def test_the_cache_is_bounded_and_stays_exact() -> None:
    candles = history(["BTCUSDT"], n=300)
    previewer = Previewer(candles)
    for period in range(2, 2 + MAX_CACHED_SERIES + 10):
        for value in (30, 40):
            d = parse_trader(
                definition(
                    [{"indicator": "rsi", "period": period, "op": "<", "value": value}], symbols=["BTCUSDT"]
                )
            )
            assert previewer.preview(d) == preview(d, candles)
    series, conditions = previewer.cached("BTCUSDT", "15m")
    assert series == MAX_CACHED_SERIES and conditions == min(
        MAX_CACHED_CONDITIONS, 2 * (MAX_CACHED_SERIES + 10)
    )


def test_candles_added_later_extend_what_was_computed() -> None:
    candles = history(SYMBOLS[:2], n=900, seed=17)
    rnd = random.Random(6)
    definitions: list[TraderDefinition] = [
        parse_trader(random_definition(rnd, SYMBOLS[:2])) for _ in range(6)
    ]
    previewer = Previewer(candles[:700])
    for d in definitions:
        assert previewer.preview(d) == preview(d, candles[:700])
    assert previewer.add(candles[700:1300]) == 600
    assert previewer.add(candles[1000:1100]) == 0  # already taken
    for d in definitions:
        assert previewer.preview(d) == preview(d, candles[:1300])
    previewer.add(candles[1300:])
    for d in reversed(definitions):
        assert previewer.preview(d) == preview(d, candles)
    assert previewer.candles("BTCUSDT", "15m") == 900


def test_a_negative_prime_is_refused() -> None:
    with pytest.raises(ValueError, match="primed"):
        preview(parse_trader(TEMPLATES[0].as_json()), [], primed=-1)
