"""Signal generation in the tab (browser/generation.py Generation) on the doubles and a real core."""

from __future__ import annotations

import asyncio

from signalguard.browser.generation import TRADES_RECHECK, Generation
from signalguard.browser.sync import PUMP_TIMER
from signalguard.browser.testing import FakeClock, FakeMarketData, FakeTab, ok, on_loop
from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.engine import Signal, SignalStatus, StatusChanged, TraderRecord, signal_key
from signalguard.core.guard import Call, Effects, Mode
from signalguard.core.positions import Side, Trade, TradeBook

USER = "A11CE000-0000-4000-8000-000000000001"
T_DROP = "a11ce000-0000-4000-8000-0000000000a1"
T_ETH = "a11ce000-0000-4000-8000-0000000000a2"
T_BAD = "a11ce000-0000-4000-8000-0000000000a3"
T_GONE = "a11ce000-0000-4000-8000-0000000000a4"
T_OTHER = "a11ce000-0000-4000-8000-0000000000a5"
MINUTE = INTERVALS["1m"]
START = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE
PLAN = {"side": "long", "notional": 100, "stop_loss_pct": 2}
MOVE = (SignalStatus.NEW, SignalStatus.ACTIVE)


def drop(symbol: str = "BTCUSDT", value: float = -2, **extra: object) -> dict[str, object]:
    """A trader that fires on a candle closing ``value`` % below the one before."""
    condition = {"indicator": "price_change_pct", "period": 1, "op": "<=", "value": value}
    return {"version": 1, "symbols": [symbol], "interval": "1m", "conditions": [condition], **extra}


DROP = TraderRecord(T_DROP, "Drop", drop(trade=PLAN))
ETH = TraderRecord(T_ETH, "Ether", drop("ETHUSDT"))
NOSUCH = TraderRecord(T_BAD, "Nosuch", drop("NOSUCHUSDT"))
DISABLED = TraderRecord(T_GONE, "Off", drop("NOSUCHUSDT"), enabled=False)


def candle(i: int, close: float, open_: float | None = None, symbol: str = "BTCUSDT") -> Candle:
    o = close if open_ is None else open_
    return Candle(symbol, "1m", START + i * MINUTE, o, max(o, close), min(o, close), close, 1.0, True)


def grant(epoch: int | None, *, may_generate: bool | None = None, since_us: int | None = None) -> Effects:
    """The guard's effects: generating under ``epoch`` (None: not generating) since ``since_us``."""
    may = epoch is not None if may_generate is None else may_generate
    mode = Mode.BROWSER if may else Mode.STANDBY
    return Effects(mode, may, epoch, mode.value, None, Call.KEEP, 0.0, False, None, since_us)


def open_signal(n: int, epoch: int = 5) -> Signal:
    open_time = START + n * MINUTE
    key = signal_key(USER, T_DROP, "BTCUSDT", "1m", open_time)
    return Signal(key, T_DROP, "BTCUSDT", "1m", open_time, 100.0, ("drop",), epoch, SignalStatus.ACTIVE)


def open_trade(signal: Signal, symbol: str = "BTCUSDT") -> Trade:
    entry = signal.open_time + MINUTE
    return Trade(signal.key, T_DROP, symbol, "1m", Side.LONG, 1.0, 100.0, entry, None, 98.0, None, 5)


class Rig:
    """A Generation with its SignalSync on the doubles, and what it reported."""

    def __init__(self, market: FakeMarketData | None = None) -> None:
        self.tab = FakeTab(USER)
        self.clock, self.timers, self.tasks = self.tab.clock, self.tab.timers, self.tab.tasks
        self.backend, self.sync = self.tab.backend, self.tab.sync
        self.wall = FakeClock(START / 1000 + 3600)
        self.backend.accept_writes()
        self.backend.answer("report_trader_problems", ok())
        self.market_states: list[tuple[str, str]] = []
        self.failed: list[str] = []
        self.heard: list[dict[str, str]] = []
        self.drawn = 0
        self.open_signals: list[Signal] | None = []
        self.book: TradeBook | None = TradeBook()
        self.loads = 0
        self.trade_loads = 0
        self.load_gate: asyncio.Event | None = None
        self.trades_gate: asyncio.Event | None = None
        self.gen = Generation(
            USER,
            market,
            self.sync,
            self.tasks.start_task,
            self.wall,
            on_market=lambda state, text: self.market_states.append((state, text)),
            on_trader_failed=self.failed.append,
            load_open=self.load_open,
            load_trades=self.load_trades,
            on_trades=self.trades_drawn,
            on_problems=self.heard.append,
            report_problems=self.report,
        )

    async def load_open(self) -> list[Signal] | None:
        self.loads += 1
        if self.load_gate is not None:
            await self.load_gate.wait()
        return None if self.open_signals is None else list(self.open_signals)

    async def load_trades(self) -> TradeBook | None:
        self.trade_loads += 1
        if self.trades_gate is not None:
            await self.trades_gate.wait()
        return self.book

    def trades_drawn(self) -> None:
        self.drawn += 1

    async def report(self, epoch: int, problems: dict[str, str | None]) -> bool:
        """As the app reports: the RPC, stored unless it answers an error."""
        result = await self.backend.rpc("report_trader_problems", {"p_epoch": epoch, "p_problems": problems})
        return result.error is None

    def traded_signal(self) -> Signal:
        """An open signal of the database, and its open trade."""
        signal = open_signal(3)
        self.open_signals = [signal]
        self.book = TradeBook((open_trade(signal),), frozenset({signal.key}))
        return signal

    async def fill_the_outbox(self) -> None:
        """Generate during an outage until the outbox (of 4 entries) is full."""
        self.gen.set_traders([TraderRecord(T_DROP, "Drop", drop())])
        self.gen.set_active(True)
        await self.tasks.settle()
        self.backend.handlers.clear()  # an outage: nothing is answered
        self.sync.outbox.max_entries = 4
        self.gen.on_effects(grant(7))
        price = 100.0
        for i in range(4):  # a signal a candle (from the second), and the status change of the one before
            self.gen.manager.feed(candle(i, price * 0.97, price))
            price *= 0.97
            self.gen.drain()

    def reports(self) -> list[dict[str, object]]:
        return self.backend.args_of("report_trader_problems")

    def runs(self) -> int:
        return self.tasks.count("MarketFeed.run")


# -- traders and the feed ---------------------------------------------------------------------------------


@on_loop
async def test_traders_give_the_feed_their_needs_and_restart_it_only_when_streams_change() -> None:
    rig = Rig(FakeMarketData())
    gen = rig.gen
    assert gen.feed is not None
    gen.set_traders([DROP])
    assert gen.feed.pending_warmups == 1  # BTCUSDT 1m, primed before its first live candle
    gen.set_active(True)
    assert rig.runs() == 0  # held until the page is ready
    gen.go()
    assert rig.runs() == 1
    gen.go()
    gen.set_active(True)
    gen.set_traders([DROP])  # the same traders: nothing to prime, the same streams
    assert rig.runs() == 1
    gen.set_traders([TraderRecord(T_DROP, "Drop", drop(value=-3))])  # changed: primed again
    assert rig.runs() == 2
    gen.set_traders([TraderRecord(T_DROP, "Drop", drop(value=-3)), ETH])  # a new stream
    assert rig.runs() == 3
    gen.set_traders([TraderRecord(T_DROP, "Drop again", drop(value=-3)), ETH, DISABLED])
    assert rig.runs() == 3  # a new name, a disabled trader: no stream changed
    gen.set_traders([])
    assert rig.runs() == 4
    await rig.tasks.until(lambda: ("off", "No enabled traders: no market data needed.") in rig.market_states)
    feeds = [
        t for t, name in zip(rig.tasks.tasks, rig.tasks.started, strict=True) if name == "MarketFeed.run"
    ]
    assert [t.done() for t in feeds] == [True, True, True, False]
    await rig.tasks.cancel()


@on_loop
async def test_a_tab_without_the_tab_lock_or_market_data_streams_nothing() -> None:
    rig = Rig(FakeMarketData())
    rig.gen.go()
    rig.gen.set_traders([DROP])
    assert rig.runs() == 0 and PUMP_TIMER not in rig.timers.armed
    bare = Rig(None)
    bare.gen.set_traders([DROP])
    bare.gen.go()
    assert bare.market_states == []
    bare.gen.set_active(True)
    assert bare.market_states == [
        ("error", "No market data URL is configured (config.json: market_data_url).")
    ]
    assert bare.tasks.count("MarketFeed.run") == 0 and PUMP_TIMER in bare.timers.armed
    await bare.tasks.settle()


def test_an_invalid_definition_is_reported_and_the_others_run() -> None:
    rig = Rig(None)
    rig.gen.set_traders([TraderRecord(T_BAD, "Broken", {"version": 1}), DROP])
    assert rig.failed == ["Trader Broken stopped (invalid_definition): symbols: required"]
    assert [(n.symbol, n.interval) for n in rig.gen.manager.streams()] == [("BTCUSDT", "1m")]


@on_loop
async def test_set_active_false_and_stop_end_the_feed_and_the_sending() -> None:
    rig = Rig(FakeMarketData())
    rig.gen.set_traders([DROP])
    rig.gen.go()
    rig.gen.set_active(True)
    await rig.tasks.idle()
    (feed,) = [t for t in rig.tasks.tasks if not t.done()]
    rig.gen.set_active(False)
    await rig.tasks.idle()
    assert feed.cancelled() and PUMP_TIMER not in rig.timers.armed
    rig.gen.set_active(True)
    assert rig.runs() == 2 and PUMP_TIMER in rig.timers.armed
    rig.gen.stop()
    await rig.tasks.idle()
    assert rig.tasks.pending == [] and PUMP_TIMER not in rig.timers.armed
    rig.gen.set_traders([ETH])  # stopped: streams nothing any more
    assert rig.runs() == 2


# -- the guard's effects ------------------------------------------------------------------------------------


@on_loop
async def test_effects_authorize_the_engine_and_the_outbox() -> None:
    rig = Rig(None)
    gen = rig.gen
    gen.set_traders([DROP])
    gen.on_effects(grant(7))
    assert gen.manager.may_generate
    gen.manager.feed(candle(0, 100.0))
    gen.manager.feed(candle(1, 97.0, 100.0))
    gen.drain()
    assert len(rig.sync.pending_keys()) == 1 and len(rig.sync) == 2
    assert rig.drawn == 1  # a trade opened: the positions are drawn again
    gen.set_active(True)
    await rig.tasks.settle()
    drawn = rig.drawn
    assert rig.backend.names() == ["write_signals", "write_trades"]
    assert rig.backend.args_of("write_trades")[0]["p_ops"][0]["epoch"] == 7
    # Not generating: the engine emits nothing, and the outbox answers trade writes itself.
    gen.on_effects(grant(None))
    assert not gen.manager.may_generate and rig.drawn == drawn + 1
    gen.on_effects(grant(7, may_generate=False))  # a refusal that names an epoch
    assert not gen.manager.may_generate
    gen.manager.feed(candle(2, 94.0, 97.0))
    gen.drain()
    gen.sync.add(StatusChanged(signal_key(USER, T_DROP, "BTCUSDT", "1m", START), *MOVE, 7))
    await rig.tasks.settle()
    assert len(rig.sync) == 0 and rig.backend.names() == ["write_signals", "write_trades"]


@on_loop
async def test_effects_pass_the_window_start_to_the_engine() -> None:
    rig = Rig(None)
    rig.gen.set_traders([DROP])
    closed_us = (START + 2 * MINUTE) * 1000  # when candle 1 closed
    rig.gen.on_effects(grant(7, since_us=closed_us + 1))  # granted after it closed
    rig.gen.manager.feed(candle(0, 100.0))
    rig.gen.manager.feed(candle(1, 97.0, 100.0))
    rig.gen.drain()
    assert len(rig.sync) == 0
    rig.gen.manager.feed(candle(2, 94.0, 97.0))
    rig.gen.drain()
    assert len(rig.sync.pending_keys()) == 1
    await rig.tasks.settle()


@on_loop
async def test_open_signals_are_adopted_once_per_new_epoch_with_the_trades() -> None:
    rig = Rig(None)
    gen = rig.gen
    signal = rig.traded_signal()
    gen.set_traders([DROP])
    gen.on_effects(grant(7))
    await rig.tasks.settle()
    assert (rig.loads, rig.trade_loads, gen.adopted) == (1, 1, 1)
    assert [s.key for s, _ in gen.manager.tracked()] == [signal.key]
    assert [t.key for t in gen.manager.open_trades()] == [signal.key] and rig.drawn == 1
    gen.on_effects(grant(7))
    await rig.tasks.settle()
    assert (rig.loads, rig.trade_loads) == (1, 1)
    gen.on_effects(grant(8))  # a new epoch loads again; what is tracked already stays as it is
    await rig.tasks.settle()
    assert (rig.loads, rig.trade_loads, gen.adopted) == (2, 2, 1)


@on_loop
async def test_a_failed_read_of_the_open_signals_is_tried_again_with_the_next_effects() -> None:
    rig = Rig(None)
    rig.open_signals = None
    rig.gen.on_effects(grant(7))
    await rig.tasks.settle()
    assert (rig.loads, rig.trade_loads, rig.gen.adopted) == (1, 0, 0)
    rig.open_signals = [open_signal(3)]
    rig.gen.on_effects(grant(7))
    await rig.tasks.settle()
    assert (rig.loads, rig.trade_loads, rig.gen.adopted) == (2, 1, 1)


@on_loop
async def test_open_signals_read_for_an_epoch_that_moved_on_are_not_adopted() -> None:
    rig = Rig(None)
    rig.open_signals = [open_signal(3)]
    rig.load_gate = asyncio.Event()
    rig.gen.on_effects(grant(7))
    await rig.tasks.idle()
    rig.gen.on_effects(grant(None))
    rig.load_gate.set()
    await rig.tasks.settle()
    assert (rig.loads, rig.trade_loads, rig.gen.adopted) == (1, 0, 0)
    rig.gen.on_effects(grant(8))
    await rig.tasks.settle()
    assert (rig.loads, rig.trade_loads, rig.gen.adopted) == (2, 1, 1)


@on_loop
async def test_an_epoch_that_comes_back_after_a_pause_during_the_read_is_adopted() -> None:
    rig = Rig(None)
    rig.open_signals = [open_signal(3)]
    rig.load_gate = asyncio.Event()
    rig.gen.on_effects(grant(7))
    await rig.tasks.idle()
    rig.gen.on_effects(grant(None))  # e.g. a write verdict: the guard re-polls
    rig.load_gate.set()
    await rig.tasks.settle()
    rig.gen.on_effects(grant(7))  # the re-poll renews the same lease
    await rig.tasks.settle()
    assert rig.gen.adopted == 1 and rig.trade_loads == 1


@on_loop
async def test_open_trades_are_read_again_every_recheck_period_one_read_at_a_time() -> None:
    rig = Rig(None)
    gen = rig.gen
    gen.set_traders([DROP])
    gen.on_effects(grant(7))
    await rig.tasks.settle()
    assert rig.trade_loads == 1
    rig.wall.advance(TRADES_RECHECK - 1)
    gen.on_effects(grant(7))
    await rig.tasks.settle()
    assert rig.trade_loads == 1
    rig.wall.advance(1)
    rig.trades_gate = asyncio.Event()
    gen.on_effects(grant(7))
    await rig.tasks.idle()
    gen.on_effects(grant(7))  # a read is under way: not a second one
    assert rig.trade_loads == 2
    # A trade whose open landed after the last read, on a stream no trader watches.
    signal = open_signal(4)
    rig.book = TradeBook((open_trade(signal, "ETHUSDT"),), frozenset({signal.key}))
    drawn = rig.drawn
    rig.trades_gate.set()
    await rig.tasks.settle()
    assert [t.key for t in gen.manager.open_trades()] == [signal.key] and rig.drawn == drawn + 1
    assert ("ETHUSDT", "1m") in [(n.symbol, n.interval) for n in gen.manager.streams()]
    # Not the executor: nothing is read (the book is forgotten and drawn from the database).
    rig.wall.advance(TRADES_RECHECK)
    gen.on_effects(grant(None))
    await rig.tasks.settle()
    assert rig.trade_loads == 2 and gen.manager.open_trades() == []


@on_loop
async def test_a_failed_or_outdated_read_of_the_trades_is_not_adopted() -> None:
    rig = Rig(None)
    gen = rig.gen
    signal = open_signal(4)
    rig.book = None
    gen.on_effects(grant(7))
    await rig.tasks.settle()
    assert rig.trade_loads == 1 and rig.drawn == 0
    rig.book = TradeBook((open_trade(signal),), frozenset({signal.key}))
    gen.on_effects(grant(7))  # the failed read left no time: the next recheck waits for a read
    await rig.tasks.settle()
    assert rig.trade_loads == 1
    gen.on_effects(grant(8))
    await rig.tasks.settle()
    assert [t.key for t in gen.manager.open_trades()] == [signal.key]
    rig.wall.advance(TRADES_RECHECK)
    rig.trades_gate = asyncio.Event()
    gen.on_effects(grant(8))
    await rig.tasks.idle()
    gen.on_effects(grant(None))
    gen.on_effects(grant(9, may_generate=False))
    drawn = rig.drawn
    rig.trades_gate.set()
    await rig.tasks.settle()
    assert rig.trade_loads == 3 and gen.manager.open_trades() == [] and rig.drawn == drawn


@on_loop
async def test_adopted_trades_on_a_new_stream_restart_the_feed() -> None:
    market = FakeMarketData()
    rig = Rig(market)
    signal = open_signal(4)
    rig.book = TradeBook((open_trade(signal, "ETHUSDT"),), frozenset({signal.key}))
    rig.gen.set_traders([DROP])
    rig.gen.go()
    rig.gen.set_active(True)
    assert rig.runs() == 1
    rig.gen.on_effects(grant(7))
    await rig.tasks.until(lambda: rig.runs() == 2)
    await rig.tasks.until(lambda: any(r["symbol"] == "ETHUSDT" for r in market.requests))
    assert [t.key for t in rig.gen.manager.open_trades()] == [signal.key]
    await rig.tasks.cancel()


# -- writes -----------------------------------------------------------------------------------------------


@on_loop
async def test_a_full_outbox_pauses_generation_until_it_drains_below_half() -> None:
    rig = Rig(None)
    gen = rig.gen
    await rig.fill_the_outbox()
    assert len(rig.sync) == 4
    assert rig.failed[-1] == "Signal generation paused: the outbox holds 4 unsent writes; stop and reconnect"
    assert not gen.manager.may_generate
    gen.on_effects(grant(7))  # the guard's next effects do not resume while paused
    assert not gen.manager.may_generate
    rig.backend.accept_writes()
    rig.timers.advance(5.0)
    await rig.tasks.settle()
    assert len(rig.sync) == 0
    gen.drain()  # below half: resumes with the guard's next effects
    assert not gen.manager.may_generate
    gen.on_effects(grant(7))
    assert gen.manager.may_generate


@on_loop
async def test_the_write_that_meets_a_full_outbox_is_not_lost() -> None:
    rig = Rig(None)
    gen = rig.gen
    await rig.fill_the_outbox()
    # S1; S1 active, S2; S2 active: full, and the signal of candle 3 met the bound.
    assert rig.failed and len(rig.sync) == 4
    rig.backend.accept_writes()
    rig.timers.advance(5.0)
    await rig.tasks.settle()
    gen.drain()
    rig.timers.advance(5.0)
    await rig.tasks.settle()
    written = [s["candle_open_time"] for a in rig.backend.args_of("write_signals") for s in a["p_signals"]]
    assert START + 3 * MINUTE in written


@on_loop
async def test_close_trade_closes_only_while_this_tab_is_the_executor() -> None:
    rig = Rig(None)
    gen = rig.gen
    signal = rig.traded_signal()
    gen.set_traders([DROP])
    assert not gen.close_trade(signal.key)
    gen.on_effects(grant(7))
    await rig.tasks.settle()
    gen.manager.feed(candle(3, 100.0))  # closes at the trade's entry: its prices are known from here
    gen.manager.feed(candle(4, 101.0))
    drawn = rig.drawn
    assert gen.close_trade(signal.key)
    assert len(rig.sync) == 2 and rig.drawn == drawn + 1  # the close, and the signal's move to closed
    assert not gen.close_trade(signal.key)
    gen.set_active(True)
    await rig.tasks.settle()
    (ops,) = rig.backend.args_of("write_trades")
    assert ops["p_ops"][0]["op"] == "close" and ops["p_ops"][0]["exit_price"] == 101.0


# -- traders whose market data fails ------------------------------------------------------------------------


def refusing_market() -> FakeMarketData:
    market = FakeMarketData()
    market.refuse[("NOSUCHUSDT", "1m")] = (400, '{"code":-1121,"msg":"Invalid symbol."}')
    return market


@on_loop
async def test_a_trader_whose_stream_is_refused_is_heard_and_reported_once_per_epoch() -> None:
    rig = Rig(refusing_market())
    gen = rig.gen
    gen.set_traders([DROP, NOSUCH, DISABLED])
    gen.go()
    gen.on_effects(grant(7))  # the epoch, but not the tab lock: nothing is reported
    await rig.tasks.settle()
    assert rig.reports() == [] and rig.heard == []
    gen.set_active(True)
    await rig.tasks.until(lambda: bool(rig.heard))
    (heard,) = rig.heard
    assert list(heard) == [T_BAD] and "Invalid symbol" in heard[T_BAD]
    assert gen.problems == heard
    await rig.tasks.until(lambda: bool(rig.reports()))
    # A new epoch: every trader that runs, a line or null (what an earlier holder left is cleared).
    assert rig.reports() == [{"p_epoch": 7, "p_problems": {T_DROP: None, T_BAD: heard[T_BAD]}}]
    gen.on_effects(grant(7))
    gen.on_effects(grant(7, may_generate=False))
    gen.on_effects(grant(None))
    await rig.tasks.idle()
    assert len(rig.reports()) == 1  # nothing changed
    gen.on_effects(grant(8))
    await rig.tasks.idle()
    assert rig.reports()[1:] == [{"p_epoch": 8, "p_problems": {T_DROP: None, T_BAD: heard[T_BAD]}}]
    # The stream's trader goes while the tab does not stream: heard at once, cleared when it does.
    gen.set_active(False)
    gen.set_traders([DROP])
    assert rig.heard[-1] == {} and gen.problems == {}
    await rig.tasks.idle()
    assert len(rig.reports()) == 2
    gen.set_active(True)
    await rig.tasks.until(lambda: len(rig.reports()) == 3)
    assert rig.reports()[2] == {"p_epoch": 8, "p_problems": {T_BAD: None}}
    await rig.tasks.cancel()


@on_loop
async def test_a_failed_report_is_sent_again_whole_and_one_report_at_a_time() -> None:
    rig = Rig(refusing_market())
    gen = rig.gen
    rig.backend.refuse("report_trader_problems", "SG001", message="lease_not_held")
    gen.set_traders([DROP, NOSUCH])
    gen.go()
    gen.set_active(True)
    await rig.tasks.until(lambda: bool(rig.heard))
    await rig.tasks.idle()
    assert rig.reports() == []  # no epoch yet
    gen.on_effects(grant(7))
    await rig.tasks.idle()
    whole = {"p_epoch": 7, "p_problems": {T_DROP: None, T_BAD: rig.heard[0][T_BAD]}}
    assert rig.reports() == [whole]
    rig.backend.answer("report_trader_problems", ok())
    rig.backend.gate = asyncio.Event()
    gen.on_effects(grant(7))  # tried again with the next effects
    await rig.tasks.idle()
    gen.on_effects(grant(7))  # while it is under way: not a second one
    await rig.tasks.idle()
    assert rig.reports() == [whole, whole]
    rig.backend.gate.set()
    await rig.tasks.idle()
    gen.on_effects(grant(7))
    await rig.tasks.idle()
    assert rig.reports() == [whole, whole]
    await rig.tasks.cancel()


@on_loop
async def test_a_change_whose_report_failed_is_sent_again_whole() -> None:
    rig = Rig(refusing_market())
    gen = rig.gen
    gen.set_traders([DROP, NOSUCH])
    gen.go()
    gen.set_active(True)
    await rig.tasks.until(lambda: bool(rig.heard))
    gen.on_effects(grant(7))
    await rig.tasks.until(lambda: len(rig.reports()) == 1)
    line = rig.heard[-1][T_BAD]
    rig.backend.refuse("report_trader_problems", None, status=503, message="Service Unavailable")
    other = TraderRecord(T_OTHER, "Other", drop("NOSUCHUSDT", value=-3))
    gen.set_traders([DROP, NOSUCH, other])  # one more trader on the refused stream
    await rig.tasks.until(lambda: len(rig.reports()) == 2)
    assert rig.reports()[1] == {"p_epoch": 7, "p_problems": {T_OTHER: line}}
    rig.backend.answer("report_trader_problems", ok())
    gen.on_effects(grant(7))
    await rig.tasks.until(lambda: len(rig.reports()) == 3)
    assert rig.reports()[2] == {"p_epoch": 7, "p_problems": {T_DROP: None, T_BAD: line, T_OTHER: line}}
    gen.on_effects(grant(7))
    await rig.tasks.idle()
    assert len(rig.reports()) == 3
    await rig.tasks.cancel()


@on_loop
async def test_without_a_report_function_problems_are_only_heard() -> None:
    rig = Rig(refusing_market())
    heard: list[dict[str, str]] = []
    gen = Generation(
        USER,
        refusing_market(),
        rig.sync,
        rig.tasks.start_task,
        rig.wall,
        on_market=lambda state, text: None,
        on_trader_failed=rig.failed.append,
        on_problems=heard.append,
    )
    gen.set_traders([NOSUCH])
    gen.go()
    gen.set_active(True)
    gen.on_effects(grant(7))
    await rig.tasks.until(lambda: bool(heard))
    assert list(heard[0]) == [T_BAD] and rig.reports() == [] and gen.adopted == 0
    await rig.tasks.cancel()


@on_loop
async def test_where_evaluation_stands_is_said_only_while_the_tab_generates() -> None:
    rig = Rig(FakeMarketData())
    gen = rig.gen
    gen.set_traders([DROP])
    assert gen.feed is not None
    planner = gen.feed.planner
    planner.watch([("BTCUSDT", "1m")])  # as the feed does when it runs
    planner.served(("BTCUSDT", "1m"))
    planner.fed(candle(4, 100.0))
    assert gen.evaluated_until() is None  # fed, but not generating: nothing it says it signed
    gen.on_effects(grant(7))
    # Candle 4 closed at START + 5 min; the next one, not yet fed, closes a minute later.
    assert gen.evaluated_until() == START + 6 * MINUTE
    gen.on_effects(grant(None))
    assert gen.evaluated_until() is None
    assert Rig(None).gen.evaluated_until() is None  # no market data
    await rig.tasks.settle()
