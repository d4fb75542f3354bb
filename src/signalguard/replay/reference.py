"""The reference run: the core engine over a whole series, offline, allowed to generate throughout.

What every executor must agree with. The browser (Pyodide) and the cloud worker (CPython) each
produce a subset of these signals — the candles that closed while they held the lease — and the
determinism test compares this function's output computed in both interpreters. Candles travel the
same way as in production: as Binance REST rows through the core's parser.

Pure Python (no aiohttp, no clock), so it runs in Pyodide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from signalguard.core.candles import Candle, parse_rest_kline
from signalguard.core.engine import SignalCreated, SignalManager, TraderRecord
from signalguard.replay.series import Series, interval_ms, kline_row
from signalguard.replay.synthetic import generate

#: 2025-10-03T00:00:00Z: where reference series start unless told otherwise.
DEFAULT_START_MS = 1_759_449_600_000


def candles_of(series: Series, start_ms: int = DEFAULT_START_MS) -> list[Candle]:
    """All candles of ``series``, symbols interleaved by open time, as closed candles."""
    step = interval_ms(series.interval)
    length = max(len(bars) for bars in series.bars.values())
    out: list[Candle] = []
    for i in range(length):
        open_ms = start_ms + i * step
        for symbol in series.symbols:
            bars = series.bars[symbol]
            if i < len(bars):
                row = kline_row(bars[i], open_ms, step)
                out.append(
                    parse_rest_kline(row, symbol=symbol, interval=series.interval, now_ms=open_ms + step)
                )
    return out


def run_reference(
    user_id: str, traders: Sequence[TraderRecord], candles: Sequence[Candle], *, epoch: int = 1
) -> list[dict[str, Any]]:
    """Every signal the traders produce on ``candles``, as plain JSON-ready dicts, in order."""
    manager = SignalManager(user_id)
    manager.set_traders(traders)
    manager.authorize(True, epoch)
    out: list[dict[str, Any]] = []
    for candle in candles:
        manager.feed(candle)
        for effect in manager.drain():
            if isinstance(effect, SignalCreated):
                s = effect.signal
                out.append(
                    {
                        "key": s.key,
                        "trader_id": s.trader_id,
                        "symbol": s.symbol,
                        "open_time": s.open_time,
                        "price": s.price,
                        "matched_conditions": list(s.matched_conditions),
                    }
                )
    return out


def reference_signals(
    user_id: str,
    traders: Sequence[Mapping[str, Any]],
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"),
    interval: str = "1m",
    candles: int = 2000,
    seed: int = 1,
    start_ms: int = DEFAULT_START_MS,
) -> list[dict[str, Any]]:
    """The reference signals of ``traders`` (``{"id", "name", "definition"}``) on a synthetic series."""
    series = generate(tuple(symbols), interval=interval, candles=candles, seed=seed).series
    records = [TraderRecord(t["id"], t.get("name", ""), t["definition"]) for t in traders]
    return run_reference(user_id, records, candles_of(series, start_ms))
