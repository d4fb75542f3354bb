"""The replay's network side: Binance's REST and WebSocket endpoints over :class:`~.engine.Replay`.

DEVELOPMENT AND TESTS ONLY: it listens on 127.0.0.1. Endpoints, as Binance's:

- ``GET /api/v3/klines?symbol=&interval=&limit=&startTime=&endTime=`` (closed candles only),
  ``GET /api/v3/ping``, ``GET /api/v3/time``;
- ``GET /api/v3/exchangeInfo`` (every symbol served, or ``symbol=``, ``symbols=["A","B"]``,
  ``symbolStatus=``), for a symbol picker: see :meth:`~.engine.Replay.exchange_info`;
- ``/ws/<stream>`` (single events) and ``/stream?streams=<stream>/<stream>`` (``{"stream", "data"}``),
  where a stream is ``<symbol lowercase>@kline_<interval>``. A connection that names an unknown stream
  is closed with code 1008 and the reason. When every stream of a connection has ended, it is closed
  with code 1000. Streams carry events from the moment of connection on (no replay of the past).

Every response carries ``Access-Control-Allow-Origin: *``, because the browser app fetches from
another local origin, and lets a page read the rate-limit headers below.

Binance's limits, for the clients' tests: every REST answer carries ``X-MBX-USED-WEIGHT-1M``, the weight
of this minute's requests by the server's clock (klines 2, exchangeInfo 20, ping and time 1, as
:func:`signalguard.market.limits.request_weight`); the replay itself never enforces a limit.
:meth:`ReplayServer.refuse` makes every REST request, and every stream connection, answer an HTTP status
instead (451 for a region block, 429 or 418 with ``Retry-After``), until it is called with None.

The server's clock is injectable (``clock``, epoch seconds like :func:`time.time`). A test that moves a
fake clock calls :meth:`ReplayServer.poke` (thread-safe) so that the events now due are sent at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, web
from aiohttp.typedefs import Handler

from signalguard.market.limits import request_weight
from signalguard.replay.engine import BinanceError, Emit, Replay
from signalguard.replay.series import Series

__all__ = ["HOST", "Clock", "ReplayServer", "running_replay"]

HOST = "127.0.0.1"
Clock = Callable[[], float]
"""A clock: the current time in epoch seconds (``time.time``, or a fake one in tests)."""

# A wait is cut short this often, so a clock that jumps (a suspended laptop) is noticed soon.
_MAX_WAIT = 1.0

#: Binance's bodies for the statuses :meth:`ReplayServer.refuse` answers (its words, shortened).
_REFUSALS = {
    451: {"code": 0, "msg": "Service unavailable from a restricted location according to 'b. Eligibility'."},
    429: {
        "code": -1003,
        "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.",
    },
    418: {"code": -1003, "msg": "Way too much request weight used; IP banned until further notice."},
}


def _dumps(value: object) -> str:
    # Compact, as Binance sends it.
    return json.dumps(value, separators=(",", ":"))


@dataclass(eq=False)
class _Connection:
    """One WebSocket client: the symbols it still listens to, and its outgoing messages."""

    combined: bool
    streams: dict[str, str]  # symbol -> stream name
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)  # None: close it


class ReplayServer:
    """A Binance-compatible market-data server replaying ``series`` (see :class:`~.engine.Replay`).

    Use ``async with ReplayServer(series) as server:`` or :meth:`start`/:meth:`stop`, then point
    clients at :attr:`url` (REST) and :attr:`ws_url` (streams). ``port=0`` picks a free port.
    """

    def __init__(
        self,
        series: Series,
        *,
        history: int | None = None,
        speed: float = 1.0,
        partial_updates: int | None = None,
        loop: bool = False,
        port: int = 0,
        clock: Clock = time.time,
    ) -> None:
        """Prepare the server; the series is placed in time when it starts (see ``Replay``)."""
        self.series = series
        self._place = functools.partial(
            Replay, series, history=history, speed=speed, partial_updates=partial_updates, loop=loop
        )
        self._place(start_ms=0)  # fail here, not at start, on bad options
        self._port = port
        self._clock = clock
        self._replay: Replay | None = None
        self._runner: web.AppRunner | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._connections: set[_Connection] = set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._refusal: tuple[int, int | None] | None = None
        self._weight_minute = -1
        #: Request weight used in the current minute (the ``X-MBX-USED-WEIGHT-1M`` header's figure).
        self.used_weight = 0

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def replay(self) -> Replay:
        """The running replay (its timeline: ``open_time(index)``, ``history``, ...)."""
        if self._replay is None:
            raise RuntimeError("the replay server is not started")
        return self._replay

    @property
    def url(self) -> str:
        """Base URL for REST, as ``https://api.binance.com`` is for Binance."""
        return f"http://{HOST}:{self._port}"

    @property
    def ws_url(self) -> str:
        """Base URL for streams, as ``wss://stream.binance.com:9443`` is for Binance."""
        return f"ws://{HOST}:{self._port}"

    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    async def start(self) -> None:
        """Place the series in time by the clock, listen, and start streaming."""
        self._loop = asyncio.get_running_loop()
        self._replay = self._place(start_ms=int(self._now_ms()))
        app = web.Application(middlewares=[_preflight, self._limits])
        app.on_response_prepare.append(_allow_any_origin)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/ws/{streams:.+}", self._ws_raw)
        app.router.add_get("/stream", self._ws_combined)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self._port, reuse_address=True).start()
        self._port = self._runner.addresses[0][1]  # the port picked, for port=0
        self._pump_task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop streaming, close every connection (code 1001, going away), and stop listening."""
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        # Concurrently: each close waits for its client's reply.
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"replay stopped") for ws in list(self._sockets))
        )
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._pump_task = None

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def refuse(self, status: int | None, retry_after: int | None = None) -> None:
        """Answer every REST request and stream connection with ``status`` from now on (None: serve again).

        451 as Binance answers a region it does not serve; 429 (over the limit) and 418 (banned) with
        ``Retry-After: retry_after`` seconds when given. Safe to call from another thread.
        """
        if status is not None and status not in _REFUSALS:
            raise ValueError(f"refuse: status must be one of {sorted(_REFUSALS)}, got {status}")
        self._refusal = None if status is None else (status, retry_after)

    @property
    def refusing(self) -> int | None:
        """The status :meth:`refuse` set (None: serving)."""
        return None if self._refusal is None else self._refusal[0]

    def _weigh(self, path: str) -> int:
        """Count a request's weight in the current minute (by the server's clock); the minute's total."""
        minute = int(self._clock() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self.used_weight = minute, 0
        self.used_weight += request_weight(path)
        return self.used_weight

    def _refused(self) -> web.Response | None:
        """The answer :meth:`refuse` asked for, or None."""
        refusal = self._refusal
        if refusal is None:
            return None
        status, retry_after = refusal
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return web.json_response(_REFUSALS[status], status=status, headers=headers, dumps=_dumps)

    # --- streaming ----------------------------------------------------------------------------------

    def poke(self) -> None:
        """Re-read the clock now and send what is due (call after moving a fake clock; thread-safe)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def pump(self) -> int:
        """Send every event due by the clock; return how many (call from the server's event loop)."""
        sent = 0
        for item in self.replay.due(self._now_ms()):
            for conn in list(self._connections):
                stream = conn.streams.get(item.symbol)
                if stream is None:
                    continue
                if isinstance(item, Emit):
                    payload = {"stream": stream, "data": item.payload} if conn.combined else item.payload
                    conn.queue.put_nowait(_dumps(payload))
                    sent += 1
                else:
                    del conn.streams[item.symbol]
                    if not conn.streams:
                        conn.queue.put_nowait(None)
        return sent

    async def _run(self) -> None:
        """Send events as they fall due, until every stream has ended."""
        while True:
            self.pump()
            due = self.replay.next_due_ms()
            if due is None:
                return
            # Cleared before waiting, in the loop: a poke that arrives later still wakes the wait.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(max(due - self._now_ms(), 0) / 1000, _MAX_WAIT))

    # --- HTTP ---------------------------------------------------------------------------------------

    @web.middleware
    async def _limits(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Binance's rate-limit side: the refusal asked for, else the weight header on REST answers."""
        if request.path.startswith("/api/"):
            weight = self._weigh(request.path)
            response = self._refused() or await handler(request)
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(weight)
            return response
        refused = self._refused()
        if refused is not None and refused.status == 451:
            # Binance refuses a stream connection from a region it does not serve before the upgrade.
            return refused
        return await handler(request)

    async def _klines(self, request: web.Request) -> web.Response:
        try:
            rows = self.replay.klines(request.query, self._now_ms())
        except BinanceError as exc:
            return web.json_response(exc.body(), status=400, dumps=_dumps)
        return web.json_response(rows, dumps=_dumps)

    async def _exchange_info(self, request: web.Request) -> web.Response:
        try:
            info = self.replay.exchange_info(request.query, self._now_ms())
        except BinanceError as exc:
            return web.json_response(exc.body(), status=400, dumps=_dumps)
        return web.json_response(info, dumps=_dumps)

    async def _ping(self, _request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, _request: web.Request) -> web.Response:
        # The replay's clock: ahead of the real one when speed > 1, like the candle times.
        return web.json_response({"serverTime": int(self.replay.clock_ms(self._now_ms()))})

    # --- WebSocket ----------------------------------------------------------------------------------

    async def _ws_raw(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, request.match_info["streams"], combined=False)

    async def _ws_combined(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, request.query.get("streams", ""), combined=True)

    def _symbols(self, names: str) -> dict[str, str]:
        """Map ``a@kline_1m/b@kline_1m`` to {symbol: stream}; raise ValueError naming a bad stream."""
        streams: dict[str, str] = {}
        for name in names.split("/"):
            lower, _, interval = name.partition("@kline_")
            symbol = lower.upper()
            # Binance's stream names have the symbol in lower case.
            if lower != lower.lower() or symbol not in self.series.bars:
                raise ValueError(f"unknown stream {name!r:.80}")
            if interval != self.series.interval:
                raise ValueError(f"unknown stream {name!r:.60}: this replay serves {self.series.interval}")
            streams[symbol] = name
        return streams

    async def _serve(self, request: web.Request, names: str, *, combined: bool) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        try:
            streams = self._symbols(names)
        except ValueError as exc:
            await ws.prepare(request)
            reason = str(exc).encode("ascii", "backslashreplace")[:120]  # a close reason has 123 bytes
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason)
            return ws
        # Listen before the handshake completes, so that a client sees every event due after it.
        live = {symbol: name for symbol, name in streams.items() if self.replay.is_live(symbol)}
        conn = _Connection(combined, live)
        self._connections.add(conn)
        self._sockets.add(ws)
        try:
            await ws.prepare(request)
            if not live:  # the replay has already ended for these streams
                await ws.close()
                return ws
            sender = asyncio.create_task(self._send(ws, conn))
            try:
                async for _message in ws:
                    pass  # Binance's SUBSCRIBE requests are not supported; pings are answered by aiohttp
            finally:
                if conn.streams:  # the client left; otherwise the sender is closing: let it finish
                    sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        finally:
            self._connections.discard(conn)
            self._sockets.discard(ws)
        return ws

    @staticmethod
    async def _send(ws: web.WebSocketResponse, conn: _Connection) -> None:
        while (message := await conn.queue.get()) is not None:
            await ws.send_str(message)
        await ws.close()  # every stream has ended


@web.middleware
async def _preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Browsers send one before a cross-origin request with custom headers; allow any.
    if request.method == "OPTIONS":
        headers = {"Access-Control-Allow-Methods": "GET, OPTIONS", "Access-Control-Allow-Headers": "*"}
        return web.Response(status=204, headers=headers)
    return await handler(request)


async def _allow_any_origin(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Access-Control-Allow-Origin"] = "*"
    # A page's fetch may read only the headers named here (the rate limits' of Binance).
    response.headers["Access-Control-Expose-Headers"] = "X-MBX-USED-WEIGHT-1M, Retry-After"


@contextlib.contextmanager
def running_replay(
    series: Series,
    *,
    history: int | None = None,
    speed: float = 1.0,
    partial_updates: int | None = None,
    loop: bool = False,
    port: int = 0,
    clock: Clock = time.time,
) -> Iterator[ReplayServer]:
    """Run a :class:`ReplayServer` in a background thread, for synchronous code such as pytest tests.

    The options are ReplayServer's. From the calling thread use only the server's ``url``, ``ws_url``,
    ``replay`` timeline methods (``open_time``) and :meth:`~ReplayServer.poke`::

        with running_replay(series, clock=fake_clock) as server:
            httpx.get(f"{server.url}/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"})
    """
    server = ReplayServer(
        series,
        history=history,
        speed=speed,
        partial_updates=partial_updates,
        loop=loop,
        port=port,
        clock=clock,
    )
    event_loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(event_loop)
        try:
            event_loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            return
        finally:
            started.set()
        event_loop.run_forever()

    thread = threading.Thread(target=run, name="replay-server", daemon=True)
    thread.start()
    started.wait()
    try:
        if failure:
            raise failure[0]
        yield server
    finally:
        if not failure:
            asyncio.run_coroutine_threadsafe(server.stop(), event_loop).result(timeout=30)
            event_loop.call_soon_threadsafe(event_loop.stop)
        thread.join(timeout=30)
        event_loop.close()
