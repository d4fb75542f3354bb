"""The MarketFeed: runs the core's :class:`~signalguard.core.feed.FeedPlanner` on either host.

One driver for both hosts: the browser tab runs it on the page's ``fetch`` and WebSocket, the cloud
worker on httpx and websockets, each behind :class:`MarketData`. Every decision (which streams to
verify and open, what history to fetch, what to feed, when to try again) is the planner's; this module
makes the requests it asks for, feeds the engine, and sleeps when it says so.

What the feed is doing goes to ``on_state`` (the page's status line) and to the
``signalguard.market.feed`` log (the worker's); which streams failed alone, and why, goes to
``on_problems``. Malformed messages are counted and dropped by the core's
:class:`~signalguard.core.candles.KlineParser`.

Binance's limits are kept here for both hosts: each connection is made anew after
``max_connection_age`` (23 h 30 min), before Binance's 24-hour cut, and its catch-up fills the candles
that closed meanwhile; after a 429/418 the feed waits as long as the exchange's ``Retry-After`` asks
(:mod:`signalguard.market.limits` keeps the request weight itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TypeVar

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.candles import Candle, KlineParser
from signalguard.core.engine import HistoryNeed, SignalManager
from signalguard.core.feed import STREAMS_PER_CONNECTION, FeedPlanner, LiveAction
from signalguard.core.ports import MarketData, Stream
from signalguard.market.klines import (
    MarketUnavailable,
    fetch_history,
    fetch_range,
    fill_trade_history,
    stream_name,
)
from signalguard.market.limits import MAX_CONNECTION_AGE

__all__ = ["STREAMS_PER_CONNECTION", "MarketData", "MarketFeed", "ProblemsCallback", "StateCallback"]

log = logging.getLogger("signalguard.market.feed")

#: ``on_state(state, text)``: ``off``, ``connecting``, ``live`` or ``error``, and a line for the page.
StateCallback = Callable[[str, str], None]
#: ``on_problems(problems)``: the streams that failed alone, each with its plain reason.
ProblemsCallback = Callable[[dict[Stream, str]], None]


def _quiet(*_: object) -> None:
    """The worker has no status line or trader rows: its log says what the feed does."""


#: A stream's catch-up: the candles a reconnect missed, and the warm-up history (None: none asked).
_Caught = tuple[list[Candle], list[Candle] | None]
_T = TypeVar("_T")


async def _together(calls: Iterable[Coroutine[object, object, _T]]) -> list[_T]:
    """Run ``calls`` at once, their results in order; the first failure cancels the others and is raised.

    Not a task group: one whose child fails can swallow a cancel of this task that comes meanwhile on
    Python 3.11 (see :meth:`MarketFeed.run`), and it raises an ``ExceptionGroup``.
    """
    tasks = [asyncio.create_task(c) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()  # those still running after a failure (or a cancel of this task)
        await asyncio.gather(*tasks, return_exceptions=True)


class _Regroup(Exception):
    """A failed stream is served again: the connections are made anew to include it."""


class MarketFeed:
    """Keeps a :class:`SignalManager` fed; run :meth:`run`, cancel and run again when the streams change."""

    def __init__(
        self,
        market: MarketData,
        manager: SignalManager,
        on_fed: Callable[[], object],
        *,
        on_state: StateCallback = _quiet,
        on_problems: ProblemsCallback = _quiet,
        wall: Callable[[], float] = time.time,
        backoff: Backoff = BACKOFF,
        rest_concurrency: int = 1,
        max_connection_age: float = MAX_CONNECTION_AGE,
    ) -> None:
        """Feed ``manager`` from ``market``; ``on_fed`` runs after candles were fed (to drain effects).

        ``rest_concurrency`` bounds the REST requests of one catch-up in flight at once: 1 in the page
        (a tab watches few streams, and the browser limits connections), more in the worker (Binance
        weighs a klines request at 2 of 6000 a minute). A connection is made anew after
        ``max_connection_age`` seconds (tests shorten it).
        """
        self._market = market
        self._manager = manager
        self._on_fed = on_fed
        self._on_state = on_state
        self._on_problems = on_problems
        self._wall = wall
        self._gate = asyncio.Semaphore(max(1, rest_concurrency))
        self.planner = FeedPlanner(backoff=backoff)
        self._refusal = asyncio.Event()
        self.parser = KlineParser()
        self._max_age = max_connection_age
        #: Stream connections opened.
        self.connections = 0
        #: Connections made anew because they reached ``max_connection_age``.
        self.planned_reconnects = 0

    def need(self, needs: Iterable[HistoryNeed]) -> None:
        """Streams to prime before their next live candle (what ``set_traders`` returned)."""
        self.planner.need(needs)

    @property
    def candles(self) -> int:
        """Closed candles fed live (stream and gap fills)."""
        return self.planner.candles

    @property
    def gap_candles(self) -> int:
        """Candles fetched by REST to fill gaps (after a reconnect, or a stream skipping open times)."""
        return self.planner.gap_candles

    @property
    def pending_warmups(self) -> int:
        """Streams still waiting for their history."""
        return self.planner.pending_warmups

    def describe(self) -> str:
        """One line for the page: streams, candles, failed streams, dropped messages."""
        return self.planner.describe(self.parser.rejected)

    def _now_ms(self) -> int:
        return int(self._wall() * 1000)

    async def run(self) -> None:
        """Stream every watched (symbol, interval) until cancelled."""
        self.planner.watch([(n.symbol, n.interval) for n in self._manager.streams()])
        self._on_problems(self.planner.problems)
        if not self.planner.watched:
            self._on_state("off", "No enabled traders: no market data needed.")
            await asyncio.Event().wait()  # nothing to watch until the traders change
        while True:
            # Not a task group: one that ends with a child's error (a regroup) leaves this task's
            # cancellation count raised on Python 3.11, so a host's cancel could not be told apart.
            tasks = [asyncio.create_task(self._retry_failed())]
            tasks += [asyncio.create_task(self._connection(group)) for group in self.planner.connections()]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                exc = None if task.cancelled() else task.exception()
                if exc is not None and not isinstance(exc, _Regroup):
                    raise exc
            # A stream is served again: make the connections anew, with it.

    async def _connection(self, group: Sequence[Stream]) -> None:
        failures = 0
        while True:
            self._on_state("connecting", "Connecting to market data…")
            aged: asyncio.Timeout | None = None
            try:
                await self._verify(group)
                streams = self.planner.open_streams(group)
                if not streams:
                    self._report()
                    return  # every stream of the group failed alone: _retry_failed brings them back
                async with self._market.stream([stream_name(*s) for s in streams]) as messages:
                    self.connections += 1
                    # Binance cuts a connection after 24 hours: it is made anew before, on purpose.
                    # Cut there, a candle half fed is not (the planner records a feed after it).
                    aged = asyncio.timeout(self._max_age)
                    async with aged:
                        await self._catch_up(streams)
                        log.info(
                            "streaming %d kline stream%s", len(streams), "" if len(streams) == 1 else "s"
                        )
                        self._report()
                        async for raw in messages:
                            candle = self.parser.parse(raw)
                            if candle is None:
                                log.debug("dropped a malformed market message: %s", self.parser.last_error)
                            elif await self._live(candle):
                                failures = 0  # the connection works: the next failure starts over
                                self._report()
                reason = "the market-data service closed the stream"
            except MarketUnavailable as exc:
                reason = str(exc)
                wait = exc.retry_after or 0.0
            except TimeoutError:
                if aged is None or not aged.expired():
                    raise
                # Planned: no failure, no wait; the catch-up of the new connection fills the gap.
                self.planned_reconnects += 1
                log.info(
                    "reconnecting the market stream after %.0f s, before the exchange's 24-hour limit",
                    self._max_age,
                )
                continue
            else:
                wait = 0.0
            failures += 1
            # The exchange's Retry-After (its rate limit) outlasts the back-off: no request before.
            delay = max(self.planner.connection_delay(failures), wait)
            log.warning("market data unreachable (%s); reconnecting in %.1f s", reason, delay)
            self._on_state("error", f"Market data unreachable ({reason}); retrying in {delay:.0f} s.")
            await asyncio.sleep(delay)

    async def _verify(self, streams: Sequence[Stream]) -> None:
        """Ask for one candle of each stream not yet seen served; refusals fail their stream alone."""

        async def probe(stream: Stream) -> None:
            async with self._gate:
                await self._ask(stream, 1)

        await _together(probe(s) for s in self.planner.to_verify(streams))

    async def _ask(self, stream: Stream, count: int) -> list[Candle] | None:
        """``fetch_history`` for ``stream``; None (and the stream failed alone) if it was refused."""
        try:
            candles = await fetch_history(self._market, *stream, count, self._now_ms())
        except MarketUnavailable as exc:
            if not exc.refused:
                raise
            failure = self.planner.refused(stream, str(exc), self._wall())
            self._refusal.set()
            # Info, not a warning: the trader's row says it (a page logs warnings as console errors),
            # and a stream refused for good is retried every few seconds.
            log.log(
                logging.INFO if failure.failures == 1 else logging.DEBUG,
                "%s; tried again in %.0f s",
                failure.reason,
                failure.retry_at - self._wall(),
            )
            self._report()
            return None
        self.planner.served(stream)
        return candles

    async def _retry_failed(self) -> None:
        """Try each failed stream again when the planner says; one served again regroups the feed."""
        while True:
            at = self.planner.next_retry()
            # Woken early by a new refusal: its retry may be due before anything known now.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if at is None else max(0.0, at - self._wall())):
                    await self._refusal.wait()
            self._refusal.clear()
            for stream in self.planner.due(self._wall()):
                try:
                    served = await self._ask(stream, self.planner.retry_count(stream)) is not None
                except MarketUnavailable as exc:
                    # Not a refusal (the network, a rate limit): the same reason, the next delay, and
                    # no sooner than the exchange's Retry-After.
                    self.planner.refused(
                        stream,
                        self.planner.problems[stream],
                        self._wall(),
                        not_before=exc.retry_after or 0.0,
                    )
                    continue
                if served:
                    log.info("%s %s is served again", *stream)
                    raise _Regroup

    async def _catch_up(self, streams: Sequence[Stream]) -> None:
        """Prime the streams that need history; fill what a reconnect missed on the others."""
        plans = self.planner.catch_up(streams)
        if not plans:
            return
        started = time.monotonic()
        now_ms = self._now_ms()

        async def fetch(stream: Stream, missed_from: int | None, history: int) -> _Caught:
            async with self._gate:
                missed: list[Candle] = []
                if missed_from is not None:
                    missed = await fetch_range(self._market, *stream, missed_from, now_ms + 1, now_ms)
                warm = await self._ask(stream, history) if history else None
                return missed, warm

        results = await _together(fetch(p.stream, p.missed_from, p.history) for p in plans)
        for plan, (missed, history) in zip(plans, results, strict=True):
            for candle in missed:
                self._manager.feed(candle)
                self.planner.fed(candle, gap=True)
            if history is not None:
                self._manager.warm_up(history)
            self.planner.caught_up(plan.stream, history)
        await self.fill_trades()
        self._on_fed()
        log.info(
            "caught up %d stream%s by REST in %.2f s (%d missed candles fed)",
            len(plans),
            "" if len(plans) == 1 else "s",
            time.monotonic() - started,
            sum(len(missed) for missed, _ in results),
        )

    async def fill_trades(self) -> None:
        """Fetch the candles the engine's waiting trades missed, so they exit where their rules say.

        Those are adopted trades older than the engine's recent candles; a failure is logged and tried
        again at the next connection or re-read of the open trades.
        """
        if not self._manager.trade_history_needs():
            return
        try:
            fetched = await fill_trade_history(self._market, self._manager, self._now_ms())
        except MarketUnavailable as exc:
            log.warning("the candles of adopted trades could not be fetched (tried again later): %s", exc)
            return
        log.info("fetched %d candles that adopted trades missed", fetched)
        self._on_fed()

    async def _live(self, candle: Candle) -> bool:
        """Feed a stream candle as the planner says, gaps first; whether it was fed."""
        step = self.planner.live(candle)
        while step.action is LiveAction.FILL and step.gap is not None:
            gap = step.gap
            try:
                missing = await fetch_range(
                    self._market, *gap.stream, gap.first_open, gap.before_open, self._now_ms()
                )
            except MarketUnavailable as exc:
                log.warning("%s %s: a gap before %d is not filled: %s", *gap.stream, gap.before_open, exc)
                missing = []
            if not missing:
                log.warning("%s %s: no candles from %d to %d", *gap.stream, gap.first_open, gap.before_open)
                break
            for c in missing:
                self._manager.feed(c)
                self.planner.fed(c, gap=True)
            step = self.planner.live(candle)
        if step.action is LiveAction.SKIP:
            return False
        self._manager.feed(candle)
        self.planner.fed(candle)
        self._on_fed()
        return True

    def _report(self) -> None:
        self._on_problems(self.planner.problems)
        if self.planner.connections():
            self._on_state("live", f"Market data live: {self.describe()}.")
        else:
            self._on_state("error", f"Market data: {self.describe()}.")
