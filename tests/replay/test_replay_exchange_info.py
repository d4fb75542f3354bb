"""GET /api/v3/exchangeInfo of the replay: Binance's shape, its filters and errors, base and quote
split off by the known quote assets, and the app's own client (market.klines.exchange_symbols) on it.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from replaykit import START, FakeClock

from signalguard.cloud.market import BinanceMarketData
from signalguard.core.symbols import SymbolInfo, search_symbols
from signalguard.market.klines import MarketUnavailable, SymbolDirectory, exchange_symbols
from signalguard.replay.engine import BinanceError, Replay
from signalguard.replay.series import Bar, Series
from signalguard.replay.server import ReplayServer
from signalguard.replay.synthetic import generate

SYMBOLS = ["BTCUSDT", "ETHBTC", "BNBFDUSD", "TUSDT", "XYZ123"]
SERIES = generate(SYMBOLS, candles=200, seed=5).series
START_MS = int(START * 1000)


def info(replay: Replay, now_ms: float = START_MS, **query: str) -> dict[str, Any]:
    return replay.exchange_info(query, now_ms)


def refusal(replay: Replay, **query: str) -> dict[str, object]:
    with pytest.raises(BinanceError) as caught:
        replay.exchange_info(query, START_MS)
    return caught.value.body()


def test_every_symbol_binance_shaped() -> None:
    replay = Replay(SERIES, start_ms=START_MS, history=100)
    answer = info(replay)
    assert answer["timezone"] == "UTC"
    assert answer["serverTime"] == START_MS
    assert answer["rateLimits"] == [] and answer["exchangeFilters"] == []
    assert [s["symbol"] for s in answer["symbols"]] == SYMBOLS  # the series' order
    btc = answer["symbols"][0]
    assert btc == {
        "symbol": "BTCUSDT",
        "status": "TRADING",
        "baseAsset": "BTC",
        "baseAssetPrecision": 8,
        "quoteAsset": "USDT",
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "isSpotTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": btc["filters"][0]["tickSize"],
                "maxPrice": "0.00000000",
                "tickSize": btc["filters"][0]["tickSize"],
            }
        ],
        "permissions": [],
        "permissionSets": [],
    }
    assert [(s["baseAsset"], s["quoteAsset"]) for s in answer["symbols"]] == [
        ("BTC", "USDT"),
        ("ETH", "BTC"),
        ("BNB", "FDUSD"),
        ("T", "USDT"),
        ("XYZ123", ""),  # no known quote asset
    ]
    # The clock is the replay's, as /api/v3/time.
    fast = Replay(SERIES, start_ms=START_MS, history=100, speed=10)
    assert info(fast, START_MS + 1000)["serverTime"] == START_MS + 10_000


def test_tick_size_is_the_series_price_grid() -> None:
    def series(*closes: str) -> Series:
        bars = [Bar(c, c, c, c, "1", "1", 1, "0", "0") for c in closes]
        return Series("1m", {"AAAUSDT": bars})

    ticks = {
        ("42000.01000000", "42000.10000000"): "0.01000000",
        ("42000", "42001"): "1.00000000",
        ("0.00001234", "0.00001235"): "0.00000001",
        ("0.000000001", "0.000000002"): "0.000000001",  # finer than Binance's 8 decimals: kept
        ("7.5", "7.25"): "0.01000000",
    }
    for closes, tick in ticks.items():
        replay = Replay(series(*closes), start_ms=START_MS, history=1)
        (entry,) = info(replay)["symbols"]
        assert entry["filters"][0]["tickSize"] == tick, closes


def test_symbol_and_symbols_filters() -> None:
    replay = Replay(SERIES, start_ms=START_MS, history=100)
    assert [s["symbol"] for s in info(replay, symbol="ETHBTC")["symbols"]] == ["ETHBTC"]
    picked = info(replay, symbols='["XYZ123","BTCUSDT"]')["symbols"]
    assert [s["symbol"] for s in picked] == ["XYZ123", "BTCUSDT"]  # in the order asked
    assert [s["symbol"] for s in info(replay, symbolStatus="TRADING")["symbols"]] == SYMBOLS
    assert info(replay, symbolStatus="HALT")["symbols"] == []
    assert info(replay, symbolStatus="BREAK")["symbols"] == []
    # Accepted, and change nothing: no symbol has permission sets.
    assert info(replay, showPermissionSets="false", permissions="SPOT") == info(replay)


SYMBOLS_RANGE = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'


@pytest.mark.parametrize(
    ("query", "code", "msg"),
    [
        ({"symbol": "DOGEUSDT"}, -1121, "Invalid symbol."),
        ({"symbol": "btcusdt"}, -1121, "Invalid symbol."),
        ({"symbols": '["BTCUSDT","DOGEUSDT"]'}, -1121, "Invalid symbol."),
        ({"symbols": '["BTC-USDT"]'}, -1121, "Invalid symbol."),
        ({"symbols": '["BTCUSDT","BTCUSDT"]'}, -1151, "Symbol is present multiple times in the list."),
        *(
            (
                {"symbols": bad},
                -1100,
                f"Illegal characters found in parameter 'symbols'; legal range is '{SYMBOLS_RANGE}'.",
            )
            for bad in (
                "BTCUSDT",
                '["btcusdt"]',
                '["BTCUSDT", "ETHBTC"]',  # Binance's form has no spaces
                "['BTCUSDT']",
                '["BTCUSDT",]',
                '["' + "A" * 21 + '"]',
                '[["BTCUSDT"]]',
                '{"BTCUSDT":1}',
                '["BTCUSDT"]x',
            )
        ),
        ({"symbols": "[]"}, -1105, "Parameter 'symbols' was empty."),
        ({"symbols": ""}, -1105, "Parameter 'symbols' was empty."),
        ({"symbol": ""}, -1105, "Parameter 'symbol' was empty."),
        ({"symbolStatus": ""}, -1105, "Parameter 'symbolStatus' was empty."),
        ({"symbolStatus": "trading"}, -1122, "Invalid symbolStatus."),
        ({"symbolStatus": "PRE_TRADING"}, -1122, "Invalid symbolStatus."),
        (
            {"symbol": "BTCUSDT", "symbols": '["ETHBTC"]'},
            -1128,
            "Combination of optional parameters invalid.",
        ),
        (
            {"symbol": "BTCUSDT", "symbolStatus": "TRADING"},
            -1128,
            "Combination of optional parameters invalid.",
        ),
        (
            {"symbols": '["BTCUSDT"]', "symbolStatus": "TRADING"},
            -1128,
            "Combination of optional parameters invalid.",
        ),
    ],
)
def test_errors_as_binance(query: dict[str, str], code: int, msg: str) -> None:
    replay = Replay(SERIES, start_ms=START_MS, history=100)
    assert refusal(replay, **query) == {"code": code, "msg": msg}


def test_a_symbol_whose_stream_ended_is_no_longer_trading() -> None:
    series = Series("1m", {"BTCUSDT": SERIES.bars["BTCUSDT"][:20], "ETHBTC": SERIES.bars["ETHBTC"][:30]})
    replay = Replay(series, start_ms=START_MS, history=10, partial_updates=0)
    replay.due(START_MS + 15 * 60_000)  # BTCUSDT's last bar has closed; ETHBTC has bars to come
    assert [(s["symbol"], s["status"]) for s in info(replay)["symbols"]] == [
        ("BTCUSDT", "BREAK"),
        ("ETHBTC", "TRADING"),
    ]
    assert [s["symbol"] for s in info(replay, symbolStatus="BREAK")["symbols"]] == ["BTCUSDT"]
    # Its candles are still served by klines, as Binance serves a delisted symbol's history.
    assert replay.klines({"symbol": "BTCUSDT", "interval": "1m"}, START_MS + 15 * 60_000)
    looping = Replay(series, start_ms=START_MS, history=10, loop=True)
    looping.due(START_MS + 60 * 60_000)
    assert {s["status"] for s in info(looping)["symbols"]} == {"TRADING"}


async def get(server: ReplayServer, query: str) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/api/v3/exchangeInfo{query}") as r:
        return r.status, json.loads(await r.text()), r.headers


async def test_over_http() -> None:
    async with ReplayServer(SERIES, history=100, clock=FakeClock()) as server:
        status, answer, headers = await get(server, "")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Content-Type"].startswith("application/json")
        assert [s["symbol"] for s in answer["symbols"]] == SYMBOLS
        assert answer["serverTime"] == START_MS
        # Binance's documented forms: percent-encoded, and raw brackets and quotes (curl -g).
        status, answer, _ = await get(server, "?symbols=%5B%22ETHBTC%22,%22TUSDT%22%5D")
        assert (status, [s["symbol"] for s in answer["symbols"]]) == (200, ["ETHBTC", "TUSDT"])
        status, answer, _ = await get(server, '?symbols=["BTCUSDT"]')
        assert (status, [s["symbol"] for s in answer["symbols"]]) == (200, ["BTCUSDT"])
        status, answer, headers = await get(server, "?symbol=NOSUCHUSDT")
        assert (status, answer) == (400, {"code": -1121, "msg": "Invalid symbol."})
        assert headers["Access-Control-Allow-Origin"] == "*"
        async with aiohttp.ClientSession() as s, s.options(server.url + "/api/v3/exchangeInfo") as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"


async def test_the_apps_client_on_the_replay() -> None:
    async with ReplayServer(SERIES, history=100, clock=FakeClock()) as server:
        market = BinanceMarketData(server.url, server.ws_url, timeout=5.0)
        try:
            symbols = await exchange_symbols(market)
            assert [(s.symbol, s.base, s.quote, s.status) for s in symbols] == [
                ("BNBFDUSD", "BNB", "FDUSD", "TRADING"),
                ("BTCUSDT", "BTC", "USDT", "TRADING"),
                ("ETHBTC", "ETH", "BTC", "TRADING"),
                ("TUSDT", "T", "USDT", "TRADING"),
                ("XYZ123", "XYZ123", "", "TRADING"),
            ]
            tick = server.replay.exchange_info({"symbol": "BTCUSDT"}, START_MS)["symbols"][0]["filters"][0]
            decimals = len(tick["tickSize"].rstrip("0").partition(".")[2])
            assert symbols[1] == SymbolInfo("BTCUSDT", "BTC", "USDT", "TRADING", decimals)
            picked = await exchange_symbols(market, symbols=["TUSDT", "ETHBTC"])
            assert [s.symbol for s in picked] == ["ETHBTC", "TUSDT"]
            with pytest.raises(MarketUnavailable) as caught:
                await exchange_symbols(market, symbols=["ETHBTC", "NOSUCHUSDT"])
            assert caught.value.refused and "Invalid symbol." in str(caught.value)
            assert [s.symbol for s in search_symbols(symbols, "usdt")] == ["TUSDT", "BTCUSDT"]
            directory = SymbolDirectory(market)
            assert await directory.names("b", 3) == ["BTCUSDT", "BNBFDUSD", "ETHBTC"]
        finally:
            await market.aclose()
