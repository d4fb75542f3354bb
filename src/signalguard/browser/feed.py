"""The tab's market feed: the same warm-up rule as the cloud worker (``signalguard.cloud.feed``).

Browser and cloud must produce the same signals from the same candles, so this module follows the cloud
worker's :class:`~signalguard.cloud.feed.MarketFeed` step for step, with the same REST requests
(:mod:`signalguard.market.klines`; the cloud package itself is not shipped to the page: it imports httpx
and websockets). For the (symbol, interval) streams the running traders watch:

1. open the combined kline stream first, so that every candle closing from then on is delivered;
2. fetch the newest ``history`` closed candles by REST and :meth:`SignalManager.prime
   <signalguard.core.engine.SignalManager.prime>` the engine with them, oldest first;
3. feed every closed stream candle to ``feed``. Candles not newer than the last one fed are skipped
   (the REST/stream overlap), and a candle that skips open times triggers a REST fetch of the missing
   ones, fed first; after a reconnect, what was missed is fetched by REST before streaming resumes.

A failing connection is retried with a doubling back-off; the state is reported to ``on_state`` so the
page can say that market data is unreachable (generation then simply has no candles). Malformed
messages are counted and dropped by the core's :class:`~signalguard.core.candles.KlineParser`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from signalguard.browser.ports import MarketData
from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.candles import Candle, KlineParser, next_open_time
from signalguard.core.engine import HistoryNeed, SignalManager
from signalguard.market.klines import (
    MarketUnavailable,
    fetch_history,
    fetch_range,
    fill_trade_history,
    stream_name,
)

#: Streams per WebSocket connection (Binance allows 1024; URLs stay short).
STREAMS_PER_CONNECTION: Final = 200

Stream = tuple[str, str]
#: ``on_state(state, text)``: ``connecting``, ``live`` or ``error``, and a line for the page.
StateCallback = Callable[[str, str], None]


class MarketFeed:
    """Keeps a :class:`SignalManager` fed; run :meth:`run`, cancel and run again when the streams change."""

    def __init__(
        self,
        market: MarketData,
        manager: SignalManager,
        on_fed: Callable[[], None],
        on_state: StateCallback,
        wall: Callable[[], float],
        *,
        backoff: Backoff = BACKOFF,
    ) -> None:
        """Feed ``manager`` from ``market``; ``on_fed`` runs after candles were fed (to drain effects)."""
        self._market = market
        self._manager = manager
        self._on_fed = on_fed
        self._on_state = on_state
        self._wall = wall
        self._backoff = backoff
        self.parser = KlineParser()
        self._needs: dict[Stream, int] = {}
        self._last: dict[Stream, int] = {}
        #: Closed candles fed live (stream and gap fills).
        self.candles = 0
        #: Candles fetched by REST to fill gaps.
        self.gap_candles = 0

    def need(self, needs: Iterable[HistoryNeed]) -> None:
        """Streams to prime before their next live candle (what ``set_traders`` returned)."""
        for n in needs:
            key = (n.symbol, n.interval)
            self._needs[key] = max(self._needs.get(key, 0), n.candles)

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
            await asyncio.Event().wait()
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
                    await self._catch_up(streams)
                    self._on_state("live", f"Market data live: {self.describe()}.")
                    async for raw in messages:
                        candle = self.parser.parse(raw)
                        if candle is None:
                            continue
                        if not candle.closed or (candle.symbol, candle.interval) not in wanted:
                            continue
                        await self._live(candle)
                        failures = 0
                        self._on_state("live", f"Market data live: {self.describe()}.")
                reason = "the market-data service closed the stream"
            except MarketUnavailable as exc:
                reason = str(exc)
            failures += 1
            delay = self._backoff.delay(failures)
            self._on_state("error", f"Market data unreachable ({reason}); retrying in {delay:.0f} s.")
            await asyncio.sleep(delay)

    async def _catch_up(self, streams: Sequence[Stream]) -> None:
        """Prime the streams that need history; fill what a reconnect missed on the others."""
        now_ms = self._now_ms()
        todo = [k for k in streams if k in self._last or k in self._needs]
        results: list[tuple[Stream, list[Candle], list[Candle] | None]] = []
        # One stream after the other: a tab watches few streams, and the browser limits connections.
        for key in todo:
            symbol, interval = key
            missed: list[Candle] = []
            last = self._last.get(key)
            if last is not None:
                missed = await fetch_range(
                    self._market, symbol, interval, next_open_time(interval, last), now_ms + 1, now_ms
                )
            history = None
            if key in self._needs:
                history = await fetch_history(self._market, symbol, interval, self._needs[key], now_ms)
            results.append((key, missed, history))
        for key, missed, history in results:
            for candle in missed:
                self._feed(candle)
            self.gap_candles += len(missed)
            if history is not None:
                self._manager.warm_up(history)
                if history:
                    self._last[key] = max(self._last.get(key, -1), history[-1].open_time)
                del self._needs[key]
        await self.fill_trades()
        if todo:
            self._on_fed()

    async def fill_trades(self) -> None:
        """Fetch the candles the engine's waiting trades missed, as the cloud worker does.

        Those are adopted trades older than the engine's recent candles; a failure leaves them waiting
        for the next attempt.
        """
        if not self._manager.trade_history_needs():
            return
        try:
            await fill_trade_history(self._market, self._manager, self._now_ms())
        except MarketUnavailable:
            return  # the next connection or re-read of the open trades asks again
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
                except MarketUnavailable:
                    break  # fed across the gap, as the cloud worker does; the next reconnect refills
                if not missing:
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
