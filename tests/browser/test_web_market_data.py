"""The page's market data over the facade's fetch: the rate-limit headers reach the shared limits."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from signalguard.browser.jsbridge import WebMarketData
from signalguard.browser.testing import on_loop
from signalguard.market.klines import MarketUnavailable


class Facade:
    """``marketGet`` answering from a script, recording the URLs asked."""

    def __init__(self, *answers: dict[str, object]) -> None:
        self.answers = list(answers)
        self.urls: list[str] = []

    async def marketGet(self, url: str) -> str:
        self.urls.append(url)
        return json.dumps(self.answers.pop(0))


def market(facade: Facade) -> WebMarketData:
    return WebMarketData(cast(Any, facade), "http://127.0.0.1:9443", cast(Any, lambda f: f))


@on_loop
async def test_the_weight_header_is_read_and_kept() -> None:
    facade = Facade({"status": 200, "body": "[]", "headers": {"x-mbx-used-weight-1m": "4321"}, "error": None})
    data = market(facade)
    answer = await data.get_answer("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m"})
    assert (answer.status, answer.body, dict(answer.headers)) == (200, "[]", {"x-mbx-used-weight-1m": "4321"})
    assert facade.urls == ["http://127.0.0.1:9443/api/v3/klines?symbol=BTCUSDT&interval=1m"]


@on_loop
async def test_a_429_with_retry_after_stops_every_request_until_then() -> None:
    facade = Facade(
        {
            "status": 429,
            "body": '{"code":-1003,"msg":"Too many requests."}',
            "headers": {"retry-after": "37"},
        },
    )
    data = market(facade)
    with pytest.raises(MarketUnavailable) as first:
        await data.request("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m"})
    assert "429" in str(first.value) and "37 s" in str(first.value)
    # Nothing is sent meanwhile: the next request fails at once, without a call of the facade.
    with pytest.raises(MarketUnavailable):
        await data.request("/api/v3/klines", {"symbol": "ETHUSDT", "interval": "1m"})
    assert len(facade.urls) == 1


@on_loop
async def test_an_answer_without_headers_still_reads() -> None:
    facade = Facade({"status": 200, "body": "[]", "error": None})
    answer = await market(facade).get_answer("/api/v3/ping", {})
    assert answer.headers == {}


BLOCKED = {
    "status": 451,
    "body": '{"code":0,"msg":"Service unavailable from a restricted location"}',
    "headers": {},
}
SERVED = {"status": 200, "body": "[]", "headers": {}, "error": None}


@on_loop
async def test_binance_refusing_the_region_switches_to_its_market_data_endpoints_once() -> None:
    facade = Facade(BLOCKED, SERVED, SERVED)
    notes: list[str] = []
    data = WebMarketData(
        cast(Any, facade), "https://api.binance.com", cast(Any, lambda f: f), on_note=notes.append
    )
    answer = await data.get_answer("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m"})
    assert answer.status == 200
    assert facade.urls == [
        "https://api.binance.com/api/v3/klines?symbol=BTCUSDT&interval=1m",
        "https://data-api.binance.vision/api/v3/klines?symbol=BTCUSDT&interval=1m",
    ]
    # Both hosts switch together (the streams too), and the page is told once, naming its setting.
    assert data.endpoints.stream == "wss://data-stream.binance.vision"
    assert len(notes) == 1 and "HTTP 451" in notes[0] and "market_data_url (config.json)" in notes[0]
    await data.get_answer("/api/v3/exchangeInfo", {})
    assert facade.urls[-1] == "https://data-api.binance.vision/api/v3/exchangeInfo?" and len(notes) == 1


@on_loop
async def test_a_451_from_market_data_someone_chose_is_not_replaced() -> None:
    facade = Facade(BLOCKED)
    notes: list[str] = []
    data = WebMarketData(
        cast(Any, facade), "https://proxy.example/binance", cast(Any, lambda f: f), on_note=notes.append
    )
    status, _ = await data.request("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m"})
    # The 451 reaches the caller, whose line names the page's setting (market.klines.http_refusal).
    assert status == 451 and data.url_setting == "market_data_url (config.json)"
    assert len(facade.urls) == 1 and notes == [] and data.endpoints.rest == "https://proxy.example/binance"
