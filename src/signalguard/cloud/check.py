"""``signalguard cloud --check``: is the configured market data usable by the worker? One line a finding.

It reads the worker's own settings (``SIGNALGUARD_MARKET_DATA_URL``, ``SIGNALGUARD_MARKET_STREAM_URL``)
and goes through the worker's own client (:class:`~signalguard.cloud.market.BinanceMarketData`, with its
rate limits and its region fallback), so what it finds is what the worker would meet:

- the REST API answers (``GET /api/v3/time``), and from which endpoint: a 451 of Binance's own
  ``api.binance.com`` switches to its market-data-only endpoint, as the worker does, and says so;
- the exchange's clock against this machine's (the feed judges a candle closed by this machine's clock);
- the number of ``TRADING`` symbols (``GET /api/v3/exchangeInfo``), and that the symbols asked are
  among them;
- klines answer for each symbol asked on the interval asked (``--symbols``/``--interval``; BTCUSDT, or
  the first symbol listed, on 1m by default);
- a stream connection of those symbols opens, and its first message within a few seconds;
- the request weight used this minute (``X-MBX-USED-WEIGHT-1M``).

Exit code: 0 when usable, 1 when not (every problem has its line). Bad settings are the command's
(:mod:`signalguard.cloud.cli`): exit 2 with one line naming the setting.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from signalguard.cloud.market import BinanceMarketData
from signalguard.core.candles import Candle
from signalguard.market.klines import MarketUnavailable, exchange_symbols, fetch_history, stream_name
from signalguard.market.limits import WEIGHT_LIMIT

__all__ = ["CLOCK_TOLERANCE", "CLOCK_WARNING", "Finding", "check_market"]

#: Clock difference (seconds) past which the check warns: a candle is judged closed by this machine's
#: clock, so one far ahead of the exchange's would take a forming candle for a closed one.
CLOCK_WARNING: Final = 1.0
#: Clock difference (seconds) past which the market data is not usable until the clock is fixed.
CLOCK_TOLERANCE: Final = 5.0
#: Symbols checked when none are asked: Binance's busiest, else the first listed.
_DEFAULT_SYMBOL: Final = "BTCUSDT"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the check: ``ok``, ``warn`` (usable, but see), ``FAIL`` (not usable), or ``info``."""

    level: str
    text: str

    @property
    def line(self) -> str:
        """The line printed: the level in a column, then the text."""
        return f"{self.level:<5} {self.text}"


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def check_market(
    market: BinanceMarketData,
    *,
    symbols: Sequence[str] = (),
    interval: str = "1m",
    stream_wait: float = 5.0,
    out: Callable[[Finding], object] = lambda finding: None,
    wall: Callable[[], float] = time.time,
) -> bool:
    """Check ``market`` (see the module documentation), giving each finding to ``out``; whether usable.

    Stops at the first finding that makes the rest meaningless (no answer at all, a region block
    with no fallback, a rate-limit ban).
    """
    failed = False

    def say(level: str, text: str) -> None:
        nonlocal failed
        failed = failed or level == "FAIL"
        out(Finding(level, text))

    # -- reachable, and from which endpoint ------------------------------------------------------
    configured = market.rest_url
    sent = wall()
    try:
        status, body = await market.request("/api/v3/time", {})
    except MarketUnavailable as exc:
        # A rate limit's line says so itself; anything else means no answer came.
        say(
            "FAIL",
            f"REST {configured}: {exc}"
            if exc.retry_after is not None
            else f"REST {configured}: unreachable ({exc})",
        )
        return False
    came = wall()
    if status == 200:
        say("ok", f"REST {market.rest_url}: reachable (GET /api/v3/time in {(came - sent) * 1000:.0f} ms)")
    if market.region_note is not None:
        say("warn", f"region: {market.region_note}")
    elif status == 200:
        say("ok", "region: served from here (no fallback needed)")
    if status == 451:
        say(
            "FAIL",
            f"region: {market.rest_url} answers HTTP 451 (not available from this region); set "
            f"{market.url_setting} to a market data URL that serves it",
        )
        return False
    if status != 200:
        say("FAIL", f"REST {market.rest_url}: GET /api/v3/time answered HTTP {status} {body[:120]}".rstrip())
        return False

    # -- the clock --------------------------------------------------------------------------------
    try:
        server_ms = json.loads(body)["serverTime"]
        if not isinstance(server_ms, int):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        say("FAIL", f"clock: GET /api/v3/time answered no serverTime ({body[:80]!r})")
    else:
        skew = server_ms / 1000 - (sent + came) / 2
        side = "ahead of" if skew > 0 else "behind"
        text = f"clock: the exchange's is {abs(skew):.1f} s {side} this machine's"
        if abs(skew) <= CLOCK_WARNING:
            say("ok", f"{text} (within {CLOCK_WARNING:g} s)")
        elif abs(skew) <= CLOCK_TOLERANCE:
            say("warn", f"{text}: synchronise this machine's clock (NTP)")
        else:
            say(
                "FAIL",
                f"{text}: over {CLOCK_TOLERANCE:g} s, a candle still forming could be taken for closed; "
                "synchronise this machine's clock (NTP)",
            )

    # -- symbols ----------------------------------------------------------------------------------
    try:
        listed = await exchange_symbols(market)
    except MarketUnavailable as exc:
        say("FAIL", f"symbols: {exc}")
        return False
    trading = {info.symbol for info in listed}
    say("ok" if trading else "FAIL", f"symbols: {len(trading):,} TRADING (GET /api/v3/exchangeInfo)")
    wanted = list(dict.fromkeys(symbols))
    if not wanted and trading:
        wanted = [_DEFAULT_SYMBOL if _DEFAULT_SYMBOL in trading else min(trading)]
    for symbol in wanted:
        if symbol not in trading:
            say("FAIL", f"symbol {symbol}: not listed as TRADING by the market data")

    # -- klines -----------------------------------------------------------------------------------
    served: list[str] = []
    for symbol in (s for s in wanted if s in trading):
        try:
            candles: list[Candle] = await fetch_history(market, symbol, interval, 1, int(wall() * 1000))
        except MarketUnavailable as exc:
            # Its line names the stream already ("BTCUSDT 1m: ..." or "klines BTCUSDT 1m: ...").
            text = str(exc)
            say("FAIL", text if text.startswith("klines ") else f"klines {text}")
            if exc.retry_after is not None:
                return False  # rate limited: nothing more is sent
            continue
        if not candles:
            say("FAIL", f"klines {symbol} {interval}: answered, but no closed candle")
            continue
        served.append(symbol)
        say(
            "ok", f"klines {symbol} {interval}: the newest closed candle opened {_utc(candles[-1].open_time)}"
        )

    # -- a stream connection ----------------------------------------------------------------------
    if served:
        names = [stream_name(symbol, interval) for symbol in served]
        where = f"stream {market.stream_url}"
        opened = time.monotonic()
        try:
            async with market.stream(names) as messages:
                try:
                    async with asyncio.timeout(stream_wait):
                        first = await anext(aiter(messages), None)
                except TimeoutError:
                    # Accepted and open: kline updates of a quiet symbol (or a replay) come seldom.
                    say(
                        "ok", f"{where}: connected (no message within {stream_wait:g} s, which can be normal)"
                    )
                else:
                    if first is None:
                        say("FAIL", f"{where}: the market data closed the connection at once")
                    else:
                        took = time.monotonic() - opened
                        say(
                            "ok",
                            f"{where}: connected, first message after {took:.1f} s ({len(names)} streams)",
                        )
        except MarketUnavailable as exc:
            say("FAIL", f"{where}: {exc}")

    # -- the request weight -----------------------------------------------------------------------
    weight = market.weight
    if weight.reported is not None:
        say(
            "info",
            f"request weight: {weight.reported:,} of {WEIGHT_LIMIT:,} used this minute "
            "(X-MBX-USED-WEIGHT-1M)",
        )
    else:
        say(
            "info",
            f"request weight: {weight.used:,} counted here (the market data sends no X-MBX-USED-WEIGHT-1M)",
        )
    return not failed
