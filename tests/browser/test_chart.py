"""What the chart and the "by source" summary show, from API answers (pure; no page)."""

from __future__ import annotations

import json

import pytest

from signalguard.browser.chart import (
    CHART_CANDLES,
    ChartData,
    Marker,
    chart_candles,
    chart_markers,
    chart_streams,
    summary_lines,
)
from signalguard.core.candles import MarketDataError
from signalguard.core.engine import TraderRecord

MINUTE = 60_000
T0 = 1_759_449_600_000


def row(i: int, close: float = 100.0) -> list[object]:
    t = T0 + i * MINUTE
    high, low = max(100.0, close) + 1, min(100.0, close) - 1
    return [t, "100", str(high), str(low), str(close), "5", t + MINUTE - 1, "0", 1, "0", "0", "0"]


def trader(tid: str, symbols: list[str], enabled: bool = True, interval: str = "1m") -> TraderRecord:
    definition = {
        "version": 1,
        "symbols": symbols,
        "interval": interval,
        "conditions": [{"indicator": "rsi", "period": 14, "op": "<", "value": 30}],
    }
    return TraderRecord(tid, tid, definition, enabled)


def test_streams_put_enabled_traders_first_and_skip_invalid_ones() -> None:
    broken = TraderRecord("x", "x", {"version": 1}, True)
    records = [
        trader("a", ["ETHUSDT"], enabled=False),
        broken,
        trader("b", ["BTCUSDT", "ETHUSDT"]),
        trader("c", ["SOLUSDT"], interval="5m", enabled=False),
    ]
    assert chart_streams(records) == [("BTCUSDT", "1m"), ("ETHUSDT", "1m"), ("SOLUSDT", "5m")]
    assert chart_streams([]) == []


def test_candles_are_bars_in_seconds_bounded_and_bad_rows_refused() -> None:
    rows = [row(i, 100 + i) for i in range(CHART_CANDLES + 20)]
    bars = chart_candles(rows, "BTCUSDT", "1m", now_ms=T0 + 10**9)
    assert len(bars) == CHART_CANDLES
    assert bars[0] == {"time": (T0 + 20 * MINUTE) // 1000, "open": 100.0, "high": 121.0, "low": 99.0,
                       "close": 120.0}  # fmt: skip
    with pytest.raises(MarketDataError):
        chart_candles([row(1), row(0)], "BTCUSDT", "1m", now_ms=T0 + 10**9)
    with pytest.raises(MarketDataError):
        chart_candles({"code": -1121, "msg": "Invalid symbol."}, "BTCUSDT", "1m", now_ms=T0)


def stored(key: str, i: int, source: str, symbol: str = "BTCUSDT") -> dict[str, object]:
    iso = f"2025-10-03T00:{i:02d}:00+00:00"
    return {"signal_key": key, "symbol": symbol, "interval": "1m", "candle_open_time": iso, "source": source}


def test_markers_merge_stored_and_pending_once_per_key_oldest_first() -> None:
    rows = [
        stored("k2", 2, "cloud"),
        stored("k1", 1, "local"),
        stored("other", 1, "local", symbol="ETHUSDT"),
        {"signal_key": "bad", "symbol": "BTCUSDT", "interval": "1m", "candle_open_time": "yesterday"},
        "not a row",
    ]
    pending = [
        ("k1", {"symbol": "BTCUSDT", "interval": "1m", "candle_open_time": T0 + MINUTE}),  # stored wins
        ("k3", {"symbol": "BTCUSDT", "interval": "1m", "candle_open_time": T0 + 3 * MINUTE}),
        ("k4", {"symbol": "BTCUSDT", "interval": "5m", "candle_open_time": T0}),
    ]
    markers = chart_markers(rows, pending, "BTCUSDT", "1m")
    assert [(m.key, m.source) for m in markers] == [("k1", "local"), ("k2", "cloud"), ("k3", "local")]
    assert chart_markers({"message": "error"}, [], "BTCUSDT", "1m") == []


def test_chart_json_keeps_markers_on_drawn_candles_and_counts_by_source() -> None:
    bars = chart_candles([row(i) for i in range(3)], "BTCUSDT", "1m", now_ms=T0 + 10**9)
    rows = [stored("a", 0, "local"), stored("b", 1, "cloud"), stored("late", 30, "cloud")]
    data = ChartData([("BTCUSDT", "1m")], ("BTCUSDT", "1m"), bars, chart_markers(rows, [], "BTCUSDT", "1m"))
    drawn = json.loads(data.markers_json())
    assert [(m["time"], m["text"], m["color"]) for m in drawn] == [
        (T0 // 1000, "B", "#2962ff"),
        ((T0 + MINUTE) // 1000, "C", "#e8590c"),
    ]
    assert data.counts() == {"local": 1, "cloud": 2, "preview": 0, "caught_up": 0}
    assert len(json.loads(data.candles_json())) == 3


def test_caught_up_signals_are_squares_live_ones_arrows_and_previews_dots() -> None:
    bars = chart_candles([row(i) for i in range(3)], "BTCUSDT", "1m", now_ms=T0 + 10**9)
    rows = [
        stored("live", 0, "cloud"),
        {**stored("late", 1, "local"), "caught_up": True},
        {**stored("odd", 2, "cloud"), "caught_up": "yes"},  # only a real true marks it
    ]
    markers = [*chart_markers(rows, [], "BTCUSDT", "1m"), Marker(T0 + 2 * MINUTE, "preview", "p")]
    data = ChartData([("BTCUSDT", "1m")], ("BTCUSDT", "1m"), bars, markers)
    drawn = [(m["shape"], m["text"], m["position"]) for m in json.loads(data.markers_json())]
    assert drawn == [
        ("arrowUp", "C", "belowBar"),
        ("square", "b", "belowBar"),
        ("arrowUp", "C", "belowBar"),
        ("circle", "P", "aboveBar"),
    ]
    assert data.counts() == {"local": 1, "cloud": 2, "preview": 1, "caught_up": 1}


def test_summary_lists_each_source_then_machines_under_the_cloud() -> None:
    answer = {
        "days": 7,
        "by_source": [
            {"source": "cloud", "signals": 12, "traders": 2, "last_signal_at": "2025-10-03T10:00:00+00:00"},
            {"source": "local", "signals": 3, "traders": 1, "last_signal_at": None},
            {"source": "<img src=x>", "signals": 1},
        ],
        "by_machine": [{"machine_id": "vyx-63eea370", "region": "ams", "signals": 12, "traders": 2}],
    }
    lines = summary_lines(answer)
    assert [(ln.key, ln.label, ln.signals, ln.traders, ln.last, ln.machine) for ln in lines] == [
        ("cloud", "Cloud", 12, 2, "2025-10-03 10:00 UTC", False),
        ("vyx-63eea370", "vyx-63eea370 (ams)", 12, 2, "—", True),
        ("local", "Browser (local)", 3, 1, "—", False),
    ]
    assert summary_lines(None) == [] and summary_lines({"by_source": "x", "by_machine": 3}) == []
    odd = summary_lines({"by_source": [{"source": "local", "signals": -5, "traders": True}]})
    assert [(ln.signals, ln.traders) for ln in odd] == [(0, 0)]
