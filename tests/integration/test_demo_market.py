"""The demo market data ``signalguard dev`` serves: every stream the demo traders watch, and signals for
every demo user as soon as a first sign-in has caught up.

A tab's first lease signs the 60 candles (1m) before it (the gapless handoff). Right after ``make dev``
starts, those are the replay's last 60 history candles: fed here to the engine exactly as the page
warms up (the newest closed candles the warm-up rule asks for, the window opening 60 candles back), with
the demo traders as the seeded database holds them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.engine import SignalCreated, SignalManager, TraderRecord
from signalguard.devstack.demo_market import DEMO_HISTORY, DEMO_INTERVAL, DEMO_SYMBOLS, demo_series

pytestmark = pytest.mark.stack

#: The seeded demo users (devstack/sql/seed.sql): alice, bob, carol.
DEMO_USERS = (
    "a11ce000-0000-4000-8000-000000000001",
    "b0b00000-0000-4000-8000-000000000002",
    "ca201000-0000-4000-8000-000000000003",
)
#: A minute boundary for the history's first candle.
T0 = 1_700_000_040_000
#: The catch-up of a first lease on 1m: 60 candles.
GAP = 60


def demo_traders(db: Any) -> dict[str, list[TraderRecord]]:
    rows = db.execute(
        "select user_id::text, id::text, name, definition from public.traders"
        " where enabled and user_id = any(%s::uuid[]) order by name",
        (list(DEMO_USERS),),
    ).fetchall()
    out: dict[str, list[TraderRecord]] = {}
    for user_id, trader_id, name, definition in rows:
        out.setdefault(user_id, []).append(TraderRecord(trader_id, name, definition))
    return out


def history() -> dict[str, list[Candle]]:
    """The replay's history at its start, per symbol, as closed candles."""
    series = demo_series()
    step = INTERVALS[DEMO_INTERVAL]
    return {
        symbol: [
            Candle(
                symbol,
                DEMO_INTERVAL,
                T0 + i * step,
                float(b.open),
                float(b.high),
                float(b.low),
                float(b.close),
                float(b.volume),
                True,
            )
            for i, b in enumerate(bars[:DEMO_HISTORY])
        ]
        for symbol, bars in series.bars.items()
    }


def test_the_demo_replay_serves_every_stream_the_demo_traders_watch(db: Any) -> None:
    streams = set(
        db.execute(
            "select distinct s, t.definition->>'interval' from public.traders t,"
            " jsonb_array_elements_text(t.definition->'symbols') s where t.user_id = any(%s::uuid[])",
            (list(DEMO_USERS),),
        ).fetchall()
    )
    assert streams == {(s, DEMO_INTERVAL) for s in DEMO_SYMBOLS}
    assert set(demo_series().symbols) == set(DEMO_SYMBOLS)


def test_a_first_sign_in_right_after_make_dev_catches_up_signals_for_every_demo_user(db: Any) -> None:
    candles = history()
    step = INTERVALS[DEMO_INTERVAL]
    started_ms = T0 + DEMO_HISTORY * step + 500  # signed in half a second after the last close
    signed: Counter[str] = Counter()
    for user_id, traders in demo_traders(db).items():
        manager = SignalManager(user_id)
        needs = manager.set_traders(traders)
        manager.authorize(True, 1, (started_ms - GAP * step) * 1000, (), started_ms * 1000)
        for need in needs:
            manager.warm_up(candles[need.symbol][-need.candles :])
        signed[user_id] = sum(isinstance(e, SignalCreated) for e in manager.drain())
    print(f"\nsignals caught up at a first sign-in: {dict(signed)}")
    assert set(signed) == set(DEMO_USERS)
    assert all(n >= 1 for n in signed.values()), signed
