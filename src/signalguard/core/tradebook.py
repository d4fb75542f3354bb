"""The executor's open paper trades: which it manages, which wait for older candles, and their exits.

:mod:`signalguard.core.positions` holds the rules of one trade (its exit levels, :func:`exit_on`,
P&L) and the rows an adapter loads; this module holds the trades an executor manages between two
candles. :class:`OpenTrades` keeps them by stream, and the last :data:`RECENT_CANDLES` closed candles
of each stream, and answers which trades exit on which candle. It decides nothing about signals,
epochs or leases: the :class:`~signalguard.core.engine.SignalManager` turns each exit it returns into
a :class:`~signalguard.core.engine.TradeClosed` under the live lease and closes the trade's signal,
and forgets the book when it loses the lease.

A trade held on a stream is checked at once against the recent candles it missed (an adopted trade,
or the trade of a signal adopted late), then against every later closed candle. The recent candles
exist so that a trade taken over from another executor exits at the candle its rule names, not at the
first candle this executor happens to have. A trade that entered before the oldest recent candle
cannot be decided on them: it *waits*, unmanaged, until the candles since its entry arrive, either
from a warm-up that reaches back to it (:meth:`OpenTrades.take_covered`) or fetched for it
(:meth:`OpenTrades.history_needs`, :meth:`OpenTrades.fill`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from signalguard.core.candles import Candle, next_open_time
from signalguard.core.ports import Stream
from signalguard.core.positions import Exit, ExitReason, Trade, exit_on

#: Closed candles kept per stream to check an adopted trade against what it missed (2 h of 1m).
RECENT_CANDLES: Final = 120

#: A trade and the exit a rule (or the user) decided for it; the trade has left the book.
Closing = tuple[Trade, Exit]


@dataclass(frozen=True, slots=True)
class CandleRange:
    """Closed candles of a stream opening in ``[start, end)`` (epoch ms; ``end`` None: until now)."""

    symbol: str
    interval: str
    start: int
    end: int | None


@dataclass(slots=True)
class OpenTrades:
    """One executor's open trades by stream, and the recent closed candles they are checked against."""

    # Trades being managed: every closed candle of their stream is checked against their rules.
    _open: dict[Stream, dict[str, Trade]] = field(default_factory=dict)
    # Trades older than their stream's recent candles: unmanaged until the candles since entry arrive.
    _waiting: dict[Stream, dict[str, Trade]] = field(default_factory=dict)
    _recent: dict[Stream, deque[Candle]] = field(default_factory=dict)

    def remember(self, candle: Candle) -> bool:
        """Keep a closed candle as its stream's newest (an older or repeated one is ignored).

        Returns whether the stream has trades, open or waiting: the engine's hot path asks nothing
        more of a stream without any (one call per candle, as the burst benchmark measures).
        """
        stream = (candle.symbol, candle.interval)
        recent = self._recent.get(stream)
        if recent is None:
            recent = self._recent[stream] = deque(maxlen=RECENT_CANDLES)
        if not recent or candle.open_time > recent[-1].open_time:
            recent.append(candle)
        return stream in self._open or stream in self._waiting

    def hold(self, trade: Trade) -> list[Closing]:
        """Manage ``trade`` from now on, checking it first against the recent candles it missed.

        Returns its exit if one of those candles ends it. If the recent candles begin after its
        entry (or there are none yet, before the stream's warm-up), it waits instead.
        """
        stream = (trade.symbol, trade.interval)
        recent = self._recent.get(stream)
        if not recent or recent[0].open_time > trade.entry_time:
            self._waiting.setdefault(stream, {})[trade.key] = trade
            return []
        self._open.setdefault(stream, {})[trade.key] = trade
        return self._check(stream, [c for c in recent if c.open_time >= trade.entry_time], only=trade.key)

    def take_covered(self, stream: Stream) -> list[Trade]:
        """Remove and return the waiting trades of ``stream`` whose entry the recent candles now reach.

        Give each to :meth:`hold` again (after a warm-up reached back far enough, say).
        """
        waiting = self._waiting.get(stream)
        recent = self._recent.get(stream)
        if not waiting or not recent:
            return []
        covered = [t for t in waiting.values() if recent[0].open_time <= t.entry_time]
        for trade in covered:
            del waiting[trade.key]
        if not waiting:
            del self._waiting[stream]
        return covered

    def history_needs(self) -> list[CandleRange]:
        """The candles the waiting trades need: from the oldest entry to the stream's recent candles."""
        out = []
        for (symbol, interval), waiting in sorted(self._waiting.items()):
            recent = self._recent.get((symbol, interval))
            start = min(t.entry_time for t in waiting.values())
            out.append(CandleRange(symbol, interval, start, recent[0].open_time if recent else None))
        return out

    def fill(self, symbol: str, interval: str, candles: Sequence[Candle]) -> list[Closing]:
        """Check the stream's waiting trades against ``candles`` and the recent candles after them.

        ``candles`` are a range of :meth:`history_needs`, oldest first; the trades whose entry they
        reach are managed from then on, and their exits returned. If the candles do not reach back to
        a trade's entry, or leave a hole before the recent candles, the trades stay waiting (the range
        is asked again).
        """
        stream = (symbol, interval)
        waiting = self._waiting.get(stream)
        if not waiting:
            return []
        series = [c for c in candles if c.closed and (c.symbol, c.interval) == stream]
        last = series[-1].open_time if series else None
        series += [c for c in self._recent.get(stream, ()) if last is None or c.open_time > last]
        if not series or any(
            next_open_time(interval, a.open_time) != b.open_time for a, b in itertools.pairwise(series)
        ):
            return []  # a hole (or disorder): deciding on it could miss the exit candle
        out: list[Closing] = []
        for trade in [t for t in waiting.values() if series[0].open_time <= t.entry_time]:
            del waiting[trade.key]
            self._open.setdefault(stream, {})[trade.key] = trade
            out += self._check(stream, [c for c in series if c.open_time >= trade.entry_time], only=trade.key)
        if not waiting:
            del self._waiting[stream]
        return out

    def on_candle(self, candle: Candle) -> list[Closing]:
        """The exits a live closed candle decides for its stream's open trades (they leave the book)."""
        return self._check((candle.symbol, candle.interval), (candle,))

    def _check(self, stream: Stream, candles: Iterable[Candle], only: str | None = None) -> list[Closing]:
        book = self._open.get(stream)
        if book is None:
            return []
        out: list[Closing] = []
        for candle in candles:
            for key, trade in list(book.items()):
                if only is not None and key != only:
                    continue
                done = exit_on(trade, candle)
                if done is not None:
                    del book[key]
                    out.append((trade, done))
            if not book:
                break
        if not book:
            self._open.pop(stream, None)
        return out

    def close(self, key: str) -> Closing | None:
        """Close a managed trade by hand at its stream's last closed price; None if it cannot be now.

        A waiting trade cannot be: its stream's prices since entry are unknown.
        """
        for stream, book in self._open.items():
            trade = book.get(key)
            if trade is None:
                continue
            recent = self._recent.get(stream)
            if not recent:
                return None
            last = recent[-1]
            closed_at = next_open_time(last.interval, last.open_time)
            del book[key]
            if not book:
                del self._open[stream]
            return trade, Exit(ExitReason.MANUAL, last.close, max(closed_at, trade.entry_time))
        return None

    def clear(self) -> None:
        """Forget every trade, managed or waiting (another executor manages them now)."""
        self._open.clear()
        self._waiting.clear()

    def keys(self) -> set[str]:
        """The keys of every trade held, managed or waiting."""
        return {key for books in (self._open, self._waiting) for book in books.values() for key in book}

    def streams(self) -> set[Stream]:
        """The streams with a trade held: they need candles even if no trader watches them."""
        return {*self._open, *self._waiting}

    def trades(self) -> list[Trade]:
        """Every trade held, managed or waiting, oldest entry first."""
        books = (*self._open.values(), *self._waiting.values())
        return sorted((t for book in books for t in book.values()), key=lambda t: t.entry_time)

    def last_price(self, symbol: str, interval: str) -> float | None:
        """The close of the newest closed candle kept for a stream."""
        recent = self._recent.get((symbol, interval))
        return recent[-1].close if recent else None
