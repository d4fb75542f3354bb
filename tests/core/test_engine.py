"""The SignalManager: emission under the guard, determinism, lifecycle, isolation, bounds."""

from __future__ import annotations

import math
import random
import re

import pytest

from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.catchup import EVALUATED_CANDLES
from signalguard.core.engine import (
    LIFECYCLE,
    HistoryNeed,
    LeaseWindow,
    Signal,
    SignalCreated,
    SignalManager,
    SignalStatus,
    StatusChanged,
    StreamsChanged,
    TradeClosed,
    TradeOpened,
    TraderFailed,
    TraderRecord,
    signal_key,
)
from signalguard.core.indicators import VolumeSpike
from signalguard.core.positions import Side, Trade

USER = "A11CE000-0000-4000-8000-000000000001"
T_RSI = "a11ce000-0000-4000-8000-0000000000a1"
T_VOL = "a11ce000-0000-4000-8000-0000000000a2"
MINUTE = INTERVALS["1m"]
START = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE

RSI_LOW = {
    "version": 1,
    "symbols": ["BTCUSDT", "ETHUSDT"],
    "interval": "1m",
    "cooldown_candles": 3,
    "conditions": [{"indicator": "rsi", "period": 14, "op": "<", "value": 35}],
}
VOLUME = {
    "version": 1,
    "symbols": ["BTCUSDT"],
    "interval": "1m",
    "conditions": [{"indicator": "volume_spike", "period": 20, "op": ">", "value": 3.0}],
}


def series(symbol: str, n: int, seed: int) -> list[Candle]:
    """A random walk with sharp drops and volume bursts, so the traders above do fire."""
    rnd = random.Random(seed)
    price, out = 100.0, []
    for i in range(n):
        drift = -0.03 if i % 97 in range(60, 68) else rnd.gauss(0, 0.004)
        close = max(0.01, price * math.exp(drift))
        volume = rnd.uniform(50, 150) * (8 if i % 131 == 100 else 1)
        hi, lo = max(price, close) * 1.001, min(price, close) * 0.999
        out.append(Candle(symbol, "1m", START + i * MINUTE, price, hi, lo, close, volume, True))
        price = close
    return out


def records() -> list[TraderRecord]:
    return [TraderRecord(T_RSI, "RSI low", RSI_LOW), TraderRecord(T_VOL, "Volume", VOLUME)]


def run(manager: SignalManager, candles: list[Candle], authorized: set[int] | None = None) -> list[Signal]:
    created = []
    for i, c in enumerate(candles):
        ok = authorized is None or i in authorized
        manager.authorize(ok, 7 if ok else None)
        manager.feed(c)
        created += [e.signal for e in manager.drain() if isinstance(e, SignalCreated)]
    return created


def interleaved(n: int) -> list[Candle]:
    a, b = series("BTCUSDT", n, 1), series("ETHUSDT", n, 2)
    return [c for pair in zip(a, b, strict=True) for c in pair]


def test_key_matches_the_database_format() -> None:
    assert signal_key(USER, T_RSI.upper(), "BTCUSDT", "1m", 1_700_000_040_000) == (
        "a11ce000-0000-4000-8000-000000000001:a11ce000-0000-4000-8000-0000000000a1:BTCUSDT:1m:1700000040000"
    )


def test_signals_only_while_authorized_and_stamped_with_epoch() -> None:
    candles = interleaved(600)
    m = SignalManager(USER)
    m.set_traders(records())
    assert run(m, candles, authorized=set()) == []
    assert m.matches > 0
    m2 = SignalManager(USER)
    m2.set_traders(records())
    signals = run(m2, candles)
    assert len(signals) == m2.matches == m.matches
    assert {s.epoch for s in signals} == {7}
    s = signals[0]
    assert s.key == signal_key(USER, s.trader_id, s.symbol, "1m", s.open_time)
    # Each matched condition with the figure that decided it: "RSI(14) 28.7 < 35".
    assert s.status is SignalStatus.NEW and len(s.matched_conditions) == 1
    assert re.fullmatch(
        r"RSI\(14\) \d+\.\d < 35|Volume \d+\.\d\dx > 3\.0x avg\(20\)", s.matched_conditions[0]
    )
    assert {x.trader_id for x in signals} == {T_RSI, T_VOL}
    assert s.row(source="local") == {
        "trader_id": s.trader_id,
        "symbol": s.symbol,
        "interval": "1m",
        "candle_open_time": s.open_time,
        "price": s.price,
        "matched_conditions": list(s.matched_conditions),
        "status": "new",
        "source": "local",
        "machine_id": None,
        "epoch": 7,
    }


def test_part_time_executor_emits_a_subset_of_identical_signals() -> None:
    """The handoff property: each side's signals are the reference's, restricted to its windows."""
    candles = interleaved(800)
    reference = SignalManager(USER)
    reference.set_traders(records())
    full = {s.key: s for s in run(reference, candles)}
    windows = set(range(0, 300)) | set(range(700, 1600))
    part = SignalManager(USER)
    part.set_traders(records())
    some = run(part, candles, authorized=windows)
    other = SignalManager(USER)
    other.set_traders(records())
    rest = run(other, candles, authorized=set(range(1600)) - windows)
    assert some and rest
    for s in some + rest:
        assert full[s.key] == s
    assert {s.key for s in some} | {s.key for s in rest} == set(full)
    assert not {s.key for s in some} & {s.key for s in rest}


def test_lifecycle_new_active_expired_and_closed() -> None:
    candles = series("BTCUSDT", 400, 1)
    m = SignalManager(USER, expire_after_candles=5)
    m.set_traders([TraderRecord(T_RSI, "RSI low", RSI_LOW)])
    m.authorize(True, 3)
    changes: list[StatusChanged] = []
    created: list[Signal] = []
    for c in candles:
        m.feed(c)
        for e in m.drain():
            if isinstance(e, SignalCreated):
                created.append(e.signal)
            elif isinstance(e, StatusChanged):
                changes.append(e)
    first = created[0].key
    mine = [(e.old, e.new) for e in changes if e.key == first]
    assert mine == [
        (SignalStatus.NEW, SignalStatus.ACTIVE),
        (SignalStatus.ACTIVE, SignalStatus.EXPIRED),
    ]
    # Close one that is still tracked.
    live = [s for s, _ in m.tracked()]
    if live:
        assert m.close_signal(live[-1].key)
        (e,) = m.drain()
        assert isinstance(e, StatusChanged) and e.new is SignalStatus.CLOSED and e.epoch == 3
        assert not m.close_signal(live[-1].key)  # terminal: gone from tracking


def test_lifecycle_table_matches_the_database() -> None:
    allowed = {
        ("new", "active"),
        ("new", "expired"),
        ("new", "closed"),
        ("active", "expired"),
        ("active", "closed"),
    }
    assert {(a.value, b.value) for (a, _), b in LIFECYCLE.items()} == allowed


def test_statuses_do_not_move_without_the_lease() -> None:
    candles = series("BTCUSDT", 400, 1)
    m = SignalManager(USER, expire_after_candles=5)
    m.set_traders([TraderRecord(T_RSI, "RSI low", RSI_LOW)])
    m.authorize(True, 1)
    for c in candles[:200]:
        m.feed(c)
    m.drain()
    tracked_before = m.tracked()
    m.authorize(False, None)
    for c in candles[200:]:
        m.feed(c)
    assert m.drain() == []
    assert m.tracked() == tracked_before
    assert all(not m.close_signal(s.key) for s, _ in tracked_before)


def test_invalid_trader_is_reported_and_others_run() -> None:
    bad = TraderRecord("bad00000-0000-4000-8000-000000000000", "Broken", {**RSI_LOW, "interval": "7m"})
    m = SignalManager(USER)
    needs = m.set_traders([bad, *records()])
    (failure,) = [e for e in m.drain() if isinstance(e, TraderFailed)]
    assert failure.code == "invalid_definition" and "interval" in failure.message and failure.name == "Broken"
    assert needs == [
        HistoryNeed("BTCUSDT", "1m", RSI_LOW_HISTORY),
        HistoryNeed("ETHUSDT", "1m", RSI_LOW_HISTORY),
    ]
    assert run(m, interleaved(300))


#: The warm-up rule's history of RSI(14), plus the candles evaluated to catch a window up.
RSI_LOW_HISTORY = 202 + EVALUATED_CANDLES


def test_a_trader_that_raises_is_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    m = SignalManager(USER)
    m.set_traders(records())
    pool = m._pools[("BTCUSDT", "1m")]
    (spike,) = [ind for ind, _ in pool._indicators.values() if isinstance(ind, VolumeSpike)]
    calls = 0
    update = spike.update

    def explode_later(volume: float) -> None:
        nonlocal calls
        calls += 1
        if calls > 250:
            raise ArithmeticError("indicator exploded")
        update(volume)

    monkeypatch.setattr(spike, "update", explode_later)
    pool._rebuild_feeds()
    m.authorize(True, 1)
    signals, failures = [], []
    for i, c in enumerate(interleaved(600)):
        m.feed(c)
        for e in m.drain():
            if isinstance(e, SignalCreated):
                signals.append((i, e.signal))
            elif isinstance(e, TraderFailed):
                failures.append((i, e))
    [(failed_at, failure)] = failures
    assert (failure.trader_id, failure.code, failure.name) == (T_VOL, "internal", "Volume")
    assert "Volume > 3.0x avg(20) on BTCUSDT 1m failed" in failure.message
    assert "indicator exploded" in failure.message
    # The volume trader signalled before; the RSI trader, on the same symbol too, goes on after.
    assert any(s.trader_id == T_VOL for i, s in signals if i < failed_at)
    assert not any(s.trader_id == T_VOL for i, s in signals if i >= failed_at)
    assert any(s.trader_id == T_RSI and s.symbol == "BTCUSDT" for i, s in signals if i > failed_at)
    assert T_VOL not in m._traders and T_RSI in m._traders
    assert pool.broken == {} and not any(isinstance(ind, VolumeSpike) for ind, _ in pool._indicators.values())
    # A fixed definition can be run again (a new trader id, or the same one after an edit).
    m.set_traders([*records()[:1], TraderRecord(T_VOL, "Volume", {**VOLUME, "cooldown_candles": 1})])
    assert T_VOL in m._traders and not [e for e in m.drain() if isinstance(e, TraderFailed)]

    def close(self) -> None:
        pass


def test_changed_definition_restarts_only_that_trader() -> None:
    m = SignalManager(USER)
    m.set_traders(records())
    rsi_state = m._traders[T_RSI].states["BTCUSDT"]
    changed = {**VOLUME, "conditions": [{"indicator": "volume_spike", "period": 10, "op": ">", "value": 4}]}
    needs = m.set_traders([TraderRecord(T_RSI, "RSI low", RSI_LOW), TraderRecord(T_VOL, "Volume", changed)])
    assert m._traders[T_RSI].states["BTCUSDT"] is rsi_state
    assert needs == [HistoryNeed("BTCUSDT", "1m", 11 + EVALUATED_CANDLES)]
    m.set_traders([TraderRecord(T_RSI, "RSI low", RSI_LOW, enabled=False)])
    assert m.streams() == []


def test_memory_is_bounded() -> None:
    m = SignalManager(USER, max_tracked=3, expire_after_candles=10_000)
    m.set_traders(records())
    run(m, interleaved(1500))
    assert len(m.tracked()) <= 3


def test_adopt_tracks_the_other_sides_open_signals() -> None:
    m = SignalManager(USER, expire_after_candles=2)
    m.set_traders(records())
    s = Signal(
        signal_key(USER, T_RSI, "BTCUSDT", "1m", START), T_RSI, "BTCUSDT", "1m", START, 99.0, ("x",), 4
    )
    m.adopt([s, Signal("k2", T_RSI, "BTCUSDT", "1m", START, 1.0, (), 4, SignalStatus.EXPIRED)])
    assert [x.key for x, _ in m.tracked()] == [s.key]
    m.authorize(True, 9)
    m.feed(Candle("BTCUSDT", "1m", START + 5 * MINUTE, 1, 1, 1, 1, 1, True))
    (e,) = [e for e in m.drain() if isinstance(e, StatusChanged)]
    assert (e.old, e.new, e.epoch) == (SignalStatus.NEW, SignalStatus.EXPIRED, 9)


def test_unclosed_candles_are_ignored() -> None:
    m = SignalManager(USER)
    m.set_traders(records())
    m.authorize(True, 1)
    m.drain()  # the streams to watch
    m.feed(Candle("BTCUSDT", "1m", START, 1, 1, 1, 1, 1, False))
    assert m.drain() == [] and m.matches == 0


@pytest.mark.parametrize("n", [0, 1])
def test_prime_signals_nothing(n: int) -> None:
    m = SignalManager(USER)
    m.set_traders(records())
    m.authorize(True, 1)
    m.drain()  # the streams to watch
    for c in series("BTCUSDT", 300, n):
        m.prime(c)
    assert m.drain() == [] and m.matches == 0


def test_the_streams_to_watch_are_drained_when_they_change() -> None:
    m = SignalManager(USER)
    needs = m.set_traders(records())
    changed = m.drain()
    assert changed == [StreamsChanged((("BTCUSDT", "1m"), ("ETHUSDT", "1m")), tuple(needs))]
    assert needs and all(n.candles > 0 for n in needs)
    # The same traders again: nothing changed, nothing to say.
    m.set_traders(records())
    assert m.drain() == []
    # No traders: no streams.
    m.set_traders([])
    assert m.drain() == [StreamsChanged((), ())]


def test_stored_rows_become_signals_to_adopt() -> None:
    from signalguard.core.engine import signal_from_row

    row = {
        "signal_key": "k",
        "trader_id": T_RSI,
        "symbol": "BTCUSDT",
        "interval": "1m",
        "candle_open_time": "2023-11-14T22:14:00+00:00",
        "price": 100.5,
        "matched_conditions": ["RSI(14) < 35"],
        "epoch": 4,
        "status": "active",
    }
    s = signal_from_row(row)
    assert s is not None and s.open_time == 1_700_000_040_000 and s.status is SignalStatus.ACTIVE
    assert (s.price, s.matched_conditions, s.epoch) == (100.5, ("RSI(14) < 35",), 4)
    for broken in (
        {**row, "status": "open"},
        {**row, "candle_open_time": "soon"},
        {**row, "epoch": "4"},
        {**row, "price": "cheap"},
        {**row, "matched_conditions": "RSI"},
        {k: v for k, v in row.items() if k != "symbol"},
    ):
        assert signal_from_row(broken) is None, broken


def close_us(c: Candle) -> int:
    return (c.open_time + MINUTE) * 1000


def test_a_grant_catches_up_the_candles_that_closed_in_its_window() -> None:
    """A window can open before the engine may emit (the claim's round trip, a restarted executor
    renewing its machine's lease): the matches it kept meanwhile are the window's signals."""
    candles = interleaved(400)
    reference = SignalManager(USER)
    reference.set_traders(records())
    full = run(reference, candles)
    m = SignalManager(USER)
    m.set_traders(records())
    assert run(m, candles[:600], authorized=set()) == []
    since = close_us(candles[560])  # the window opened 20 candles (of each symbol) ago
    m.authorize(True, 7, since_us=since)
    caught = [e.signal for e in m.drain() if isinstance(e, SignalCreated)]
    expected = [
        s for s in full if since <= (s.open_time + MINUTE) * 1000 and s.open_time <= candles[599].open_time
    ]
    assert caught
    assert {s.epoch for s in caught} == {7} and m.caught_up == len(caught)
    assert [(s.key, s.price, s.matched_conditions) for s in sorted(caught, key=lambda s: s.key)] == [
        (s.key, s.price, s.matched_conditions) for s in sorted(expected, key=lambda s: s.key)
    ]
    # The same decision again emits nothing more; live candles go on as the reference.
    m.authorize(True, 7, since_us=since)
    assert not [e for e in m.drain() if isinstance(e, SignalCreated)]
    rest = []
    for c in candles[600:]:
        m.feed(c)
        rest += [e.signal.key for e in m.drain() if isinstance(e, SignalCreated)]
    assert rest == [s.key for s in full if s.open_time > candles[599].open_time]


def test_nothing_is_emitted_for_a_candle_that_closed_before_the_window() -> None:
    candles = interleaved(300)
    m = SignalManager(USER)
    m.set_traders(records())
    run(m, candles[:400], authorized=set())
    m.authorize(True, 7)  # no window start known: what was kept is dropped, not guessed
    assert not [e for e in m.drain() if isinstance(e, SignalCreated)] and m.caught_up == 0
    # A window that opens in the future: the candles closing before it are matched, never emitted.
    later = SignalManager(USER)
    later.set_traders(records())
    later.authorize(True, 8, since_us=close_us(candles[500]))
    created = run_authorized(later, candles)
    assert created and min(close_us(c) for c in created) >= close_us(candles[500])
    assert later.before_window > 0 and later.matches == later.before_window + len(created)


def run_authorized(m: SignalManager, candles: list[Candle]) -> list[Candle]:
    """Feed without touching the authorization; the candles whose signals were created."""
    by_key = {signal_key(USER, T_RSI, c.symbol, "1m", c.open_time): c for c in candles}
    by_key |= {signal_key(USER, T_VOL, c.symbol, "1m", c.open_time): c for c in candles}
    out = []
    for c in candles:
        m.feed(c)
        out += [by_key[e.signal.key] for e in m.drain() if isinstance(e, SignalCreated)]
    return out


def test_warm_up_evaluates_its_newest_candles_inside_a_known_window() -> None:
    """A restarted executor's warm-up: the oldest candles prime, the newest are evaluated, and those
    that closed inside the held window give the reference's signals."""
    plain = {**RSI_LOW, "cooldown_candles": 0}  # a cooldown would reach back before the warm-up
    traders = [TraderRecord(T_RSI, "RSI low", plain), TraderRecord(T_VOL, "Volume", VOLUME)]
    candles = series("BTCUSDT", 700, 1)
    reference = SignalManager(USER)
    reference.set_traders(traders)
    full = run(reference, candles)
    m = SignalManager(USER)
    (need,) = [n for n in m.set_traders(traders) if n.symbol == "BTCUSDT"]
    assert need.candles == 202 + EVALUATED_CANDLES
    since = close_us(candles[640])
    m.authorize(True, 7, since_us=since)
    m.warm_up(candles[660 - need.candles : 660])  # the newest closed candles when it starts
    created = [e.signal for e in m.drain() if isinstance(e, SignalCreated)]
    expected = [
        s for s in full if since <= (s.open_time + MINUTE) * 1000 and s.open_time < candles[660].open_time
    ]
    assert expected and [s.key for s in created] == [s.key for s in expected]
    assert [s.price for s in created] == [s.price for s in expected]
    # The rest of the warm-up was evaluated, not emitted: before the window.
    assert m.before_window == len(
        [
            s
            for s in full
            if candles[660 - EVALUATED_CANDLES].open_time <= s.open_time
            and (s.open_time + MINUTE) * 1000 < since
        ]
    )
    # Warming up a running stream again changes nothing.
    m.warm_up(candles[660 - need.candles : 660])
    assert m.drain() == []


def test_a_grant_fills_the_tail_of_an_earlier_window_of_the_same_holder() -> None:
    """A machine killed under epoch 5 is back after its lease ran out, and granted epoch 9: the candles
    that closed in epoch 5's tail were its own to signal, under epoch 5; those of epoch 6 (another
    holder's) and those between the windows are not."""
    plain = {**RSI_LOW, "cooldown_candles": 0}
    traders = [TraderRecord(T_RSI, "RSI low", plain), TraderRecord(T_VOL, "Volume", VOLUME)]
    candles = series("BTCUSDT", 700, 1)
    reference = SignalManager(USER)
    reference.set_traders(traders)
    full = run(reference, candles)
    m = SignalManager(USER)
    m.set_traders(traders)
    m.warm_up(candles[660 - 202 - EVALUATED_CANDLES : 660])  # not generating yet: matches are kept
    own = LeaseWindow(5, close_us(candles[605]), close_us(candles[625]))
    other_from = close_us(candles[630])  # epoch 6 was another holder's: not passed as earlier
    since = close_us(candles[650])
    m.authorize(True, 9, since_us=since, earlier=[own])
    created = [e.signal for e in m.drain() if isinstance(e, SignalCreated)]

    def closes(s: Signal) -> int:
        return (s.open_time + MINUTE) * 1000

    in_own = [s.key for s in full if own.start_us <= closes(s) < own.end_us]
    in_live = [s.key for s in full if since <= closes(s) and s.open_time < candles[660].open_time]
    assert in_own and in_live, "the series has matches in both windows"
    assert sorted(s.key for s in created) == sorted(in_own + in_live)
    assert {s.key: s.epoch for s in created} == {k: 5 for k in in_own} | {k: 9 for k in in_live}
    assert not [s for s in created if own.end_us <= closes(s) < since or other_from <= closes(s) < since]
    assert m.caught_up_earlier == len(in_own)
    # A historical candle fed after the grant (a warm-up again) finds the same window.
    again = SignalManager(USER)
    again.set_traders(traders)
    again.authorize(True, 9, since_us=since, earlier=[own])
    again.warm_up(candles[660 - 202 - EVALUATED_CANDLES : 660])
    assert sorted(e.signal.key for e in again.drain() if isinstance(e, SignalCreated)) == sorted(
        in_own + in_live
    )
    # Without a window start, earlier windows are not used either.
    blind = SignalManager(USER)
    blind.set_traders(traders)
    blind.authorize(True, 9, earlier=[own])
    blind.warm_up(candles[660 - 202 - EVALUATED_CANDLES : 660])
    assert not [e for e in blind.drain() if isinstance(e, SignalCreated)]


def test_a_trade_of_an_earlier_window_opens_under_the_live_epoch_and_takes_its_missed_exits() -> None:
    plan = {"side": "long", "notional": 100, "max_hold_candles": 3}
    traders = [TraderRecord(T_RSI, "RSI low", {**RSI_LOW, "cooldown_candles": 0, "trade": plan})]
    candles = series("BTCUSDT", 700, 1)
    m = SignalManager(USER)
    m.set_traders(traders)
    m.warm_up(candles[660 - 202 - EVALUATED_CANDLES : 660])
    late = close_us(candles[659]) + 1  # granted after the newest candle closed
    m.authorize(True, 9, since_us=late, earlier=[LeaseWindow(5, 0, close_us(candles[655]))])
    effects = m.drain()
    signals = [e.signal for e in effects if isinstance(e, SignalCreated)]
    opened = [e.trade for e in effects if isinstance(e, TradeOpened)]
    assert signals and {s.epoch for s in signals} == {5}
    assert opened and {t.epoch for t in opened} == {9}
    assert {t.key for t in opened} == {s.key for s in signals}
    # Each was checked against the candles since its entry: those held 3 candles before now are closed.
    assert any(isinstance(e, TradeClosed) for e in effects)
    assert not [t for t in m.open_trades() if t.entry_time + 3 * MINUTE <= candles[659].open_time]


def test_warm_up_without_a_window_start_emits_nothing_and_keeps_it_for_the_grant() -> None:
    plain = {**RSI_LOW, "cooldown_candles": 0}
    traders = [TraderRecord(T_RSI, "RSI low", plain), TraderRecord(T_VOL, "Volume", VOLUME)]
    candles = series("BTCUSDT", 700, 1)
    m = SignalManager(USER)
    m.set_traders(traders)
    m.authorize(True, 7)  # a tab that learned no window start: historical candles emit nothing
    m.warm_up(candles[660 - 202 - EVALUATED_CANDLES : 660])
    assert not [e for e in m.drain() if isinstance(e, SignalCreated)]
    m.authorize(True, 8, since_us=close_us(candles[600]))  # the next grant knows its window
    assert [e for e in m.drain() if isinstance(e, SignalCreated)]


# -- the facade's wiring of the trade book (core/tradebook.py) and the catch-up (core/catchup.py) -------

DROP_WITH_STOP = {
    "version": 1,
    "symbols": ["BTCUSDT"],
    "interval": "1m",
    "conditions": [{"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -2}],
    "trade": {"side": "long", "notional": 100, "stop_loss_pct": 2},
}


def flat(i: int, price: float, low: float | None = None) -> Candle:
    return Candle(
        "BTCUSDT", "1m", START + i * MINUTE, price, price, price if low is None else low, price, 1, True
    )


def adopted_long(entry: int) -> Trade:
    """Another executor's open long, entered at 100 when candle ``entry - 1`` closed; stop at 98."""
    return Trade(
        "k", T_RSI, "BTCUSDT", "1m", Side.LONG, 1.0, 100.0, START + entry * MINUTE, None, 98.0, None, 4
    )


def test_a_refusal_that_names_an_epoch_still_does_not_generate() -> None:
    m = SignalManager(USER)
    m.set_traders(records())
    m.authorize(False, 7, since_us=0)
    assert not m.may_generate
    assert run_authorized(m, interleaved(300)) == [] and m.matches > 0


def test_live_signals_are_not_counted_as_caught_up() -> None:
    m = SignalManager(USER)
    m.set_traders(records())
    m.authorize(True, 7, since_us=0)
    assert run_authorized(m, interleaved(300))
    assert (m.caught_up, m.caught_up_earlier, m.before_window) == (0, 0, 0)


def test_a_waiting_trade_is_released_by_the_first_live_candle_that_reaches_its_entry() -> None:
    m = SignalManager(USER)
    m.set_traders([TraderRecord(T_RSI, "Drop", DROP_WITH_STOP)])
    m.authorize(True, 5)
    m.adopt_trades([adopted_long(2)])  # no candle of its stream yet: it waits
    assert [r.end for r in m.trade_history_needs()] == [None]
    m.feed(flat(1, 100.0))
    assert m.trade_history_needs() == [] and m.open_trades() == [adopted_long(2)]
    m.feed(flat(2, 99.0, low=97.0))
    closed = [e for e in m.drain() if isinstance(e, TradeClosed)]
    assert [(c.trade.key, c.exit.price, c.epoch) for c in closed] == [("k", 98.0, 5)]


def test_a_warm_up_that_only_primes_still_releases_the_trades_it_covers() -> None:
    m = SignalManager(USER)
    (need,) = m.set_traders([TraderRecord(T_RSI, "Drop", DROP_WITH_STOP)])
    m.authorize(True, 5)
    m.adopt_trades([adopted_long(1)])
    # A young market: no more candles than the warm-up rule asks, so none is evaluated.
    candles = [flat(0, 100.0), flat(1, 99.0, low=97.0)]
    assert len(candles) <= need.candles - EVALUATED_CANDLES
    m.warm_up(candles)
    closed = [e for e in m.drain() if isinstance(e, TradeClosed)]
    assert [(c.trade.key, c.exit.time) for c in closed] == [("k", START + 2 * MINUTE)]
    assert m.open_trades() == [] and m.trade_history_needs() == []


def test_a_drain_is_sorted_by_who_takes_each_effect() -> None:
    from signalguard.core.engine import (
        Drained,
        HistoryNeed,
        Signal,
        SignalCreated,
        TraderFailed,
        sort_effects,
    )

    signal = Signal("k", "t", "BTCUSDT", "1m", 0, 1.0, ("RSI(14) < 30",), 1)
    first = StreamsChanged((("BTCUSDT", "1m"),), (HistoryNeed("BTCUSDT", "1m", 10),))
    second = StreamsChanged((("BTCUSDT", "1m"), ("ETHUSDT", "1m")), (HistoryNeed("ETHUSDT", "1m", 20),))
    failed = TraderFailed("t2", "Bad", "invalid_definition", "conditions: required")
    change = StatusChanged("k", SignalStatus.NEW, SignalStatus.ACTIVE, 1)
    drained = sort_effects([first, SignalCreated(signal), failed, change, second])
    assert drained.writes == (SignalCreated(signal), change)
    assert drained.failed == (failed,)
    # The latest streams, with every need of the drain.
    assert drained.streams == StreamsChanged(second.streams, (*first.needs, *second.needs))
    assert drained.new_rows and not drained.traded
    only_status = sort_effects([change])
    assert not only_status.new_rows and only_status.streams is None
    assert sort_effects([]) == Drained()
