"""Signals in the tab: the traders, the engine, the market feed and the outbox, tied to the guard.

:class:`Generation` is what :class:`~signalguard.browser.app.App` plugs into its effect listeners:

- the enabled traders go to ``SignalManager.set_traders``;
  the streams they need are warmed up by the :class:`~.feed.MarketFeed` (restarted when they change);
- every guard effect calls ``authorize(may_generate, epoch, since_us)``: the engine evaluates every
  closed candle either way (so cooldowns advance as on the cloud), but emits only while the tab may
  generate, and only for candles that closed inside the lease's window (those that closed during the
  claim's round trip are caught up at the grant);
- after candles are fed, ``drain()``: new signals and status changes go to the
  :class:`~.sync.SignalSync` outbox, a failed trader is shown to the user;
- at every new epoch this tab holds, the user's open signals (``new``/``active``, written by the cloud,
  another device, or this tab before a reload) are loaded and adopted, so that their lifecycle goes on
  here: nobody else moves them while this tab holds the lease. With them come the open paper trades,
  which this tab manages from then on, and every :data:`TRADES_RECHECK` seconds the open trades are read
  again, so that one whose open landed after the last read is not left without a manager.

The feed runs only in the tab holding the tab lock (the one tab of the browser that may generate);
other tabs mirror the database's table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine

from signalguard.browser.sync import SignalSync
from signalguard.core.engine import (
    Signal,
    SignalManager,
    TradeClosed,
    TradeOpened,
    TraderRecord,
    Write,
    sort_effects,
)
from signalguard.core.feed import ProblemReporter, Stream, trader_problems
from signalguard.core.guard import Effects
from signalguard.core.outbox import OutboxFull
from signalguard.core.ports import ReportProblems
from signalguard.core.positions import TradeBook
from signalguard.market.feed import MarketData, MarketFeed

#: ``start_task(coroutine)`` runs it on the page's loop and returns its task (so it can be cancelled).
StartTask = Callable[[Coroutine[object, object, None]], "asyncio.Future[None]"]
#: Reads the user's open signals, oldest first; None when the read failed (it is tried again).
LoadOpen = Callable[[], Coroutine[object, object, "list[Signal] | None"]]
#: Reads the user's open trades and which open signals are traded; None when the read failed.
LoadTrades = Callable[[], Coroutine[object, object, "TradeBook | None"]]
#: Seconds between re-reads of the open trades while this tab is the executor.
TRADES_RECHECK = 30.0


class Generation:
    """One signed-in user's signal generation in this tab; see the module documentation."""

    def __init__(
        self,
        user_id: str,
        market: MarketData | None,
        sync: SignalSync,
        start_task: StartTask,
        wall: Callable[[], float],
        *,
        on_market: Callable[[str, str], None],
        on_trader_failed: Callable[[str], None],
        load_open: LoadOpen | None = None,
        load_trades: LoadTrades | None = None,
        on_trades: Callable[[], None] | None = None,
        on_problems: Callable[[dict[str, str]], None] | None = None,
        report_problems: ReportProblems | None = None,
    ) -> None:
        """Prepare; the feed starts with :meth:`set_active`.

        ``on_problems`` hears which traders do not generate and why (the feed's failed streams);
        ``report_problems`` tells the database, while this tab holds the lease.
        """
        self.manager = SignalManager(user_id)
        self.sync = sync
        self._market = market
        self._start_task = start_task
        self._on_market = on_market
        self._on_trader_failed = on_trader_failed
        self.feed = (
            MarketFeed(
                market,
                self.manager,
                self.drain,
                on_state=on_market,
                on_problems=self._stream_problems_changed,
                wall=wall,
            )
            if market is not None
            else None
        )
        self._task: asyncio.Future[None] | None = None
        self._active = False
        # Market data waits for go(): its history requests would compete with the page's start.
        self._held = True
        self._paused = False
        self._load_open = load_open
        self._load_trades = load_trades
        self._on_trades = on_trades
        self._wall = wall
        self._trades_read_at: float | None = None
        self._rechecking = False
        self._epoch: int | None = None
        #: The epoch whose open signals were adopted (or are being loaded).
        self._adopted: int | None = None
        #: Open signals adopted so far (shown nowhere; for tests and diagnostics).
        self.adopted = 0
        # Writes the outbox could not take yet (it was full), oldest first: offered again first.
        self._unsent: list[Write] = []
        #: Times the feed was (re)started or stopped for a change (for tests and diagnostics).
        self.restarts = 0
        self._records: list[TraderRecord] = []
        self._stream_problems: dict[Stream, str] = {}
        #: Each trader's problem line, as this tab's feed sees it.
        self.problems: dict[str, str] = {}
        self._on_problems = on_problems
        self._report_problems = report_problems
        self._reporter = ProblemReporter()
        self._reporting = False

    def set_traders(self, traders: list[TraderRecord]) -> None:
        """Run these traders (the enabled ones); restart the feed if the streams changed."""
        self.manager.set_traders(traders)
        self._records = list(traders)
        self._problems_changed()
        self.drain()  # the streams to watch (StreamsChanged), and invalid definitions at once

    def on_effects(self, effects: Effects) -> None:
        """The guard decided: generate (under its epoch) or not."""
        self.manager.authorize(
            effects.may_generate and not self._paused, effects.epoch, effects.since_us, (), effects.started_us
        )
        self.sync.set_live_epoch(effects.epoch if effects.may_generate else None)
        self._epoch = effects.epoch if effects.may_generate else None
        if self._epoch is None:
            # The engine forgot its signals and trades: the same epoch coming back adopts them again.
            self._adopted = None
        if self._epoch is not None and self._epoch != self._adopted and self._load_open is not None:
            self._adopted = self._epoch
            self._start_task(self._adopt(self._epoch))
        elif (
            self._epoch is not None
            and self._trades_read_at is not None
            and self._wall() - self._trades_read_at >= TRADES_RECHECK
            and not self._rechecking
        ):
            self._rechecking = True
            self._start_task(self._recheck_trades(self._epoch))
        if self._epoch is None and self._on_trades is not None:
            self._on_trades()  # the book was just forgotten (the lease moved): redraw from the database
        self._report()  # a new epoch reports anew; a failed report is tried again with each poll

    # -- traders whose market data fails ------------------------------------------------------

    def _stream_problems_changed(self, problems: dict[Stream, str]) -> None:
        if problems != self._stream_problems:
            self._stream_problems = dict(problems)
            self._problems_changed()

    def _problems_changed(self) -> None:
        problems = trader_problems(self._records, self._stream_problems)
        if problems != self.problems:
            self.problems = problems
            if self._on_problems is not None:
                self._on_problems(problems)
        self._report()

    def _report(self) -> None:
        epoch = self._epoch
        if self._report_problems is None or self._reporting or epoch is None or not self._active:
            return
        running = (r.id for r in self._records if r.enabled)
        payload = self._reporter.plan(self.problems, running, epoch)
        if payload:
            self._reporting = True
            self._start_task(self._send_report(epoch, payload))

    async def _send_report(self, epoch: int, payload: dict[str, str | None]) -> None:
        assert self._report_problems is not None
        try:
            stored = await self._report_problems(epoch, payload)
        finally:
            self._reporting = False
        if stored:
            self._reporter.sent(payload, epoch)
        else:
            self._reporter.failed()

    async def _adopt(self, epoch: int) -> None:
        assert self._load_open is not None
        signals = await self._load_open()
        if self._epoch != epoch:
            return  # the lease moved on meanwhile; the next epoch loads again
        if signals is None:
            self._adopted = None  # try again with the next effects (the next poll)
            return
        before = len(self.manager.tracked())
        self.manager.adopt(signals)
        self.adopted += len(self.manager.tracked()) - before
        await self._recheck_trades(epoch)

    async def _recheck_trades(self, epoch: int) -> None:
        try:
            book = await self._load_trades() if self._load_trades is not None else None
        finally:
            self._rechecking = False
        if self._epoch != epoch or book is None:
            return
        self._trades_read_at = self._wall()
        restarts = self.restarts
        self.manager.adopt_trades(book.open, book.traded)
        self.drain()  # a trade on a stream no trader watches restarts the feed (it fetches their candles)
        if self.restarts == restarts and self.feed is not None and self._task is not None:
            await self.feed.fill_trades()  # trades older than the engine's candles
        if self._on_trades is not None:
            self._on_trades()

    def evaluated_until(self) -> int | None:
        """Where this tab's evaluation stands, for its release (see ``FeedPlanner.evaluated_until``).

        None unless the engine generates now: a tab that has stopped generating kept its matches since
        then unsigned, so it does not say it evaluated them (its window then ends at the release).
        """
        if self.feed is None or not self.manager.may_generate:
            return None
        return self.feed.planner.evaluated_until()

    def close_trade(self, key: str) -> bool:
        """Close an open trade by hand (the user asked); False if this tab cannot now."""
        done = self.manager.close_trade(key)
        self.drain()
        return done

    def set_active(self, active: bool) -> None:
        """Stream market data and send the outbox (True: this tab holds the tab lock)."""
        if active == self._active:
            return
        self._active = active
        self.sync.set_active(active)
        self._restart()

    def go(self) -> None:
        """Start streaming (if this tab holds the tab lock): the page is ready."""
        if self._held:
            self._held = False
            self._restart()

    def stop(self) -> None:
        """Stop streaming and sending (sign-out, page going away)."""
        self._active = False
        self.sync.stop()
        self._cancel()

    # -- internals ------------------------------------------------------------------------------

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _restart(self) -> None:
        self.restarts += 1
        self._cancel()
        if not self._active or self._held:
            return
        if self.feed is None:
            self._on_market("error", "No market data URL is configured (config.json: market_data_url).")
            return
        self._task = self._start_task(self.feed.run())

    def drain(self) -> None:
        """Take the engine's effects: writes to the outbox, streams to the feed, failures to the user."""
        waiting, self._unsent = self._unsent, []
        drained = sort_effects(self.manager.drain())
        writes = (*waiting, *drained.writes)
        for write in writes:
            self._write(write)
        for failed in drained.failed:
            self._on_trader_failed(f"Trader {failed.name} stopped ({failed.code}): {failed.message}")
        if drained.streams is not None:
            if self.feed is not None:
                self.feed.need(drained.streams.needs)
            self._restart()
        if self._paused and not self._unsent and len(self.sync) < self.sync.outbox.max_entries // 2:
            self._paused = False  # resumes with the guard's next effects
        if self._on_trades is not None and any(isinstance(w, TradeOpened | TradeClosed) for w in writes):
            self._on_trades()

    def _write(self, effect: Write) -> None:
        """To the outbox; a write it cannot take yet waits here, and so does every later one (order)."""
        if self._unsent:
            self._unsent.append(effect)
            return
        try:
            self.sync.add(effect)
        except OutboxFull as exc:
            # Never forget a write: keep it, and stop creating new ones until the outbox drains.
            self._unsent.append(effect)
            if not self._paused:
                self._paused = True
                self.manager.authorize(False, None)
                self._on_trader_failed(f"Signal generation paused: {exc}")
