"""Helpers for the replay tests: a fake clock and JSON-over-WebSocket receiving."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

# 2023-11-14T22:13:50.25Z: deliberately not on any interval boundary.
START = 1_700_000_030.25
MINUTE_MS = 60_000


class FakeClock:
    """A settable clock in epoch seconds, read by the server instead of time.time."""

    def __init__(self, t: float = START) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@contextlib.asynccontextmanager
async def stream(url: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A WebSocket connection with aiohttp's client."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        yield ws


async def next_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    """The next text message, decoded; fails on a close or after ``timeout`` seconds."""
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, (message.type, message.data, message.extra)
    return json.loads(message.data)


async def closed(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> tuple[int, str]:
    """Wait for the server's close frame on ``ws``; return its (code, reason). Fails on anything else."""
    message = await asyncio.wait_for(ws.receive(), timeout)
    # (ws.close_code is not the server's code: aiohttp's client overwrites it while it replies.)
    assert message.type == aiohttp.WSMsgType.CLOSE, (message.type, message.data)
    return message.data, message.extra or ""
