"""The timing model, without a network: re-stamping, speed, partial updates, end and loop."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from replaykit import MINUTE_MS

from signalguard.replay.engine import Emit, Ended, Replay
from signalguard.replay.synthetic import generate

SERIES = generate(["BTCUSDT", "ETHUSDT"], candles=300, seed=11).series
START_MS = 1_700_000_030_250  # 22:13:50.25 UTC: 50.25 s into a minute
ANCHOR = 1_699_999_980_000  # 22:13:00, the open time of the minute in progress


def klines(replay: Replay, now_ms: float, **query: Any) -> list[list[Any]]:
    return replay.klines(
        {"symbol": "BTCUSDT", "interval": "1m", **{k: str(v) for k, v in query.items()}}, now_ms
    )


def test_history_ends_at_the_latest_boundary_before_start() -> None:
    replay = Replay(SERIES, start_ms=START_MS, history=200)
    rows = klines(replay, START_MS, limit=1000)
    assert len(rows) == 200
    assert rows[-1][0] == ANCHOR - MINUTE_MS
    assert rows[-1][6] == ANCHOR - 1  # closed before start: the database accepts it
    assert [r[0] for r in rows] == list(range(ANCHOR - 200 * MINUTE_MS, ANCHOR, MINUTE_MS))
    # The shape is the series', in order.
    assert [r[4] for r in rows] == [bar.close for bar in SERIES.bars["BTCUSDT"][:200]]
    assert replay.open_time(200) == ANCHOR


def test_live_candles_close_on_real_boundaries() -> None:
    replay = Replay(SERIES, start_ms=START_MS, history=200, partial_updates=3)
    assert replay.due(START_MS) and not replay.due(START_MS)  # the forming candle's past updates
    assert replay.next_due_ms() == ANCHOR + MINUTE_MS  # its close, by the real clock
    events = replay.due(ANCHOR + MINUTE_MS - 1)
    assert events == []
    (btc, eth) = replay.due(ANCHOR + MINUTE_MS)
    assert isinstance(btc, Emit) and isinstance(eth, Emit)
    k = btc.payload["k"]
    assert (btc.payload["E"], k["t"], k["T"], k["x"]) == (
        ANCHOR + MINUTE_MS,
        ANCHOR,
        ANCHOR + MINUTE_MS - 1,
        True,
    )
    assert len(klines(replay, ANCHOR + MINUTE_MS)) == 201
    # Then three unclosed updates a quarter interval apart, then the close.
    times = []
    for _ in range(4):
        due = replay.next_due_ms()
        assert due is not None
        times.append(due)
        assert [e.payload["k"]["x"] for e in replay.due(due) if isinstance(e, Emit)] == [
            times[-1] == times[0] + 45_000
        ] * 2
    assert times == [ANCHOR + MINUTE_MS + q * 15_000 for q in (1, 2, 3, 4)]


def test_partial_updates_lead_to_the_closed_candle() -> None:
    replay = Replay(SERIES, start_ms=ANCHOR, history=10, partial_updates=2)
    updates = [
        e.payload["k"]
        for e in replay.due(ANCHOR + MINUTE_MS)
        if isinstance(e, Emit) and e.symbol == "ETHUSDT"
    ]
    assert [u["x"] for u in updates] == [False, False, True]
    assert {u["t"] for u in updates} == {ANCHOR}
    final = updates[-1]
    bar = SERIES.bars["ETHUSDT"][10]
    assert (final["o"], final["h"], final["l"], final["c"], final["v"]) == (
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
    )
    for u in updates:
        assert float(final["l"]) <= float(u["l"]) <= float(u["c"]) <= float(u["h"]) <= float(final["h"])
        assert u["f"] == final["f"] and u["L"] <= final["L"]


def test_speed_runs_the_replay_clock_faster() -> None:
    replay = Replay(SERIES, start_ms=START_MS, history=200, speed=60, partial_updates=0)
    # 9.75 replay-seconds to the first close take 9.75 / 60 real seconds; then one candle per second.
    assert replay.next_due_ms() == pytest.approx(START_MS + 9_750 / 60)
    replay.due(START_MS + 9_750 / 60)
    assert replay.next_due_ms() == pytest.approx(START_MS + 9_750 / 60 + 1000)
    now = START_MS + 10_000
    assert len(klines(replay, now, limit=1000)) == 200 + 10
    assert klines(replay, now)[-1][0] == ANCHOR + 9 * MINUTE_MS  # times run ahead of the real clock
    assert replay.clock_ms(now) == START_MS + 600_000


def test_streams_end_with_the_series_or_loop() -> None:
    replay = Replay(SERIES, start_ms=ANCHOR, history=298, partial_updates=0)
    events = replay.due(ANCHOR + 10 * MINUTE_MS)
    assert [type(e).__name__ for e in events] == ["Emit", "Emit", "Emit", "Ended", "Emit", "Ended"]
    assert events[3] == Ended("BTCUSDT") and replay.finished and replay.next_due_ms() is None
    assert len(klines(replay, ANCHOR + 10 * MINUTE_MS, limit=1000)) == 300

    looping = Replay(SERIES, start_ms=ANCHOR, history=298, partial_updates=0, loop=True)
    events = looping.due(ANCHOR + 10 * MINUTE_MS)
    assert all(isinstance(e, Emit) for e in events) and len(events) == 20 and not looping.finished
    btc = [e.payload["k"] for e in events if isinstance(e, Emit) and e.symbol == "BTCUSDT"]
    assert [k["t"] for k in btc] == [ANCHOR + i * MINUTE_MS for i in range(10)]
    assert btc[2]["c"] == SERIES.bars["BTCUSDT"][0].close  # bar 300 is bar 0 again
    assert all(a["L"] + 1 == b["f"] for a, b in itertools.pairwise(btc))  # trade ids keep counting
    assert len(klines(looping, ANCHOR + 10 * MINUTE_MS, limit=1000)) == 308


def test_rest_window_semantics() -> None:
    replay = Replay(SERIES, start_ms=START_MS, history=200)
    first = ANCHOR - 200 * MINUTE_MS
    assert len(klines(replay, START_MS)) == 500 - 300  # default limit 500, only 200 exist
    assert [r[0] for r in klines(replay, START_MS, limit=3)] == [ANCHOR - m * MINUTE_MS for m in (3, 2, 1)]
    # startTime: the first candles from there; a time inside a candle starts at the next one.
    assert [r[0] for r in klines(replay, START_MS, startTime=first + 1, limit=2)] == [
        first + MINUTE_MS,
        first + 2 * MINUTE_MS,
    ]
    # endTime: the newest candles opening at or before it.
    assert [r[0] for r in klines(replay, START_MS, endTime=first + MINUTE_MS, limit=5)] == [
        first,
        first + MINUTE_MS,
    ]
    both = klines(replay, START_MS, startTime=first, endTime=first + 10 * MINUTE_MS, limit=4)
    assert [r[0] for r in both] == [first + i * MINUTE_MS for i in range(4)]
    assert klines(replay, START_MS, startTime=ANCHOR) == []  # the forming candle is never served
    assert klines(replay, START_MS, endTime=first - 1) == []


def test_bad_options() -> None:
    with pytest.raises(ValueError, match=r"history must be 0\.\.300"):
        Replay(SERIES, start_ms=0, history=301)
    with pytest.raises(ValueError, match="speed"):
        Replay(SERIES, start_ms=0, speed=0)
    with pytest.raises(ValueError, match="partial_updates"):
        Replay(SERIES, start_ms=0, partial_updates=-1)
    assert Replay(SERIES, start_ms=0).history == 150  # half of a series shorter than 2000
