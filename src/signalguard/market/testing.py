"""An in-memory market data for tests of either host's feed: Binance's REST klines and kline streams.

:class:`FakeMarketData` implements :class:`~signalguard.market.feed.MarketData`: REST klines answered
from candles the test gives (Binance's selection rules), one stream at a time whose messages the test
pushes, and the failures a test sets: connections that fail, REST that is down, streams the exchange
refuses (:attr:`FakeMarketData.refuse`). It records what it was asked.
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
from signalguard.market.klines import MarketUnavailable, RestKlines, stream_name

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
        self.subscriptions: list[list[str]] = []
        #: The next this many connection attempts fail.
        self.fail_connects = 0
        #: While true, REST requests fail.
        self.rest_down = False
        self._queue: asyncio.Queue[str | BaseException | None] | None = None
        self.connected = asyncio.Event()

    def add(self, candle: Candle) -> None:
        """Make a closed candle available by REST (without streaming it)."""
        self.history[(candle.symbol, candle.interval)].append(candle)

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        """Answer ``GET /api/v3/klines`` as Binance does (its selection rules, its refusals)."""
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
