"""The replay's logic without I/O: where candles sit in time, what REST returns, which events are due.

Timing model. The series gives the candles' shape; :class:`Replay` gives them open times:

- At ``start`` (ms, by the server's clock), the open time of the current interval is the *anchor*.
  Bars ``0 .. history-1`` become the history, the last one closing exactly at the anchor; bar
  ``history + k`` opens at ``anchor + k * interval``.
- The replay's clock is ``start + (now - start) * speed``. At speed 1 that is the real clock, so live
  candles close at real interval boundaries and their close times are in the past when they arrive, as
  the database requires. At speed S they arrive S times faster and their times run ahead of the real
  clock: use that only for runs that write to no database.
- A candle is *closed* once the replay's clock reaches ``open + interval``; REST serves closed candles
  only. Each live candle is streamed as ``partial_updates`` unclosed updates (``"x": false``) spread
  evenly through its interval, then once closed (``"x": true``) at its close boundary.
- When a symbol's bars run out, its stream ends (:class:`Ended`); with ``loop`` the bars repeat,
  with consecutive times, for ever.

Symbols. ``GET /api/v3/exchangeInfo`` lists every symbol of the series, Binance-shaped but with only
what a client reads: the symbol, its status (``TRADING``; ``BREAK`` once its stream has ended, as
Binance marks a symbol that no longer trades), base and quote asset, the assets' precision (8, as on
nearly every Binance symbol) and a ``PRICE_FILTER`` whose ``tickSize`` is the series' price grid
(:func:`~signalguard.replay.series.price_tick`). A file names symbols, not assets, so base and quote are
split off by the known quote assets (:func:`signalguard.core.symbols.split_symbol`: the longest of
USDT, FDUSD, USDC, BTC, ETH, BNB, TRY, EUR... the symbol ends in); a symbol ending in none has itself
as base and an empty quote.

The caller owns the clock: every method takes ``now_ms``. :mod:`signalguard.replay.server` is the
network adapter around this class.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from itertools import accumulate
from typing import Any

from signalguard.core.candles import SUPPORTED_INTERVALS
from signalguard.core.symbols import TRADING, split_symbol
from signalguard.replay.series import Bar, Series, interval_ms, kline_row, price_tick

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "BinanceError",
    "Emit",
    "Ended",
    "ErrorCode",
    "Replay",
]

DEFAULT_LIMIT = 500
"""Rows ``GET /api/v3/klines`` returns without ``limit`` (as Binance)."""
MAX_LIMIT = 1000
"""Largest ``limit`` Binance accepts for klines."""
DEFAULT_HISTORY = 1000
"""Closed candles available at start, unless the series is shorter (then half of it)."""
SYMBOL_STATUSES = ("TRADING", "HALT", "BREAK")
"""The values Binance's ``symbolStatus`` filter of exchangeInfo accepts."""
ASSET_PRECISION = 8
"""``baseAssetPrecision``/``quotePrecision``: 8 on nearly every Binance symbol."""

# Binance's own check of exchangeInfo's symbols parameter, quoted in its error message.
_SYMBOLS_FORM = r'^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$'
_SYMBOLS = re.compile(r'\[("[A-Z0-9\-_.]{1,20}"(,"[A-Z0-9\-_.]{1,20}")*)?\]')


class ErrorCode(enum.IntEnum):
    """Binance's error codes for the request problems the replay reports."""

    ILLEGAL_CHARS = -1100  # a parameter does not have its form (a number, a symbols array)
    MANDATORY_PARAM = -1102  # a required parameter is missing or empty
    PARAM_EMPTY = -1105  # an optional parameter sent empty
    BAD_TIME_RANGE = -1023  # startTime is after endTime
    BAD_INTERVAL = -1120  # not a Binance interval, or not the one this replay serves
    BAD_SYMBOL = -1121  # a symbol this replay does not serve
    BAD_SYMBOL_STATUS = -1122  # symbolStatus is not TRADING, HALT or BREAK
    BAD_PARAM_COMBO = -1128  # optional parameters that exclude each other (symbol and symbols...)
    BAD_PARAM_VALUE = -1130  # a parameter out of its range (limit)
    DUPLICATE_SYMBOLS = -1151  # a symbol named twice in symbols


class BinanceError(Exception):
    """A bad request, answered as Binance does: HTTP 400 with ``{"code": ..., "msg": ...}``."""

    def __init__(self, code: ErrorCode, msg: str) -> None:
        """Create the error from Binance's ``code`` and ``msg``."""
        super().__init__(msg)
        self.code = code
        self.msg = msg

    def body(self) -> dict[str, object]:
        """The JSON body Binance sends."""
        return {"code": int(self.code), "msg": self.msg}


@dataclass(frozen=True, slots=True)
class Emit:
    """A kline event for ``symbol``'s stream: the Binance single-stream payload."""

    symbol: str
    payload: dict[str, Any]  # JSON


@dataclass(frozen=True, slots=True)
class Ended:
    """``symbol``'s bars have run out: its stream ends after the events emitted before this."""

    symbol: str


class _Track:
    """One symbol's bars, with Binance-like trade ids (consecutive over the whole replay)."""

    def __init__(self, bars: Sequence[Bar]) -> None:
        self.bars = bars
        self.tick = price_tick(bars)
        self.first_trade = [0, *accumulate(bar.trades for bar in bars)]

    def bar(self, index: int) -> Bar:
        return self.bars[index % len(self.bars)]

    def trade_ids(self, index: int, trades: int) -> tuple[int, int]:
        """First and last trade id of ``trades`` trades in bar ``index``; -1, -1 for none (as Binance)."""
        if trades == 0:
            return -1, -1
        cycle, i = divmod(index, len(self.bars))
        first = cycle * self.first_trade[-1] + self.first_trade[i]
        return first, first + trades - 1


class Replay:
    """A series placed in time (see the module documentation), answering REST and producing events."""

    def __init__(
        self,
        series: Series,
        *,
        start_ms: int,
        history: int | None = None,
        speed: float = 1.0,
        partial_updates: int | None = None,
        loop: bool = False,
    ) -> None:
        """Place ``series`` so that its first ``history`` bars are closed at ``start_ms``."""
        shortest = min(len(bars) for bars in series.bars.values())
        if history is None:
            history = min(DEFAULT_HISTORY, shortest // 2)
        if not 0 <= history <= shortest:
            raise ValueError(f"history must be 0..{shortest} (the shortest symbol's candles), got {history}")
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a number above 0, got {speed}")
        self.interval = interval_ms(series.interval)
        if partial_updates is None:
            # Enough to exercise in-place updates downstream without flooding a 1s stream.
            partial_updates = 1 if self.interval < 60_000 else 3
        if partial_updates < 0:
            raise ValueError(f"partial_updates must be 0 or more, got {partial_updates}")
        self.series = series
        self.start_ms = start_ms
        self.history = history
        self.speed = speed
        self.partial_updates = partial_updates
        self.loop = loop
        self.anchor = start_ms // self.interval * self.interval
        self._tracks = {symbol: _Track(bars) for symbol, bars in series.bars.items()}
        self._next_event = 0  # live events are numbered from 0, partial_updates + 1 per bar
        self._ended: set[str] = set()

    # --- time ---------------------------------------------------------------------------------------

    def open_time(self, index: int) -> int:
        """Open time (ms) of bar ``index`` of the series (``index`` may pass its end when looping)."""
        return self.anchor + (index - self.history) * self.interval

    def clock_ms(self, now_ms: float) -> float:
        """The replay's clock at real time ``now_ms``: the real clock at speed 1."""
        return self.start_ms + (now_ms - self.start_ms) * self.speed

    def closed(self, symbol: str, now_ms: float) -> int:
        """How many of ``symbol``'s bars are closed at ``now_ms`` (bars ``0 .. n-1``)."""
        count = self.history + math.floor((self.clock_ms(now_ms) - self.anchor) / self.interval)
        return count if self.loop else min(count, len(self._tracks[symbol].bars))

    def _event_time(self, event: int) -> int:
        """Replay-clock time (ms) at which live event ``event`` is due."""
        bar, phase = divmod(event, self.partial_updates + 1)
        return self.open_time(self.history + bar) + self.interval * (phase + 1) // (self.partial_updates + 1)

    def next_due_ms(self) -> float | None:
        """Real time (ms) at which the next event is due; None once every stream has ended."""
        if self.finished:
            return None
        return self.start_ms + (self._event_time(self._next_event) - self.start_ms) / self.speed

    @property
    def finished(self) -> bool:
        """Whether every symbol's stream has ended (never, when looping)."""
        return len(self._ended) == len(self._tracks)

    def is_live(self, symbol: str) -> bool:
        """Whether ``symbol``'s stream still has events to come."""
        return symbol in self._tracks and symbol not in self._ended

    # --- REST ---------------------------------------------------------------------------------------

    def klines(self, query: Mapping[str, str], now_ms: float) -> list[list[object]]:
        """Answer ``GET /api/v3/klines`` with these query parameters; raise :class:`BinanceError`."""
        symbol, interval = _required(query, "symbol"), _required(query, "interval")
        if symbol not in self._tracks:
            raise BinanceError(ErrorCode.BAD_SYMBOL, "Invalid symbol.")
        if interval not in SUPPORTED_INTERVALS:
            raise BinanceError(ErrorCode.BAD_INTERVAL, "Invalid interval.")
        if interval != self.series.interval:
            raise BinanceError(
                ErrorCode.BAD_INTERVAL, f"Invalid interval: the replay has {self.series.interval}."
            )
        limit = _number(query, "limit")
        limit = DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_LIMIT:
            raise BinanceError(ErrorCode.BAD_PARAM_VALUE, "Data sent for parameter 'limit' is not valid.")
        start, end = _number(query, "startTime"), _number(query, "endTime")
        if start is not None and end is not None and start > end:
            raise BinanceError(ErrorCode.BAD_TIME_RANGE, "Start time is greater than end time.")
        lo, hi = 0, self.closed(symbol, now_ms)
        first = self.open_time(0)
        if start is not None:
            lo = max(lo, -((first - start) // self.interval))  # first open time >= startTime
        if end is not None:
            hi = min(hi, (end - first) // self.interval + 1)  # last open time <= endTime
        # As Binance: from startTime forwards if given, else the newest ones.
        lo, hi = (lo, min(hi, lo + limit)) if start is not None else (max(lo, hi - limit), hi)
        track = self._tracks[symbol]
        return [kline_row(track.bar(i), self.open_time(i), self.interval) for i in range(lo, hi)]

    def exchange_info(self, query: Mapping[str, str], now_ms: float) -> dict[str, object]:
        """Answer ``GET /api/v3/exchangeInfo`` (see the module documentation); raise :class:`BinanceError`.

        Binance's filters: ``symbol=BTCUSDT``, ``symbols=["BTCUSDT","ETHUSDT"]`` (in that order), or
        ``symbolStatus=TRADING|HALT|BREAK``, one at a time; a symbol the replay does not serve is
        Binance's -1121 "Invalid symbol.". ``showPermissionSets`` and ``permissions`` are accepted and
        change nothing (every symbol is a spot symbol without permission sets).
        """
        given = [name for name in ("symbol", "symbols", "symbolStatus") if name in query]
        for name in given:
            if not query[name]:
                raise BinanceError(ErrorCode.PARAM_EMPTY, f"Parameter '{name}' was empty.")
        if len(given) > 1:
            raise BinanceError(ErrorCode.BAD_PARAM_COMBO, "Combination of optional parameters invalid.")
        symbols = list(self._tracks)
        if "symbol" in query:
            symbols = [query["symbol"]]
        elif "symbols" in query:
            symbols = _symbols_list(query["symbols"])
        for symbol in symbols:
            if symbol not in self._tracks:
                raise BinanceError(ErrorCode.BAD_SYMBOL, "Invalid symbol.")
        entries = [self._symbol_info(symbol) for symbol in symbols]
        if "symbolStatus" in query:
            status = query["symbolStatus"]
            if status not in SYMBOL_STATUSES:
                raise BinanceError(ErrorCode.BAD_SYMBOL_STATUS, "Invalid symbolStatus.")
            entries = [entry for entry in entries if entry["status"] == status]
        return {
            "timezone": "UTC",
            "serverTime": int(self.clock_ms(now_ms)),
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": entries,
        }

    def _symbol_info(self, symbol: str) -> dict[str, object]:
        """One entry of exchangeInfo's ``symbols``."""
        base, quote = split_symbol(symbol)
        tick = _binance_decimal(self._tracks[symbol].tick)
        return {
            "symbol": symbol,
            # A symbol whose bars have run out streams nothing more: Binance's BREAK (not trading).
            "status": TRADING if self.is_live(symbol) else "BREAK",
            "baseAsset": base,
            "baseAssetPrecision": ASSET_PRECISION,
            "quoteAsset": quote,
            "quotePrecision": ASSET_PRECISION,
            "quoteAssetPrecision": ASSET_PRECISION,
            "isSpotTradingAllowed": True,
            "filters": [
                # A maxPrice of 0 is Binance's way of switching that rule off: a series has no cap.
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "0.00000000", "tickSize": tick}
            ],
            "permissions": [],
            "permissionSets": [],
        }

    # --- streams ------------------------------------------------------------------------------------

    def due(self, now_ms: float) -> list[Emit | Ended]:
        """Return every event due by ``now_ms`` that was not returned before, in order."""
        out: list[Emit | Ended] = []
        clock = self.clock_ms(now_ms)
        while not self.finished and (event_time := self._event_time(self._next_event)) <= clock:
            bar, phase = divmod(self._next_event, self.partial_updates + 1)
            index = self.history + bar
            closed = phase == self.partial_updates
            for symbol, track in self._tracks.items():
                if symbol in self._ended:
                    continue
                out.append(Emit(symbol, self._event(symbol, index, phase, event_time)))
                if closed and not self.loop and index == len(track.bars) - 1:
                    self._ended.add(symbol)
                    out.append(Ended(symbol))
            self._next_event += 1
        return out

    def _event(self, symbol: str, index: int, phase: int, event_time: int) -> dict[str, Any]:
        """The Binance kline event for bar ``index`` of ``symbol`` at ``phase`` of its interval."""
        track = self._tracks[symbol]
        closed = phase == self.partial_updates
        bar = track.bar(index)
        if not closed:
            bar = bar.forming(Fraction(phase + 1, self.partial_updates + 1), track.tick)
        first, last = track.trade_ids(index, bar.trades)
        open_time = self.open_time(index)
        return {
            "e": "kline",
            "E": event_time,
            "s": symbol,
            "k": {
                "t": open_time,
                "T": open_time + self.interval - 1,
                "s": symbol,
                "i": self.series.interval,
                "f": first,
                "L": last,
                "o": bar.open,
                "c": bar.close,
                "h": bar.high,
                "l": bar.low,
                "v": bar.volume,
                "n": bar.trades,
                "x": closed,
                "q": bar.quote_volume,
                "V": bar.taker_buy_volume,
                "Q": bar.taker_buy_quote_volume,
                "B": "0",
            },
        }


def _required(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "")
    if not value:
        raise BinanceError(
            ErrorCode.MANDATORY_PARAM,
            f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
        )
    return value


def _symbols_list(value: str) -> list[str]:
    """The ``symbols`` parameter of exchangeInfo: a compact JSON array of symbols, each named once."""
    if not _SYMBOLS.fullmatch(value):
        raise BinanceError(
            ErrorCode.ILLEGAL_CHARS,
            f"Illegal characters found in parameter 'symbols'; legal range is '{_SYMBOLS_FORM}'.",
        )
    symbols: list[str] = json.loads(value)
    if not symbols:
        raise BinanceError(ErrorCode.PARAM_EMPTY, "Parameter 'symbols' was empty.")
    if len(set(symbols)) < len(symbols):
        raise BinanceError(ErrorCode.DUPLICATE_SYMBOLS, "Symbol is present multiple times in the list.")
    return symbols


def _binance_decimal(value: Decimal) -> str:
    """``value`` as Binance prints prices and ticks: 8 decimals (more only if it needs them)."""
    text = format(value, "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(8, '0')}"


def _number(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 20):
        raise BinanceError(
            ErrorCode.ILLEGAL_CHARS,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(value)
