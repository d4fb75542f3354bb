"""Property tests: trader validation accepts valid definitions and rejects everything else only
with TraderDefinitionError — never another exception, never a half-valid definition."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalguard.core.traders import (
    MAX_CONDITIONS,
    MAX_SYMBOLS,
    TraderDefinition,
    TraderDefinitionError,
    parse_trader,
)

FUZZ = settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONDITIONS: list[dict[str, Any]] = [
    {"indicator": "rsi", "period": 14, "op": "<", "value": 30},
    {"indicator": "volume_spike", "period": 20, "op": ">", "value": 2.0},
    {"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -3},
    {"indicator": "close_vs_sma", "period": 50, "op": ">"},
    {"indicator": "close_vs_ema", "period": 200, "op": "<"},
    {"indicator": "close_vs_bollinger", "period": 20, "k": 2.0, "band": "lower", "op": "<"},
    {"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"},
    {"indicator": "sma_cross", "fast": 50, "slow": 200, "direction": "down"},
    {"indicator": "macd_histogram", "fast": 12, "slow": 26, "signal": 9, "op": ">", "value": 0},
    {"indicator": "macd_cross", "fast": 12, "slow": 26, "signal": 9, "direction": "up"},
]

# Replacement values: every JSON type, boundaries and near misses of every field.
WEIRD: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    2,
    3,
    9,
    14,
    499,
    500,
    501,
    -1,
    10**400,
    2**63,
    0.0,
    -0.0,
    0.5,
    2.0,
    14.0,
    100,
    100.5,
    -100,
    -100.5,
    1000,
    1000.5,
    10000,
    1e15,
    1e16,
    float("nan"),
    float("inf"),
    "",
    "14",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "up",
    "down",
    "left",
    "upper",
    "middle",
    "lower",
    "all",
    "any",
    "1m",
    "1M",
    "2m",
    "rsi",
    "RSI",
    "ema_cross",
    "macd_cross",
    "volume_spike",
    "BTCUSDT",
    "btcusdt",
    "BTC/USDT",
    "x" * 30,
    [],
    {},
    [1],
    {"a": 1},
    ["BTCUSDT"] * 2,
    [f"S{i}X" for i in range(MAX_SYMBOLS + 1)],
]
KEYS = [
    "version",
    "symbols",
    "interval",
    "match",
    "cooldown_candles",
    "conditions",
    "indicator",
    "period",
    "op",
    "value",
    "fast",
    "slow",
    "signal",
    "direction",
    "k",
    "band",
    "name",
    "",
]
# Copies: a drawn list or dict may be mutated later, and must not change the menu.
weird_values = st.one_of(
    st.sampled_from(WEIRD).map(copy.deepcopy), st.integers(), st.floats(), st.text(max_size=6)
)


def template(seed: int) -> dict[str, Any]:
    """A valid definition, varied by ``seed`` (built directly: cheap)."""
    count = 1 + seed % 4
    start = seed % len(CONDITIONS)
    conditions = [copy.deepcopy(CONDITIONS[(start + 3 * i) % len(CONDITIONS)]) for i in range(count)]
    d: dict[str, Any] = {
        "version": 1,
        "symbols": ["BTCUSDT", "ETHUSDT", "bnbbtc"][: 1 + seed % 3],
        "interval": ["1m", "5m", "1h", "1d", "1M"][seed % 5],
        "conditions": conditions,
    }
    if seed % 2:
        d["match"] = "any"
    if seed % 3:
        d["cooldown_candles"] = seed % 11
    return d


def containers(d: Any) -> list[Any]:
    out = [d]
    if isinstance(d, dict):
        for v in d.values():
            if isinstance(v, dict | list):
                out += containers(v)
    elif isinstance(d, list):
        for v in d:
            if isinstance(v, dict | list):
                out += containers(v)
    return out


KEY_INDEX = st.integers(0, len(KEYS) - 1)
APPENDED = st.one_of(weird_values, st.sampled_from(CONDITIONS).map(copy.deepcopy))


def pick(draw: st.DrawFn, items: list[Any]) -> Any:
    # An index draw: cheaper than building st.sampled_from(items) for every mutation.
    return items[draw(st.integers(0, len(items) - 1))]


@st.composite
def mutated_definitions(draw: st.DrawFn) -> object:
    d = template(draw(st.integers(0, 10**6)))
    for _ in range(draw(st.integers(0, 3))):
        target = pick(draw, containers(d))
        action = draw(st.integers(0, 3))
        if isinstance(target, dict):
            keys = list(target)
            if action == 0 and keys:
                del target[pick(draw, keys)]
            elif action == 1:
                target[KEYS[draw(KEY_INDEX)]] = draw(weird_values)
            elif keys:
                target[pick(draw, keys)] = draw(weird_values)
        else:
            if action == 0 and target:
                del target[draw(st.integers(0, len(target) - 1))]
            elif action == 1:
                target.append(draw(APPENDED))
            elif target:
                target[draw(st.integers(0, len(target) - 1))] = draw(weird_values)
    form = draw(st.integers(0, 3))
    if form == 0:
        return d
    if form == 3:
        return draw(weird_values)
    encoded = json.dumps(d)
    return encoded if form == 1 else encoded.encode()


@FUZZ
@given(mutated_definitions())
def test_validation_never_crashes(raw: object) -> None:
    try:
        d = parse_trader(raw)
    except TraderDefinitionError as exc:
        assert exc.path and exc.problem
        assert str(exc) == f"{exc.path}: {exc.problem}"
        return
    assert isinstance(d, TraderDefinition)
    assert 1 <= len(d.symbols) <= MAX_SYMBOLS and 1 <= len(d.conditions) <= MAX_CONDITIONS
    assert all(label for label in d.labels)
    assert d.warmup >= 2 and d.history >= d.warmup
    assert parse_trader(d.to_json()) == d


periods = st.integers(2, 500)
ops = st.sampled_from(["<", "<=", ">", ">="])
directions = st.sampled_from(["up", "down"])
fast_slow = st.tuples(st.integers(2, 499), st.integers(1, 498)).map(lambda t: (t[0], min(500, t[0] + t[1])))
valid_conditions = st.one_of(
    st.builds(
        lambda p, o, v: {"indicator": "rsi", "period": p, "op": o, "value": v},
        periods,
        ops,
        st.integers(0, 100) | st.floats(0, 100),
    ),
    st.builds(
        lambda p, o, v: {"indicator": "volume_spike", "period": p, "op": o, "value": v},
        periods,
        ops,
        st.floats(0, 1000, exclude_min=True),
    ),
    st.builds(
        lambda p, o, v: {"indicator": "price_change_pct", "period": p, "op": o, "value": v},
        st.integers(1, 500),
        ops,
        st.integers(-100, 10000) | st.floats(-100, 10000),
    ),
    st.builds(
        lambda k, p, o: {"indicator": k, "period": p, "op": o},
        st.sampled_from(["close_vs_sma", "close_vs_ema"]),
        periods,
        ops,
    ),
    st.builds(
        lambda p, k, b, o: {"indicator": "close_vs_bollinger", "period": p, "k": k, "band": b, "op": o},
        periods,
        st.floats(0, 10, exclude_min=True) | st.integers(1, 10),
        st.sampled_from(["upper", "middle", "lower"]),
        ops,
    ),
    st.builds(
        lambda k, fs, d: {"indicator": k, "fast": fs[0], "slow": fs[1], "direction": d},
        st.sampled_from(["ema_cross", "sma_cross"]),
        fast_slow,
        directions,
    ),
    st.builds(
        lambda fs, s, o, v: {
            "indicator": "macd_histogram",
            "fast": fs[0],
            "slow": fs[1],
            "signal": s,
            "op": o,
            "value": v,
        },
        fast_slow,
        st.integers(1, 500),
        ops,
        st.floats(-1e15, 1e15),
    ),
    st.builds(
        lambda fs, s, d: {
            "indicator": "macd_cross",
            "fast": fs[0],
            "slow": fs[1],
            "signal": s,
            "direction": d,
        },
        fast_slow,
        st.integers(1, 500),
        directions,
    ),
)
valid_definitions = st.fixed_dictionaries(
    {
        "version": st.just(1),
        "symbols": st.lists(
            st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=20),
            min_size=1,
            max_size=MAX_SYMBOLS,
            unique=True,
        ),
        "interval": st.sampled_from(["1s", "1m", "15m", "4h", "1d", "3d", "1w", "1M"]),
        "conditions": st.lists(valid_conditions, min_size=1, max_size=MAX_CONDITIONS, unique_by=json.dumps),
    },
    optional={"match": st.sampled_from(["all", "any"]), "cooldown_candles": st.integers(0, 10_000)},
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_definitions)
def test_valid_definitions_parse_and_round_trip(raw: dict[str, Any]) -> None:
    try:
        d = parse_trader(raw)
    except TraderDefinitionError as exc:
        # Distinct JSON can still be the same condition (30 and 30.0): the only legal refusal.
        assert "duplicates conditions" in str(exc), str(exc)
        return
    assert d.symbols == tuple(raw["symbols"])
    assert [c.to_json() for c in d.conditions] == raw["conditions"]
    assert parse_trader(json.dumps(d.to_json())) == d
