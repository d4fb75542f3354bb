"""The MarketFeed (market/feed.py), branch by branch, with FakeMarketData and a real SignalManager.

Verify, connect, catch up, feed live; a stream the market data refuses fails alone, the others keep
streaming, and it is tried again on the (scaled) back-off schedule; a transient failure fails the
connection, never a stream. The wall clock is the real one (the retry schedule follows it), candles
opened hours ago, so every one of them is closed. ``async def`` scenarios run with asyncio.run,
bounded in time (no pytest-asyncio here).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from signalguard.core.backoff import Backoff
from signalguard.core.candles import Candle
from signalguard.core.engine import CandleRange, SignalManager, TraderRecord
from signalguard.core.feed import Stream
from signalguard.market.feed import MarketFeed
from signalguard.market.testing import FakeMarketData, eventually, kline_event

M = 60_000
H = 3_600_000
#: Whole hours, three of them ago: every candle of the tests has closed.
BASE = (int(time.time() * 1000) // H - 3) * H
HISTORY = 70
FAST = Backoff(0.01, 0.05)
SCENARIO_TIMEOUT = 5.0

OWNER = str(uuid.uuid4())
BTC: Stream = ("BTCUSDT", "1m")
ETH: Stream = ("ETHUSDT", "1m")
BAD: Stream = ("NOSUCHUSDT", "1m")
INVALID_SYMBOL = (400, '{"code":-1121,"msg":"Invalid symbol."}')
BAD_REASON = "NOSUCHUSDT 1m: the market data does not serve this stream (Invalid symbol.; HTTP 400)"


def bounded(scenario: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """An ``async def`` test run with asyncio.run, failing if it takes longer than SCENARIO_TIMEOUT."""

    def test() -> None:
        async def within() -> None:
            await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)

        asyncio.run(within())

    test.__doc__ = scenario.__doc__
    return test


def candle(stream: Stream, i: int) -> Candle:
    """The ``i``-th candle of ``stream`` from BASE (history below HISTORY, live from it)."""
    close = 100.0 + (i * 7 % 11) - (i * 3 % 5)
    return Candle(stream[0], stream[1], BASE + i * M, 100.0, max(100.0, close) + 1, 50.0, close, 1.0, True)


def trader(*symbols: str) -> TraderRecord:
    return TraderRecord(
        str(uuid.uuid4()),
        "close above SMA(2)",
        {
            "version": 1,
            "symbols": list(symbols),
            "interval": "1m",
            "conditions": [{"indicator": "close_vs_sma", "period": 2, "op": ">"}],
        },
    )


def name(stream: Stream) -> str:
    return f"{stream[0].lower()}@kline_{stream[1]}"


class Market(FakeMarketData):
    """The fake, also recording when each REST request came, and refusing some streams' history only."""

    def __init__(self, streams: Sequence[Stream]) -> None:
        super().__init__(candle(s, i) for s in streams for i in range(HISTORY))
        self.times: list[tuple[str, float]] = []
        #: Streams whose warm-up history (more than the one candle a verification asks) is refused.
        self.refuse_history: dict[Stream, tuple[int, str]] = {}

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        self.times.append((str(params["symbol"]), time.monotonic()))
        stream = (str(params["symbol"]), str(params["interval"]))
        if stream in self.refuse_history and int(params["limit"]) > 2:
            self.requests.append({"symbol": stream[0], "interval": stream[1], "limit": params["limit"]})
            return self.refuse_history[stream]
        return await super().get(path, params)

    def asked(self, symbol: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["symbol"] == symbol]

    def gaps(self, symbol: str) -> list[float]:
        """Seconds between this symbol's successive requests."""
        times = [t for s, t in self.times if s == symbol]
        return [b - a for a, b in itertools.pairwise(times)]


class Rig:
    """A MarketFeed over the fake for one trader on ``symbols`` (1m), recording what it reports."""

    def __init__(self, *symbols: str, refuse: dict[Stream, tuple[int, str]] | None = None) -> None:
        streams = [(s, "1m") for s in symbols]
        self.market = Market(streams)
        self.market.refuse.update(refuse or {})
        self.manager = SignalManager(OWNER)
        self.states: list[tuple[str, str]] = []
        self.problems: list[dict[Stream, str]] = []
        self.fed = 0
        self.feed = MarketFeed(
            self.market,
            self.manager,
            self._on_fed,
            on_state=lambda state, text: self.states.append((state, text)),
            on_problems=self.problems.append,
            backoff=FAST,
        )
        self.feed.need(self.manager.set_traders([trader(*symbols)] if symbols else []))

    def _on_fed(self) -> None:
        self.fed += 1

    @property
    def state(self) -> tuple[str, str]:
        return self.states[-1]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        """The feed's run() in a task, cancelled at the end (an error it died of is raised)."""
        task = asyncio.create_task(self.feed.run())
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def warm(self, pending: int = 0) -> None:
        """Wait until the connection opened and its catch-up ended, ``pending`` streams left to warm up."""
        await eventually(
            lambda: self.market.connected.is_set() and self.fed > 0 and self.feed.pending_warmups == pending,
            what="connected and caught up",
        )

    def count_delays(self) -> list[int]:
        """The failures in a row each connection back-off was asked for."""
        asked: list[int] = []
        planned = self.feed.planner.connection_delay

        def delay(failures: int) -> float:
            asked.append(failures)
            return planned(failures)

        self.feed.planner.connection_delay = delay  # type: ignore[method-assign]
        return asked

    async def live(self, *candles: Candle) -> None:
        """Send ``candles`` on the stream and wait until the feed counted that many more."""
        before = self.feed.candles
        for c in candles:
            self.market.send(c)
        await eventually(lambda: self.feed.candles >= before + len(candles), what=f"{len(candles)} fed")


async def settle() -> None:
    """Let whatever the feed would do wrongly happen (a few retry periods of the scaled schedule)."""
    await asyncio.sleep(0.1)


# -- nothing to watch, everything served ---------------------------------------------------------


@bounded
async def test_no_streams_means_no_market_data() -> None:
    rig = Rig()
    async with rig.running() as task:
        await eventually(lambda: rig.states, what="a state")
        await settle()
        assert rig.states == [("off", "No enabled traders: no market data needed.")]
        assert rig.problems == [{}]
        assert not task.done()
    assert rig.market.requests == []
    assert rig.market.subscriptions == []


@bounded
async def test_served_streams_are_verified_connected_and_warmed_up() -> None:
    rig = Rig("BTCUSDT", "ETHUSDT")
    async with rig.running():
        await rig.warm()
        assert rig.feed.pending_warmups == 0
        # One small request each before any connection names them, then the history.
        assert [(r["symbol"], r["limit"]) for r in rig.market.requests] == [
            ("BTCUSDT", 2),
            ("ETHUSDT", 2),
            ("BTCUSDT", 64),
            ("ETHUSDT", 64),
        ]
        assert rig.market.subscriptions == [[name(BTC), name(ETH)]]
        assert rig.feed.connections == 1
        assert rig.manager.last_price(*ETH) == candle(ETH, HISTORY - 1).close  # the engine warmed up
        assert rig.state == ("live", "Market data live: 2 streams, 0 candles.")
        assert rig.states[0][0] == "connecting"
        assert all(p == {} for p in rig.problems)

        await rig.live(candle(BTC, HISTORY), candle(ETH, HISTORY))
        assert rig.feed.candles == 2
        assert rig.feed.gap_candles == 0
        assert rig.manager.last_price(*BTC) == candle(BTC, HISTORY).close
        assert rig.state == ("live", "Market data live: 2 streams, 2 candles.")
        assert rig.feed.describe() == "2 streams, 2 candles"


# -- a stream refused alone ----------------------------------------------------------------------


@bounded
async def test_one_refused_stream_among_good_ones_fails_alone() -> None:
    rig = Rig("BTCUSDT", "ETHUSDT", "NOSUCHUSDT", refuse={BAD: INVALID_SYMBOL})
    async with rig.running():
        await rig.warm(pending=1)
        assert rig.market.subscriptions == [[name(BTC), name(ETH)]]
        reported = rig.problems[-1]
        assert reported == {BAD: BAD_REASON}
        assert "the market data does not serve" in reported[BAD]
        assert "Invalid symbol." in reported[BAD]
        assert rig.feed.pending_warmups == 1  # its history is still wanted, once it is served

        await rig.live(candle(BTC, HISTORY), candle(ETH, HISTORY))
        rig.market.send(candle(BAD, HISTORY))  # a stray event of the refused stream: not fed
        await rig.live(candle(BTC, HISTORY + 1))
        await settle()
        assert rig.feed.candles == 3
        assert rig.state == (
            "live",
            "Market data live: 3 streams, 3 candles; 1 not served (NOSUCHUSDT 1m), retried.",
        )
        assert rig.feed.describe() == "3 streams, 3 candles; 1 not served (NOSUCHUSDT 1m), retried"
        assert all(name(BAD) not in names for names in rig.market.subscriptions)


@bounded
async def test_a_refused_stream_is_reported_while_the_connection_cannot_open() -> None:
    rig = Rig("BTCUSDT", "NOSUCHUSDT", refuse={BAD: INVALID_SYMBOL})
    rig.market.fail_connects = 10**6
    async with rig.running():
        await eventually(lambda: rig.problems and rig.problems[-1], what="the refusal reported")
        assert rig.problems[-1] == {BAD: BAD_REASON}
        await eventually(lambda: rig.state[0] == "error", what="the connection failing")
        assert rig.state == (
            "error",
            "Market data unreachable (stream: cannot connect (fake)); retrying in 0 s.",
        )
        assert rig.market.subscriptions[0] == [name(BTC)]
        assert rig.feed.connections == 0


@bounded
async def test_a_region_block_is_reported_as_such() -> None:
    rig = Rig("BTCUSDT", "NOSUCHUSDT", refuse={BAD: (451, "")})
    async with rig.running():
        await rig.warm(pending=1)
        reason = rig.problems[-1][BAD]
        assert reason == "NOSUCHUSDT 1m: the market data is not available from this region (HTTP 451)"
        assert "region" in reason
        assert rig.market.subscriptions == [[name(BTC)]]


@bounded
async def test_a_refused_stream_is_retried_on_the_schedule_and_joins_when_served() -> None:
    rig = Rig("BTCUSDT", "ETHUSDT", "NOSUCHUSDT", refuse={BAD: INVALID_SYMBOL})
    async with rig.running():
        await rig.warm(pending=1)
        assert rig.problems[-1] == {BAD: BAD_REASON}
        # Retried from the first refusal on, on the schedule: 0.01, 0.02, 0.04, then 0.05 s.
        await eventually(lambda: len(rig.market.asked("NOSUCHUSDT")) >= 6, timeout=1.0, what="retries")
        gaps = rig.market.gaps("NOSUCHUSDT")
        assert all(g >= d - 0.003 for g, d in zip(gaps, [0.01, 0.02, 0.04, 0.05, 0.05], strict=False))
        assert rig.feed.planner.problems == {BAD: BAD_REASON}
        assert rig.market.subscriptions == [[name(BTC), name(ETH)]]
        await rig.live(candle(BTC, HISTORY))

        del rig.market.refuse[BAD]  # served again: the feed regroups, with it
        await eventually(lambda: name(BAD) in rig.market.subscriptions[-1], what="regrouped")
        assert rig.market.subscriptions[-1] == [name(BTC), name(ETH), name(BAD)]
        await eventually(lambda: rig.feed.pending_warmups == 0, what="its warm-up")
        # Retried with what its catch-up asks (its warm-up history), then warmed up in the connection.
        assert [r["limit"] for r in rig.market.asked("NOSUCHUSDT")][-2:] == [64, 64]
        await eventually(lambda: rig.problems[-1] == {}, what="the problem cleared")
        assert rig.feed.planner.problems == {}

        await rig.live(candle(BAD, HISTORY), candle(BTC, HISTORY + 1), candle(ETH, HISTORY))
        assert rig.feed.candles == 4
        assert rig.manager.last_price(*BAD) == candle(BAD, HISTORY).close
        assert rig.state == ("live", "Market data live: 3 streams, 4 candles.")


@bounded
async def test_a_failed_stream_stays_failed_when_the_feed_runs_again() -> None:
    rig = Rig("BTCUSDT", "NOSUCHUSDT", refuse={BAD: INVALID_SYMBOL})
    async with rig.running():
        await rig.warm(pending=1)
    reports = len(rig.problems)
    # Run again (as after a change of traders that keeps both streams): reported at once, not named.
    async with rig.running():
        await eventually(lambda: len(rig.market.subscriptions) == 2 and rig.market.connected.is_set())
        assert rig.problems[reports] == {BAD: BAD_REASON}
        assert rig.market.subscriptions[-1] == [name(BTC)]
        await rig.live(candle(BTC, HISTORY))
        await eventually(lambda: len(rig.market.asked("NOSUCHUSDT")) >= 3, timeout=1.0, what="retries")
        assert rig.feed.planner.problems == {BAD: BAD_REASON}
        assert rig.feed.pending_warmups == 1


@bounded
async def test_every_stream_refused_opens_no_connection() -> None:
    other: Stream = ("OTHERUSDT", "1m")
    rig = Rig("NOSUCHUSDT", "OTHERUSDT", refuse={BAD: INVALID_SYMBOL, other: (451, "")})
    async with rig.running():
        await eventually(lambda: rig.problems and len(rig.problems[-1]) == 2, what="both refused")
        await settle()
        assert rig.market.subscriptions == []
        assert rig.feed.connections == 0
        assert rig.state == (
            "error",
            "Market data: 2 streams, 0 candles; 2 not served (NOSUCHUSDT 1m, OTHERUSDT 1m), retried.",
        )
        assert rig.problems[-1] == {
            BAD: BAD_REASON,
            other: "OTHERUSDT 1m: the market data is not available from this region (HTTP 451)",
        }


@bounded
async def test_a_refusal_of_the_warm_up_history_fails_that_stream_alone() -> None:
    rig = Rig("BTCUSDT", "ETHUSDT")
    rig.market.refuse_history[ETH] = INVALID_SYMBOL
    async with rig.running():
        await rig.warm(pending=1)
        await eventually(lambda: rig.problems[-1], what="the refusal reported")
        assert rig.problems[-1] == {
            ETH: "ETHUSDT 1m: the market data does not serve this stream (Invalid symbol.; HTTP 400)"
        }
        assert rig.market.subscriptions == [[name(BTC), name(ETH)]]  # verified, then refused
        assert rig.feed.pending_warmups == 1  # asked again when it is served again

        rig.market.send(candle(ETH, HISTORY))  # named in the connection, but failed: not fed
        await rig.live(candle(BTC, HISTORY))
        await settle()
        assert rig.feed.candles == 1
        assert rig.manager.last_price(*ETH) is None
        assert "1 not served (ETHUSDT 1m)" in rig.feed.describe()
        # Retried with its history (what failed), not the one-candle probe that passes: it does not
        # look served, so the connection of the others is not made anew every few retries.
        await eventually(lambda: len(rig.market.asked("ETHUSDT")) >= 5, timeout=1.0, what="retries")
        assert all(r["limit"] > 2 for r in rig.market.asked("ETHUSDT")[1:])
        assert rig.market.subscriptions == [[name(BTC), name(ETH)]]


class Flapping(Market):
    """The fake, serving BAD's history on every other request only: the feed regroups again and again."""

    def __init__(self, streams: Sequence[Stream]) -> None:
        super().__init__(streams)
        self.flaps = 0

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        if params["symbol"] == BAD[0]:
            self.flaps += 1
            if self.flaps % 2 == 0:
                self.requests.append({"symbol": BAD[0], "interval": BAD[1], "limit": params["limit"]})
                return INVALID_SYMBOL
        return await super().get(path, params)


@bounded
async def test_a_feed_cancelled_while_it_regroups_stops() -> None:
    # The host cancels the feed (to restart it) at any moment, here while a flapping stream makes it
    # regroup every few milliseconds; it must stop every time, never run on beside its successor.
    for attempt in range(12):
        rig = Rig("BTCUSDT", "NOSUCHUSDT")
        rig.market = rig.feed._market = Flapping([BTC, BAD])  # type: ignore[assignment]
        task = asyncio.create_task(rig.feed.run())
        await asyncio.sleep(0.03 + 0.004 * attempt)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 1.0)
        assert task.done(), f"the feed ran on after it was cancelled (attempt {attempt})"
        opened = len(rig.market.subscriptions)
        await asyncio.sleep(0.02)
        assert len(rig.market.subscriptions) == opened


# -- transient failures: the connection's, never a stream's ---------------------------------------


@bounded
async def test_a_transient_failure_while_verifying_backs_the_connection_off() -> None:
    rig = Rig("BTCUSDT", "ETHUSDT")
    rig.market.rest_down = True
    delays = rig.count_delays()
    async with rig.running():
        await eventually(lambda: len(delays) >= 4, what="four failed attempts")
        assert delays[:4] == [1, 2, 3, 4]
        assert ("error", "Market data unreachable (klines: the fake exchange is down); retrying in 0 s.") in (
            rig.states
        )
        await asyncio.sleep(0.2)
        # Backed off (0.01, 0.02, 0.04, then 0.05 s): a handful of attempts, not a busy loop.
        assert len(rig.market.asked("BTCUSDT")) <= 0.3 / 0.04 + 2
        assert all(g >= 0.035 for g in rig.market.gaps("BTCUSDT")[2:])
        assert rig.market.subscriptions == []
        assert rig.feed.planner.problems == {}

        rig.market.rest_down = False
        await rig.warm()
        assert rig.market.subscriptions == [[name(BTC), name(ETH)]]
        assert rig.feed.pending_warmups == 0
        assert rig.state[0] == "live"
        assert all(p == {} for p in rig.problems)  # no stream was ever marked failed


@bounded
async def test_a_transient_failure_while_retrying_keeps_the_stream_failed_and_reschedules() -> None:
    rig = Rig("BTCUSDT", "NOSUCHUSDT", refuse={BAD: INVALID_SYMBOL})
    async with rig.running():
        await rig.warm(pending=1)
        rig.market.rest_down = True
        started = len(rig.market.asked("NOSUCHUSDT"))
        await asyncio.sleep(0.3)
        retries = len(rig.market.asked("NOSUCHUSDT")) - started
        assert 2 <= retries <= 0.3 / 0.05 + 3  # on the schedule's ceiling, not a busy loop
        assert all(g >= 0.035 for g in rig.market.gaps("NOSUCHUSDT")[started + 2 :])
        assert rig.feed.planner.problems == {BAD: BAD_REASON}  # the reason kept, not the outage's
        assert rig.problems[-1] == {BAD: BAD_REASON}
        await rig.live(candle(BTC, HISTORY))  # the open connection needs no REST
        assert rig.market.subscriptions == [[name(BTC)]]

        rig.market.rest_down = False  # still refused: still failed, still retried
        before = len(rig.market.asked("NOSUCHUSDT"))
        await eventually(lambda: len(rig.market.asked("NOSUCHUSDT")) > before + 1, what="a retry")
        assert rig.feed.planner.problems == {BAD: BAD_REASON}
        assert rig.market.subscriptions == [[name(BTC)]]


# -- the connection's life -----------------------------------------------------------------------


@bounded
async def test_the_connection_backs_off_and_starts_over_once_a_candle_came() -> None:
    rig = Rig("BTCUSDT")
    rig.market.fail_connects = 3
    delays = rig.count_delays()
    async with rig.running():
        await rig.warm()
        assert delays == [1, 2, 3]
        assert len(rig.market.subscriptions) == 4
        assert rig.state[0] == "live"

        rig.market.drop()  # no candle came on this connection: the failures go on counting
        await eventually(lambda: len(rig.market.subscriptions) == 5 and rig.market.connected.is_set())
        assert delays == [1, 2, 3, 4]
        assert ("error", "Market data unreachable (stream: connection reset); retrying in 0 s.") in rig.states

        await rig.live(candle(BTC, HISTORY))
        rig.market.add(candle(BTC, HISTORY + 1))  # closing while disconnected: only REST has them
        rig.market.add(candle(BTC, HISTORY + 2))
        rig.market.close()  # closed normally, after a candle: the next failure is the first
        await eventually(lambda: len(rig.market.subscriptions) == 6 and rig.market.connected.is_set())
        assert delays == [1, 2, 3, 4, 1]
        assert (
            "error",
            "Market data unreachable (the market-data service closed the stream); retrying in 0 s.",
        ) in rig.states
        # The reconnect fetched what it missed, from the candle after the last fed, and fed it.
        await eventually(lambda: rig.feed.gap_candles == 2, what="the missed candles")
        assert rig.market.requests[-1]["start"] == BASE + (HISTORY + 1) * M
        assert rig.manager.last_price(*BTC) == candle(BTC, HISTORY + 2).close
        await rig.live(candle(BTC, HISTORY + 3))
        assert rig.feed.candles == 4


@bounded
async def test_a_gap_is_filled_by_rest_before_the_live_candle() -> None:
    rig = Rig("BTCUSDT", "ETHUSDT")
    async with rig.running():
        await rig.warm()
        await rig.live(candle(BTC, HISTORY))
        for i in range(HISTORY + 1, HISTORY + 4):  # closed, but the stream skipped them
            rig.market.add(candle(BTC, i))
        await rig.live(candle(BTC, HISTORY + 4))
        assert rig.feed.candles == 5
        assert rig.feed.gap_candles == 3
        gap = rig.market.requests[-1]
        assert (gap["symbol"], gap["start"], gap["end"]) == (
            "BTCUSDT",
            BASE + (HISTORY + 1) * M,
            BASE + (HISTORY + 4) * M - 1,
        )
        assert rig.manager.last_price(*BTC) == candle(BTC, HISTORY + 4).close

        # A repeated event, an overlap and a candle still forming are not fed.
        asked = len(rig.market.requests)
        rig.market.send(candle(BTC, HISTORY + 4))
        rig.market.send(candle(BTC, HISTORY + 2))
        rig.market.send(kline_event(candle(BTC, HISTORY + 5), closed=False))
        await rig.live(candle(ETH, HISTORY))  # the other stream is not held up by any of this
        await settle()
        assert (rig.feed.candles, rig.feed.gap_candles) == (6, 3)
        assert len(rig.market.requests) == asked


@bounded
async def test_a_gap_the_exchange_cannot_fill_still_feeds_the_live_candle() -> None:
    rig = Rig("BTCUSDT")
    async with rig.running():
        await rig.warm()
        await rig.live(candle(BTC, HISTORY))
        await rig.live(candle(BTC, HISTORY + 2))  # the exchange has no HISTORY + 1
        gap = rig.market.requests[-1]
        assert (gap["start"], gap["end"]) == (BASE + (HISTORY + 1) * M, BASE + (HISTORY + 2) * M - 1)
        assert (rig.feed.candles, rig.feed.gap_candles) == (2, 0)

        # Partly filled: what there is is fed, the rest asked again, then the candle.
        rig.market.add(candle(BTC, HISTORY + 3))
        await rig.live(candle(BTC, HISTORY + 5))
        assert (rig.feed.candles, rig.feed.gap_candles) == (4, 1)
        assert [r["start"] for r in rig.market.requests[-2:]] == [
            BASE + (HISTORY + 3) * M,
            BASE + (HISTORY + 4) * M,
        ]

        # REST down during a gap: the candle is fed all the same, the connection kept.
        rig.market.rest_down = True
        await rig.live(candle(BTC, HISTORY + 7))
        assert (rig.feed.candles, rig.feed.gap_candles) == (5, 1)
        assert rig.feed.connections == 1
        assert rig.manager.last_price(*BTC) == candle(BTC, HISTORY + 7).close


@bounded
async def test_malformed_messages_are_counted_and_dropped() -> None:
    rig = Rig("BTCUSDT")
    async with rig.running():
        await rig.warm()
        rig.market.send("not json")
        rig.market.send({"stream": name(BTC), "data": {"e": "trade"}})
        await rig.live(candle(BTC, HISTORY))
        assert rig.feed.parser.rejected == 2
        assert rig.feed.candles == 1
        assert rig.feed.describe() == "1 stream, 1 candle, 2 malformed messages dropped"
        assert rig.state == ("live", "Market data live: 1 stream, 1 candle, 2 malformed messages dropped.")
        assert rig.feed.connections == 1  # a malformed message does not fail the connection


@bounded
async def test_fill_trades_asks_nothing_when_no_trade_waits() -> None:
    rig = Rig("BTCUSDT")
    await rig.feed.fill_trades()
    assert rig.market.requests == []
    assert rig.fed == 0


class Waiting(SignalManager):
    """An engine with one adopted trade waiting for the candles it missed (5 of them)."""

    def __init__(self) -> None:
        super().__init__(OWNER)
        self.filled: list[int] = []

    def trade_history_needs(self) -> list[CandleRange]:
        return [] if self.filled else [CandleRange("BTCUSDT", "1m", BASE, BASE + 5 * M)]

    def fill_trade_history(self, symbol: str, interval: str, candles: Sequence[Candle]) -> None:
        self.filled.append(len(candles))


@bounded
async def test_fill_trades_fetches_what_waiting_trades_missed_and_keeps_them_waiting_on_failure() -> None:
    rig = Rig("BTCUSDT")
    manager = rig.feed._manager = Waiting()
    rig.market.rest_down = True
    await rig.feed.fill_trades()  # logged, tried again later: nothing fed, nothing raised
    assert manager.filled == [] and rig.fed == 0
    rig.market.rest_down = False
    await rig.feed.fill_trades()
    assert manager.filled == [5] and rig.fed == 1


@bounded
async def test_an_unexpected_error_in_a_connection_ends_the_feed() -> None:
    rig = Rig("BTCUSDT")

    def broken() -> None:
        raise RuntimeError("a bug in the host's callback")

    rig.feed._on_fed = broken
    with pytest.raises(RuntimeError, match="a bug in the host's callback"):
        await rig.feed.run()
