"""Property tests: the kline parsers accept every valid message and fail on anything else only
with MarketDataError — never another exception."""

from __future__ import annotations

import copy
import json
import math
from datetime import date
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalguard.core.candles import (
    INTERVALS,
    MONTH,
    SUPPORTED_INTERVALS,
    Candle,
    ErrorCode,
    KlineParser,
    MarketDataError,
    next_open_time,
    parse_rest_kline,
    parse_ws_kline,
)

FUZZ = settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MONDAY = 1_499_040_000_000  # 2017-07-03T00:00:00Z: aligned for every fixed interval

# Strings that look like numbers, or almost do (built from integers: st.from_regex is slow).
numberish = st.one_of(
    st.builds(
        lambda whole, frac, exp: f"{whole}{frac}{exp}",
        st.integers(-(10**12), 10**12),
        st.sampled_from(["", ".", ".5", ".00000001", ".12345678901"]),
        st.sampled_from(["", "e5", "E-3", "e+400", "e-400"]),
    ),
    st.sampled_from(
        ["nan", "NaN", "inf", "-inf", "1_000", " 1", "1 ", "", ".", "-", "1e", "0x10", "١٢", "0"]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
symbols = st.one_of(
    st.sampled_from(["BTCUSDT", "btcusdt", "ETHBTC", "1000SATSUSDT", "B", "A" * 21, "BTC-USDT", "bıtusdt"]),
    st.text(alphabet="ABCZabz019-_ ıé\n", max_size=22),
)
valid_symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=20)


@st.composite
def open_times(draw: st.DrawFn, interval: str) -> int:
    if interval == MONTH:
        year = draw(st.integers(1970, 2200))
        month = draw(st.integers(1, 12))
        return (date(year, month, 1).toordinal() - date(1970, 1, 1).toordinal()) * 86_400_000
    step = INTERVALS[interval]
    return MONDAY + draw(st.integers(-(MONDAY // step), (2**42 - MONDAY) // step)) * step


@st.composite
def prices(draw: st.DrawFn) -> tuple[float, float, float, float, float]:
    """A consistent (open, high, low, close, volume), as Binance would send."""
    magnitude = 10.0 ** draw(st.integers(-8, 6))
    open_, close = (draw(st.integers(1, 10**8)) * magnitude / 10**4 for _ in range(2))
    high = max(open_, close) * draw(st.floats(1.0, 1.5))
    low = min(open_, close) * draw(st.floats(0.5, 1.0))
    volume = draw(st.floats(0.0, 1e12))
    return open_, high, low, close, volume


def text(x: float) -> str:
    return repr(x)


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[dict[str, Any], Candle]:
    interval = draw(st.sampled_from(sorted(SUPPORTED_INTERVALS)))
    symbol = draw(valid_symbols)
    t = draw(open_times(interval))
    o, h, lo, c, v = draw(prices())
    closed = draw(st.booleans())
    k = {
        "t": t,
        "T": next_open_time(interval, t) - 1,
        "s": symbol,
        "i": interval,
        "f": 1,
        "L": 2,
        "o": text(o),
        "c": text(c),
        "h": text(h),
        "l": text(lo),
        "v": text(v),
        "n": 3,
        "x": closed,
        "q": "0",
        "V": "0",
        "Q": "0",
        "B": "0",
    }
    message: dict[str, Any] = {"e": "kline", "E": t + 1, "s": symbol, "k": k}
    if draw(st.booleans()):
        message = {"stream": f"{symbol.lower()}@kline_{interval}", "data": message}
    return message, Candle(symbol, interval, t, o, h, lo, c, v, closed)


def paths(message: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every (container, key) of a kline message, for mutation."""
    out = [(message, key) for key in message]
    event = message.get("data", message)
    if isinstance(event, dict):
        out += [(event, key) for key in event if event is not message]
        if isinstance(event.get("k"), dict):
            out += [(event["k"], key) for key in event["k"]]
    return out


# Replacement values for mutations: every JSON type, edge numbers and near-miss strings. A fixed
# menu keeps generation cheap (a recursive strategy costs ~2 ms per example, too slow for 10,000).
WEIRD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**63,
    -(2**63),
    10**30,
    10**400,
    0.0,
    -0.0,
    1.5,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    " ",
    "0",
    "-1",
    "1e999",
    "nan",
    "NaN",
    "inf",
    "1_000",
    " 1",
    "1 ",
    "0x1A",
    "١٢",
    "1.2.3",
    "--1",
    ".",
    "e5",
    "abc",
    "kline",
    "BTCUSDT",
    "btcusdt",
    "ETHUSDT",
    "B",
    "BTC-USDT",
    "bıtusdt",
    "1m",
    "1M",
    "2m",
    "1W",
    "1d ",
    "true",
    [],
    {},
    [1, "2"],
    {"a": 1},
    {"e": "kline"},
    [[[]]],
    "x" * 100,
]
# Copies: a drawn list or dict may be mutated later, and must not change the menu.
weird_values = st.one_of(
    st.sampled_from(WEIRD).map(copy.deepcopy),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    numberish,
)


def _template(seed: int) -> dict[str, Any]:
    """A valid kline event, varied by ``seed`` (built directly: cheap)."""
    intervals = sorted(SUPPORTED_INTERVALS)
    interval = intervals[seed % len(intervals)]
    if interval == MONTH:
        t = (
            date(2000 + seed % 150, 1 + seed % 12, 1).toordinal() - date(1970, 1, 1).toordinal()
        ) * 86_400_000
    else:
        t = MONDAY + (seed % 100_000) * INTERVALS[interval]
    scale = 10.0 ** (seed % 13 - 6)
    o, c = 1.5 * scale, (1.0 + (seed % 7) / 10) * scale
    symbol = ["BTCUSDT", "ETHBTC", "1000SATSUSDT", "XY"][seed % 4]
    event = {
        "e": "kline",
        "E": t + 1,
        "s": symbol,
        "k": {
            "t": t,
            "T": next_open_time(interval, t) - 1,
            "s": symbol,
            "i": interval,
            "o": repr(o),
            "c": repr(c),
            "h": repr(max(o, c) * 1.01),
            "l": repr(min(o, c) * 0.99),
            "v": repr(seed * 0.5),
            "x": seed % 2 == 0,
            "n": 3,
        },
    }
    if seed % 3 == 0:
        return {"stream": f"{symbol.lower()}@kline_{interval}", "data": event}
    return event


@st.composite
def mutated_events(draw: st.DrawFn) -> object:
    message = _template(draw(st.integers(0, 10**6)))
    for _ in range(draw(st.integers(0, 3))):
        targets = paths(message)
        if not targets:
            break
        container, key = targets[draw(st.integers(0, len(targets) - 1))]
        if draw(st.integers(0, 4)) == 0:
            del container[key]
        elif isinstance(container[key], int) and not isinstance(container[key], bool) and draw(st.booleans()):
            container[key] += draw(st.integers(-(10**6), 10**6))  # misalign a time
        else:
            container[key] = draw(weird_values)
    form = draw(st.integers(0, 2))
    if form == 0:
        return message
    encoded = json.dumps(message)  # NaN/Infinity are emitted as such and must be refused
    return encoded if form == 1 else encoded.encode()


raw_garbage = st.one_of(
    weird_values,
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(lambda v: json.dumps({"stream": "btcusdt@kline_1m", "data": v}), weird_values),
    st.builds(lambda v: {"e": "kline", "s": "BTCUSDT", "k": v}, weird_values),
    st.builds(lambda v: [v, v], weird_values),
)


def check_candle(candle: Candle) -> None:
    assert candle.interval in SUPPORTED_INTERVALS
    assert candle.open_time >= 0
    for x in (candle.open, candle.high, candle.low, candle.close, candle.volume):
        assert math.isfinite(x)
    assert candle.low > 0 and candle.volume >= 0
    assert candle.low <= min(candle.open, candle.close) <= max(candle.open, candle.close) <= candle.high


def parses_or_rejects(message: object) -> None:
    try:
        candle = parse_ws_kline(message)
    except MarketDataError as exc:
        assert isinstance(exc.code, ErrorCode)
        assert str(exc) and ":" in str(exc)
        return
    check_candle(candle)


@FUZZ
@given(st.one_of(mutated_events(), mutated_events(), mutated_events(), raw_garbage))
def test_ws_parser_never_crashes(message: object) -> None:
    parses_or_rejects(message)


@settings(max_examples=1_000, deadline=None)
@given(valid_events(), st.sampled_from(["object", "str", "bytes"]))
def test_valid_ws_events_round_trip(generated: tuple[dict[str, Any], Candle], form: str) -> None:
    message, expected = generated
    payload: object = message
    if form != "object":
        payload = json.dumps(message) if form == "str" else json.dumps(message).encode()
    assert parse_ws_kline(payload) == expected


REST_SYMBOLS = ["BTCUSDT", "ethbtc", "B", "BTC-USDT", "bıtusdt", "", "A" * 21]


@st.composite
def rest_rows(draw: st.DrawFn) -> tuple[object, str, str, int]:
    """A REST row (valid, mutated or garbage) with the request's symbol, interval and clock."""
    seed = draw(st.integers(0, 10**6))
    template = _template(seed)
    k = template.get("data", template)["k"]
    row: list[Any] = [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], "0", 5, "0", "0", "0"]
    for _ in range(draw(st.integers(0, 3))):
        if not row:
            break
        i = draw(st.integers(0, len(row) - 1))
        choice = draw(st.integers(0, 4))
        if choice == 0:
            del row[i]
        elif choice == 1 and isinstance(row[i], int):
            row[i] += draw(st.integers(-(10**6), 10**6))
        else:
            row[i] = draw(weird_values)
    symbol = REST_SYMBOLS[seed % 50] if seed % 50 < len(REST_SYMBOLS) else "BTCUSDT"
    now_ms = k["T"] + seed % 3 - 1  # just before, at, or just after the close time
    if seed % 10 == 0:
        return draw(weird_values), k["i"], symbol, now_ms
    return row, k["i"], symbol, now_ms


@FUZZ
@given(rest_rows())
def test_rest_parser_never_crashes(generated: tuple[object, str, str, int]) -> None:
    row, interval, symbol, now_ms = generated
    try:
        candle = parse_rest_kline(row, symbol=symbol, interval=interval, now_ms=now_ms)
    except MarketDataError as exc:
        assert isinstance(exc.code, ErrorCode)
        return
    check_candle(candle)
    assert candle.closed == (now_ms > candle.close_time)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(mutated_events(), raw_garbage), max_size=20))
def test_kline_parser_counts_every_message(messages: list[object]) -> None:
    parser = KlineParser()
    results = [parser.parse(m) for m in messages]
    assert parser.accepted == sum(r is not None for r in results)
    assert parser.rejected == len(messages) - parser.accepted
    assert sum(parser.rejected_by_code.values()) == parser.rejected
