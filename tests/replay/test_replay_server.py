"""The server against real clients on 127.0.0.1: aiohttp, websockets and httpx."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import httpx
import pytest
import websockets
from replaykit import MINUTE_MS, START, FakeClock, closed, next_json, stream

from signalguard.core.candles import parse_rest_klines, parse_ws_kline
from signalguard.replay.server import ReplayServer, running_replay
from signalguard.replay.synthetic import generate

SERIES = generate(["BTCUSDT", "ETHUSDT"], candles=300, seed=11).series
ANCHOR = int(START * 1000) // MINUTE_MS * MINUTE_MS


async def get(server: ReplayServer, path: str, **params: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, s.get(server.url + path, params=params) as r:
        return r.status, await r.json(), r.headers


async def test_rest_shape_and_cors() -> None:
    clock = FakeClock()
    async with ReplayServer(SERIES, history=200, clock=clock) as server:
        status, rows, headers = await get(server, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=3)
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Content-Type"].startswith("application/json")
        assert [len(r) for r in rows] == [12, 12, 12]
        assert [type(v).__name__ for v in rows[0]] == [
            "int",
            *["str"] * 5,
            "int",
            "str",
            "int",
            "str",
            "str",
            "str",
        ]
        assert rows[-1][0] == ANCHOR - MINUTE_MS and rows[-1][6] == ANCHOR - 1 and rows[-1][11] == "0"
        # The core's own parser accepts them as closed candles at the server's time.
        candles = parse_rest_klines(rows, symbol="BTCUSDT", interval="1m", now_ms=int(START * 1000))
        assert all(c.closed for c in candles)

        assert (await get(server, "/api/v3/ping"))[:2] == (200, {})
        assert (await get(server, "/api/v3/time"))[1] == {"serverTime": int(START * 1000)}
        async with aiohttp.ClientSession() as s:
            async with s.get(server.url + "/api/v3/nothing") as r:
                assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == "*"
            async with s.options(server.url + "/api/v3/klines") as r:
                assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [
        (
            {"interval": "1m"},
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        ),
        (
            {"symbol": "BTCUSDT"},
            -1102,
            "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.",
        ),
        ({"symbol": "DOGEUSDT", "interval": "1m"}, -1121, "Invalid symbol."),
        ({"symbol": "btcusdt", "interval": "1m"}, -1121, "Invalid symbol."),
        ({"symbol": "BTCUSDT", "interval": "7m"}, -1120, "Invalid interval."),
        ({"symbol": "BTCUSDT", "interval": "5m"}, -1120, "Invalid interval: the replay has 1m."),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "limit": "1001"},
            -1130,
            "Data sent for parameter 'limit' is not valid.",
        ),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "limit": "0"},
            -1130,
            "Data sent for parameter 'limit' is not valid.",
        ),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "limit": "-5"},
            -1100,
            "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
        ),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "startTime": "2", "endTime": "1"},
            -1023,
            "Start time is greater than end time.",
        ),
    ],
)
async def test_rest_errors_as_binance(params: dict[str, str], code: int, msg: str) -> None:
    async with ReplayServer(SERIES, clock=FakeClock()) as server:
        status, body, headers = await get(server, "/api/v3/klines", **params)
        assert (status, body) == (400, {"code": code, "msg": msg})
        assert headers["Access-Control-Allow-Origin"] == "*"


async def test_single_stream_with_websockets_client() -> None:
    clock = FakeClock()
    async with (
        ReplayServer(SERIES, history=200, partial_updates=1, clock=clock) as server,
        websockets.connect(f"{server.ws_url}/ws/btcusdt@kline_1m") as ws,
    ):
        clock.advance(10)  # to 22:14:00.25: the candle that opened at 22:13 closes
        server.poke()
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert set(event) == {"e", "E", "s", "k"} and (event["e"], event["s"]) == ("kline", "BTCUSDT")
        assert set(event["k"]) == set("tTsifLochlvnxqVQB")
        k = event["k"]
        assert (k["t"], k["T"], k["i"], k["x"], event["E"]) == (
            ANCHOR,
            ANCHOR + MINUTE_MS - 1,
            "1m",
            True,
            ANCHOR + MINUTE_MS,
        )
        assert k["c"] == SERIES.bars["BTCUSDT"][200].close
        candle = parse_ws_kline(json.dumps(event))  # the core's stream parser agrees
        assert candle.closed and candle.open_time == ANCHOR

        clock.advance(30)  # half-way through the next candle: its unclosed update
        server.poke()
        update = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (update["k"]["t"], update["k"]["x"], update["E"]) == (
            ANCHOR + MINUTE_MS,
            False,
            ANCHOR + MINUTE_MS + 30_000,
        )

        # The closed candle is now served by REST too, identical to the event.
        rows = (await get(server, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=1))[1]
        assert rows == [
            [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"], k["Q"], "0"]
        ]


async def test_combined_stream_with_aiohttp_client() -> None:
    clock = FakeClock()
    async with (
        ReplayServer(SERIES, history=200, partial_updates=0, clock=clock) as server,
        stream(f"{server.ws_url}/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m") as ws,
    ):
        clock.advance(10 + 60)  # two candles close
        server.poke()
        events = [await next_json(ws) for _ in range(4)]
    assert [e["stream"] for e in events] == ["btcusdt@kline_1m", "ethusdt@kline_1m"] * 2
    assert [e["data"]["k"]["t"] for e in events] == [ANCHOR, ANCHOR, ANCHOR + MINUTE_MS, ANCHOR + MINUTE_MS]
    assert all(parse_ws_kline(e).closed for e in events)  # the core accepts the combined form


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/ws/dogeusdt@kline_1m", "unknown stream 'dogeusdt@kline_1m'"),
        ("/ws/BTCUSDT@kline_1m", "unknown stream 'BTCUSDT@kline_1m'"),
        ("/ws/btcusdt@trade", "unknown stream 'btcusdt@trade'"),
        ("/ws/btcusdt@kline_5m", "unknown stream 'btcusdt@kline_5m': this replay serves 1m"),
        ("/stream?streams=btcusdt@kline_1m/nope", "unknown stream 'nope'"),
        ("/stream", "unknown stream ''"),
    ],
)
async def test_unknown_streams_are_closed_with_the_reason(path: str, reason: str) -> None:
    async with ReplayServer(SERIES, clock=FakeClock()) as server, stream(server.ws_url + path) as ws:
        assert await closed(ws) == (1008, reason)


async def test_streams_close_cleanly_at_the_end() -> None:
    clock = FakeClock()
    async with (
        ReplayServer(SERIES, history=298, partial_updates=0, clock=clock) as server,
        stream(f"{server.ws_url}/ws/ethusdt@kline_1m") as ws,
    ):
        clock.advance(600)
        server.poke()
        assert [(await next_json(ws))["k"]["x"] for _ in range(2)] == [True, True]
        assert await closed(ws) == (1000, "")
        # A latecomer is closed at once; REST keeps serving the whole series.
        async with stream(f"{server.ws_url}/ws/ethusdt@kline_1m") as late:
            assert await closed(late) == (1000, "")
        rows = (await get(server, "/api/v3/klines", symbol="ETHUSDT", interval="1m", limit=1000))[1]
        assert len(rows) == 300


async def test_loop_keeps_streaming() -> None:
    clock = FakeClock()
    async with (
        ReplayServer(SERIES, history=298, partial_updates=0, loop=True, clock=clock) as server,
        stream(f"{server.ws_url}/ws/btcusdt@kline_1m") as ws,
    ):
        clock.advance(10 + 4 * 60)
        server.poke()
        closes = [(await next_json(ws))["k"]["c"] for _ in range(5)]
    bars = SERIES.bars["BTCUSDT"]
    assert closes == [bars[298].close, bars[299].close, bars[0].close, bars[1].close, bars[2].close]


async def test_stop_says_going_away() -> None:
    server = ReplayServer(SERIES, clock=FakeClock())
    await server.start()
    async with stream(f"{server.ws_url}/ws/btcusdt@kline_1m") as ws:
        stopping = asyncio.create_task(server.stop())
        assert await closed(ws) == (1001, "replay stopped")
        await stopping


async def test_real_clock_one_second_candles() -> None:
    # The real clock, on 1s candles: each closed candle arrives once its close time has passed.
    one_second = generate(["BTCUSDT"], interval="1s", candles=200, seed=3).series
    async with (
        ReplayServer(one_second, history=100, partial_updates=0) as server,
        stream(f"{server.ws_url}/ws/btcusdt@kline_1s") as ws,
    ):
        first, second = await next_json(ws, timeout=3), await next_json(ws, timeout=3)
        received = time.time() * 1000
    assert second["k"]["t"] == first["k"]["t"] + 1000
    assert second["k"]["T"] < received  # closed in the past by the wall clock
    assert received - second["E"] < 1000  # and sent at the boundary (with room for a loaded machine)


def test_speed_with_the_sync_wrapper() -> None:
    clock = FakeClock()
    with running_replay(SERIES, history=200, speed=60, partial_updates=0, clock=clock) as server:
        clock.advance(10)  # 600 replay-seconds: ten 1m candles close
        rows = httpx.get(f"{server.url}/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"}).json()
        assert len(rows) == 210
        assert rows[-1][0] == ANCHOR + 9 * MINUTE_MS
        assert httpx.get(f"{server.url}/api/v3/time").json()["serverTime"] == int(START * 1000) + 600_000
        assert server.replay.open_time(209) == rows[-1][0]


def test_sync_wrapper_reports_start_failures() -> None:
    with running_replay(SERIES, clock=FakeClock()) as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(OSError), running_replay(SERIES, port=port):
            pass
