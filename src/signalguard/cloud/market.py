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
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Final, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    WebSocketException,
)

from signalguard.market import feed
from signalguard.market.klines import (
    MAX_LIMIT,
    MarketUnavailable,
    RestAnswer,
    RestKlines,
    fetch_history,
    fetch_range,
    stream_name,
)
from signalguard.market.limits import MarketEndpoints

__all__ = [
    "MAX_LIMIT",
    "BinanceMarketData",
    "MarketData",
    "MarketUnavailable",
    "fetch_history",
    "fetch_range",
    "stream_name",
]

log = logging.getLogger("signalguard.cloud.market")

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
    """:class:`MarketData` for Binance (or anything that speaks its API, such as the replay server).

    Binance's limits, on top of the shared ones (:meth:`~signalguard.market.klines.RestKlines.request`
    reads the request weight and ``Retry-After`` from the headers given here):

    - **region**: when Binance's own ``api.binance.com`` (or its stream host) answers HTTP 451, the
      market-data-only endpoints (:func:`~signalguard.market.klines.region_fallback`) are used from
      then on, said once in the log; a URL that is not Binance's own is never replaced, and its 451
      fails the stream with a line naming ``SIGNALGUARD_MARKET_DATA_URL``;
    - **ping/pong**: the websockets client answers the server's pings itself, and pings every
      ``ping_interval`` seconds: a connection whose pong is ``ping_timeout`` seconds late is dead, and
      the feed reconnects (as after ``stall`` seconds without a message).
    """

    url_setting = "SIGNALGUARD_MARKET_DATA_URL"

    def __init__(
        self,
        rest_url: str,
        stream_url: str,
        *,
        timeout: float = 10.0,
        stall: float = 60.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        fallback: tuple[str | None, str | None] | None = None,
    ) -> None:
        """REST at ``rest_url`` (``https://api.binance.com``), streams at ``stream_url`` (``wss://…:9443``).

        A stream that sends nothing for ``stall`` seconds is treated as dead (Binance sends kline
        updates every 2 s or so). ``fallback``: the (REST, stream) URLs to use after a 451; by default
        Binance's market-data-only endpoints where the URL is Binance's own (tests give others).
        """
        #: Where the market data is, switched once by a 451 (the page's rule too).
        self.endpoints = MarketEndpoints(rest_url, stream_url, self.url_setting, fallback=fallback)
        self._rest = httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout
        self._stall = stall
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout

    @property
    def rest_url(self) -> str:
        """The REST base in use."""
        return self.endpoints.rest

    @property
    def stream_url(self) -> str:
        """The stream base in use."""
        return self.endpoints.stream

    @property
    def region_note(self) -> str | None:
        """One line once Binance's 451 made this switch to the fallback URLs (None: it has not)."""
        return self.endpoints.note

    def _fall_back(self, where: str) -> bool:
        """After a 451 from ``where``: switch (:meth:`MarketEndpoints.fall_back`), said once in the log."""
        before = self.endpoints.note
        changed = self.endpoints.fall_back(where)
        if self.endpoints.note is not None and before is None:
            log.warning("%s", self.endpoints.note)
        return changed

    async def _send(self, path: str, params: dict[str, str | int]) -> RestAnswer:
        try:
            response = await self._rest.get(f"{self.rest_url}{path}", params=params)
        except httpx.HTTPError as exc:
            where = f"{params.get('symbol', '')} {params.get('interval', '')}".strip()
            name = path.rsplit("/", 1)[-1]
            raise MarketUnavailable(f"{name} {where}".strip() + f": {type(exc).__name__}: {exc}") from None
        # 429/418 are Binance's rate limits, 5xx its outages, 400 a request it will not answer.
        return RestAnswer(response.status_code, response.text, response.headers)

    async def get_answer(self, path: str, params: dict[str, str | int]) -> RestAnswer:
        """See :meth:`~signalguard.market.klines.RestKlines.get_answer` (httpx, with the headers)."""
        answer = await self._send(path, params)
        if answer.status == 451 and self._fall_back("REST"):
            answer = await self._send(path, params)
        return answer

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        """See :meth:`~signalguard.market.klines.RestKlines.get` (httpx)."""
        answer = await self.get_answer(path, params)
        return answer.status, answer.body

    async def _connect(self, names: Sequence[str]) -> ClientConnection:
        url = f"{self.stream_url}/stream?streams={'/'.join(names)}"
        return await connect(
            url,
            open_timeout=self._timeout,
            max_size=_MAX_FRAME,
            max_queue=_MAX_QUEUE,
            close_timeout=2,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
        )

    @contextlib.asynccontextmanager
    async def stream(self, names: Sequence[str]) -> AsyncIterator[AsyncIterator[str | bytes]]:
        """See :meth:`MarketData.stream`."""
        try:
            try:
                ws = await self._connect(names)
            except InvalidStatus as exc:
                if exc.response.status_code != 451 or not self._fall_back("stream"):
                    raise
                ws = await self._connect(names)
        except InvalidStatus as exc:
            if exc.response.status_code == 451:
                raise MarketUnavailable(
                    f"stream: {self.stream_url} is not available from this region (HTTP 451); set "
                    "SIGNALGUARD_MARKET_STREAM_URL to a stream URL that serves it"
                ) from None
            raise MarketUnavailable(f"stream: cannot connect: {type(exc).__name__}: {exc}") from None
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
            except ConnectionClosedError as exc:
                if exc.rcvd is None and "ping timeout" in str(exc):
                    raise MarketUnavailable(
                        f"stream: no pong within {self._ping_timeout:g} s of a ping: the connection is dead"
                    ) from None
                raise MarketUnavailable(f"stream: {type(exc).__name__}: {exc}") from None
            except (WebSocketException, OSError) as exc:
                raise MarketUnavailable(f"stream: {type(exc).__name__}: {exc}") from None
            yield message

    async def aclose(self) -> None:
        """See :meth:`MarketData.aclose`."""
        await self._rest.aclose()
