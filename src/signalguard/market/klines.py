"""Klines by REST for the warm-up rule, shared by the browser tab and the cloud worker.

Both executors must feed their engines the same candles, so the requests of the warm-up rule (see
:mod:`signalguard.core.traders`) are built here once: the newest closed candles, paging backwards past
Binance's 1000-row limit and dropping the still-open last row, and the closed candles between two
open times, to fill a gap, and the candles an adopted paper trade missed. The I/O itself stays with
each side behind :class:`KlineSource` (httpx in the worker, the page's ``fetch`` in the tab); nothing
here imports a platform module, so the page ships it with the core.

The symbol list for a symbol picker is fetched here too (:func:`exchange_symbols`, Binance's
``GET /api/v3/exchangeInfo``, and :class:`SymbolDirectory`, which fetches it once and searches it as
the user types), over the same ``get`` of :class:`RestKlines`; reading and ranking it is the core's
(:mod:`signalguard.core.symbols`).

Every request goes through :meth:`RestKlines.request`, which keeps Binance's request-weight limit and
honours its 429/418 answers (see :mod:`signalguard.market.limits`) on both hosts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Final, Protocol

from signalguard.core import safejson
from signalguard.core.candles import Candle, MarketDataError, next_open_time, parse_rest_klines
from signalguard.core.engine import SignalManager
from signalguard.core.ports import KlineSource
from signalguard.core.symbols import SymbolInfo, SymbolListError, parse_exchange_symbols, search_symbols
from signalguard.market.limits import (
    BINANCE_DATA_REST_URL,
    BINANCE_DATA_STREAM_URL,
    Ban,
    RequestWeight,
    region_fallback,
    request_weight,
)

__all__ = [
    "BINANCE_DATA_REST_URL",
    "BINANCE_DATA_STREAM_URL",
    "EXCHANGE_INFO_PATH",
    "MAX_EXCHANGE_INFO",
    "MAX_LIMIT",
    "KlineSource",
    "MarketUnavailable",
    "RestAnswer",
    "RestGet",
    "RestKlines",
    "SymbolDirectory",
    "SymbolInfo",
    "exchange_info_params",
    "exchange_symbols",
    "fetch_history",
    "fetch_range",
    "fill_trade_history",
    "http_refusal",
    "klines_params",
    "region_fallback",
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
    ``retry_after`` (seconds) says the exchange asked for no requests meanwhile (its rate limits): the
    feed waits at least that long before trying again.
    """

    def __init__(self, message: str, *, refused: bool = False, retry_after: float | None = None) -> None:
        """One plain line; ``refused`` for a refusal of the stream itself."""
        super().__init__(message)
        self.refused = refused
        self.retry_after = retry_after


#: HTTP statuses that say "not now" rather than "not this": timeouts and Binance's rate limits.
_TRANSIENT_4XX: Final = frozenset({408, 418, 429})


def _reason(body: str) -> str:
    """The ``msg`` of Binance's error body (``{"code": -1121, "msg": "Invalid symbol."}``), else the body."""
    message = body.strip()[:200]
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("msg"), str):
        message = decoded["msg"][:200]
    return message


def _region(what: str, setting: str | None) -> str:
    """The line of a 451: the region, and the setting that chooses another market data if known."""
    line = f"{what}: the market data is not available from this region (HTTP 451)"
    if setting:
        line += f"; set {setting} to a market data URL that serves it"
    return line


def http_refusal(
    symbol: str, interval: str, status: int, body: str, *, setting: str | None = None
) -> MarketUnavailable:
    """A klines request answered with ``status`` (not 200), as one plain line.

    A 4xx other than the rate limits refuses the stream itself (Binance: ``{"code": -1121, "msg":
    "Invalid symbol."}`` with 400; 451 for a region it does not serve, whose line names ``setting``,
    the host's setting of the market data URL, when given); the rest fail the connection.
    """
    message = _reason(body)
    stream = f"{symbol} {interval}"
    if status == 451:
        return MarketUnavailable(_region(stream, setting), refused=True)
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


@dataclass(frozen=True, slots=True)
class RestAnswer:
    """One answer of the market data: status, body, and the headers the transport can read."""

    status: int
    body: str
    #: Response headers (any case); empty where the transport does not give them (the page's).
    headers: Mapping[str, str] = field(default_factory=dict)


def _what(path: str, params: Mapping[str, str | int]) -> str:
    """What a request asked, in a few words: ``klines BTCUSDT 1m``, ``exchangeInfo``."""
    return " ".join(
        str(p) for p in (path.rsplit("/", 1)[-1], params.get("symbol"), params.get("interval")) if p
    )


def _utc_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


def _ban_error(what: str, ban: Ban, left: float) -> MarketUnavailable:
    """One plain line for a request not sent (or refused) because of the exchange's rate limit."""
    if ban.status == 418:
        why = "HTTP 418: the market data has banned this address for going over its request limit"
    else:
        why = "HTTP 429: the market data's request limit was reached"
    if ban.reason:
        why += f" ({ban.reason})"
    seconds = max(1, round(left))
    return MarketUnavailable(
        f"{what}: {why}; no request is sent for {seconds} s (until {_utc_time(ban.until)})",
        retry_after=left,
    )


class RestKlines:
    """:class:`KlineSource` over one HTTP GET, the same on every host: subclasses implement :meth:`get`.

    The page's ``fetch``, the worker's httpx and the tests' fake answer a status and a body; what a
    status means (a refusal of the stream, or of the connection) and how the body is read is decided
    here once, and so is keeping Binance's rate limits (:meth:`request`). A transport that can read
    response headers implements :meth:`get_answer` too, so that the exchange's own count of the
    request weight (``X-MBX-USED-WEIGHT-1M``) and its ``Retry-After`` are honoured.
    """

    #: The host's setting that names the market data URL, named in a region block's line (the
    #: worker's ``SIGNALGUARD_MARKET_DATA_URL``); None: the line names none.
    url_setting: ClassVar[str | None] = None
    _weight: RequestWeight | None = None

    @property
    def weight(self) -> RequestWeight:
        """The request weight kept for this market data (made on first use; tests may set their own)."""
        if self._weight is None:
            self._weight = RequestWeight()
        return self._weight

    @weight.setter
    def weight(self, value: RequestWeight) -> None:
        self._weight = value

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        """``GET path?params``: the HTTP status and body; :class:`MarketUnavailable` if none came."""
        raise NotImplementedError

    async def get_answer(self, path: str, params: dict[str, str | int]) -> RestAnswer:
        """``GET path?params`` with the headers: override where the transport reads them (else none)."""
        status, body = await self.get(path, params)
        return RestAnswer(status, body)

    async def request(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        """``GET path?params`` within Binance's rate limits: the HTTP status and body.

        Waits for the next minute when this minute's weight nears the limit. Raises
        :class:`MarketUnavailable` (with ``retry_after``) without sending anything while the exchange's
        429/418 asks for no requests, and for a 429/418 answer itself; see
        :mod:`signalguard.market.limits`.
        """
        weight = self.weight
        what = _what(path, params)
        left = weight.banned_for()
        if left > 0 and weight.ban is not None:
            raise _ban_error(what, weight.ban, left)
        cost = request_weight(path)
        wait = weight.delay(cost)
        if wait > 0:
            weight.waited += wait
            await asyncio.sleep(wait)
            left = weight.banned_for()  # a concurrent request may have been refused meanwhile
            if left > 0 and weight.ban is not None:
                raise _ban_error(what, weight.ban, left)
        weight.sent(cost)
        answer = await self.get_answer(path, params)
        limited = answer.status in (429, 418)
        ban = weight.answered(answer.status, answer.headers, _reason(answer.body[:500]) if limited else "")
        if ban is not None:
            raise _ban_error(what, ban, weight.banned_for())
        return answer.status, answer.body

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
        status, body = await self.request(
            "/api/v3/klines", klines_params(symbol, interval, limit, start_time, end_time)
        )
        if status != 200:
            raise http_refusal(symbol, interval, status, body[:2000], setting=self.url_setting)
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


# --- the symbol list --------------------------------------------------------------------------------

#: Binance's exchange information: its symbols, their assets, status and filters.
EXCHANGE_INFO_PATH: Final = "/api/v3/exchangeInfo"
#: Largest exchangeInfo answer read, in characters. Binance's answer for its TRADING symbols without
#: permission sets (what :func:`exchange_symbols` asks for) is a few MB; every symbol with permission
#: sets is several times that, more than the page should decode at once. A larger answer is refused
#: before decoding (the host has read it by then; the bound spares the decoding and the objects).
MAX_EXCHANGE_INFO: Final = 4 * 1024 * 1024


class RestGet(Protocol):
    """One HTTP GET on the market-data service: what :class:`RestKlines` subclasses implement."""

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        """``GET path?params``: the HTTP status and body; :class:`MarketUnavailable` if none came."""
        ...


def exchange_info_params(symbols: Sequence[str] | None, *, trading_only: bool) -> dict[str, str | int]:
    """The query of one ``GET /api/v3/exchangeInfo`` (Binance's parameter names).

    ``symbol=`` for one symbol, ``symbols=["A","B"]`` (compact JSON) for several, neither for all;
    ``symbolStatus=TRADING`` for all with ``trading_only`` (Binance refuses it together with
    ``symbol``/``symbols``, so those are filtered on arrival). ``showPermissionSets=false`` always:
    the account permissions of every symbol are most of Binance's answer, and a picker needs none.
    """
    params: dict[str, str | int] = {}
    if symbols is None:
        if trading_only:
            params["symbolStatus"] = "TRADING"
    elif len(symbols) == 1:
        params["symbol"] = symbols[0]
    else:
        params["symbols"] = json.dumps(list(symbols), separators=(",", ":"))
    params["showPermissionSets"] = "false"
    return params


def _info_refusal(status: int, body: str, setting: str | None = None) -> MarketUnavailable:
    """An exchangeInfo request answered with ``status`` (not 200), as one plain line."""
    message = _reason(body)
    if status == 451:
        return MarketUnavailable(_region("exchangeInfo", setting), refused=True)
    if 400 <= status < 500 and status not in _TRANSIENT_4XX:
        # With symbol(s): Binance's -1121 "Invalid symbol." when one of them is not listed.
        return MarketUnavailable(
            f"exchangeInfo: the market data refused the request ({message or 'no reason given'}; "
            f"HTTP {status})",
            refused=True,
        )
    return MarketUnavailable(f"exchangeInfo: HTTP {status} {message}".rstrip())


async def exchange_symbols(
    market: RestGet,
    *,
    symbols: Sequence[str] | None = None,
    trading_only: bool = True,
    max_chars: int = MAX_EXCHANGE_INFO,
) -> tuple[SymbolInfo, ...]:
    """The symbols the market data lists, sorted by symbol: only ``TRADING`` ones with ``trading_only``.

    One ``GET /api/v3/exchangeInfo`` on ``market`` (any :class:`RestKlines`: the page's, the worker's,
    the tests' fake); ``symbols`` asks for those only (duplicates dropped; none asks nothing). See
    :func:`~signalguard.core.symbols.parse_exchange_symbols` for what is kept. Binance weighs the
    request 20 (a klines request 2): fetch the list once and search it with
    :func:`~signalguard.core.symbols.search_symbols`, not once a keystroke.

    Raises :class:`MarketUnavailable`: ``refused`` for a 4xx other than the rate limits (with
    ``symbols``, one of them is not listed); otherwise for no answer, an HTTP error, an answer over
    ``max_chars`` characters, one that is not JSON or not an exchangeInfo answer.
    """
    wanted = None if symbols is None else list(dict.fromkeys(symbols))
    if wanted is not None and not wanted:
        return ()
    params = exchange_info_params(wanted, trading_only=trading_only)
    # Through the rate limits when the market data keeps them (every RestKlines does).
    if isinstance(market, RestKlines):
        status, body = await market.request(EXCHANGE_INFO_PATH, params)
    else:
        status, body = await market.get(EXCHANGE_INFO_PATH, params)
    if status != 200:
        raise _info_refusal(status, body[:2000], getattr(market, "url_setting", None))
    if len(body) > max_chars:
        raise MarketUnavailable(
            f"exchangeInfo: the answer is too large ({len(body):,} characters; at most {max_chars:,} "
            "are read)"
        )
    try:
        answer = safejson.loads(body)
    except ValueError:
        raise MarketUnavailable("exchangeInfo: the answer is not JSON") from None
    try:
        return parse_exchange_symbols(answer, trading_only=trading_only)
    except SymbolListError as exc:
        raise MarketUnavailable(f"exchangeInfo: {exc}") from None


class SymbolDirectory:
    """The market data's TRADING symbols for a symbol picker: fetched once, then searched in memory.

    :meth:`names` is what a search field calls on each keystroke, ``(query, limit) -> symbols``: the
    first call fetches the list (:func:`exchange_symbols`), calls meanwhile wait for that one request,
    later ones search the copy kept. A failed fetch leaves :attr:`problem` set and is tried again
    only after ``retry_after`` seconds (by ``clock``), not once a keystroke: Binance weighs the
    request 20. :meth:`forget` drops the copy (the market data URL changed, or a refresh is wanted).
    """

    def __init__(
        self,
        market: RestGet,
        *,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Fetch from ``market`` (a :class:`RestKlines`); ``clock`` is monotonic seconds."""
        self._market = market
        self._retry_after = retry_after
        self._clock = clock
        self._symbols: tuple[SymbolInfo, ...] | None = None
        self._by_name: dict[str, SymbolInfo] = {}
        self._fetching: asyncio.Future[tuple[SymbolInfo, ...] | MarketUnavailable] | None = None
        self._failed_at: float | None = None
        self._generation = 0  # a fetch started before forget() keeps nothing
        #: Why the last fetch failed (one plain line), or None.
        self.problem: str | None = None

    @property
    def loaded(self) -> tuple[SymbolInfo, ...] | None:
        """The symbols kept, sorted by symbol; None before the first successful fetch."""
        return self._symbols

    def get(self, symbol: str) -> SymbolInfo | None:
        """The kept entry of ``symbol`` (its assets, its ``price_precision``), without fetching."""
        return self._by_name.get(symbol)

    def forget(self) -> None:
        """Drop the kept symbols and any failure: the next call fetches again."""
        self._symbols, self._by_name, self._failed_at, self.problem = None, {}, None, None
        self._fetching = None
        self._generation += 1

    async def symbols(self) -> tuple[SymbolInfo, ...]:
        """Every TRADING symbol, sorted by symbol (fetched if not kept); raises :class:`MarketUnavailable`."""
        if self._symbols is not None:
            return self._symbols
        if self._failed_at is not None and self._clock() - self._failed_at < self._retry_after:
            raise MarketUnavailable(self.problem or "exchangeInfo: unavailable")
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
        # Shielded: a caller cancelled (a newer keystroke's search) does not cancel the others' fetch.
        result = await asyncio.shield(self._fetching)
        if isinstance(result, MarketUnavailable):
            raise MarketUnavailable(str(result), refused=result.refused)
        return result

    async def _fetch(self) -> tuple[SymbolInfo, ...] | MarketUnavailable:
        # The failure is returned, not raised: a fetch whose callers were all cancelled would
        # otherwise end with an exception nobody retrieves.
        generation = self._generation
        try:
            found = await exchange_symbols(self._market)
        except MarketUnavailable as exc:
            if generation == self._generation:
                self._fetching, self._failed_at, self.problem = None, self._clock(), str(exc)
            return exc
        except BaseException:
            if generation == self._generation:
                self._fetching = None  # a bug, or the loop closing: the next call starts anew
            raise
        if generation == self._generation:
            self._fetching, self._failed_at, self.problem = None, None, None
            self._symbols, self._by_name = found, {info.symbol: info for info in found}
        return found

    async def search(self, query: str, limit: int = 50) -> tuple[SymbolInfo, ...]:
        """See :func:`~signalguard.core.symbols.search_symbols`; raises :class:`MarketUnavailable`."""
        return search_symbols(await self.symbols(), query, limit)

    async def names(self, query: str, limit: int) -> list[str]:
        """The symbols matching ``query``, best first; empty when the list is not available.

        :attr:`problem` then says why.
        """
        try:
            found = await self.search(query, limit)
        except MarketUnavailable:
            return []
        return [info.symbol for info in found]
