"""The replay's rate-limit side: the weight header by the minute, and refuse() answering 451/429/418."""

from __future__ import annotations

import aiohttp
import pytest
from replaykit import START, FakeClock

from signalguard.replay.cli import cmd_replay
from signalguard.replay.server import ReplayServer
from signalguard.replay.synthetic import generate

SERIES = generate(["BTCUSDT"], candles=200, seed=3).series


async def get(server: ReplayServer, path: str, **params: str) -> tuple[int, object, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.get(server.url + path, params=params) as r:
        return r.status, await r.json(), dict(r.headers)


async def test_the_weight_header_counts_this_minutes_requests() -> None:
    clock = FakeClock(START - START % 60)  # the start of a minute
    async with ReplayServer(SERIES, history=100, clock=clock) as server:
        _, _, headers = await get(server, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit="5")
        assert headers["X-MBX-USED-WEIGHT-1M"] == "2"
        assert "X-MBX-USED-WEIGHT-1M" in headers["Access-Control-Expose-Headers"]
        _, _, headers = await get(server, "/api/v3/exchangeInfo")
        assert headers["X-MBX-USED-WEIGHT-1M"] == "22"
        _, _, headers = await get(server, "/api/v3/time")
        assert headers["X-MBX-USED-WEIGHT-1M"] == "23"
        # A refused request counts too, as on Binance.
        status, _, headers = await get(server, "/api/v3/klines", symbol="NOPE", interval="1m")
        assert (status, headers["X-MBX-USED-WEIGHT-1M"]) == (400, "25")
        clock.advance(60)
        _, _, headers = await get(server, "/api/v3/ping")
        assert headers["X-MBX-USED-WEIGHT-1M"] == "1"
        assert server.used_weight == 1


async def test_refuse_answers_every_request_until_lifted() -> None:
    async with ReplayServer(SERIES, history=100, clock=FakeClock()) as server:
        server.refuse(429, 37)
        status, body, headers = await get(server, "/api/v3/klines", symbol="BTCUSDT", interval="1m")
        assert (status, headers["Retry-After"]) == (429, "37")
        assert isinstance(body, dict) and body["code"] == -1003
        assert "X-MBX-USED-WEIGHT-1M" in headers
        assert server.refusing == 429
        server.refuse(418)
        status, _, headers = await get(server, "/api/v3/exchangeInfo")
        assert status == 418 and "Retry-After" not in headers
        server.refuse(451)
        status, body, _ = await get(server, "/api/v3/time")
        assert status == 451 and isinstance(body, dict) and "restricted location" in str(body["msg"])
        # A stream connection is refused before the upgrade, as Binance refuses a blocked region.
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await s.ws_connect(server.ws_url + "/ws/btcusdt@kline_1m")
            assert caught.value.status == 451
        server.refuse(None)
        status, _, _ = await get(server, "/api/v3/time")
        assert status == 200 and server.refusing is None
        with pytest.raises(ValueError, match="refuse: status must be one of"):
            server.refuse(500)


def test_the_cli_checks_its_refusal_options(capsys: pytest.CaptureFixture[str]) -> None:
    class Args:
        file = None
        symbols = "BTCUSDT"
        interval = "1m"
        candles = 300
        seed = 1
        history = None
        speed = 1.0
        partial_updates = None
        port = 0
        loop = False
        refuse = None
        retry_after = 5

    assert cmd_replay(Args()) == 2  # type: ignore[arg-type]
    assert "--retry-after needs --refuse 429 or 418" in capsys.readouterr().err
