"""The worker's market client (cloud/market.py) within Binance's rules, and ``signalguard cloud --check``.

Against the replay server on 127.0.0.1 (its weight header, its refuse() switch) and small websockets
servers for ping/pong; no stack, no internet. A 451 from Binance's own URL falls back to the
market-data-only endpoint: here a second replay stands in for it (the fallback URLs are injectable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from signalguard.cloud import cli
from signalguard.cloud.check import check_market
from signalguard.cloud.config import Timings, derive_stream_url
from signalguard.cloud.market import BinanceMarketData
from signalguard.market.klines import MarketUnavailable, fetch_history
from signalguard.market.limits import MAX_CONNECTION_AGE
from signalguard.replay.server import ReplayServer, running_replay
from signalguard.replay.synthetic import generate

SERIES = generate(["BTCUSDT", "ETHUSDT"], candles=300, seed=7).series


@contextlib.asynccontextmanager
async def client(rest: str, stream: str, **options: object) -> AsyncIterator[BinanceMarketData]:
    market = BinanceMarketData(rest, stream, timeout=5.0, **options)  # type: ignore[arg-type]
    try:
        yield market
    finally:
        await market.aclose()


def now_ms() -> int:
    return int(time.time() * 1000)


# -- REST: the weight header, a rate limit ----------------------------------------------------------


async def test_the_weight_header_is_read() -> None:
    async with ReplayServer(SERIES, history=200) as server, client(server.url, server.ws_url) as market:
        candles = await fetch_history(market, "BTCUSDT", "1m", 3, now_ms())
        assert len(candles) == 3
        assert market.weight.reported == server.used_weight == 2


async def test_a_429_is_honoured_with_its_retry_after() -> None:
    async with ReplayServer(SERIES, history=200) as server, client(server.url, server.ws_url) as market:
        server.refuse(429, 37)
        with pytest.raises(MarketUnavailable, match=r"HTTP 429.*no request is sent for 37 s") as caught:
            await market.klines("BTCUSDT", "1m", limit=2)
        assert caught.value.retry_after == pytest.approx(37, abs=1) and not caught.value.refused
        server.refuse(None)
        weight = server.used_weight
        with pytest.raises(MarketUnavailable, match=r"no request is sent for 3[67] s"):
            await market.klines("BTCUSDT", "1m", limit=2)
        assert server.used_weight == weight  # nothing was sent


# -- a region block -------------------------------------------------------------------------------


async def test_a_451_from_binances_own_url_falls_back_once_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ReplayServer(SERIES, history=200) as blocked, ReplayServer(SERIES, history=200) as data_api:
        blocked.refuse(451)
        fallback = (data_api.url, data_api.ws_url)
        async with client(blocked.url, blocked.ws_url, fallback=fallback) as market:
            candles = await fetch_history(market, "BTCUSDT", "1m", 2, now_ms())
            assert len(candles) == 2
            assert (market.rest_url, market.stream_url) == fallback
            assert market.region_note == (
                f"{blocked.url} answers HTTP 451 (not available from this region): using Binance's "
                f"market-data-only {data_api.url} and {data_api.ws_url} instead; set "
                "SIGNALGUARD_MARKET_DATA_URL to choose another"
            )
            async with market.stream(["btcusdt@kline_1m"]):
                pass  # the stream goes to the fallback too
            notes = [r for r in caplog.records if "HTTP 451" in r.getMessage()]
            assert len(notes) == 1 and notes[0].levelname == "WARNING"


async def test_a_451_at_the_stream_handshake_falls_back_too() -> None:
    async with ReplayServer(SERIES, history=200) as blocked, ReplayServer(SERIES, history=200) as data_api:
        blocked.refuse(451)
        async with client(blocked.url, blocked.ws_url, fallback=(None, data_api.ws_url)) as market:
            async with market.stream(["btcusdt@kline_1m"]):
                pass
            assert market.stream_url == data_api.ws_url
            assert market.rest_url == blocked.url  # not Binance's own: kept


async def test_a_custom_url_is_never_replaced_and_its_451_names_the_setting() -> None:
    async with ReplayServer(SERIES, history=200) as server, client(server.url, server.ws_url) as market:
        server.refuse(451)
        with pytest.raises(MarketUnavailable) as caught:
            await market.klines("BTCUSDT", "1m", limit=2)
        assert caught.value.refused
        assert str(caught.value) == (
            "BTCUSDT 1m: the market data is not available from this region (HTTP 451); set "
            "SIGNALGUARD_MARKET_DATA_URL to a market data URL that serves it"
        )
        with pytest.raises(MarketUnavailable, match=r"HTTP 451\); set SIGNALGUARD_MARKET_STREAM_URL"):
            async with market.stream(["btcusdt@kline_1m"]):
                pass
        assert (market.rest_url, market.region_note) == (server.url, None)


def test_the_market_data_only_api_has_its_own_stream_host() -> None:
    assert derive_stream_url("https://data-api.binance.vision") == "wss://data-stream.binance.vision"
    assert derive_stream_url("https://api4.binance.com") == "wss://stream.binance.com:9443"


# -- ping/pong and the connection's age ---------------------------------------------------------------


async def test_the_servers_pings_are_answered() -> None:
    """A server that pings every 50 ms and closes a connection whose pong is 200 ms late."""

    async def later(ws: ServerConnection) -> None:
        await asyncio.sleep(1.0)
        await ws.send("still here")

    async with serve(later, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.2) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        urls = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        async with (
            client(*urls, ping_interval=None) as market,
            market.stream(["btcusdt@kline_1m"]) as messages,
        ):
            assert await anext(aiter(messages)) == "still here"


async def test_a_connection_that_stops_answering_pings_is_dead() -> None:
    done = asyncio.Event()

    async def deaf(ws: ServerConnection) -> None:
        ws.transport.pause_reading()  # it reads nothing more, so it answers no ping
        await done.wait()

    async with serve(deaf, "127.0.0.1", 0, close_timeout=0.1) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        options = {"ping_interval": 0.1, "ping_timeout": 0.2, "stall": 30.0}
        async with client(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", **options) as market:
            started = time.monotonic()
            with pytest.raises(MarketUnavailable) as caught:
                async with market.stream(["btcusdt@kline_1m"]) as messages:
                    await anext(aiter(messages))
            assert str(caught.value) == "stream: no pong within 0.2 s of a ping: the connection is dead"
            assert time.monotonic() - started < 5  # not the 30 s stall
        done.set()


def test_the_worker_defaults() -> None:
    timings = Timings()
    assert timings.stream_max_age == MAX_CONNECTION_AGE == 23.5 * 3600
    assert (timings.stream_ping, timings.stream_ping_timeout) == (20.0, 20.0)


# -- signalguard cloud --check ----------------------------------------------------------------------


def check(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers())
    for name in ("SIGNALGUARD_MARKET_STREAM_URL", "SIGNALGUARD_SUPABASE_URL", "SIGNALGUARD_MACHINE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIGNALGUARD_MARKET_DATA_URL", url)
    args = parser.parse_args(["cloud", "--check", *argv])
    code: int = args.func(args)
    return code


def shown(text: str) -> list[str]:
    """The output with its figures that change run to run masked."""
    text = re.sub(r"\d+ ms", "N ms", text)
    text = re.sub(r"\d+\.\d s", "N.N s", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "DATE UTC", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "HOST", text)
    text = re.sub(r"weight: \d+ of", "weight: N of", text)  # a new minute may start meanwhile
    text = re.sub(r" ahead of | behind ", " ahead of/behind ", text)
    return text.splitlines()


def test_check_against_the_replay(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_replay(SERIES, history=200, partial_updates=30) as server:
        assert check(monkeypatch, server.url, "--symbols", "btcusdt,ETHUSDT") == 0
    out = capsys.readouterr().out
    assert shown(out) == [
        "market data: REST http://HOST, streams ws://HOST",
        "ok    REST http://HOST: reachable (GET /api/v3/time in N ms)",
        "ok    region: served from here (no fallback needed)",
        "ok    clock: the exchange's is N.N s ahead of/behind this machine's (within 1 s)",
        "ok    symbols: 2 TRADING (GET /api/v3/exchangeInfo)",
        "ok    klines BTCUSDT 1m: the newest closed candle opened DATE UTC",
        "ok    klines ETHUSDT 1m: the newest closed candle opened DATE UTC",
        "ok    stream ws://HOST: connected, first message after N.N s (2 streams)",
        "info  request weight: N of 6,000 used this minute (X-MBX-USED-WEIGHT-1M)",
        "usable: the worker can run on this market data",
    ]


def test_check_finds_what_is_not_served(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_replay(SERIES, history=200) as server:
        assert check(monkeypatch, server.url, "--symbols", "BTCUSDT,NOSUCHUSDT", "--interval", "5m") == 1
    lines = shown(capsys.readouterr().out)
    assert "FAIL  symbol NOSUCHUSDT: not listed as TRADING by the market data" in lines
    assert (
        "FAIL  klines BTCUSDT 5m: the market data does not serve this stream (Invalid interval.; HTTP 400)"
    ) in lines or any(line.startswith("FAIL  klines BTCUSDT 5m:") for line in lines)
    assert lines[-1] == "not usable: see the FAIL lines above"


def test_check_names_the_setting_for_a_region_block(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_replay(SERIES, history=200) as server:
        server.refuse(451)
        assert check(monkeypatch, server.url) == 1
    assert shown(capsys.readouterr().out)[1:] == [
        "FAIL  region: http://HOST answers HTTP 451 (not available from this region); set "
        "SIGNALGUARD_MARKET_DATA_URL to a market data URL that serves it",
        "not usable: see the FAIL lines above",
    ]


def test_check_on_a_rate_limit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with running_replay(SERIES, history=200) as server:
        server.refuse(418, 600)
        assert check(monkeypatch, server.url) == 1
    line = shown(capsys.readouterr().out)[1]
    assert line.startswith("FAIL  REST http://HOST: time: HTTP 418: the market data has banned this address")
    assert "no request is sent for 600 s" in line


def test_check_when_nothing_answers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_replay(SERIES, history=200) as server:
        url = server.url  # closed when the block ends: nothing listens there any more
    assert check(monkeypatch, url) == 1
    assert shown(capsys.readouterr().out)[1].startswith(
        "FAIL  REST http://HOST: unreachable (time: ConnectError"
    )


@pytest.mark.parametrize(
    ("env_url", "argv", "line"),
    [
        (
            "ftp://example.org",
            (),
            "signalguard cloud --check: SIGNALGUARD_MARKET_DATA_URL must be a http or https URL with a host, "
            "got 'ftp://example.org'",
        ),
        (
            "http://127.0.0.1:1",
            ("--interval", "7m"),
            "signalguard cloud --check: --interval must be a Binance interval (1m, 5m, 1h, ...), got '7m'",
        ),
        (
            "http://127.0.0.1:1",
            ("--symbols", "BTC/USDT"),
            "signalguard cloud --check: --symbols has a name that is not a symbol: 'BTC/USDT'",
        ),
    ],
)
def test_check_bad_configuration_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env_url: str,
    argv: tuple[str, ...],
    line: str,
) -> None:
    assert check(monkeypatch, env_url, *argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", line + "\n")


def test_check_options_without_check_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers())
    args = parser.parse_args(["cloud", "--symbols", "BTCUSDT"])
    assert args.func(args) == 2
    assert capsys.readouterr().err == "signalguard cloud: --symbols and --interval go with --check\n"


async def test_check_reports_the_region_fallback() -> None:
    async with ReplayServer(SERIES, history=200) as blocked, ReplayServer(SERIES, history=200) as data_api:
        blocked.refuse(451)
        lines: list[str] = []
        async with client(blocked.url, blocked.ws_url, fallback=(data_api.url, data_api.ws_url)) as market:
            usable = await check_market(
                market, stream_wait=0.1, out=lambda finding: lines.append(finding.line)
            )
        assert usable
        assert shown("\n".join(lines))[:2] == [
            "ok    REST http://HOST: reachable (GET /api/v3/time in N ms)",
            "warn  region: http://HOST answers HTTP 451 (not available from this region): using Binance's "
            "market-data-only http://HOST and ws://HOST instead; set SIGNALGUARD_MARKET_DATA_URL to choose "
            "another",
        ]
        assert "ok    klines BTCUSDT 1m: the newest closed candle opened DATE UTC" in shown("\n".join(lines))
