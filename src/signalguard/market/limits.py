"""Binance's limits on the market data, kept by the shared driver on both hosts (no platform imports).

Binance counts every REST request's *weight* per IP address and per minute (6,000 a minute on
``api.binance.com``; a klines request weighs 2, exchangeInfo 20), and says how much of the current
minute is used in the ``X-MBX-USED-WEIGHT-1M`` header of each answer. Past the limit it answers HTTP 429
with ``Retry-After`` (seconds); a client that keeps sending after a 429 is banned with HTTP 418, for
2 minutes at first and for longer with each repeat. :class:`RequestWeight` is what
:meth:`signalguard.market.klines.RestKlines.request` asks before each request and tells after it:

- it counts the weight of the requests it sends this minute, and takes the header's figure (which
  counts every client on the address) when the transport gives headers (the worker's httpx does; the
  page's ``fetch`` does not, so the page counts its own requests only);
- past :data:`SLOW_DOWN_AT` of the limit it holds requests back until the next minute starts, so the
  limit itself is never reached by this client alone;
- after a 429 or 418 it sends nothing until ``Retry-After`` has passed (a default when the header is
  not readable): each request meanwhile fails at once with that reason, never reaching the exchange.

Stream connections have limits too: at most 1,024 streams a connection (the feed planner's
:data:`signalguard.core.feed.BINANCE_MAX_STREAMS`), and a connection lives at most 24 hours (the feed
reconnects after :data:`MAX_CONNECTION_AGE`).

Where Binance does not serve a region, ``api.binance.com`` answers HTTP 451; its market-data-only
endpoints serve the same public market data (:func:`region_fallback`). This module imports only the
standard library, so the worker's configuration reads these constants without loading the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "BAN_RETRY_AFTER",
    "BINANCE_DATA_REST_URL",
    "BINANCE_DATA_STREAM_URL",
    "BINANCE_REST_URL",
    "BINANCE_STREAM_URL",
    "LIMIT_RETRY_AFTER",
    "MAX_CONNECTION_AGE",
    "RETRY_AFTER_HEADER",
    "SLOW_DOWN_AT",
    "WEIGHT_HEADER",
    "WEIGHT_LIMIT",
    "Ban",
    "RequestWeight",
    "derive_stream_url",
    "region_fallback",
    "request_weight",
]

#: Binance's REST request weight a minute per IP address (``REQUEST_WEIGHT`` in exchangeInfo).
WEIGHT_LIMIT: Final = 6000
#: Share of :data:`WEIGHT_LIMIT` past which requests wait for the next minute: the rest is headroom
#: for what is in flight and for other clients on the same address.
SLOW_DOWN_AT: Final = 0.8
#: The header with the weight used in the current minute (header names are case-insensitive).
WEIGHT_HEADER: Final = "x-mbx-used-weight-1m"
#: The header of a 429 or 418 with the seconds to wait.
RETRY_AFTER_HEADER: Final = "retry-after"
#: Seconds to wait after a 429 whose ``Retry-After`` is not readable: the weight counts by the minute.
LIMIT_RETRY_AFTER: Final = 60.0
#: Seconds to wait after a 418 whose ``Retry-After`` is not readable: Binance's shortest ban.
BAN_RETRY_AFTER: Final = 120.0
#: Longest wait taken from a ``Retry-After`` (Binance bans for up to 3 days).
_MAX_RETRY_AFTER: Final = 3 * 24 * 3600.0

#: Seconds a stream connection is kept before a planned reconnect: Binance cuts every connection after
#: 24 hours, and a cut it makes would be noticed only as an error.
MAX_CONNECTION_AGE: Final = 23.5 * 3600

#: Weight of Binance's requests by path (``/api/v3/klines`` weighs 2 whatever its ``limit``).
_WEIGHTS: Final[Mapping[str, int]] = {
    "/api/v3/klines": 2,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/time": 1,
    "/api/v3/ping": 1,
}


def request_weight(path: str) -> int:
    """Binance's weight of one ``GET path`` (2 for a path not known here, as a klines request)."""
    return _WEIGHTS.get(path, 2)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (Binance sends whole seconds); None if absent or not a number."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: Binance does not send one; the default applies
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, _MAX_RETRY_AFTER)


@dataclass(frozen=True, slots=True)
class Ban:
    """The exchange asked for no requests until ``until`` (wall-clock seconds), after ``status``."""

    status: int
    until: float
    #: The exchange's own words, if it gave any (``Too much request weight used...``).
    reason: str


class RequestWeight:
    """The request weight used this minute, and the exchange's ban if any; see the module documentation.

    ``clock`` is wall-clock seconds (Binance's minutes are UTC minutes); ``margin`` seconds are added
    to each wait for the next minute, since this clock and the exchange's may differ a little.
    """

    def __init__(
        self,
        *,
        limit: int = WEIGHT_LIMIT,
        slow_down_at: float = SLOW_DOWN_AT,
        margin: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep ``limit`` a minute, waiting past ``slow_down_at`` of it."""
        self.limit = limit
        self.threshold = int(limit * slow_down_at)
        self.margin = margin
        self.clock = clock
        self._minute = -1
        self._used = 0
        #: The weight the last answer's header said was used (None: no header seen).
        self.reported: int | None = None
        #: The exchange's current ban (None: none, or it has passed).
        self.ban: Ban | None = None
        #: Seconds requests were held back for the next minute, in all.
        self.waited = 0.0

    def _roll(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self._used = minute, 0

    @property
    def used(self) -> int:
        """The weight used in the current minute, as far as known."""
        self._roll(self.clock())
        return self._used

    def banned_for(self) -> float:
        """Seconds the exchange's ban still lasts (0: none)."""
        if self.ban is None:
            return 0.0
        left = self.ban.until - self.clock()
        if left <= 0:
            self.ban = None
            return 0.0
        return left

    def delay(self, weight: int) -> float:
        """Seconds to hold a request of ``weight`` back (0: send it now).

        Until the next minute when it would pass the threshold; a ban is asked with :meth:`banned_for`.
        """
        now = self.clock()
        self._roll(now)
        if self._used + weight <= self.threshold:
            return 0.0
        return (self._minute + 1) * 60 - now + self.margin

    def sent(self, weight: int) -> None:
        """A request of ``weight`` is being sent now."""
        self._roll(self.clock())
        self._used += weight

    def answered(self, status: int, headers: Mapping[str, str], reason: str = "") -> Ban | None:
        """Read an answer's headers (none in the page); after a 429 or 418, the ban it starts."""
        now = self.clock()
        self._roll(now)
        used = _header(headers, WEIGHT_HEADER)
        if used is not None and used.strip().isdigit():
            self.reported = int(used)
            # The header counts every client on the address, so it may be above this count; the
            # count may be above the header's figure by requests still in flight.
            self._used = max(self._used, self.reported)
        if status not in (429, 418):
            return None
        wait = _seconds(_header(headers, RETRY_AFTER_HEADER))
        if wait is None:
            wait = LIMIT_RETRY_AFTER if status == 429 else BAN_RETRY_AFTER
        until = now + wait
        if self.ban is None or until > self.ban.until:
            self.ban = Ban(status, until, reason)
        return self.ban


# --- a region block ----------------------------------------------------------------------------------

#: Binance's own spot API, and its streams: the market data by default.
BINANCE_REST_URL: Final = "https://api.binance.com"
BINANCE_STREAM_URL: Final = "wss://stream.binance.com:9443"
#: Binance's market-data-only REST endpoint: public data (klines, exchangeInfo) only, served where
#: ``api.binance.com`` answers HTTP 451 for some regions.
BINANCE_DATA_REST_URL: Final = "https://data-api.binance.vision"
#: Binance's market-data-only WebSocket endpoint, the streams of ``stream.binance.com``.
BINANCE_DATA_STREAM_URL: Final = "wss://data-stream.binance.vision"
#: Hosts of Binance's own spot REST API and streams: only these are replaced after a 451.
_BINANCE_REST_HOSTS: Final = frozenset(
    {"api.binance.com", "api-gcp.binance.com", "api1.binance.com", "api2.binance.com"}
    | {"api3.binance.com", "api4.binance.com"}
)
_BINANCE_STREAM_HOSTS: Final = frozenset({"stream.binance.com"})


def region_fallback(rest_url: str, stream_url: str) -> tuple[str | None, str | None]:
    """Where to go when Binance answers HTTP 451 (not from this region): REST and stream, each or None.

    Only Binance's own URLs are replaced, by its market-data-only endpoints
    (:data:`BINANCE_DATA_REST_URL`, :data:`BINANCE_DATA_STREAM_URL`); any other URL (a proxy, a
    replay, another exchange's compatible API) was chosen by someone and is kept (None).
    """

    def host(url: str) -> str | None:
        try:
            return urlsplit(url).hostname
        except ValueError:
            return None

    rest = BINANCE_DATA_REST_URL if host(rest_url) in _BINANCE_REST_HOSTS else None
    stream = BINANCE_DATA_STREAM_URL if host(stream_url) in _BINANCE_STREAM_HOSTS else None
    return rest, stream


class MarketEndpoints:
    """The market data's REST and stream URLs, switched once after a 451 to Binance's market-data-only ones.

    One rule for both hosts (the worker's httpx and websockets, the page's ``fetch`` and WebSocket):
    when Binance's own REST API or stream host answers HTTP 451, both are switched together (a region
    Binance blocks on one it blocks on the other), each only when it is Binance's own (a proxy or a
    replay chosen by someone is kept), and only once. :attr:`note` then says what happened and which
    ``setting`` chooses another market data.
    """

    def __init__(
        self,
        rest: str,
        stream: str,
        setting: str,
        *,
        fallback: tuple[str | None, str | None] | None = None,
    ) -> None:
        """Start at ``rest`` and ``stream``; ``fallback`` overrides :func:`region_fallback` (tests)."""
        self.rest = rest.rstrip("/")
        self.stream = stream.rstrip("/")
        self.setting = setting
        self._fallback = region_fallback(self.rest, self.stream) if fallback is None else fallback
        #: One line once a 451 made the switch (None: it has not).
        self.note: str | None = None

    def fall_back(self, where: str) -> bool:
        """After a 451 from ``where`` (``REST`` or ``stream``): switch; whether that one's URL changed."""
        rest, stream = self._fallback
        self._fallback = (None, None)
        if rest is None and stream is None:
            return False
        blocked = self.rest if where == "REST" else self.stream
        changed = rest is not None if where == "REST" else stream is not None
        used = [u for u in (rest, stream) if u is not None]
        self.rest = rest or self.rest
        self.stream = stream or self.stream
        self.note = (
            f"{blocked} answers HTTP 451 (not available from this region): using Binance's "
            f"market-data-only {' and '.join(used)} instead; set {self.setting} to choose another"
        )
        return changed


def derive_stream_url(rest_url: str) -> str:
    """The kline WebSocket base for a REST base: Binance's stream hosts, else the same host as ws(s).

    Binance's own API (``api.binance.com``, ``api1``-``api4``, ``api-gcp``) has its streams at
    ``stream.binance.com:9443``; its market-data-only API (``data-api.binance.vision``, for regions
    ``api.binance.com`` answers 451) at ``data-stream.binance.vision``.
    """
    parts = urlsplit(rest_url)
    binance_rest, _ = region_fallback(rest_url, "")
    if binance_rest is not None:
        return BINANCE_STREAM_URL
    if parts.hostname == urlsplit(BINANCE_DATA_REST_URL).hostname:
        return BINANCE_DATA_STREAM_URL
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
