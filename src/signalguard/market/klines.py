"""Klines by REST for the warm-up rule, shared by the browser tab and the cloud worker.

Both executors must feed their engines the same candles, so the requests of the warm-up rule (see
:mod:`signalguard.core.traders`) are built here once: the newest closed candles, paging backwards past
Binance's 1000-row limit and dropping the still-open last row, and the closed candles between two
open times, to fill a gap, and the candles an adopted paper trade missed. The I/O itself stays with
each side behind :class:`KlineSource` (httpx in the worker, the page's ``fetch`` in the tab); nothing
here imports a platform module, so the page ships it with the core.
"""

from __future__ import annotations

import json
from typing import Final

from signalguard.core import safejson
from signalguard.core.candles import Candle, MarketDataError, next_open_time, parse_rest_klines
from signalguard.core.engine import SignalManager
from signalguard.core.ports import KlineSource

__all__ = [
    "MAX_LIMIT",
    "KlineSource",
    "MarketUnavailable",
    "RestKlines",
    "fetch_history",
    "fetch_range",
    "fill_trade_history",
    "http_refusal",
    "klines_params",
    "stream_name",
]

#: Binance's largest page of klines.
MAX_LIMIT: Final = 1000
#: Pages fetched at most for one stream's adopted trades (20,000 candles: two weeks of 1m).
MAX_TRADE_PAGES: Final = 20


class MarketUnavailable(Exception):
    """The market-data service could not be reached, refused the request, or sent something unreadable.

    ``refused`` says the exchange refused this one stream's request (an unknown symbol, an interval it
    lacks, a region block): the feed fails that stream alone. Otherwise the connection is at fault.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        """One plain line; ``refused`` for a refusal of the stream itself."""
        super().__init__(message)
        self.refused = refused


#: HTTP statuses that say "not now" rather than "not this": timeouts and Binance's rate limits.
_TRANSIENT_4XX: Final = frozenset({408, 418, 429})


def http_refusal(symbol: str, interval: str, status: int, body: str) -> MarketUnavailable:
    """A klines request answered with ``status`` (not 200), as one plain line.

    A 4xx other than the rate limits refuses the stream itself (Binance: ``{"code": -1121, "msg":
    "Invalid symbol."}`` with 400; 451 for a region it does not serve); the rest fail the connection.
    """
    message = body.strip()[:200]
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("msg"), str):
        message = decoded["msg"][:200]
    stream = f"{symbol} {interval}"
    if status == 451:
        return MarketUnavailable(
            f"{stream}: the market data is not available from this region (HTTP 451)", refused=True
        )
    if 400 <= status < 500 and status not in _TRANSIENT_4XX:
        return MarketUnavailable(
            f"{stream}: the market data does not serve this stream ({message or 'no reason given'}; "
            f"HTTP {status})",
            refused=True,
        )
    return MarketUnavailable(f"klines {stream}: HTTP {status} {message}".rstrip())


def stream_name(symbol: str, interval: str) -> str:
    """Binance's kline stream name: ``btcusdt@kline_1m``."""
    return f"{symbol.lower()}@kline_{interval}"


def klines_params(
    symbol: str, interval: str, limit: int, start_time: int | None, end_time: int | None
) -> dict[str, str | int]:
    """The query of one ``GET /api/v3/klines`` (Binance's parameter names; unset bounds left out)."""
    params: dict[str, str | int] = {"symbol": symbol, "interval": interval, "limit": limit}
    if start_time is not None:
        params["startTime"] = start_time
    if end_time is not None:
        params["endTime"] = end_time
    return params


class RestKlines:
    """:class:`KlineSource` over one HTTP GET, the same on every host: subclasses implement :meth:`get`.

    The page's ``fetch``, the worker's httpx and the tests' fake answer a status and a body; what a
    status means (a refusal of the stream, or of the connection) and how the body is read is decided
    here once.
    """

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        """``GET path?params``: the HTTP status and body; :class:`MarketUnavailable` if none came."""
        raise NotImplementedError

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        limit: int,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> object:
        """See :meth:`KlineSource.klines`."""
        status, body = await self.get(
            "/api/v3/klines", klines_params(symbol, interval, limit, start_time, end_time)
        )
        if status != 200:
            raise http_refusal(symbol, interval, status, body[:2000])
        try:
            return safejson.loads(body)
        except ValueError:
            raise MarketUnavailable(f"klines {symbol} {interval}: the answer is not JSON") from None


def _parse(rows: object, symbol: str, interval: str, now_ms: int) -> list[Candle]:
    try:
        return parse_rest_klines(rows, symbol=symbol, interval=interval, now_ms=now_ms)
    except MarketDataError as exc:
        raise MarketUnavailable(f"klines {symbol} {interval}: {exc.code}: {exc}") from None


async def fetch_history(
    market: KlineSource, symbol: str, interval: str, count: int, now_ms: int
) -> list[Candle]:
    """The newest ``count`` closed candles, oldest first (fewer if the exchange has fewer).

    Pages backwards with ``endTime`` past the 1000-row limit. Binance's newest row is the candle still
    forming; it is dropped (closedness by ``now_ms``), so one more row than needed is asked for.
    """
    if count <= 0:
        return []
    pages: list[list[Candle]] = []
    have = 0
    end: int | None = None
    while have < count:
        want = min(MAX_LIMIT, count - have + (1 if end is None else 0))
        rows = await market.klines(symbol, interval, limit=want, end_time=end)
        page = _parse(rows, symbol, interval, now_ms)
        full = len(page) >= want
        page = [c for c in page if c.closed]
        if pages and page and page[-1].open_time >= pages[-1][0].open_time:
            raise MarketUnavailable(f"klines {symbol} {interval}: pages overlap (endTime ignored?)")
        if page:
            pages.append(page)
            have += len(page)
            end = page[0].open_time - 1
        if not full or not page:
            break  # the exchange has no older candles
    candles = [c for page in reversed(pages) for c in page]
    return candles[-count:]


async def fetch_range(
    market: KlineSource, symbol: str, interval: str, first_open: int, before_open: int, now_ms: int
) -> list[Candle]:
    """Closed candles opening in ``[first_open, before_open)``, oldest first (a gap to fill).

    At most :data:`MAX_LIMIT` candles: a longer gap is better re-primed than replayed.
    """
    if before_open <= first_open:
        return []
    rows = await market.klines(
        symbol, interval, limit=MAX_LIMIT, start_time=first_open, end_time=before_open - 1
    )
    return [
        c
        for c in _parse(rows, symbol, interval, now_ms)
        if c.closed and first_open <= c.open_time < before_open
    ]


async def fill_trade_history(market: KlineSource, manager: SignalManager, now_ms: int) -> int:
    """Fetch the candles the manager's waiting trades missed and give them to it; how many were fetched.

    An adopted trade older than the engine's recent candles waits for them (see
    :meth:`SignalManager.trade_history_needs`); this pages forward through each range. Raises
    :class:`MarketUnavailable` (the trades keep waiting, and are asked for again).
    """
    fetched = 0
    for need in manager.trade_history_needs():
        before = need.end if need.end is not None else now_ms + 1
        first = need.start
        candles: list[Candle] = []
        for _ in range(MAX_TRADE_PAGES):
            page = await fetch_range(market, need.symbol, need.interval, first, before, now_ms)
            if not page:
                break
            candles += page
            first = next_open_time(need.interval, page[-1].open_time)
            if first >= before:
                break
        manager.fill_trade_history(need.symbol, need.interval, candles)
        fetched += len(candles)
    return fetched
