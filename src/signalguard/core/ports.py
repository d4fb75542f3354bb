"""The executor's ports, and the plain types that cross them, in one place.

Both hosts run the same executor (the engine, the feed planner and its driver, the outbox and its
writes) and differ only in what they plug into these: the page with ``fetch``, WebSocket, IndexedDB
and supabase-js (:mod:`signalguard.browser.jsbridge`), the worker with httpx, websockets and
supabase-py (:mod:`signalguard.cloud.market`, :mod:`signalguard.cloud.database`). The doubles that
implement them for tests ship beside the adapters: :mod:`signalguard.market.testing`,
:mod:`signalguard.browser.testing`, :mod:`signalguard.cloud.testing`.

Only types live here (no behaviour, no I/O), so the core and both hosts import them freely.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol

__all__ = [
    "CallRpc",
    "Clock",
    "HttpPoster",
    "JsonValue",
    "KeyValueStore",
    "KlineSource",
    "MarketData",
    "ReportProblems",
    "Stream",
    "WallClock",
]

#: A JSON value as ``json.loads`` returns it (what crosses the database API and the stores).
JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]
#: A market stream: (symbol, interval), e.g. ``("BTCUSDT", "1m")``.
Stream = tuple[str, str]
#: Seconds on a monotonic clock (back-off, timers): ``performance.now()`` in the page.
Clock = Callable[[], float]
#: Seconds since the epoch (candle times, the exchange's clock): ``Date.now()`` in the page.
WallClock = Callable[[], float]
#: ``report_trader_problems(epoch, {trader_id: line | None})``: whether the database stored it.
ReportProblems = Callable[[int, dict[str, str | None]], Awaitable[bool]]
#: ``await call(name, args)``: a database RPC by name (``claim_webhook_deliveries``, …), answering
#: ``(data, None)`` with the decoded answer, or ``(None, error)`` with one line saying why there is
#: none (the database's refusal with its code, ``SG001: lease_not_held: …``, or a network error). It
#: does not raise for either. The webhook driver's (:mod:`signalguard.webhooks`) way to the database:
#: supabase-js's ``rpc`` in the page, supabase-py's in the worker.
CallRpc = Callable[[str, dict[str, JsonValue]], Awaitable[tuple[object, str | None]]]


class KlineSource(Protocol):
    """One ``GET /api/v3/klines`` request (``market.klines.RestKlines`` implements it over HTTP)."""

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        limit: int,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> object:
        """The decoded answer (a list of rows); raise ``market.klines.MarketUnavailable``."""
        ...


class MarketData(KlineSource, Protocol):
    """Binance's kline REST API and combined kline stream: what the feed needs from an exchange."""

    def stream(
        self, names: Sequence[str]
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[str | bytes]]:
        """The combined stream of ``names``: the messages as received.

        Connecting and receiving raise ``market.klines.MarketUnavailable``; the iterator ends when the
        exchange closes the stream normally.
        """
        ...


class KeyValueStore(Protocol):
    """Strings kept across reloads (IndexedDB in the page): where the outbox survives a crash."""

    async def get(self, key: str) -> str | None:
        """The stored value, or None."""
        ...

    async def put(self, key: str, value: str) -> str | None:
        """Store ``value`` durably; an error message, or None."""
        ...


class HttpPoster(Protocol):
    """One HTTP POST to a webhook receiver: the page's ``fetch``, the worker's httpx."""

    async def post(self, url: str, headers: Mapping[str, str], body: str, timeout: float) -> int | str:
        """Post ``body`` (sent as UTF-8) with ``headers``, giving up after ``timeout`` seconds.

        The response's status code, or one line saying why there is none (a network error, the
        time-out, a refusal by the browser). A redirect is not followed: its 3xx is the answer. The
        response's body is not needed.
        """
        ...
