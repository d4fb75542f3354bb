from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from signalguard.core.candles import (
    INTERVALS,
    MAX_MESSAGE_SIZE,
    MAX_OPEN_TIME,
    MONTH,
    SUPPORTED_INTERVALS,
    Applied,
    Candle,
    CandleHistory,
    Change,
    ErrorCode,
    KlineParser,
    MarketDataError,
    candle_index,
    is_aligned,
    next_open_time,
    normalize_symbol,
    parse_rest_kline,
    parse_rest_klines,
    parse_ws_kline,
)

MINUTE = 60_000
T0 = 1_672_531_200_000  # 2023-01-01T00:00:00Z, a Sunday


def ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def event(**k_overrides: Any) -> dict[str, Any]:
    k: dict[str, Any] = {
        "t": T0,
        "T": T0 + MINUTE - 1,
        "s": "BTCUSDT",
        "i": "1m",
        "f": 100,
        "L": 200,
        "o": "16500.10",
        "c": "16510.00",
        "h": "16520.00",
        "l": "16490.50",
        "v": "12.50000000",
        "n": 100,
        "x": True,
        "q": "1.0",
        "V": "500",
        "Q": "0.500",
        "B": "123456",
    }
    k.update(k_overrides)
    return {"e": "kline", "E": T0 + 1234, "s": "BTCUSDT", "k": k}


def candle(open_time: int = T0, close: float = 100.0, **kw: Any) -> Candle:
    fields: dict[str, Any] = {
        "symbol": "BTCUSDT",
        "interval": "1m",
        "open_time": open_time,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume": 1.0,
        "closed": True,
    }
    fields.update(kw)
    return Candle(**fields)


def code_of(fn: Any, *args: Any, **kwargs: Any) -> tuple[ErrorCode, str]:
    with pytest.raises(MarketDataError) as info:
        fn(*args, **kwargs)
    return info.value.code, str(info.value)


# --- intervals ----------------------------------------------------------------------------------


def test_interval_table() -> None:
    assert INTERVALS["1s"] == 1_000
    assert INTERVALS["1m"] == 60_000
    assert INTERVALS["15m"] == 900_000
    assert INTERVALS["4h"] == 14_400_000
    assert INTERVALS["1d"] == 86_400_000
    assert INTERVALS["3d"] == 259_200_000
    assert INTERVALS["1w"] == 604_800_000
    assert MONTH not in INTERVALS  # a calendar month has no fixed length
    expected = {
        "1s",
        "1m",
        "3m",
        "5m",
        "15m",
        "30m",
        "1h",
        "2h",
        "4h",
        "6h",
        "8h",
        "12h",
        "1d",
        "3d",
        "1w",
        "1M",
    }
    assert expected == SUPPORTED_INTERVALS


def test_alignment() -> None:
    assert is_aligned("1m", T0) and not is_aligned("1m", T0 + 1)
    assert is_aligned("4h", T0 + 4 * 3_600_000) and not is_aligned("4h", T0 + 3_600_000)
    # Binance weeks open on Monday 00:00 UTC (the documented example row opens 2017-07-03).
    assert is_aligned("1w", 1_499_040_000_000)
    assert is_aligned("1w", ms(2024, 1, 1)) and not is_aligned("1w", ms(2023, 12, 31))
    # 3d: only the day boundary is checked.
    assert is_aligned("3d", ms(2024, 1, 2)) and not is_aligned("3d", ms(2024, 1, 2) + 1)
    assert is_aligned("1M", ms(2024, 2, 1)) and not is_aligned("1M", ms(2024, 2, 2))
    assert not is_aligned("1m", -MINUTE) and not is_aligned("1m", MAX_OPEN_TIME + MINUTE)


def test_calendar_months() -> None:
    assert next_open_time("1M", ms(2024, 1, 1)) == ms(2024, 2, 1)
    assert next_open_time("1M", ms(2024, 2, 1)) == ms(2024, 3, 1)  # leap February: 29 days
    assert next_open_time("1M", ms(2024, 12, 1)) == ms(2025, 1, 1)
    assert candle_index("1M", ms(2025, 1, 1)) - candle_index("1M", ms(2024, 12, 1)) == 1
    assert candle_index("1M", ms(2024, 12, 1)) - candle_index("1M", ms(2024, 1, 1)) == 11
    assert candle(ms(2024, 2, 1), interval="1M").close_time == ms(2024, 3, 1) - 1


def test_candle_index_counts_candles() -> None:
    for interval, length in INTERVALS.items():
        t = 1_499_040_000_000  # aligned for every interval (a Monday midnight)
        assert candle_index(interval, t + length) - candle_index(interval, t) == 1
        assert next_open_time(interval, t) == t + length
    with pytest.raises(MarketDataError):
        candle_index("2m", T0)
    with pytest.raises(MarketDataError):
        next_open_time("1m", -1)


def test_normalize_symbol() -> None:
    assert normalize_symbol("btcusdt") == "BTCUSDT"
    assert normalize_symbol("1000SATSUSDT") == "1000SATSUSDT"
    for bad in ("B", "A" * 21, "BTC-USDT", "BTC USDT", "bıtusdt", "ＢＴＣＵＳＤＴ", "BTC\n", "", 5, None):
        with pytest.raises(MarketDataError) as info:
            normalize_symbol(bad)
        assert info.value.code is ErrorCode.BAD_SYMBOL


# --- candle -------------------------------------------------------------------------------------


def test_candle_validation() -> None:
    good = candle(open=10.0, high=12.0, low=9.0, close=11.0)
    assert good.close_time == T0 + MINUTE - 1
    cases: list[tuple[dict[str, Any], ErrorCode]] = [
        ({"symbol": "btcusdt"}, ErrorCode.BAD_SYMBOL),
        ({"interval": "2m"}, ErrorCode.BAD_INTERVAL),
        ({"open_time": T0 + 1}, ErrorCode.BAD_TIME),
        ({"open_time": -MINUTE}, ErrorCode.BAD_TIME),
        ({"open_time": float(T0)}, ErrorCode.BAD_TIME),
        ({"high": float("nan")}, ErrorCode.BAD_NUMBER),
        ({"volume": float("inf")}, ErrorCode.BAD_NUMBER),
        ({"high": True}, ErrorCode.BAD_NUMBER),
        ({"high": 10.5}, ErrorCode.BAD_PRICES),  # below close 11
        ({"low": 10.5}, ErrorCode.BAD_PRICES),  # above open 10
        ({"low": 0.0, "open": 0.0}, ErrorCode.BAD_PRICES),
        ({"volume": -0.1}, ErrorCode.BAD_VOLUME),
        ({"closed": 1}, ErrorCode.WRONG_TYPE),
    ]
    base = {"open": 10.0, "high": 12.0, "low": 9.0, "close": 11.0}
    for change, code in cases:
        with pytest.raises(MarketDataError) as info:
            candle(**{**base, **change})
        assert info.value.code is code, change
        assert str(info.value).startswith("candle: ")


# --- REST ---------------------------------------------------------------------------------------

DOC_ROW = [
    1499040000000,
    "0.01634790",
    "0.80000000",
    "0.01575800",
    "0.01577100",
    "148976.11427815",
    1499644799999,
    "2434.19055334",
    308,
    "1756.87402397",
    "28.46694368",
    "0",
]


def test_rest_row_from_the_binance_documentation() -> None:
    c = parse_rest_kline(DOC_ROW, symbol="bnbbtc", interval="1w", now_ms=1499644800000)
    expected = Candle(
        "BNBBTC", "1w", 1499040000000, 0.0163479, 0.8, 0.015758, 0.015771, 148976.11427815, True
    )
    assert c == expected
    # Closed only once the clock is past the close time.
    assert not parse_rest_kline(DOC_ROW, symbol="BNBBTC", interval="1w", now_ms=1499644799999).closed


@pytest.mark.parametrize(
    ("mutate", "code", "where"),
    [
        (lambda r: r.__setitem__(2, "abc"), ErrorCode.BAD_NUMBER, "row[2] (high)"),
        (lambda r: r.__setitem__(1, "nan"), ErrorCode.BAD_NUMBER, "row[1] (open)"),
        (lambda r: r.__setitem__(1, "1e999"), ErrorCode.BAD_NUMBER, "row[1] (open)"),
        (lambda r: r.__setitem__(1, "1_000"), ErrorCode.BAD_NUMBER, "row[1] (open)"),
        (lambda r: r.__setitem__(1, " 1"), ErrorCode.BAD_NUMBER, "row[1] (open)"),
        (lambda r: r.__setitem__(1, None), ErrorCode.WRONG_TYPE, "row[1] (open)"),
        (lambda r: r.__setitem__(0, "1499040000000"), ErrorCode.WRONG_TYPE, "row[0] (open time)"),
        (lambda r: r.__setitem__(0, 1499040000001), ErrorCode.BAD_TIME, "row[0] (open time)"),
        (lambda r: r.__setitem__(6, 1499644800000), ErrorCode.BAD_TIME, "row[6] (close time)"),
        (lambda r: r.__setitem__(5, "-1"), ErrorCode.BAD_VOLUME, "row: volume"),
        (lambda r: r.__setitem__(3, "0.9"), ErrorCode.BAD_PRICES, "row: low"),
        (lambda r: r.__delitem__(slice(6, None)), ErrorCode.MISSING_FIELD, "row: 6 fields"),
    ],
)
def test_rest_row_errors_name_the_field(mutate: Any, code: ErrorCode, where: str) -> None:
    row = list(DOC_ROW)
    mutate(row)
    got, message = code_of(parse_rest_kline, row, symbol="BNBBTC", interval="1w", now_ms=0)
    assert got is code
    assert message.startswith(where), message


def test_rest_rejects_bad_request_parameters() -> None:
    code, _ = code_of(parse_rest_kline, DOC_ROW, symbol="BNB-BTC", interval="1w", now_ms=0)
    assert code is ErrorCode.BAD_SYMBOL
    code, _ = code_of(parse_rest_kline, DOC_ROW, symbol="BNBBTC", interval="1W", now_ms=0)
    assert code is ErrorCode.BAD_INTERVAL
    with pytest.raises(TypeError):
        parse_rest_kline(DOC_ROW, symbol="BNBBTC", interval="1w", now_ms=1.5)  # type: ignore[arg-type]


def rest_rows(count: int, start: int = T0) -> list[list[Any]]:
    rows = []
    for i in range(count):
        t = start + i * MINUTE
        rows.append([t, "10.0", "11.0", "9.0", "10.5", "3.0", t + MINUTE - 1, "0", 1, "0", "0", "0"])
    return rows


def test_rest_response() -> None:
    rows = rest_rows(5)
    now = T0 + 4 * MINUTE + 30_000  # inside the last kline
    candles = parse_rest_klines(json.dumps(rows), symbol="ETHUSDT", interval="1m", now_ms=now)
    assert [c.open_time for c in candles] == [T0 + i * MINUTE for i in range(5)]
    assert [c.closed for c in candles] == [True] * 4 + [False]
    swapped = [rows[1], rows[0]]
    code, message = code_of(parse_rest_klines, swapped, symbol="ETHUSDT", interval="1m", now_ms=now)
    assert code is ErrorCode.BAD_SEQUENCE and message.startswith("rows[1][0] (open time)")
    code, message = code_of(parse_rest_klines, [rows[0], "x"], symbol="ETHUSDT", interval="1m", now_ms=now)
    assert code is ErrorCode.WRONG_TYPE and message.startswith("rows[1]:")
    code, _ = code_of(parse_rest_klines, {"rows": []}, symbol="ETHUSDT", interval="1m", now_ms=now)
    assert code is ErrorCode.WRONG_TYPE


# --- WebSocket ----------------------------------------------------------------------------------


def test_single_and_combined_stream() -> None:
    expected = Candle("BTCUSDT", "1m", T0, 16500.1, 16520.0, 16490.5, 16510.0, 12.5, True)
    single = event()
    combined = {"stream": "btcusdt@kline_1m", "data": single}
    for message in (single, json.dumps(single), json.dumps(single).encode(), combined, json.dumps(combined)):
        assert parse_ws_kline(message) == expected
    assert not parse_ws_kline(event(x=False)).closed


def test_lower_case_symbols_are_normalised() -> None:
    message = event(s="btcusdt")
    message["s"] = "btcusdt"
    assert parse_ws_kline(message).symbol == "BTCUSDT"


@pytest.mark.parametrize(
    ("message", "code", "start"),
    [
        ("{", ErrorCode.NOT_JSON, "message: not valid JSON"),
        (b"\xff\xfe\x00", ErrorCode.NOT_JSON, "message: not valid JSON"),
        ('{"e": "kline", "e": "kline"}', ErrorCode.NOT_JSON, "message: not valid JSON (duplicate key"),
        (json.dumps(event()).replace('"16520.00"', "NaN"), ErrorCode.NOT_JSON, "message"),
        ("[" * 100_000, ErrorCode.TOO_LARGE, "message: 100000 characters"),
        ("[" * 60_000, ErrorCode.NOT_JSON, "message: not valid JSON"),
        ("[]", ErrorCode.WRONG_TYPE, "message: expected an object, got array"),
        ({"result": None, "id": 1}, ErrorCode.NOT_KLINE, "e: not a kline event"),
        ({**event(), "e": "24hrTicker"}, ErrorCode.NOT_KLINE, "e: not a kline event (event type '24hr"),
        ({**event(), "s": "ETHUSDT"}, ErrorCode.MISMATCH, "k.s: 'BTCUSDT' differs"),
        ({"e": "kline", "s": "BTCUSDT"}, ErrorCode.MISSING_FIELD, "k: missing"),
        ({**event(), "k": []}, ErrorCode.WRONG_TYPE, "k: expected an object"),
        (event(i="2m"), ErrorCode.BAD_INTERVAL, "k.i: '2m'"),
        (event(t=T0 + 1), ErrorCode.BAD_TIME, "k.t (open time)"),
        (event(t=-MINUTE, T=-1), ErrorCode.BAD_TIME, "k.t (open time)"),
        (event(t=True), ErrorCode.WRONG_TYPE, "k.t (open time)"),
        (event(T=T0 + MINUTE), ErrorCode.BAD_TIME, "k.T (close time)"),
        (event(h="16500.00"), ErrorCode.BAD_PRICES, "k: high"),
        (event(l="16511"), ErrorCode.BAD_PRICES, "k: low"),
        (event(v="-1"), ErrorCode.BAD_VOLUME, "k: volume"),
        (event(o="inf"), ErrorCode.BAD_NUMBER, "k.o (open)"),
        (event(o="١٢"), ErrorCode.BAD_NUMBER, "k.o (open)"),
        (event(o=[1]), ErrorCode.WRONG_TYPE, "k.o (open)"),
        (event(o=10**400), ErrorCode.BAD_NUMBER, "k.o (open)"),
        (event(x="true"), ErrorCode.WRONG_TYPE, "k.x"),
        (event(s="BTC/USDT"), ErrorCode.BAD_SYMBOL, "k.s"),
        ({"stream": "ethusdt@kline_1m", "data": event()}, ErrorCode.MISMATCH, "stream: 'ethusdt@kline_1m'"),
        ({"stream": "btcusdt@kline_1m@+08:00", "data": event()}, ErrorCode.MISMATCH, "stream"),
        ({"stream": 5, "data": event()}, ErrorCode.WRONG_TYPE, "stream"),
        ({"stream": "btcusdt@kline_1m"}, ErrorCode.MISSING_FIELD, "data: missing"),
        ({"stream": "btcusdt@kline_1m", "data": event(o="x")}, ErrorCode.BAD_NUMBER, "data.k.o (open)"),
    ],
)
def test_ws_errors(message: Any, code: ErrorCode, start: str) -> None:
    got, text = code_of(parse_ws_kline, message)
    assert got is code, text
    assert text.startswith(start), text


def test_error_messages_stay_short_for_huge_values() -> None:
    _, text = code_of(parse_ws_kline, event(o="9" * 10_000))
    assert len(text) < 200
    _, text = code_of(parse_ws_kline, event(t=10**5000))
    assert len(text) < 200


def test_kline_parser_counts_and_never_raises() -> None:
    parser = KlineParser()
    messages: list[Any] = [
        json.dumps(event()),
        "not json",
        {"result": None, "id": 7},
        event(h="1"),
        event(h="1"),
        b"\x00",
        "x" * (MAX_MESSAGE_SIZE + 1),
        None,
        42,
        {"stream": "btcusdt@kline_1m", "data": event(x=False)},
    ]
    results = [parser.parse(m) for m in messages]
    assert [r is not None for r in results] == [True] + [False] * 8 + [True]
    assert parser.accepted == 2
    assert parser.rejected == 8
    assert parser.rejected_by_code == {
        ErrorCode.NOT_JSON: 2,
        ErrorCode.NOT_KLINE: 1,
        ErrorCode.BAD_PRICES: 2,
        ErrorCode.TOO_LARGE: 1,
        ErrorCode.WRONG_TYPE: 2,
    }
    assert parser.last_error is not None and parser.last_error.code is ErrorCode.WRONG_TYPE
    # Codes are stable strings, usable as metric labels.
    assert {str(code) for code in parser.rejected_by_code} <= {c.value for c in ErrorCode}
    assert parser.parse_rest(DOC_ROW, symbol="BNBBTC", interval="1w", now_ms=0) is not None
    assert parser.parse_rest(DOC_ROW[:3], symbol="BNBBTC", interval="1w", now_ms=0) is None
    assert parser.rejected_by_code[ErrorCode.MISSING_FIELD] == 1


# --- history ------------------------------------------------------------------------------------


def test_history_live_candle_lifecycle() -> None:
    h = CandleHistory("btcusdt", "1m", maxlen=3)
    assert h.apply(candle(T0, 10.0, closed=False)).change is Change.OPENED
    assert h.apply(candle(T0, 11.0, closed=False)).change is Change.UPDATED
    assert h.live is not None and h.live.close == 11.0
    assert h.apply(candle(T0, 12.0, closed=True)) == Applied(Change.CLOSED)
    assert h.live is None and h.last_closed is not None and h.last_closed.close == 12.0
    # Stragglers of a finalised candle are ignored and reported.
    assert h.apply(candle(T0, 13.0, closed=False)).change is Change.STALE
    assert h.apply(candle(T0, 12.0, closed=True)).change is Change.DUPLICATE
    assert h.apply(candle(T0 - MINUTE, 9.0, closed=True)).change is Change.STALE
    assert not h.apply(candle(T0 - MINUTE, 9.0, closed=True)).accepted
    assert [c.close for c in h] == [12.0]
    # An older live snapshot than the current one is stale too.
    h.apply(candle(T0 + 2 * MINUTE, 20.0, closed=False))
    assert h.apply(candle(T0 + MINUTE, 15.0, closed=False)).change is Change.STALE


def test_history_is_bounded_and_ordered() -> None:
    h = CandleHistory("BTCUSDT", "1m", maxlen=3)
    for i in range(10):
        assert h.apply(candle(T0 + i * MINUTE, float(i + 1))).change is (Change.CLOSED)
    assert len(h) == 3
    assert [c.close for c in h.closed()] == [8.0, 9.0, 10.0]


def test_history_detects_gaps() -> None:
    h = CandleHistory("BTCUSDT", "1m")
    h.apply(candle(T0))
    h.apply(candle(T0 + MINUTE, closed=False))
    result = h.apply(candle(T0 + 4 * MINUTE))
    assert result == Applied(Change.GAP, missing=3, first_missing=T0 + MINUTE)
    assert result.accepted
    assert h.live is None  # the unfinished live candle was superseded
    months = CandleHistory("BTCUSDT", "1M")
    months.apply(candle(ms(2024, 11, 1), interval="1M"))
    assert months.apply(candle(ms(2025, 2, 1), interval="1M")) == Applied(Change.GAP, 2, ms(2024, 12, 1))


def test_history_rejects_other_streams() -> None:
    h = CandleHistory("BTCUSDT", "1m")
    with pytest.raises(ValueError, match="ETHUSDT"):
        h.apply(candle(symbol="ETHUSDT"))
    with pytest.raises(ValueError):
        CandleHistory("BTCUSDT", "1m", maxlen=0)
