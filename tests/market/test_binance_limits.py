"""Binance's limits kept by the shared code (market/limits.py, RestKlines.request, the feed, the planner).

REST request weight (the header's figure, slowing down before 6,000 a minute, 429/418 with
Retry-After: nothing sent meanwhile), at most 1,024 streams a connection, the planned reconnect before
the 24-hour cut (gapless: the catch-up fills what closed meanwhile), and the region fallback's choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from signalguard.core.backoff import Backoff
from signalguard.core.candles import Candle
from signalguard.core.engine import SignalManager, TraderRecord
from signalguard.core.feed import BINANCE_MAX_STREAMS, STREAMS_PER_CONNECTION, FeedPlanner, Stream
from signalguard.market.feed import MarketFeed
from signalguard.market.klines import MarketUnavailable, exchange_symbols, fetch_history
from signalguard.market.limits import (
    BAN_RETRY_AFTER,
    BINANCE_DATA_REST_URL,
    BINANCE_DATA_STREAM_URL,
    LIMIT_RETRY_AFTER,
    MAX_CONNECTION_AGE,
    RequestWeight,
    region_fallback,
    request_weight,
)
from signalguard.market.testing import FakeMarketData, eventually

M = 60_000
H = 3_600_000
BASE = (int(time.time() * 1000) // H - 3) * H
HISTORY = 70
FAST = Backoff(0.01, 0.05)
BTC: Stream = ("BTCUSDT", "1m")


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro: Awaitable[object], timeout: float = 5.0) -> object:
    async def within() -> object:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(within())


def candle(i: int, stream: Stream = BTC) -> Candle:
    close = 100.0 + (i * 7 % 11)
    return Candle(stream[0], stream[1], BASE + i * M, 100.0, close + 1, 50.0, close, 1.0, True)


def fake() -> FakeMarketData:
    return FakeMarketData(candle(i) for i in range(HISTORY))


# -- the request weight ---------------------------------------------------------------------------


def test_binances_weights() -> None:
    assert request_weight("/api/v3/klines") == 2
    assert request_weight("/api/v3/exchangeInfo") == 20
    assert request_weight("/api/v3/time") == request_weight("/api/v3/ping") == 1


def test_the_weight_is_counted_by_the_minute_and_the_header_wins_when_higher() -> None:
    clock = Clock(600.0)  # the start of a minute
    weight = RequestWeight(clock=clock)
    weight.sent(2)
    weight.sent(20)
    assert weight.used == 22
    assert weight.answered(200, {"x-mbx-used-weight-1m": "1500"}) is None  # other clients on the address
    assert (weight.used, weight.reported) == (1500, 1500)
    weight.answered(200, {"X-MBX-USED-WEIGHT-1M": "10"})  # any case; a lower figure: in flight
    assert (weight.used, weight.reported) == (1500, 10)
    weight.answered(200, {"X-MBX-USED-WEIGHT-1M": "lots"})  # unreadable: ignored
    assert weight.used == 1500
    clock.now = 660.0  # a new minute starts from nothing
    assert weight.used == 0


def test_requests_wait_for_the_next_minute_past_the_threshold() -> None:
    clock = Clock(600.0 + 45.0)
    weight = RequestWeight(clock=clock)
    assert weight.threshold == 4800  # 80 % of 6,000
    weight.answered(200, {"X-MBX-USED-WEIGHT-1M": "4790"})
    assert weight.delay(2) == 0.0
    weight.sent(8)  # 4,798
    assert weight.delay(2) == 0.0  # exactly the threshold
    assert weight.delay(20) == pytest.approx(15.0 + 1.0)  # until 660 s, and the margin
    clock.now = 661.0
    assert weight.delay(20) == 0.0


def test_a_429_or_418_starts_a_ban_as_long_as_retry_after_or_the_default() -> None:
    clock = Clock(1000.0)
    weight = RequestWeight(clock=clock)
    ban = weight.answered(429, {"Retry-After": "37"}, "Too much request weight used.")
    assert ban is not None and (ban.status, ban.until, ban.reason) == (
        429,
        1037.0,
        "Too much request weight used.",
    )
    assert weight.banned_for() == 37.0
    clock.now = 1037.0
    assert weight.banned_for() == 0.0 and weight.ban is None
    assert weight.answered(429, {}) is not None
    assert weight.banned_for() == LIMIT_RETRY_AFTER == 60.0  # the page reads no headers
    assert weight.answered(418, {"retry-after": "soon"}) is not None  # unreadable: the default
    assert weight.banned_for() == BAN_RETRY_AFTER == 120.0
    # A shorter Retry-After never shortens a ban already known.
    weight.answered(429, {"Retry-After": "5"})
    assert weight.banned_for() == 120.0


def test_the_headers_reach_the_limit_through_request() -> None:
    market = fake()
    market.used_weight = 321
    rows = run(fetch_history(market, "BTCUSDT", "1m", 5, int(time.time() * 1000)))
    assert isinstance(rows, list) and len(rows) == 5
    assert market.weight.reported == 321
    assert market.rest_calls == ["/api/v3/klines"]


def test_a_429_sends_nothing_until_retry_after_has_passed() -> None:
    clock = Clock(time.time())
    market = fake()
    market.weight = RequestWeight(clock=clock)
    market.limited = (429, "30")
    with pytest.raises(MarketUnavailable) as caught:
        run(market.klines("BTCUSDT", "1m", limit=2))
    assert caught.value.retry_after == 30.0 and not caught.value.refused
    assert str(caught.value).startswith(
        "klines BTCUSDT 1m: HTTP 429: the market data's request limit was reached (Too much request "
        "weight used.); no request is sent for 30 s (until "
    )
    market.limited = None
    clock.now += 10
    for ask in (market.klines("BTCUSDT", "1m", limit=2), exchange_symbols(market)):
        with pytest.raises(MarketUnavailable, match=r"no request is sent for 20 s") as later:
            run(ask)
        assert later.value.retry_after == 20.0
    assert market.rest_calls == ["/api/v3/klines"]  # nothing more reached the exchange
    clock.now += 20
    run(market.klines("BTCUSDT", "1m", limit=2))
    assert market.rest_calls == ["/api/v3/klines", "/api/v3/klines"]


def test_a_418_says_the_address_is_banned() -> None:
    market = fake()
    market.limited = (418, "7200")
    with pytest.raises(
        MarketUnavailable, match=r"HTTP 418: the market data has banned this address"
    ) as caught:
        run(market.klines("BTCUSDT", "1m", limit=2))
    assert caught.value.retry_after == pytest.approx(7200.0, abs=1.0)


def test_a_request_near_the_limit_waits_for_the_next_minute() -> None:
    minute_end = (int(time.time()) // 60 + 5) * 60.0
    clock = Clock(minute_end - 0.05)
    market = fake()
    market.weight = RequestWeight(clock=clock, margin=0.0)
    market.used_weight = 4799  # other clients on the address used most of the minute
    run(market.klines("BTCUSDT", "1m", limit=2))
    assert market.weight.waited == 0.0
    started = time.monotonic()
    run(market.klines("BTCUSDT", "1m", limit=2))
    assert market.weight.waited == pytest.approx(0.05)
    assert time.monotonic() - started >= 0.04
    assert market.rest_calls == ["/api/v3/klines", "/api/v3/klines"]


# -- streams per connection -----------------------------------------------------------------------


def test_connections_never_name_more_than_binances_1024_streams() -> None:
    streams = [(f"S{i}USDT", "1m") for i in range(2500)]
    planner = FeedPlanner()
    planner.watch(streams)
    groups = planner.connections()
    assert STREAMS_PER_CONNECTION == 200 <= BINANCE_MAX_STREAMS == 1024
    assert [len(g) for g in groups] == [200] * 12 + [100]
    assert [s for g in groups for s in g] == streams  # each once, in order
    wide = FeedPlanner(per_connection=5000)  # asked for more than Binance allows: 1,024
    wide.watch(streams)
    assert [len(g) for g in wide.connections()] == [1024, 1024, 452]


def test_a_retry_waits_for_the_exchanges_retry_after() -> None:
    planner = FeedPlanner(backoff=Backoff(1.0, 5.0))
    planner.watch([BTC])
    assert planner.refused(BTC, "x", 100.0).retry_at == 101.0
    assert planner.refused(BTC, "x", 100.0, not_before=60.0).retry_at == 160.0


# -- the feed: a planned reconnect, a rate limit --------------------------------------------------


def trader() -> TraderRecord:
    return TraderRecord(
        str(uuid.uuid4()),
        "close above SMA(2)",
        {
            "version": 1,
            "symbols": ["BTCUSDT"],
            "interval": "1m",
            "conditions": [{"indicator": "close_vs_sma", "period": 2, "op": ">"}],
        },
    )


class Rig:
    def __init__(self, market: FakeMarketData, *, max_connection_age: float = MAX_CONNECTION_AGE) -> None:
        self.market = market
        self.manager = SignalManager(str(uuid.uuid4()))
        self.states: list[tuple[str, str]] = []
        self.feed = MarketFeed(
            market,
            self.manager,
            lambda: None,
            on_state=lambda state, text: self.states.append((state, text)),
            backoff=FAST,
            max_connection_age=max_connection_age,
        )
        self.feed.need(self.manager.set_traders([trader()]))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        task = asyncio.create_task(self.feed.run())
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def bounded(scenario: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    def test() -> None:
        run(scenario(), timeout=10.0)

    test.__doc__ = scenario.__doc__
    return test


def test_the_default_age_is_under_binances_24_hours() -> None:
    assert 23 * 3600 <= MAX_CONNECTION_AGE == 23.5 * 3600 < 24 * 3600


@bounded
async def test_a_connection_is_made_anew_before_its_age_limit_without_a_gap() -> None:
    """The planned reconnect: no failure, no back-off; the candles closed meanwhile come by REST."""
    market = fake()
    rig = Rig(market, max_connection_age=0.5)
    async with rig.running():
        await eventually(lambda: market.connected.is_set() and rig.feed.pending_warmups == 0, what="warm")
        market.send(candle(HISTORY))
        await eventually(lambda: rig.feed.candles == 1, what="one live candle")
        # Two candles close while the connection is being made anew: REST has them, the stream not.
        market.add(candle(HISTORY + 1))
        market.add(candle(HISTORY + 2))
        await eventually(lambda: rig.feed.planned_reconnects >= 1 and market.connected.is_set(), what="anew")
        await eventually(lambda: rig.feed.gap_candles == 2, what="the gap filled")
        assert rig.feed.candles == 3
        assert rig.manager.last_price(*BTC) == candle(HISTORY + 2).close
        market.send(candle(HISTORY + 3))
        await eventually(lambda: rig.feed.candles == 4, what="live again")
        assert rig.feed.gap_candles == 2  # nothing missing before it
        assert all(state != "error" for state, _ in rig.states)
        assert len(market.subscriptions) >= 2
        assert rig.feed.connections == len(market.subscriptions)


@bounded
async def test_a_rate_limit_holds_the_feed_back_for_its_retry_after() -> None:
    """A 429 while verifying: the connection waits Retry-After (1 s), not the 10 ms back-off."""
    market = fake()
    market.limited = (429, "1")
    rig = Rig(market)
    async with rig.running():
        await eventually(lambda: any(state == "error" for state, _ in rig.states), what="the 429")
        started = time.monotonic()
        text = rig.states[-1][1]
        assert "HTTP 429: the market data's request limit was reached" in text
        assert text.endswith("; retrying in 1 s.")
        market.limited = None
        await asyncio.sleep(0.5)
        assert market.rest_calls == ["/api/v3/klines"]  # nothing sent meanwhile
        await eventually(
            lambda: market.connected.is_set() and rig.feed.pending_warmups == 0, what="warm after the wait"
        )
        assert time.monotonic() - started >= 0.5


# -- a region block ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rest", "stream", "expected"),
    [
        (
            "https://api.binance.com",
            "wss://stream.binance.com:9443",
            (BINANCE_DATA_REST_URL, BINANCE_DATA_STREAM_URL),
        ),
        (
            "https://api3.binance.com",
            "wss://stream.binance.com:443",
            (BINANCE_DATA_REST_URL, BINANCE_DATA_STREAM_URL),
        ),
        # A URL someone chose is kept: a proxy, a replay, the fallback itself.
        ("https://api.binance.com", "wss://my-proxy.example:9443", (BINANCE_DATA_REST_URL, None)),
        ("https://binance-proxy.example", "wss://stream.binance.com:9443", (None, BINANCE_DATA_STREAM_URL)),
        ("http://127.0.0.1:9443", "ws://127.0.0.1:9443", (None, None)),
        ("https://api.binance.us", "wss://stream.binance.us:9443", (None, None)),
        (BINANCE_DATA_REST_URL, BINANCE_DATA_STREAM_URL, (None, None)),
        ("https://api.binance.com.evil.example", "wss://stream.binance.com.evil.example", (None, None)),
    ],
)
def test_only_binances_own_urls_fall_back(
    rest: str, stream: str, expected: tuple[str | None, str | None]
) -> None:
    assert region_fallback(rest, stream) == expected
