"""A pool that drives its trader states visits only those that can signal, with the same result.

``IndicatorPool.advance`` anchors each ``match: all`` state on one condition and visits it only when
that condition holds; the anchors move as the pool learns how often each condition holds. Whatever
the anchors, the states that signal and their labels must be exactly those of states evaluated one
by one, each on a private pool, on the same candles.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.traders import IndicatorPool, TraderEvaluationError, TraderState, parse_trader

MINUTE = INTERVALS["1m"]
T0 = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE

CATALOGUE: list[dict[str, Any]] = [
    {"indicator": "rsi", "period": 5, "op": "<", "value": 40},
    {"indicator": "rsi", "period": 3, "op": ">", "value": 60},
    {"indicator": "volume_spike", "period": 5, "op": ">", "value": 1.5},
    {"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -0.5},
    {"indicator": "price_change_pct", "period": 2, "op": ">", "value": -100},
    {"indicator": "ema_cross", "fast": 3, "slow": 8, "direction": "up"},
    {"indicator": "sma_cross", "fast": 2, "slow": 5, "direction": "down"},
    {"indicator": "close_vs_bollinger", "period": 6, "k": 1.0, "band": "lower", "op": "<"},
    {"indicator": "close_vs_bollinger", "period": 6, "k": 1.0, "band": "middle", "op": ">"},
    {"indicator": "close_vs_sma", "period": 4, "op": ">"},
    {"indicator": "macd_cross", "fast": 3, "slow": 6, "signal": 2, "direction": "up"},
    {"indicator": "macd_histogram", "fast": 3, "slow": 6, "signal": 2, "op": "<", "value": 0},
]

traders = st.lists(
    st.tuples(
        st.lists(st.sampled_from(range(len(CATALOGUE))), min_size=1, max_size=4, unique=True),
        st.sampled_from(["all", "any"]),
        st.integers(0, 4),
    ),
    min_size=1,
    max_size=12,
)


def candles(seed: int, n: int) -> list[Candle]:
    rnd = random.Random(seed)
    price, out = 100.0, []
    for i in range(n):
        close = price * math.exp(rnd.gauss(0, 0.01))
        volume = rnd.uniform(1, 10) * (4 if rnd.random() < 0.1 else 1)
        out.append(
            Candle(
                "BTCUSDT",
                "1m",
                T0 + i * MINUTE,
                price,
                max(price, close),
                min(price, close),
                close,
                volume,
                True,
            )
        )
        price = close
    return out


def definitions(spec: list[tuple[list[int], str, int]]) -> list[Any]:
    return [
        parse_trader(
            {
                "version": 1,
                "symbols": ["BTCUSDT"],
                "interval": "1m",
                "match": match,
                "cooldown_candles": cooldown,
                "conditions": [CATALOGUE[c] for c in conds],
            }
        )
        for conds, match, cooldown in spec
    ]


@settings(max_examples=150, deadline=None)
@given(spec=traders, seed=st.integers(0, 2**32 - 1), primed=st.integers(0, 40))
def test_visiting_only_anchored_traders_changes_nothing(
    spec: list[tuple[list[int], str, int]], seed: int, primed: int
) -> None:
    defs = definitions(spec)
    series = candles(seed, primed + 160)
    pool = IndicatorPool("BTCUSDT", "1m")
    driven = [TraderState(d, "BTCUSDT", pool) for d in defs]
    for state in driven:
        pool.enlist(state)
    alone = [TraderState(d, "BTCUSDT") for d in defs]
    for candle in series[:primed]:
        pool.prime(candle)
        for state in alone:
            state.prime(candle)
    for candle in series[primed:]:
        got = [(driven.index(s), labels) for s, labels in pool.advance(candle)]
        want = [(i, labels) for i, s in enumerate(alone) if (labels := s.update(candle))]
        assert got == want
        # A candle seen again signals nothing.
        assert pool.advance(candle) == []


def test_anchors_move_to_the_condition_that_holds_least() -> None:
    # "Close > SMA(4)" holds about half the time; "Price change(1) <= -0.5%" less often. A cross
    # prior says rarer still, so a trader of all three is anchored on the cross at first.
    defs = definitions([([9, 3, 5], "all", 0)])
    pool = IndicatorPool("BTCUSDT", "1m")
    state = TraderState(defs[0], "BTCUSDT", pool)
    pool.enlist(state)
    anchor = state._anchor
    assert anchor is not None and anchor.condition == defs[0].conditions[2]
    # On a steady rise the cross never comes again and the price never drops: the anchor moves to
    # one of the two conditions that never held, and away from the one that always held.
    price = 100.0
    for i in range(400):
        price *= 1.001
        pool.advance(Candle("BTCUSDT", "1m", T0 + i * MINUTE, price, price, price, price, 1.0, True))
    assert state._anchor is not None and state._anchor.condition != defs[0].conditions[0]
    assert state._anchor.hits == 0


def test_enlisted_states_take_candles_only_through_their_pool() -> None:
    (d,) = definitions([([4], "all", 0)])
    pool = IndicatorPool("BTCUSDT", "1m")
    state = TraderState(d, "BTCUSDT", pool)
    pool.enlist(state)
    with pytest.raises(ValueError, match="enlisted already"):
        pool.enlist(state)
    (candle,) = candles(1, 1)
    with pytest.raises(TraderEvaluationError, match="through its pool"):
        state.update(candle)
    with pytest.raises(TraderEvaluationError, match="through its pool"):
        state.prime(candle)
    state.close()  # delists
    assert pool.advance(candle) == [] and pool._enlisted == [] and len(pool) == 0
