"""The market data ``signalguard dev`` serves unless one is configured: a replay for the demo traders.

A newcomer runs ``make dev``, signs in as a demo user and should see signals within minutes, with no
exchange account and no network. So unless ``SIGNALGUARD_MARKET_DATA_URL`` names a source, the dev
command serves a synthetic replay of every stream the seeded demo traders watch (:data:`DEMO_SYMBOLS`
on :data:`DEMO_INTERVAL`) on ``127.0.0.1:$SIGNALGUARD_REPLAY_PORT`` (9443), which is where the page's
``config.json`` points by default.

The series is fixed (seed, length, setup spacing), so what a first sign-in sees is known: its first
:data:`DEMO_HISTORY` candles are history when the server starts, live candles then close on real
minute boundaries, and after :data:`DEMO_CANDLES` it starts over. A tab's first lease signs the gap
before it (the gapless handoff, 60 candles on 1m), and in the last 60 history candles every demo user's
enabled traders match (``tests/replay/test_demo_market.py`` runs them), so their signals are there as
soon as the page has caught up. Later, setups come about once an hour per symbol.

Real exchange data is one setting away: ``SIGNALGUARD_MARKET_DATA_URL=https://api.binance.com``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from signalguard.replay.series import Series
from signalguard.replay.server import ReplayServer, running_replay
from signalguard.replay.synthetic import generate

__all__ = [
    "DEMO_CANDLES",
    "DEMO_HISTORY",
    "DEMO_INTERVAL",
    "DEMO_SYMBOLS",
    "demo_series",
    "describe",
    "serving_demo_market",
]

#: Every symbol a seeded demo trader watches (``devstack/sql/seed.sql``; a test keeps them in step).
DEMO_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
#: The demo traders' interval.
DEMO_INTERVAL: Final = "1m"
#: A day of candles, then the replay starts over.
DEMO_CANDLES: Final = 1440
#: Closed candles served before the first live one: more than the longest warm-up of a demo trader
#: (202 candles) plus the catch-up's 61 evaluated candles.
DEMO_HISTORY: Final = 600
#: The generator's seed and setup spacing (its minimum, 60 candles): chosen so that the last 60
#: history candles hold matches for every demo user (checked by the test, not assumed).
DEMO_SEED: Final = 2
DEMO_SPACING: Final = 60


def demo_series() -> Series:
    """The demo replay's candles (the same every time)."""
    return generate(
        DEMO_SYMBOLS, interval=DEMO_INTERVAL, candles=DEMO_CANDLES, seed=DEMO_SEED, spacing=DEMO_SPACING
    ).series


@contextmanager
def serving_demo_market(port: int) -> Iterator[ReplayServer]:
    """Serve the demo replay on ``127.0.0.1:port`` in a background thread, looping, until the block ends.

    Raises ``OSError`` if the port is taken.
    """
    with running_replay(demo_series(), history=DEMO_HISTORY, loop=True, port=port) as server:
        yield server


def describe() -> str:
    """What the demo replay serves, for the dev command's banner."""
    return f"a replay of {', '.join(DEMO_SYMBOLS)} on {DEMO_INTERVAL}, looping"
