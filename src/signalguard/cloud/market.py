"""Market data: Binance's kline REST API and WebSocket streams behind one small interface.

:class:`MarketData` is what the worker needs from an exchange: a page of klines (``GET /api/v3/klines``)
and a combined kline stream (``/stream?streams=btcusdt@kline_1m/…``). :class:`BinanceMarketData`
implements it with httpx and websockets (both come with supabase-py, so the cloud image needs nothing
more); :class:`signalguard.cloud.testing.FakeMarketData` is the in-memory double.

:func:`fetch_history` and :func:`fetch_range` (from :mod:`signalguard.market.klines`, shared with the
browser) build the warm-up rule's requests on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Final, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, InvalidHandshake, WebSocketException

from signalguard.market import feed
from signalguard.market.klines import (
    MAX_LIMIT,
    MarketUnavailable,
    RestKlines,
    fetch_history,
    fetch_range,
    stream_name,
)

__all__ = [
    "MAX_LIMIT",
    "BinanceMarketData",
    "MarketData",
    "MarketUnavailable",
    "fetch_history",
    "fetch_range",
    "stream_name",
]

#: Largest WebSocket frame accepted (a kline event is under 1 KiB; the parser counts larger ones).
_MAX_FRAME: Final = 1 << 20
#: Frames buffered while the worker is busy (warm-up by REST happens with the stream already open).
_MAX_QUEUE: Final = 100_000


class MarketData(feed.MarketData, Protocol):
    """What the worker needs from an exchange.

    The feed's :class:`~signalguard.market.feed.MarketData`, and a way to let its connections go.
    """

    async def aclose(self) -> None:
        """Release connections."""
        ...


class BinanceMarketData(RestKlines):
    """:class:`MarketData` for Binance (or anything that speaks its API, such as the replay server)."""

    def __init__(self, rest_url: str, stream_url: str, *, timeout: float = 10.0, stall: float = 60.0) -> None:
        """REST at ``rest_url`` (``https://api.binance.com``), streams at ``stream_url`` (``wss://…:9443``).

        A stream that sends nothing for ``stall`` seconds is treated as dead (Binance sends kline
        updates every 2 s or so, and pings every few minutes).
        """
        self._rest = httpx.AsyncClient(base_url=rest_url.rstrip("/"), timeout=timeout)
        self._stream_url = stream_url.rstrip("/")
        self._timeout = timeout
        self._stall = stall

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        """See :meth:`~signalguard.market.klines.RestKlines.get` (httpx)."""
        try:
            response = await self._rest.get(path, params=params)
        except httpx.HTTPError as exc:
            where = f"{params.get('symbol', '')} {params.get('interval', '')}".strip()
            raise MarketUnavailable(f"klines {where}: {type(exc).__name__}: {exc}") from None
        # 429/418 are Binance's rate limits, 5xx its outages, 400 a request it will not answer.
        return response.status_code, response.text

    @contextlib.asynccontextmanager
    async def stream(self, names: Sequence[str]) -> AsyncIterator[AsyncIterator[str | bytes]]:
        """See :meth:`MarketData.stream`."""
        url = f"{self._stream_url}/stream?streams={'/'.join(names)}"
        try:
            ws = await connect(
                url, open_timeout=self._timeout, max_size=_MAX_FRAME, max_queue=_MAX_QUEUE, close_timeout=2
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise MarketUnavailable(f"stream: cannot connect: {type(exc).__name__}: {exc}") from None
        messages = self._messages(ws)
        try:
            yield messages
        finally:
            with contextlib.suppress(Exception):
                await messages.aclose()
                await ws.close()

    async def _messages(self, ws: ClientConnection) -> AsyncGenerator[str | bytes, None]:
        while True:
            try:
                async with asyncio.timeout(self._stall):
                    message = await ws.recv()
            except ConnectionClosedOK:
                return
            except TimeoutError:
                raise MarketUnavailable(f"stream: nothing received for {self._stall:.0f} s") from None
            except (WebSocketException, OSError) as exc:
                raise MarketUnavailable(f"stream: {type(exc).__name__}: {exc}") from None
            yield message

    async def aclose(self) -> None:
        """See :meth:`MarketData.aclose`."""
        await self._rest.aclose()
