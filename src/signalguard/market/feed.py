"""The MarketFeed: keeps the engine fed with closed candles, following the core's warm-up rule.

One feed for both hosts: the browser tab runs it on the page's ``fetch`` and WebSocket, the cloud worker
on httpx and websockets, each behind :class:`MarketData`. Browser and cloud must produce the same
signals from the same candles, so they take them the same way. For each (symbol, interval) the running
traders watch:

1. open the combined kline stream first, so that every candle closing from then on is delivered;
2. fetch the newest ``history`` closed candles by REST (:func:`~.klines.fetch_history`) and
   :meth:`~signalguard.core.engine.SignalManager.warm_up` the engine with them, oldest first;
3. feed every closed stream candle to :meth:`~signalguard.core.engine.SignalManager.feed`. Candles not
   newer than the last one fed are skipped (the REST/stream overlap), and a candle that skips open
   times triggers a REST fetch of the missing ones, fed first — so the engine sees the same unbroken
   series as the reference run, including across reconnects.

A connection that fails (connect, handshake, silence, a REST error during the catch-up) is retried on
the one back-off schedule (:mod:`signalguard.core.backoff`). What the feed is doing goes to ``on_state``
(the page's status line) and to the ``signalguard.market.feed`` log (the worker's). Malformed messages
are counted and dropped by the core's :class:`~signalguard.core.candles.KlineParser`. Streams are spread
over connections of at most :data:`STREAMS_PER_CONNECTION` (Binance allows 1024 per connection; URLs
stay short).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Final, Protocol

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.candles import Candle, KlineParser, next_open_time
from signalguard.core.engine import HistoryNeed, SignalManager
from signalguard.market.klines import (
    KlineSource,
    MarketUnavailable,
    fetch_history,
    fetch_range,
    fill_trade_history,
    stream_name,
)

__all__ = ["STREAMS_PER_CONNECTION", "MarketData", "MarketFeed", "StateCallback"]

log = logging.getLogger("signalguard.market.feed")

#: Streams per WebSocket connection (Binance allows 1024; URLs stay short).
STREAMS_PER_CONNECTION: Final = 200

Stream = tuple[str, str]
#: ``on_state(state, text)``: ``off``, ``connecting``, ``live`` or ``error``, and a line for the page.
StateCallback = Callable[[str, str], None]


class MarketData(KlineSource, Protocol):
    """Binance's kline REST API and combined kline stream: what the feed needs from an exchange."""

    def stream(
        self, names: Sequence[str]
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[str | bytes]]:
        """The combined stream of ``names``: the messages as received.

        Connecting and receiving raise :class:`MarketUnavailable`; the iterator ends when the exchange
        closes the stream normally.
        """
        ...


def _no_state(state: str, text: str) -> None:
    """The worker has no status line: its log says what the feed does."""


class MarketFeed:
    """Keeps a :class:`SignalManager` fed; run :meth:`run`, cancel and run again when the streams change."""

    def __init__(
        self,
        market: MarketData,
        manager: SignalManager,
        on_fed: Callable[[], None],
        *,
        on_state: StateCallback = _no_state,
        wall: Callable[[], float] = time.time,
        backoff: Backoff = BACKOFF,
        rest_concurrency: int = 1,
    ) -> None:
        """Feed ``manager`` from ``market``; ``on_fed`` runs after candles were fed (to drain effects).

        ``rest_concurrency`` bounds the REST requests of one catch-up in flight at once: 1 in the page
        (a tab watches few streams, and the browser limits connections), more in the worker (Binance
        weighs a 1000-row page at 5 of 6000 a minute).
        """
        self._market = market
        self._manager = manager
        self._on_fed = on_fed
        self._on_state = on_state
        self._rest_concurrency = max(1, rest_concurrency)
        self._wall = wall
        self._backoff = backoff
        self.parser = KlineParser()
        self._needs: dict[Stream, int] = {}
        self._last: dict[Stream, int] = {}
        #: Closed candles fed live (stream and gap fills).
        self.candles = 0
        #: Candles fetched by REST to fill gaps.
        self.gap_candles = 0
        #: Stream connections opened.
        self.connections = 0

    def need(self, needs: Iterable[HistoryNeed]) -> None:
        """Streams to prime before their next live candle (what ``set_traders`` returned)."""
        for n in needs:
            key = (n.symbol, n.interval)
            self._needs[key] = max(self._needs.get(key, 0), n.candles)

    @property
    def pending_warmups(self) -> int:
        """Streams still waiting for their history."""
        return len(self._needs)

    def _now_ms(self) -> int:
        return int(self._wall() * 1000)

    def describe(self) -> str:
        """One line for the page: what streams, and how many messages were dropped."""
        streams = len(self._manager.streams())
        dropped = self.parser.rejected
        text = f"{streams} stream{'' if streams == 1 else 's'}, {self.candles} candles"
        return text + (
            f", {dropped} malformed message{'' if dropped == 1 else 's'} dropped" if dropped else ""
        )

    async def run(self) -> None:
        """Stream every watched (symbol, interval) until cancelled."""
        streams = [(n.symbol, n.interval) for n in self._manager.streams()]
        watched = set(streams)
        for key in [k for k in self._last if k not in watched]:
            del self._last[key]  # a stream watched again later starts over with a warm-up
        for key in [k for k in self._needs if k not in watched]:
            del self._needs[key]
        if not streams:
            self._on_state("off", "No enabled traders: no market data needed.")
            await asyncio.Event().wait()  # nothing to watch until the traders change
        async with asyncio.TaskGroup() as group:
            for i in range(0, len(streams), STREAMS_PER_CONNECTION):
                group.create_task(self._connection(streams[i : i + STREAMS_PER_CONNECTION]))

    async def _connection(self, streams: Sequence[Stream]) -> None:
        names = [stream_name(s, i) for s, i in streams]
        wanted = set(streams)
        failures = 0
        while True:
            self._on_state("connecting", "Connecting to market data…")
            try:
                async with self._market.stream(names) as messages:
                    self.connections += 1
                    await self._catch_up(streams)
                    log.info("streaming %d kline stream%s", len(names), "" if len(names) == 1 else "s")
                    self._on_state("live", f"Market data live: {self.describe()}.")
                    async for raw in messages:
                        candle = self.parser.parse(raw)
                        if candle is None:
                            log.debug("dropped a malformed market message: %s", self.parser.last_error)
                            continue
                        if not candle.closed or (candle.symbol, candle.interval) not in wanted:
                            continue
                        await self._live(candle)
                        failures = 0  # the connection works: the next failure starts over
                        self._on_state("live", f"Market data live: {self.describe()}.")
                reason = "the market-data service closed the stream"
            except MarketUnavailable as exc:
                reason = str(exc)
            failures += 1
            delay = self._backoff.delay(failures)
            log.warning("market data unreachable (%s); reconnecting in %.1f s", reason, delay)
            self._on_state("error", f"Market data unreachable ({reason}); retrying in {delay:.0f} s.")
            await asyncio.sleep(delay)

    async def _catch_up(self, streams: Sequence[Stream]) -> None:
        """Prime the streams that need history; fill what a reconnect missed on the others."""
        now_ms = self._now_ms()
        gate = asyncio.Semaphore(self._rest_concurrency)

        async def fetch(key: Stream) -> tuple[Stream, list[Candle], list[Candle] | None]:
            symbol, interval = key
            async with gate:
                missed: list[Candle] = []
                last = self._last.get(key)
                if last is not None:
                    missed = await fetch_range(
                        self._market, symbol, interval, next_open_time(interval, last), now_ms + 1, now_ms
                    )
                history = None
                if key in self._needs:
                    history = await fetch_history(self._market, symbol, interval, self._needs[key], now_ms)
                return key, missed, history

        todo = [k for k in streams if k in self._last or k in self._needs]
        if not todo:
            return
        started = time.monotonic()
        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the other fetches
                tasks = [group.create_task(fetch(k)) for k in todo]
        except ExceptionGroup as failed:
            first = failed.exceptions[0]
            if isinstance(first, MarketUnavailable):
                raise first from None
            raise
        results = [t.result() for t in tasks]
        primed = 0
        for key, missed, history in results:
            for candle in missed:
                self._feed(candle)
            self.gap_candles += len(missed)
            if history is not None:
                self._manager.warm_up(history)
                if history:
                    self._last[key] = max(self._last.get(key, -1), history[-1].open_time)
                del self._needs[key]
                primed += 1
        await self.fill_trades()
        self._on_fed()
        log.info(
            "caught up %d stream%s by REST in %.2f s (%d warmed up, %d missed candles fed)",
            len(todo),
            "" if len(todo) == 1 else "s",
            time.monotonic() - started,
            primed,
            sum(len(m) for _, m, _ in results),
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

    async def _live(self, candle: Candle) -> None:
        key = (candle.symbol, candle.interval)
        last = self._last.get(key)
        if last is not None:
            if candle.open_time <= last:
                return  # already fed (REST overlap, or a repeated event)
            expected = next_open_time(candle.interval, last)
            while candle.open_time > expected:
                try:
                    missing = await fetch_range(
                        self._market,
                        candle.symbol,
                        candle.interval,
                        expected,
                        candle.open_time,
                        self._now_ms(),
                    )
                except MarketUnavailable as exc:
                    log.warning("%s %s: a gap before %d is not filled: %s", *key, candle.open_time, exc)
                    break
                if not missing:
                    log.warning(
                        "%s %s: the exchange has no candles from %d to %d", *key, expected, candle.open_time
                    )
                    break
                for c in missing:
                    self._feed(c)
                self.gap_candles += len(missing)
                expected = next_open_time(candle.interval, self._last[key])
        self._feed(candle)
        self._on_fed()

    def _feed(self, candle: Candle) -> None:
        self._manager.feed(candle)
        self._last[(candle.symbol, candle.interval)] = candle.open_time
        self.candles += 1
