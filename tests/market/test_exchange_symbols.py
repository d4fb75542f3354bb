"""The symbol list: exchange_symbols and SymbolDirectory (market/klines.py) over FakeMarketData, and
the core's reading and ranking of it (core/symbols.py): what Binance answers, what it may answer
instead (errors, bad bodies), and the order a symbol picker shows matches in.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from signalguard.core.candles import Candle
from signalguard.core.symbols import (
    QUOTE_ASSETS,
    SymbolInfo,
    SymbolListError,
    normalize_query,
    parse_exchange_symbols,
    price_precision,
    search_symbols,
    split_symbol,
)
from signalguard.market.klines import (
    MAX_EXCHANGE_INFO,
    MarketUnavailable,
    SymbolDirectory,
    exchange_info_params,
    exchange_symbols,
)
from signalguard.market.testing import FakeMarketData

T = TypeVar("T")
H = 3_600_000
BASE = (int(time.time() * 1000) // H - 3) * H


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 5.0)

    return asyncio.run(bounded())


def candle(symbol: str) -> Candle:
    return Candle(symbol, "1m", BASE, 100.0, 101.0, 99.0, 100.5, 10.0, True)


def fake(*symbols: str, listed: dict[str, str] | None = None) -> FakeMarketData:
    market = FakeMarketData(candle(s) for s in symbols)
    market.listed.update(listed or {})
    return market


def binance_entry(
    symbol: str, base: str, quote: str, *, status: str = "TRADING", tick: str = "0.01000000"
) -> dict[str, Any]:
    """One entry as Binance writes it (2024), with every field a picker does not read."""
    return {
        "symbol": symbol,
        "status": status,
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001000",
                "maxQty": "9000.00000000",
                "stepSize": "0.00001000",
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN", "TRD_GRP_004", "TRD_GRP_005"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def answer(*entries: object) -> str:
    return json.dumps(
        {
            "timezone": "UTC",
            "serverTime": 1,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": list(entries),
        }
    )


# --- exchange_symbols ------------------------------------------------------------------------------


def test_the_fakes_symbols_parsed_and_sorted() -> None:
    market = fake("ETHUSDT", "BTCUSDT", listed={"ETHBTC": "TRADING", "LUNAUSDT": "BREAK"})
    symbols = run(exchange_symbols(market))
    assert symbols == (
        SymbolInfo("BTCUSDT", "BTC", "USDT", "TRADING", 2),
        SymbolInfo("ETHBTC", "ETH", "BTC", "TRADING", 2),
        SymbolInfo("ETHUSDT", "ETH", "USDT", "TRADING", 2),
    )
    # Binance filters by status itself, and leaves out the permission sets (most of its answer).
    assert market.info_requests == [{"symbolStatus": "TRADING", "showPermissionSets": "false"}]
    assert market.requests == []  # no klines asked
    with pytest.raises(AttributeError):
        symbols[0].symbol = "X"  # type: ignore[misc]


def test_every_status_on_request() -> None:
    market = fake("BTCUSDT", listed={"LUNAUSDT": "BREAK", "XYZUSDT": "HALT"})
    symbols = run(exchange_symbols(market, trading_only=False))
    assert [(s.symbol, s.status, s.trading) for s in symbols] == [
        ("BTCUSDT", "TRADING", True),
        ("LUNAUSDT", "BREAK", False),
        ("XYZUSDT", "HALT", False),
    ]
    assert market.info_requests == [{"showPermissionSets": "false"}]


def test_trading_is_checked_on_arrival_too() -> None:
    # A server that ignores symbolStatus (an older Binance-compatible one) still gives TRADING only.
    market = fake()
    market.exchange_info = (
        200,
        answer(
            binance_entry("BTCUSDT", "BTC", "USDT"), binance_entry("LUNAUSDT", "LUNA", "USDT", status="BREAK")
        ),
    )
    assert [s.symbol for s in run(exchange_symbols(market))] == ["BTCUSDT"]


def test_symbol_filters() -> None:
    market = fake("BTCUSDT", "ETHUSDT", "BNBUSDT", listed={"LUNAUSDT": "BREAK"})
    assert [s.symbol for s in run(exchange_symbols(market, symbols=["ETHUSDT"]))] == ["ETHUSDT"]
    found = run(exchange_symbols(market, symbols=["ETHUSDT", "BTCUSDT", "ETHUSDT", "LUNAUSDT"]))
    assert [s.symbol for s in found] == ["BTCUSDT", "ETHUSDT"]  # sorted; LUNA does not trade
    assert market.info_requests == [
        {"symbol": "ETHUSDT", "showPermissionSets": "false"},
        # Binance's form: a compact JSON array; duplicates it would refuse (-1151) are dropped.
        {"symbols": '["ETHUSDT","BTCUSDT","LUNAUSDT"]', "showPermissionSets": "false"},
    ]
    assert run(exchange_symbols(market, symbols=[])) == ()
    assert len(market.info_requests) == 2  # nothing to ask


def test_an_unknown_symbol_is_refused() -> None:
    market = fake("BTCUSDT")
    for symbols in (["NOSUCHUSDT"], ["BTCUSDT", "NOSUCHUSDT"]):
        with pytest.raises(MarketUnavailable) as caught:
            run(exchange_symbols(market, symbols=symbols))
        assert caught.value.refused
        assert (
            str(caught.value)
            == "exchangeInfo: the market data refused the request (Invalid symbol.; HTTP 400)"
        )


@pytest.mark.parametrize(
    ("status", "body", "refused", "message"),
    [
        (451, "", True, "exchangeInfo: the market data is not available from this region (HTTP 451)"),
        (
            403,
            "<html>Forbidden</html>",
            True,
            "exchangeInfo: the market data refused the request (<html>Forbidden</html>; HTTP 403)",
        ),
        (400, "", True, "exchangeInfo: the market data refused the request (no reason given; HTTP 400)"),
        (
            429,
            '{"code":-1003,"msg":"Too much request weight used."}',
            False,
            "exchangeInfo: HTTP 429: the market data's request limit was reached (Too much request "
            "weight used.); no request is sent for 60 s (until HH:MM:SS UTC)",
        ),
        (
            418,
            "",
            False,
            "exchangeInfo: HTTP 418: the market data has banned this address for going over its "
            "request limit; no request is sent for 120 s (until HH:MM:SS UTC)",
        ),
        (503, "Service Unavailable", False, "exchangeInfo: HTTP 503 Service Unavailable"),
        (302, "", False, "exchangeInfo: HTTP 302"),
    ],
)
def test_http_errors(status: int, body: str, refused: bool, message: str) -> None:
    market = fake("BTCUSDT")
    market.exchange_info = status, body
    with pytest.raises(MarketUnavailable) as caught:
        run(exchange_symbols(market))
    # The rate limits' lines end with the wall-clock time their wait ends.
    shown = re.sub(r"\d\d:\d\d:\d\d UTC", "HH:MM:SS UTC", str(caught.value))
    assert (caught.value.refused, shown) == (refused, message)


def test_no_answer() -> None:
    market = fake("BTCUSDT")
    market.rest_down = True
    with pytest.raises(MarketUnavailable, match="down"):
        run(exchange_symbols(market))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "exchangeInfo: the answer is not JSON"),
        ("<html>502 Bad Gateway</html>", "exchangeInfo: the answer is not JSON"),
        ('{"symbols": [', "exchangeInfo: the answer is not JSON"),
        ("[" * 100_000 + "]" * 100_000, "exchangeInfo: the answer is not JSON"),  # no RecursionError
        ("9" * 100_000, "exchangeInfo: the answer is not JSON"),  # int() refuses that many digits
        ("[]", "exchangeInfo: expected an object with a symbols array, got an array"),
        ("null", "exchangeInfo: expected an object with a symbols array, got null"),
        ('"symbols"', "exchangeInfo: expected an object with a symbols array, got a string"),
        ("{}", "exchangeInfo: expected a symbols array, got null"),
        ('{"code":-1121,"msg":"Invalid symbol."}', "exchangeInfo: expected a symbols array, got null"),
        ('{"symbols": {"BTCUSDT": {}}}', "exchangeInfo: expected a symbols array, got an object"),
        ('{"symbols": "BTCUSDT"}', "exchangeInfo: expected a symbols array, got a string"),
        (
            '{"symbols": [1, "BTCUSDT", null, [], {}]}',
            "exchangeInfo: no symbol listed is readable (5 listed)",
        ),
        (
            '{"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC"}]}',
            "exchangeInfo: no symbol listed is readable (1 listed)",
        ),
    ],
)
def test_bad_bodies(body: str, message: str) -> None:
    market = fake("BTCUSDT")
    market.exchange_info = 200, body
    with pytest.raises(MarketUnavailable) as caught:
        run(exchange_symbols(market))
    assert (str(caught.value), caught.value.refused) == (message, False)


def test_an_answer_too_large_is_not_decoded() -> None:
    entry = binance_entry("BTCUSDT", "BTC", "USDT")
    body = answer(*[entry] * (5_000_000 // len(json.dumps(entry)) + 1))  # valid, and over 5 MB
    assert len(body) > 5_000_000 > MAX_EXCHANGE_INFO
    market = fake()
    market.exchange_info = 200, body
    with pytest.raises(
        MarketUnavailable, match=r"^exchangeInfo: the answer is too large \(5,0\d\d,\d\d\d characters"
    ):
        run(exchange_symbols(market))
    # The bound moves for a host that knows better.
    assert [s.symbol for s in run(exchange_symbols(market, max_chars=len(body)))] == ["BTCUSDT"]


def test_a_binance_answer() -> None:
    market = fake()
    market.exchange_info = (
        200,
        answer(
            binance_entry("ETHBTC", "ETH", "BTC", tick="0.00001000"),
            binance_entry("BTCUSDT", "BTC", "USDT"),
            binance_entry("SHIBUSDT", "SHIB", "USDT", tick="0.00000001"),
            binance_entry("BTCTRY", "BTC", "TRY", tick="1.00000000"),
            binance_entry("BTCUSDT", "XXX", "YYY"),  # listed twice: the first is kept
        ),
    )
    assert run(exchange_symbols(market)) == (
        SymbolInfo("BTCTRY", "BTC", "TRY", "TRADING", 0),
        SymbolInfo("BTCUSDT", "BTC", "USDT", "TRADING", 2),
        SymbolInfo("ETHBTC", "ETH", "BTC", "TRADING", 5),
        SymbolInfo("SHIBUSDT", "SHIB", "USDT", "TRADING", 8),
    )


def test_entries_the_app_cannot_use_are_left_out() -> None:
    good = binance_entry("BTCUSDT", "BTC", "USDT")
    unusable = [
        "BTCUSDT",
        None,
        {**good, "symbol": "btcusdt"},  # the trader definitions' symbols are upper case
        {**good, "symbol": "币安人生USDT", "baseAsset": "币安人生"},
        {**good, "symbol": "BTC-USDT"},
        {**good, "symbol": "X"},
        {**good, "symbol": "A" * 21},
        {**good, "symbol": 1},
        {**good, "baseAsset": None},
        {**good, "quoteAsset": ["USDT"]},
        {**good, "status": True},
        {**good, "status": "T" * 10_000},
        {**good, "baseAsset": "B" * 21},
    ]
    assert parse_exchange_symbols({"symbols": [*unusable, good]}) == (
        SymbolInfo("BTCUSDT", "BTC", "USDT", "TRADING", 2),
    )
    with pytest.raises(SymbolListError, match=r"no symbol listed is readable \(13 listed\)"):
        parse_exchange_symbols({"symbols": unusable})
    # An empty list is an answer (nothing matches symbolStatus), not an error.
    assert parse_exchange_symbols({"symbols": []}) == ()
    assert parse_exchange_symbols({"symbols": [{**good, "status": "BREAK"}]}) == ()


@pytest.mark.parametrize(
    ("filters", "precision"),
    [
        ([{"filterType": "PRICE_FILTER", "tickSize": "0.01000000"}], 2),
        ([{"filterType": "PRICE_FILTER", "tickSize": "0.00000001"}], 8),
        ([{"filterType": "PRICE_FILTER", "tickSize": "0.5"}], 1),
        ([{"filterType": "PRICE_FILTER", "tickSize": "1.00000000"}], 0),
        ([{"filterType": "PRICE_FILTER", "tickSize": "10"}], 0),
        (
            [
                {"filterType": "LOT_SIZE", "stepSize": "0.1"},
                {"filterType": "PRICE_FILTER", "tickSize": "0.001"},
            ],
            3,
        ),
        ([{"filterType": "PRICE_FILTER", "tickSize": "0.00000000"}], None),  # the filter is off
        ([{"filterType": "PRICE_FILTER", "tickSize": "1e-8"}], None),
        ([{"filterType": "PRICE_FILTER", "tickSize": "-0.01"}], None),
        ([{"filterType": "PRICE_FILTER", "tickSize": "NaN"}], None),
        ([{"filterType": "PRICE_FILTER", "tickSize": 0.01}], None),
        ([{"filterType": "PRICE_FILTER", "tickSize": "0." + "0" * 30 + "1"}], None),
        ([{"filterType": "PRICE_FILTER"}], None),
        ([{"filterType": "LOT_SIZE", "stepSize": "0.1"}], None),
        ([], None),
        (None, None),
        ({"PRICE_FILTER": {"tickSize": "0.01"}}, None),
        (["PRICE_FILTER"], None),
    ],
)
def test_price_precision(filters: object, precision: int | None) -> None:
    assert price_precision(filters) == precision
    entry = {**binance_entry("BTCUSDT", "BTC", "USDT"), "filters": filters}
    assert parse_exchange_symbols({"symbols": [entry]})[0].price_precision == precision


def test_request_params() -> None:
    assert exchange_info_params(None, trading_only=True) == {
        "symbolStatus": "TRADING",
        "showPermissionSets": "false",
    }
    assert exchange_info_params(None, trading_only=False) == {"showPermissionSets": "false"}
    # Binance refuses symbolStatus together with symbol(s): those are filtered on arrival.
    assert exchange_info_params(["A1"], trading_only=True) == {"symbol": "A1", "showPermissionSets": "false"}
    assert exchange_info_params(["A1", "B2"], trading_only=True) == {
        "symbols": '["A1","B2"]',
        "showPermissionSets": "false",
    }


# --- split_symbol -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "parts"),
    [
        ("BTCUSDT", ("BTC", "USDT")),
        ("ETHBTC", ("ETH", "BTC")),
        ("BNBETH", ("BNB", "ETH")),
        ("ETHFDUSD", ("ETH", "FDUSD")),
        ("BTCTUSD", ("BTC", "TUSD")),  # not BTCT/USD
        ("TUSDT", ("T", "USDT")),  # not /TUSD... T
        ("TUSDUSDT", ("TUSD", "USDT")),
        ("USDCUSDT", ("USDC", "USDT")),
        ("BTCTRY", ("BTC", "TRY")),
        ("EURIUSDT", ("EURI", "USDT")),
        ("BTCEURI", ("BTC", "EURI")),
        ("1000SATSFDUSD", ("1000SATS", "FDUSD")),
        ("USDT", ("USDT", "")),  # a quote alone has no base
        ("XYZ123", ("XYZ123", "")),
    ],
)
def test_split_symbol(symbol: str, parts: tuple[str, str]) -> None:
    assert split_symbol(symbol) == parts


def test_quote_assets_are_distinct_and_usdt_first() -> None:
    assert len(set(QUOTE_ASSETS)) == len(QUOTE_ASSETS) and QUOTE_ASSETS[0] == "USDT"
    assert {"USDT", "FDUSD", "USDC", "BUSD", "BTC", "ETH", "BNB", "TRY", "EUR"} <= set(QUOTE_ASSETS)


# --- search_symbols ---------------------------------------------------------------------------------


def listing(*symbols: str) -> tuple[SymbolInfo, ...]:
    return tuple(SymbolInfo(s, *split_symbol(s), "TRADING", 2) for s in sorted(symbols))


LISTING = listing(
    "BTCUSDT",
    "BTCFDUSD",
    "BTCUSDC",
    "BTCEUR",
    "BTCTRY",
    "BTCDOMUSDT",
    "WBTCUSDT",
    "WBTCBTC",
    "ETHBTC",
    "ETHUSDT",
    "ETHFIUSDT",
    "ETHFIBTC",
    "ETCUSDT",
    "BNBUSDT",
    "BNBETH",
    "USDCUSDT",
    "TUSDT",
    "USDTTRY",
    "XYZ123",
)


def names(query: str, limit: int = 50, symbols: tuple[SymbolInfo, ...] = LISTING) -> list[str]:
    return [s.symbol for s in search_symbols(symbols, query, limit)]


def test_the_symbol_itself_first() -> None:
    assert names("BTCUSDT")[0] == "BTCUSDT"
    for typed in (
        "btcusdt",
        "BTC/USDT",
        "btc-usdt",
        " btc usdt ",
        "BTC_USDT",
        "ＢＴＣ／ＵＳＤＴ",
        "btcusdt\n",
    ):
        assert names(typed)[:1] == ["BTCUSDT"], typed


def test_the_coins_pairs_then_prefixes_then_substrings() -> None:
    assert names("btc") == [
        # the coin's own pairs, by quote (USDT first), then...
        "BTCUSDT",
        "BTCFDUSD",
        "BTCUSDC",
        "BTCTRY",
        "BTCEUR",
        # ...symbols starting with it, then...
        "BTCDOMUSDT",
        # ...symbols containing it (by quote, shorter first).
        "WBTCUSDT",
        "ETHBTC",
        "WBTCBTC",
        "ETHFIBTC",
    ]
    assert names("ETH") == ["ETHUSDT", "ETHBTC", "ETHFIUSDT", "ETHFIBTC", "BNBETH"]
    assert names("et") == ["ETCUSDT", "ETHUSDT", "ETHFIUSDT", "ETHBTC", "ETHFIBTC", "BNBETH"]
    assert names("ETHF") == ["ETHFIUSDT", "ETHFIBTC"]
    assert names("BTCUS") == ["BTCUSDT", "BTCUSDC", "WBTCUSDT"]
    assert names("USDC") == ["USDCUSDT", "BTCUSDC"]  # the coin's pair first, then the quote's


def test_a_base_asset_that_does_not_start_its_symbol() -> None:
    odd = (SymbolInfo("PAIR1", "ABCD", "USDT", "TRADING"), SymbolInfo("ABZUSDT", "ABZ", "USDT", "TRADING"))
    assert names("AB", symbols=odd) == ["ABZUSDT", "PAIR1"]
    assert names("ABCD", symbols=odd) == ["PAIR1"]  # its base is the query


def test_a_quote_asset_finds_its_pairs() -> None:
    assert names("USDT") == [
        "USDTTRY",  # the coin's own pair first
        "TUSDT",  # then every symbol containing it (here all USDT pairs), shorter first
        "BNBUSDT",
        "BTCUSDT",
        "ETCUSDT",
        "ETHUSDT",
        "USDCUSDT",
        "WBTCUSDT",
        "ETHFIUSDT",
        "BTCDOMUSDT",
    ]


def test_an_empty_query_lists_usdt_pairs_first() -> None:
    everything = names("")
    assert sorted(everything) == sorted(s.symbol for s in LISTING)
    assert everything[:8] == [
        "TUSDT",
        "BNBUSDT",
        "BTCUSDT",
        "ETCUSDT",
        "ETHUSDT",
        "USDCUSDT",
        "WBTCUSDT",
        "ETHFIUSDT",
    ]
    assert everything[-1] == "XYZ123"  # no known quote: last
    assert names("", limit=3) == everything[:3]
    assert names("  /-_ ") == everything  # nothing to search by


def test_limits_and_misses() -> None:
    assert names("BTC", limit=2) == ["BTCUSDT", "BTCFDUSD"]
    assert names("BTC", limit=0) == [] and names("", limit=-1) == []
    assert names("DOGE") == []
    assert names("BTCUSDTX") == []
    assert search_symbols((), "BTC") == ()
    assert search_symbols(iter(LISTING), "BTCUSDT")[0].symbol == "BTCUSDT"  # any iterable


def test_a_long_query_is_cut() -> None:
    started = time.perf_counter()
    assert names("BTC" * 100_000) == []
    assert names("btc" + " " * 10_000) == names("btc")
    assert time.perf_counter() - started < 1.0


def test_normalize_query() -> None:
    assert normalize_query(" btc/usdt ") == "BTCUSDT"
    assert normalize_query("ＢＴＣ") == "BTC"
    assert normalize_query("ı") == ""  # "ı".upper() is "I": non-ASCII never becomes a symbol letter
    assert normalize_query("é1") == "1"
    assert normalize_query("x" * 1000) == "X" * 64


def test_search_is_quick_on_a_binance_sized_list() -> None:
    quotes = ["USDT", "FDUSD", "USDC", "BTC", "ETH", "BNB", "TRY", "EUR"]
    symbols = listing(*{f"C{i}{q}" for i in range(400) for q in quotes})
    started = time.perf_counter()
    for typed in ("", "c", "C1", "C12USDT", "usd", "BTC"):
        assert len(search_symbols(symbols, typed)) <= 50
    assert time.perf_counter() - started < 1.0


# --- SymbolDirectory --------------------------------------------------------------------------------


class SlowMarket(FakeMarketData):
    """Holds exchangeInfo answers until :attr:`go` is set."""

    def __init__(self, *symbols: str) -> None:
        super().__init__(candle(s) for s in symbols)
        self.go = asyncio.Event()

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        await self.go.wait()
        return await super().get(path, params)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_directory_fetches_once() -> None:
    async def scenario() -> None:
        market = fake("BTCUSDT", "ETHUSDT", "ETHBTC")
        directory = SymbolDirectory(market)
        assert directory.loaded is None and directory.get("ETHBTC") is None
        assert await directory.names("eth", 10) == ["ETHUSDT", "ETHBTC"]
        assert await directory.names("", 1) == ["BTCUSDT"]
        assert [s.symbol for s in await directory.search("BTC")] == ["BTCUSDT", "ETHBTC"]
        assert directory.get("ETHBTC") == SymbolInfo("ETHBTC", "ETH", "BTC", "TRADING", 2)
        assert directory.loaded is not None and len(directory.loaded) == 3
        assert len(market.info_requests) == 1
        directory.forget()
        assert directory.loaded is None
        market.listed["BNBUSDT"] = "TRADING"
        assert await directory.names("bnb", 10) == ["BNBUSDT"]
        assert len(market.info_requests) == 2

    run(scenario())


def test_directory_shares_one_request_and_survives_a_cancelled_caller() -> None:
    async def scenario() -> None:
        market = SlowMarket("BTCUSDT", "ETHUSDT")
        directory = SymbolDirectory(market)
        first = asyncio.create_task(directory.names("b", 5))
        second = asyncio.create_task(directory.names("e", 5))
        await asyncio.sleep(0.01)
        first.cancel()  # the user typed on: the older search is dropped
        await asyncio.sleep(0.01)
        market.go.set()
        assert await second == ["ETHUSDT"]
        assert first.cancelled()
        assert len(market.info_requests) == 1

    run(scenario())


def test_directory_after_a_failure() -> None:
    async def scenario() -> None:
        market = fake("BTCUSDT")
        market.exchange_info = 503, "Service Unavailable"
        clock = Clock()
        directory = SymbolDirectory(market, retry_after=30.0, clock=clock)
        assert await directory.names("btc", 5) == []
        assert directory.problem == "exchangeInfo: HTTP 503 Service Unavailable"
        with pytest.raises(MarketUnavailable, match="HTTP 503"):
            await directory.symbols()
        clock.t += 29.0
        assert await directory.names("btc", 5) == []
        assert len(market.info_requests) == 1  # not once a keystroke
        market.exchange_info = None
        clock.t += 1.0
        assert await directory.names("btc", 5) == ["BTCUSDT"]
        assert directory.problem is None and len(market.info_requests) == 2

    run(scenario())


def test_directory_forget_during_a_fetch_keeps_nothing_stale() -> None:
    async def scenario() -> None:
        market = SlowMarket("BTCUSDT")
        directory = SymbolDirectory(market)
        stale = asyncio.create_task(directory.symbols())
        await asyncio.sleep(0.01)
        directory.forget()
        market.go.set()
        assert [s.symbol for s in await stale] == ["BTCUSDT"]  # its caller gets its answer...
        assert directory.loaded is None  # ...but it is not kept
        assert await directory.names("btc", 5) == ["BTCUSDT"]
        assert len(market.info_requests) == 2

    run(scenario())


def test_fake_klines_unchanged_and_unknown_paths() -> None:
    market = fake("BTCUSDT")
    status, body = run(market.get("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 5}))
    assert status == 200 and len(json.loads(body)) == 1
    assert run(market.get("/api/v3/nothing", {}))[0] == 404
    assert market.info_requests == [] and len(market.requests) == 1
