"""An in-memory market data for tests of either host's feed: Binance's REST klines and kline streams.

:class:`FakeMarketData` implements :class:`~signalguard.market.feed.MarketData`: REST klines answered
from candles the test gives (Binance's selection rules), one stream at a time whose messages the test
pushes, and the failures a test sets: connections that fail, REST that is down, streams the exchange
refuses (:attr:`FakeMarketData.refuse`). It records what it was asked.

Binance's rate-limit side, through :meth:`FakeMarketData.get_answer`: :attr:`FakeMarketData.used_weight`
is sent as the ``X-MBX-USED-WEIGHT-1M`` header, and :attr:`FakeMarketData.limited` answers every REST
request with a 429/418 (and ``Retry-After``) instead.

It answers ``GET /api/v3/exchangeInfo`` too, for the symbol list: the symbols of its history and of
:attr:`FakeMarketData.listed`, with Binance's ``symbol=``/``symbols=``/``symbolStatus=`` filters and
its -1121 refusal of an unknown symbol, or exactly what :attr:`FakeMarketData.exchange_info` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from signalguard.core.candles import Candle, next_open_time
from signalguard.core.symbols import TRADING, split_symbol
from signalguard.market.klines import (
    EXCHANGE_INFO_PATH,
    MarketUnavailable,
    RestAnswer,
    RestKlines,
    stream_name,
)

__all__ = ["FakeMarketData", "eventually", "kline_event", "kline_row"]


async def eventually(
    check: Callable[[], object], timeout: float = 5.0, what: str = "the condition"
) -> object:
    """Poll ``check`` on the running loop until it returns something true (returned), or fail.

    The feed and the worker run as tasks: a test waits for what they do instead of sleeping.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def kline_row(candle: Candle) -> list[object]:
    """``candle`` as a row of Binance's ``GET /api/v3/klines``."""
    close_time = next_open_time(candle.interval, candle.open_time) - 1
    prices = [repr(float(x)) for x in (candle.open, candle.high, candle.low, candle.close, candle.volume)]
    return [candle.open_time, *prices, close_time, "0", 0, "0", "0", "0"]


def kline_event(candle: Candle, *, closed: bool | None = None) -> dict[str, Any]:
    """``candle`` as a Binance combined-stream kline message."""
    close_time = next_open_time(candle.interval, candle.open_time) - 1
    return {
        "stream": f"{candle.symbol.lower()}@kline_{candle.interval}",
        "data": {
            "e": "kline",
            "E": close_time + 1,
            "s": candle.symbol,
            "k": {
                "t": candle.open_time,
                "T": close_time,
                "s": candle.symbol,
                "i": candle.interval,
                "o": repr(float(candle.open)),
                "c": repr(float(candle.close)),
                "h": repr(float(candle.high)),
                "l": repr(float(candle.low)),
                "v": repr(float(candle.volume)),
                "x": candle.closed if closed is None else closed,
            },
        },
    }


class FakeMarketData(RestKlines):
    """See the module documentation. REST serves :attr:`history`; the test pushes stream messages."""

    def __init__(self, history: Iterable[Candle] = ()) -> None:
        """Serve ``history`` (closed candles of any streams) by REST."""
        #: Streams the exchange refuses, with the HTTP status and body it answers their REST requests
        #: with (Binance: 400 ``{"code": -1121, "msg": "Invalid symbol."}``); a connection naming one
        #: is refused too, as the replay server does.
        self.refuse: dict[tuple[str, str], tuple[int, str]] = {}
        self.history: dict[tuple[str, str], list[Candle]] = defaultdict(list)
        for candle in history:
            self.history[(candle.symbol, candle.interval)].append(candle)
        self.requests: list[dict[str, Any]] = []
        #: Symbols exchangeInfo lists besides those of :attr:`history` (``TRADING`` ones), with their
        #: status (``TRADING``, ``HALT``, ``BREAK``); a status here overrides the history's.
        self.listed: dict[str, str] = {}
        #: When set, exchangeInfo answers this (HTTP status, body) whatever is asked.
        self.exchange_info: tuple[int, str] | None = None
        #: The query of each exchangeInfo request, in order (klines requests go to :attr:`requests`).
        self.info_requests: list[dict[str, str | int]] = []
        self.subscriptions: list[list[str]] = []
        #: The next this many connection attempts fail.
        self.fail_connects = 0
        #: While true, REST requests fail.
        self.rest_down = False
        #: Sent as ``X-MBX-USED-WEIGHT-1M`` with every answer (None: no such header, as in the page).
        self.used_weight: int | None = None
        #: When set, every REST request is answered this (status, Retry-After header or None).
        self.limited: tuple[int, str | None] | None = None
        #: REST requests that reached the fake (through get_answer), by path.
        self.rest_calls: list[str] = []
        self._queue: asyncio.Queue[str | BaseException | None] | None = None
        self.connected = asyncio.Event()

    def add(self, candle: Candle) -> None:
        """Make a closed candle available by REST (without streaming it)."""
        self.history[(candle.symbol, candle.interval)].append(candle)

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        """Answer ``GET /api/v3/klines`` and ``/api/v3/exchangeInfo`` as Binance does (and its refusals)."""
        if path == EXCHANGE_INFO_PATH:
            return self._exchange_info(params)
        if path != "/api/v3/klines":
            return 404, "<html><body><h1>404 Not found</h1></body></html>"
        symbol, interval, limit = str(params["symbol"]), str(params["interval"]), int(params["limit"])
        start = int(params["startTime"]) if "startTime" in params else None
        end = int(params["endTime"]) if "endTime" in params else None
        self.requests.append(
            {"symbol": symbol, "interval": interval, "limit": limit, "start": start, "end": end}
        )
        if self.rest_down:
            raise MarketUnavailable("klines: the fake exchange is down")
        if (symbol, interval) in self.refuse:
            return self.refuse[(symbol, interval)]
        rows = sorted(self.history.get((symbol, interval), []), key=lambda c: c.open_time)
        if start is not None:
            rows = [c for c in rows if c.open_time >= start]
        if end is not None:
            rows = [c for c in rows if c.open_time <= end]
        rows = rows[:limit] if start is not None else rows[-limit:]
        return 200, json.dumps([kline_row(c) for c in rows])

    async def get_answer(self, path: str, params: dict[str, str | int]) -> RestAnswer:
        """:meth:`get` with Binance's rate-limit headers (see :attr:`used_weight`, :attr:`limited`)."""
        self.rest_calls.append(path)
        headers = {} if self.used_weight is None else {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}
        if self.limited is not None:
            status, retry_after = self.limited
            if retry_after is not None:
                headers["Retry-After"] = retry_after
            return RestAnswer(status, '{"code":-1003,"msg":"Too much request weight used."}', headers)
        status, body = await self.get(path, params)
        return RestAnswer(status, body, headers)

    def _exchange_info(self, params: dict[str, str | int]) -> tuple[int, str]:
        self.info_requests.append(dict(params))
        if self.rest_down:
            raise MarketUnavailable("exchangeInfo: the fake exchange is down")
        if self.exchange_info is not None:
            return self.exchange_info
        statuses = {symbol: TRADING for symbol, _ in self.history} | self.listed
        if "symbol" in params:
            names = [str(params["symbol"])]
        elif "symbols" in params:
            decoded = json.loads(str(params["symbols"]))
            names = [str(name) for name in decoded]
        else:
            names = list(statuses)
        if any(name not in statuses for name in names):
            return 400, '{"code":-1121,"msg":"Invalid symbol."}'
        wanted = params.get("symbolStatus")
        entries = [
            {
                "symbol": name,
                "status": statuses[name],
                "baseAsset": split_symbol(name)[0],
                "baseAssetPrecision": 8,
                "quoteAsset": split_symbol(name)[1],
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.01000000",
                        "maxPrice": "1000000.00000000",
                        "tickSize": "0.01000000",
                    }
                ],
            }
            for name in names
            if wanted is None or statuses[name] == wanted
        ]
        answer = {"timezone": "UTC", "serverTime": int(time.time() * 1000), "symbols": entries}
        return 200, json.dumps(answer, separators=(",", ":"))

    def send(self, message: str | Mapping[str, Any] | Candle) -> None:
        """Deliver a message on the open stream (a candle becomes its kline event)."""
        if self._queue is None:
            raise AssertionError("no stream is open")
        if isinstance(message, Candle):
            message = kline_event(message)
        self._queue.put_nowait(message if isinstance(message, str) else json.dumps(message))

    def close(self) -> None:
        """End the open stream normally (the exchange closed it; the client's iterator ends)."""
        if self._queue is not None:
            self._queue.put_nowait(None)

    def drop(self, error: str = "connection reset") -> None:
        """Break the open stream (the client sees :class:`MarketUnavailable`)."""
        if self._queue is not None:
            self._queue.put_nowait(MarketUnavailable(f"stream: {error}"))

    @contextlib.asynccontextmanager
    async def stream(self, names: Sequence[str]) -> AsyncIterator[AsyncIterator[str | bytes]]:
        """See :meth:`~.market.MarketData.stream`."""
        self.subscriptions.append(list(names))
        refused = {stream_name(*s) for s in self.refuse} & set(names)
        if refused:
            raise MarketUnavailable(f"stream closed (1008 unknown stream {sorted(refused)[0]!r})")
        if self.fail_connects > 0:
            self.fail_connects -= 1
            raise MarketUnavailable("stream: cannot connect (fake)")
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        self._queue = queue
        self.connected.set()

        async def messages() -> AsyncIterator[str | bytes]:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item

        try:
            yield messages()
        finally:
            self._queue = None
            self.connected.clear()

    async def aclose(self) -> None:
        """See :meth:`~.market.MarketData.aclose`."""
