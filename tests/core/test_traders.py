from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest

from signalguard.core.candles import Candle
from signalguard.core.indicators import EMA, RSI, BollingerBands
from signalguard.core.traders import (
    MAX_CONDITIONS,
    MAX_SYMBOLS,
    EvaluationErrorCode,
    IndicatorPool,
    Match,
    Threshold,
    TraderDefinition,
    TraderDefinitionError,
    TraderEvaluationError,
    TraderState,
    parse_trader,
)

MINUTE = 60_000
T0 = 1_672_531_200_000

EXAMPLE: dict[str, Any] = {
    "version": 1,
    "symbols": ["BTCUSDT", "ETHUSDT"],
    "interval": "1m",
    "match": "all",
    "cooldown_candles": 5,
    "conditions": [
        {"indicator": "rsi", "period": 14, "op": "<", "value": 30},
        {"indicator": "volume_spike", "period": 20, "op": ">", "value": 2.0},
        {"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"},
        {"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -3},
    ],
}

EVERY_KIND: list[tuple[dict[str, Any], str]] = [
    ({"indicator": "rsi", "period": 14, "op": "<", "value": 30}, "RSI(14) < 30"),
    ({"indicator": "rsi", "period": 7, "op": ">=", "value": 70.5}, "RSI(7) >= 70.5"),
    ({"indicator": "volume_spike", "period": 20, "op": ">", "value": 2.0}, "Volume > 2.0x avg(20)"),
    ({"indicator": "volume_spike", "period": 10, "op": "<", "value": 0.5}, "Volume < 0.5x avg(10)"),
    ({"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -3}, "Price change(1) <= -3%"),
    ({"indicator": "close_vs_sma", "period": 50, "op": ">"}, "Close > SMA(50)"),
    ({"indicator": "close_vs_ema", "period": 200, "op": "<"}, "Close < EMA(200)"),
    (
        {"indicator": "close_vs_bollinger", "period": 20, "k": 2.0, "band": "lower", "op": "<"},
        "Close < BB(20, 2.0) lower",
    ),
    (
        {"indicator": "close_vs_bollinger", "period": 20, "k": 2, "band": "upper", "op": ">="},
        "Close >= BB(20, 2) upper",
    ),
    ({"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"}, "EMA(9) crosses above EMA(21)"),
    (
        {"indicator": "sma_cross", "fast": 50, "slow": 200, "direction": "down"},
        "SMA(50) crosses below SMA(200)",
    ),
    (
        {"indicator": "macd_histogram", "fast": 12, "slow": 26, "signal": 9, "op": ">", "value": 0},
        "MACD(12, 26, 9) histogram > 0",
    ),
    (
        {"indicator": "macd_cross", "fast": 12, "slow": 26, "signal": 9, "direction": "up"},
        "MACD(12, 26, 9) crosses above signal",
    ),
]


def definition(*conditions: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": 1, "symbols": ["BTCUSDT"], "interval": "1m", "conditions": list(conditions), **top}


def bar(i: int, close: float, volume: float = 1.0, symbol: str = "BTCUSDT", **kw: Any) -> Candle:
    fields: dict[str, Any] = {
        "symbol": symbol,
        "interval": "1m",
        "open_time": T0 + i * MINUTE,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume": volume,
        "closed": True,
    }
    fields.update(kw)
    return Candle(**fields)


def bars(closes: list[float], volumes: list[float] | None = None, start: int = 0) -> list[Candle]:
    volumes = volumes or [1.0] * len(closes)
    return [bar(start + i, c, v) for i, (c, v) in enumerate(zip(closes, volumes, strict=True))]


# --- parsing ------------------------------------------------------------------------------------


def test_example_definition() -> None:
    d = parse_trader(EXAMPLE)
    assert d.symbols == ("BTCUSDT", "ETHUSDT")
    assert d.match is Match.ALL and d.cooldown_candles == 5
    assert d.labels == (
        "RSI(14) < 30",
        "Volume > 2.0x avg(20)",
        "EMA(9) crosses above EMA(21)",
        "Price change(1) <= -3%",
    )
    # Warm-up: the EMA cross needs slow + 1 = 22 candles; the others fewer.
    assert d.warmup == 22
    assert parse_trader(json.dumps(EXAMPLE)) == d
    assert parse_trader(json.dumps(EXAMPLE).encode()) == d


@pytest.mark.parametrize(("condition", "label"), EVERY_KIND, ids=[label for _, label in EVERY_KIND])
def test_labels_and_round_trip(condition: dict[str, Any], label: str) -> None:
    d = parse_trader(definition(condition))
    assert d.labels == (label,)
    assert d.conditions[0].to_json() == condition
    assert parse_trader(d.to_json()) == d
    assert parse_trader(json.loads(json.dumps(d.to_json()))) == d


def test_defaults_and_normalisation() -> None:
    d = parse_trader(definition(EVERY_KIND[0][0], symbols=["btcusdt", "EthBtc"]))
    assert d.symbols == ("BTCUSDT", "ETHBTC")
    assert d.match is Match.ALL and d.cooldown_candles == 0
    assert d.to_json()["match"] == "all" and d.to_json()["cooldown_candles"] == 0


def test_warmups() -> None:
    expected = {
        "RSI(14) < 30": 15,
        "Volume > 2.0x avg(20)": 21,
        "Price change(1) <= -3%": 2,
        "Close > SMA(50)": 50,
        "Close < EMA(200)": 200,
        "Close < BB(20, 2.0) lower": 20,
        "EMA(9) crosses above EMA(21)": 22,
        "SMA(50) crosses below SMA(200)": 201,
        "MACD(12, 26, 9) histogram > 0": 34,
        "MACD(12, 26, 9) crosses above signal": 35,
    }
    for condition, label in EVERY_KIND:
        if label in expected:
            assert parse_trader(definition(condition)).warmup == expected[label], label


def test_history_is_the_shared_warm_up_rule() -> None:
    # Windowed indicators need exactly their warm-up; exponential ones settle until the starting
    # point weighs less than 1e-6: (1 - alpha) ** settle <= 1e-6 < (1 - alpha) ** (settle - 1).
    sma = parse_trader(definition({"indicator": "close_vs_sma", "period": 50, "op": ">"}))
    assert sma.history == sma.warmup == 50
    rsi = parse_trader(definition({"indicator": "rsi", "period": 14, "op": "<", "value": 30}))
    settle = rsi.history - rsi.warmup
    assert (13 / 14) ** settle <= 1e-6 < (13 / 14) ** (settle - 1)
    assert rsi.history == 202
    ema = parse_trader(definition({"indicator": "close_vs_ema", "period": 200, "op": ">"}))
    settle = ema.history - ema.warmup
    assert (199 / 201) ** settle <= 1e-6 < (199 / 201) ** (settle - 1)
    macd = parse_trader(definition(EVERY_KIND[-2][0]))
    assert macd.history == 34 + (ema_settle := _ema_settle(26)) + _ema_settle(9) and ema_settle > 100
    assert parse_trader(EXAMPLE).history == max(rsi.history, 22 + _ema_settle(21), 21, 2)


def _ema_settle(n: int) -> int:
    alpha = 2 / (n + 1)
    return math.ceil(math.log(1e-6) / math.log(1 - alpha))


def test_history_grows_with_period_but_stays_bounded() -> None:
    worst = parse_trader(definition({"indicator": "rsi", "period": 500, "op": "<", "value": 30}))
    assert 7_000 < worst.history < 7_500  # 8 REST pages at most


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["conditions"][1].update(period=1),
            "conditions[1].period: must be an integer between 2 and 500",
        ),
        (
            lambda d: d["conditions"][1].update(period=501),
            "conditions[1].period: must be an integer between 2 and 500",
        ),
        (
            lambda d: d["conditions"][1].update(period=20.0),
            "conditions[1].period: must be an integer between 2 and 500",
        ),
        (
            lambda d: d["conditions"][1].update(period=True),
            "conditions[1].period: must be an integer between 2 and 500",
        ),
        (
            lambda d: d["conditions"][3].update(period=0),
            "conditions[3].period: must be an integer between 1 and 500",
        ),
        (
            lambda d: d["conditions"][0].update(value=101),
            "conditions[0].value: must be a number between 0 and 100",
        ),
        (
            lambda d: d["conditions"][0].update(value="30"),
            "conditions[0].value: must be a number between 0 and 100",
        ),
        (
            lambda d: d["conditions"][0].update(value=10**400),
            "conditions[0].value: must be a number between 0 and 100",
        ),
        (
            lambda d: d["conditions"][1].update(value=0),
            "conditions[1].value: must be a number greater than 0 and at most 1000",
        ),
        (
            lambda d: d["conditions"][3].update(value=-100.5),
            "conditions[3].value: must be a number between -100 and 10000",
        ),
        (
            lambda d: d["conditions"][0].update(op="=="),
            'conditions[0].op: must be one of "<", "<=", ">", ">="',
        ),
        (
            lambda d: d["conditions"][0].update(op=None),
            'conditions[0].op: must be one of "<", "<=", ">", ">="',
        ),
        (lambda d: d["conditions"][0].pop("value"), "conditions[0].value: required"),
        (
            lambda d: d["conditions"][0].update(perod=14),
            "conditions[0].perod: unknown field (allowed: indicator, op, period, value)",
        ),
        (lambda d: d["conditions"][0].update(indicator="RSI"), "conditions[0].indicator: must be one of"),
        (lambda d: d["conditions"][0].pop("indicator"), "conditions[0].indicator: required"),
        (lambda d: d["conditions"].__setitem__(0, "rsi<30"), "conditions[0]: must be a JSON object"),
        (lambda d: d["conditions"][2].update(slow=9), "conditions[2].slow: must be greater than fast (9)"),
        (
            lambda d: d["conditions"][2].update(direction="sideways"),
            'conditions[2].direction: must be one of "up", "down"',
        ),
        (
            lambda d: d["conditions"].append(dict(d["conditions"][0])),
            "conditions[4]: duplicates conditions[0]",
        ),
        (lambda d: d["conditions"].clear(), "conditions: must be an array of 1 to 10 conditions"),
        (lambda d: d.update(conditions={"a": 1}), "conditions: must be an array of 1 to 10 conditions"),
        (lambda d: d.update(symbols=[]), "symbols: must be an array of 1 to 500 symbols"),
        (lambda d: d.update(symbols="BTCUSDT"), "symbols: must be an array of 1 to 500 symbols"),
        (
            lambda d: d.update(symbols=["BTCUSDT", "BTC/USDT"]),
            "symbols[1]: must be 2 to 20 ASCII letters or digits",
        ),
        (lambda d: d.update(symbols=["BTCUSDT", "btcusdt"]), "symbols[1]: duplicates symbols[0] (BTCUSDT)"),
        (lambda d: d.update(interval="1y"), 'interval: must be one of "1s", "1m"'),
        (lambda d: d.update(match="most"), 'match: must be one of "all", "any"'),
        (lambda d: d.update(cooldown_candles=-1), "cooldown_candles: must be an integer between 0 and 10000"),
        (lambda d: d.update(version=2), "version: must be 1"),
        (lambda d: d.update(version="1"), "version: must be 1"),
        (lambda d: d.pop("interval"), "interval: required"),
        (lambda d: d.update(name="x"), "name: unknown field (allowed: conditions, cooldown_candles"),
    ],
)
def test_errors_name_the_field(change: Any, message: str) -> None:
    d = copy.deepcopy(EXAMPLE)
    change(d)
    with pytest.raises(TraderDefinitionError) as info:
        parse_trader(d)
    assert str(info.value).startswith(message), str(info.value)
    assert str(info.value) == f"{info.value.path}: {info.value.problem}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[]", "definition: must be a JSON object"),
        ("{", "definition: not valid JSON"),
        ('{"version": 1, "version": 1}', 'definition: not valid JSON (duplicate key "version")'),
        ('{"version": NaN}', "definition: not valid JSON (NaN is not allowed)"),
        (b"\xff", "definition: not valid JSON"),
        ("[" * 50_000, "definition: not valid JSON"),
        ("{}" + " " * 70_000, "definition: larger than 65536 bytes"),
        (None, "definition: must be a JSON object"),
        ({1: 2}, "definition: keys must be strings"),
    ],
)
def test_malformed_documents(raw: Any, message: str) -> None:
    with pytest.raises(TraderDefinitionError) as info:
        parse_trader(raw)
    assert str(info.value).startswith(message), str(info.value)


def test_size_bounds() -> None:
    symbols = [f"SYM{i}USDT" for i in range(MAX_SYMBOLS)]
    assert len(parse_trader(definition(EVERY_KIND[0][0], symbols=symbols)).symbols) == MAX_SYMBOLS
    with pytest.raises(TraderDefinitionError, match=r"^symbols: must be an array of 1 to 50"):
        parse_trader(definition(EVERY_KIND[0][0], symbols=[*symbols, "ONEMORE"]))
    conditions = [
        {"indicator": "rsi", "period": p, "op": "<", "value": 30} for p in range(2, 2 + MAX_CONDITIONS)
    ]
    assert len(parse_trader(definition(*conditions)).conditions) == MAX_CONDITIONS
    with pytest.raises(TraderDefinitionError, match=r"^conditions: must be an array of 1 to 10"):
        parse_trader(definition(*conditions, {"indicator": "rsi", "period": 99, "op": "<", "value": 30}))


def test_values_are_data_never_code() -> None:
    hostile = definition(
        {"indicator": "rsi", "period": 14, "op": "<", "value": "__import__('os').system('x')"}
    )
    with pytest.raises(TraderDefinitionError, match=r"^conditions\[0\]\.value: must be a number"):
        parse_trader(hostile)
    with pytest.raises(TraderDefinitionError, match=r"^conditions\[0\]\.op: must be one of"):
        parse_trader(definition({"indicator": "rsi", "period": 14, "op": "lambda: 1", "value": 3}))


# --- evaluation ---------------------------------------------------------------------------------


def always(op: str = ">", value: float = -100) -> dict[str, Any]:
    """A condition that holds on every warm candle (price change > -100 %)."""
    return {"indicator": "price_change_pct", "period": 1, "op": op, "value": value}


def test_no_signal_before_warm_up() -> None:
    state = TraderState(parse_trader(definition(always())), "BTCUSDT")
    assert state.warmup == 2 and not state.ready
    assert state.update(bar(0, 100.0)) == ()
    assert state.status() == (("Price change(1) > -100%", None),)
    assert state.update(bar(1, 101.0)) == ("Price change(1) 1.00% > -100%",)
    assert state.ready and state.status() == (("Price change(1) > -100%", True),)


def test_cooldown_counts_candles() -> None:
    for cooldown in (0, 1, 3):
        state = TraderState(parse_trader(definition(always(), cooldown_candles=cooldown)), "BTCUSDT")
        fired = [i for i, c in enumerate(bars([100.0 + i for i in range(12)])) if state.update(c)]
        assert fired == list(range(1, 12, cooldown + 1)), cooldown


def test_cooldown_spans_gaps_in_time() -> None:
    state = TraderState(parse_trader(definition(always(), cooldown_candles=5)), "BTCUSDT")
    state.update(bar(0, 100.0))
    assert state.update(bar(1, 100.0))
    assert not state.update(bar(4, 100.0))  # 3 candles later: still cooling down
    assert state.update(bar(7, 100.0))  # 6 candles later: allowed
    assert state.pool.gaps == 2


def test_match_all_and_any() -> None:
    up = {"indicator": "price_change_pct", "period": 1, "op": ">", "value": 0}
    down = {"indicator": "price_change_pct", "period": 1, "op": "<", "value": 0}
    closes = [100.0, 101.0, 100.5, 102.0]
    all_state = TraderState(parse_trader(definition(up, always())), "BTCUSDT")
    any_state = TraderState(parse_trader(definition(up, down, match="any")), "BTCUSDT")
    all_results = [all_state.update(c) for c in bars(closes)]
    any_results = [any_state.update(c) for c in bars(closes)]
    assert all_results == [
        (),
        ("Price change(1) 1.00% > 0%", "Price change(1) 1.00% > -100%"),
        (),
        ("Price change(1) 1.49% > 0%", "Price change(1) 1.49% > -100%"),
    ]
    assert any_results == [
        (),
        ("Price change(1) 1.00% > 0%",),
        ("Price change(1) -0.50% < 0%",),
        ("Price change(1) 1.49% > 0%",),
    ]


def test_rsi_and_bollinger_conditions_follow_the_indicators() -> None:
    rng = random.Random(3)
    closes = [100.0]
    for _ in range(400):
        closes.append(round(closes[-1] * math.exp(rng.gauss(0, 0.01)), 2))
    rsi_d = parse_trader(definition({"indicator": "rsi", "period": 14, "op": "<", "value": 40}))
    bb_d = parse_trader(
        definition({"indicator": "close_vs_bollinger", "period": 20, "k": 1.5, "band": "upper", "op": ">"})
    )
    rsi_state, bb_state = TraderState(rsi_d, "BTCUSDT"), TraderState(bb_d, "BTCUSDT")
    rsi, bands = RSI(14), BollingerBands(20, 1.5)
    rsi_hits = bb_hits = 0
    for c in bars(closes):
        rsi.update(c.close)
        bands.update(c.close)
        expected_rsi = rsi.value is not None and rsi.value < 40
        expected_bb = bands.upper is not None and c.close > bands.upper
        assert bool(rsi_state.update(c)) == expected_rsi
        assert bool(bb_state.update(c)) == expected_bb
        rsi_hits += expected_rsi
        bb_hits += expected_bb
    assert rsi_hits > 10 and bb_hits > 10  # the series exercises both outcomes


def test_ema_cross_fires_exactly_on_the_crossing_candle() -> None:
    closes = [100.0] * 30 + [100.0 - i for i in range(1, 15)] + [90.0 + 2 * i for i in range(1, 20)]
    d = parse_trader(definition({"indicator": "ema_cross", "fast": 3, "slow": 8, "direction": "up"}))
    down = parse_trader(definition({"indicator": "ema_cross", "fast": 3, "slow": 8, "direction": "down"}))
    state, down_state = TraderState(d, "BTCUSDT"), TraderState(down, "BTCUSDT")
    fast, slow = EMA(3), EMA(8)
    previous: float | None = None
    crossings_up, crossings_down, fired_up, fired_down = [], [], [], []
    for i, c in enumerate(bars(closes)):
        fast.update(c.close)
        slow.update(c.close)
        if fast.value is not None and slow.value is not None:
            diff = fast.value - slow.value
            if previous is not None and previous <= 0 < diff:
                crossings_up.append(i)
            if previous is not None and previous >= 0 > diff:
                crossings_down.append(i)
            previous = diff
        if state.update(c):
            fired_up.append(i)
        if down_state.update(c):
            fired_down.append(i)
    assert fired_up == crossings_up and len(fired_up) == 1
    assert fired_down == crossings_down and len(fired_down) == 1
    assert fired_down[0] < fired_up[0]


def test_macd_conditions() -> None:
    closes = [100.0 + 5 * math.sin(i / 6) for i in range(200)]
    hist = parse_trader(definition(EVERY_KIND[-2][0]))
    cross = parse_trader(definition(EVERY_KIND[-1][0]))
    hist_state, cross_state = TraderState(hist, "BTCUSDT"), TraderState(cross, "BTCUSDT")
    positive = [i for i, c in enumerate(bars(closes)) if hist_state.update(c)]
    crossings = [i for i, c in enumerate(bars(closes)) if cross_state.update(c)]
    assert positive and crossings
    assert min(positive) >= 33  # nothing before the MACD's warm-up (34 candles)
    # Each upward crossing starts a run of positive histograms.
    for i in crossings:
        assert i in positive and i - 1 not in positive


def test_volume_spike_condition() -> None:
    volumes = [10.0] * 25 + [35.0, 10.0, 21.0]
    d = parse_trader(definition({"indicator": "volume_spike", "period": 20, "op": ">", "value": 2.0}))
    state = TraderState(d, "BTCUSDT")
    fired = [i for i, c in enumerate(bars([100.0] * len(volumes), volumes)) if state.update(c)]
    # 35 > 2 × 10 fires; 21 against an average raised to 11.25 (35 is in the window) does not.
    assert fired == [25]


def test_duplicates_and_overlap_are_ignored() -> None:
    state = TraderState(parse_trader(definition(always())), "BTCUSDT")
    history = bars([100.0, 101.0, 102.0])
    for c in history:
        state.prime(c)
    assert state.update(history[-1]) == ()  # REST/stream overlap
    assert state.update(bar(3, 103.0)) == ("Price change(1) 0.98% > -100%",)
    assert state.update(bar(3, 103.0)) == ()  # duplicate
    assert state.update(bar(2, 50.0)) == ()  # older than the last seen


def test_prime_never_signals_nor_starts_a_cooldown() -> None:
    state = TraderState(parse_trader(definition(always(), cooldown_candles=10)), "BTCUSDT")
    for c in bars([100.0 + i for i in range(20)]):
        state.prime(c)
    assert state.ready
    assert state.update(bar(20, 200.0)) == ("Price change(1) 68.07% > -100%",)


def test_evaluation_errors_are_typed() -> None:
    state = TraderState(parse_trader(definition(always(), symbols=["BTCUSDT", "ETHUSDT"])), "BTCUSDT")
    cases = [
        (bar(0, 1.0, symbol="ETHUSDT"), EvaluationErrorCode.WRONG_STREAM),
        (bar(0, 1.0, interval="5m"), EvaluationErrorCode.WRONG_STREAM),
        (bar(0, 1.0, closed=False), EvaluationErrorCode.NOT_CLOSED),
    ]
    for candle, code in cases:
        with pytest.raises(TraderEvaluationError) as info:
            state.update(candle)
        assert info.value.code is code
        with pytest.raises(TraderEvaluationError):
            state.prime(candle)
    state.close()
    with pytest.raises(TraderEvaluationError) as info:
        state.update(bar(5, 1.0))
    assert info.value.code is EvaluationErrorCode.RELEASED
    with pytest.raises(ValueError, match="not one of the trader's symbols"):
        TraderState(parse_trader(definition(always())), "ETHUSDT")


def test_errors_in_one_trader_leave_the_others_running() -> None:
    pool = IndicatorPool("BTCUSDT", "1m")
    d = parse_trader(definition(always()))
    a, b = TraderState(d, "BTCUSDT", pool), TraderState(d, "BTCUSDT", pool)
    for c in bars([100.0, 101.0, 102.0]):
        a.update(c)
    # b missed candles 1-2: it cannot evaluate candle 1 on indicators already at candle 2 …
    with pytest.raises(TraderEvaluationError) as info:
        b.update(bar(1, 101.0))
    assert info.value.code is EvaluationErrorCode.OUT_OF_STEP
    # … but it carries on with the next candle, as does everyone else.
    assert b.update(bar(3, 103.0)) == a.update(bar(3, 103.0)) == ("Price change(1) 0.98% > -100%",)


def test_shared_pool_computes_each_indicator_once() -> None:
    pool = IndicatorPool("BTCUSDT", "1m")
    d1 = parse_trader(EXAMPLE)
    d2 = parse_trader(
        definition(
            {"indicator": "rsi", "period": 14, "op": ">", "value": 70},
            {"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"},
        )
    )
    s1, s2 = TraderState(d1, "BTCUSDT", pool), TraderState(d2, "BTCUSDT", pool)
    # RSI(14), VolumeSpike(20), EMA(9), EMA(21), ROC(1): shared, not duplicated.
    assert len(pool) == 5
    assert pool.conditions == 5  # the two EMA crosses are one condition
    s2.close()
    assert len(pool) == 5 and pool.conditions == 4
    s1.close()
    assert len(pool) == 0 and pool.conditions == 0


def random_definitions(rng: random.Random, count: int) -> list[TraderDefinition]:
    menu = [c for c, _ in EVERY_KIND] + [
        {"indicator": "rsi", "period": 14, "op": ">", "value": 50},
        {"indicator": "close_vs_sma", "period": 20, "op": "<"},
        {"indicator": "ema_cross", "fast": 5, "slow": 13, "direction": "down"},
    ]
    out = []
    for _ in range(count):
        conditions = rng.sample(menu, rng.randint(1, 3))
        out.append(
            parse_trader(
                definition(*conditions, match=rng.choice(["all", "any"]), cooldown_candles=rng.randint(0, 3))
            )
        )
    return out


def walk_bars(rng: random.Random, count: int) -> list[Candle]:
    closes, volumes = [100.0], [10.0]
    for _ in range(count - 1):
        closes.append(round(closes[-1] * math.exp(rng.gauss(0, 0.01)), 2))
        volumes.append(round(rng.expovariate(0.1), 3))
    return bars(closes, volumes)


def test_shared_and_private_pools_give_identical_signals() -> None:
    rng = random.Random(11)
    definitions = random_definitions(rng, 40)
    candles = walk_bars(rng, 600)
    pool = IndicatorPool("BTCUSDT", "1m")
    shared = [TraderState(d, "BTCUSDT", pool) for d in definitions]
    private = [TraderState(d, "BTCUSDT") for d in definitions]
    signals = 0
    for c in candles:
        for s, p in zip(shared, private, strict=True):
            got = s.update(c)
            assert got == p.update(c)
            signals += bool(got)
    assert signals > 500
    assert len(pool) < sum(len(p.pool) for p in private)


def test_late_joiner_is_replayed_from_the_pool() -> None:
    rng = random.Random(5)
    candles = walk_bars(rng, 400)
    rsi_def = parse_trader(definition({"indicator": "rsi", "period": 14, "op": "<", "value": 45}))
    ema_def = parse_trader(definition({"indicator": "close_vs_ema", "period": 50, "op": ">"}))
    pool = IndicatorPool("BTCUSDT", "1m")
    first = TraderState(rsi_def, "BTCUSDT", pool)  # asks the pool to remember rsi_def.history closes
    for c in candles[:300]:
        first.update(c)
    late = TraderState(ema_def, "BTCUSDT", pool)  # EMA(50) is new: replayed from the remembered closes
    reference = TraderState(ema_def, "BTCUSDT")
    for c in candles[300 - rsi_def.history : 300]:
        reference.prime(c)
    assert late.ready == reference.ready
    for c in candles[300:]:
        assert late.update(c) == reference.update(c)
        first.update(c)


def test_pool_rejects_bad_candles() -> None:
    pool = IndicatorPool("btcusdt", "1m")
    assert pool.update(bar(0, 1.0))
    assert not pool.update(bar(0, 1.0))
    with pytest.raises(TraderEvaluationError) as info:
        pool.update(bar(1, 1.0, symbol="ETHUSDT"))
    assert info.value.code is EvaluationErrorCode.WRONG_STREAM
    with pytest.raises(TraderEvaluationError) as info:
        pool.update(bar(1, 1.0, closed=False))
    assert info.value.code is EvaluationErrorCode.NOT_CLOSED
    assert pool.update(bar(2, 1.0))
    with pytest.raises(TraderEvaluationError) as info:
        pool.update(bar(1, 1.0))
    assert info.value.code is EvaluationErrorCode.OUT_OF_STEP


def test_internal_failure_is_isolated_and_sticky(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = IndicatorPool("BTCUSDT", "1m")
    failing = TraderState(parse_trader(definition(always())), "BTCUSDT", pool)
    healthy = TraderState(parse_trader(definition(RSI_ANY)), "BTCUSDT", pool)
    for i in range(4):
        failing.update(bar(i, 100.0 + i))
        healthy.update(bar(i, 100.0 + i))

    def boom(self: Any, x: float) -> None:
        raise ZeroDivisionError("simulated")

    from signalguard.core.indicators import PriceChangePct

    # Each indicator's `update` is its own (see the indicators' module notes): fail this one.
    (indicator,) = [ind for ind, _ in pool._indicators.values() if isinstance(ind, PriceChangePct)]
    monkeypatch.setattr(indicator, "update", lambda x: boom(indicator, x))
    pool._rebuild_feeds()
    rsi_before = pool._indicators[("rsi", 2, 0, 0, 0.0)][0].value
    with pytest.raises(TraderEvaluationError) as info:
        failing.update(bar(4, 90.0))
    assert info.value.code is EvaluationErrorCode.INTERNAL
    assert "Price change(1) > -100%" in str(info.value) and "ZeroDivisionError('simulated')" in str(
        info.value
    )
    # The other indicator took the candle exactly once, and its trader goes on.
    assert pool._indicators[("rsi", 2, 0, 0, 0.0)][0].value != rsi_before
    assert healthy.update(bar(4, 90.0)) == ("RSI(2) 7.1 > 0",) and healthy.failure is None
    assert list(pool.broken) == list(failing.definition.conditions)
    monkeypatch.undo()
    with pytest.raises(TraderEvaluationError) as info:
        failing.update(bar(5, 95.0))
    assert info.value.code is EvaluationErrorCode.INTERNAL
    assert healthy.update(bar(5, 95.0)) == ("RSI(2) 45.8 > 0",)
    # The failed indicator stays retired until its last user leaves; then the condition can return.
    late = TraderState(parse_trader(definition(always())), "BTCUSDT", pool)
    assert late.failure is not None
    # A new condition on the retired indicator is born failed too.
    other = TraderState(parse_trader(definition(always("<", 50))), "BTCUSDT", pool)
    assert other.failure is not None and "reads a failed indicator" in other.failure
    late.close()
    other.close()
    failing.close()
    assert pool.broken == {} and ("roc", 1, 0, 0, 0.0) not in pool._indicators
    again = TraderState(parse_trader(definition(always())), "BTCUSDT", pool)
    # Rebuilt from the closes the pool remembers, it is warm at once.
    assert again.update(bar(6, 96.0)) == ("Price change(1) 1.05% > -100%",)


RSI_ANY: dict[str, Any] = {"indicator": "rsi", "period": 2, "op": ">", "value": 0}


def test_a_failing_condition_alone_is_retired(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = IndicatorPool("BTCUSDT", "1m")
    both = TraderState(parse_trader(definition(always(), RSI_ANY, match="any")), "BTCUSDT", pool)
    only_rsi = TraderState(parse_trader(definition(RSI_ANY)), "BTCUSDT", pool)
    for i in range(3):
        both.update(bar(i, 100.0 + i))
        only_rsi.update(bar(i, 100.0 + i))
    probe = pool._probes[parse_trader(definition(always())).conditions[0]][0]

    class Exploding:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("exploded")

    monkeypatch.setattr(probe, "_indicator", Exploding())
    # A match-any trader does not signal on its healthy condition while another has failed.
    with pytest.raises(TraderEvaluationError, match="exploded"):
        both.update(bar(3, 110.0))
    assert only_rsi.update(bar(3, 110.0)) == ("RSI(2) 100.0 > 0",)
    assert ("roc", 1, 0, 0, 0.0) in pool._indicators and not pool._dead  # the indicator was fine


def test_threshold_values_keep_their_spelling() -> None:
    a = parse_trader(definition({"indicator": "rsi", "period": 14, "op": "<", "value": 30}))
    b = parse_trader(definition({"indicator": "rsi", "period": 14, "op": "<", "value": 30.0}))
    assert a.labels == ("RSI(14) < 30",) and b.labels == ("RSI(14) < 30.0",)
    assert isinstance(a.conditions[0], Threshold) and a.conditions[0] == b.conditions[0]
