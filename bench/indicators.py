"""Indicator update throughput against talipp, and accuracy against TA-Lib, on the same data.

200 symbols x 1,000 candles, every indicator the traders use: SMA(20), EMA(20), RSI(14),
Bollinger(20, 2), MACD(12, 26, 9), volume average(20), volume spike(20), price change(1). Each library
is fed one candle at a time, as a live stream is (``update`` / ``add``), and its outputs are read once
per candle, as conditions read them; signalguard is also measured replaying history with ``extend``
(no reads). talipp has no volume spike: its figure uses a second SMA of volume
(the same work: one windowed mean). Timings are the best of 3 runs; the ratio is talipp's time over
ours. Accuracy is the largest |difference| from TA-Lib after warm-up, over all symbols.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import numpy as np
import talib
from talipp.indicators import BB as TBB
from talipp.indicators import EMA as TEMA
from talipp.indicators import MACD as TMACD
from talipp.indicators import ROC as TROC
from talipp.indicators import RSI as TRSI
from talipp.indicators import SMA as TSMA

from signalguard.core.indicators import (
    EMA,
    MACD,
    RSI,
    SMA,
    BollingerBands,
    PriceChangePct,
    VolumeAverage,
    VolumeSpike,
)

SYMBOLS = 200
CANDLES = 1000
REPEAT = 3


def make_data() -> list[tuple[list[float], list[float]]]:
    rnd = random.Random(42)
    data = []
    for _ in range(SYMBOLS):
        price, closes, volumes = rnd.uniform(1, 60_000), [], []
        for _ in range(CANDLES):
            price *= math.exp(rnd.gauss(0, 0.01))
            closes.append(price)
            volumes.append(rnd.uniform(10, 1000))
        data.append((closes, volumes))
    return data


def ours_timed(data: list[tuple[list[float], list[float]]]) -> None:
    for closes, volumes in data:
        sma, ema, rsi = SMA(20), EMA(20), RSI(14)
        bb, macd, pct = BollingerBands(20, 2.0), MACD(12, 26, 9), PriceChangePct(1)
        vavg, vspike = VolumeAverage(20), VolumeSpike(20)
        for c, v in zip(closes, volumes, strict=True):
            sma.update(c)
            ema.update(c)
            rsi.update(c)
            bb.update(c)
            macd.update(c)
            pct.update(c)
            vavg.update(v)
            vspike.update(v)
            # Read every output once, as conditions do on each closed candle.
            _ = (
                sma.value,
                ema.value,
                rsi.value,
                bb.upper,
                bb.lower,
                macd.macd,
                macd.histogram,
                pct.value,
                vavg.value,
                vspike.value,
            )


def ours_stream(data: list[tuple[list[float], list[float]]]) -> list[dict[str, list[float | None]]]:
    """The same updates, recording outputs for the accuracy check (not timed)."""
    out = []
    for closes, volumes in data:
        sma, ema, rsi = SMA(20), EMA(20), RSI(14)
        bb, macd, pct = BollingerBands(20, 2.0), MACD(12, 26, 9), PriceChangePct(1)
        vavg, vspike = VolumeAverage(20), VolumeSpike(20)
        rec: dict[str, list[float | None]] = {"sma": [], "ema": [], "rsi": [], "bbu": [], "macd": []}
        for c, v in zip(closes, volumes, strict=True):
            sma.update(c)
            ema.update(c)
            rsi.update(c)
            bb.update(c)
            macd.update(c)
            pct.update(c)
            vavg.update(v)
            vspike.update(v)
            rec["sma"].append(sma.value)
            rec["ema"].append(ema.value)
            rec["rsi"].append(rsi.value)
            rec["bbu"].append(bb.upper)
            rec["macd"].append(macd.macd)
        out.append(rec)
    return out


def ours_extend(data: list[tuple[list[float], list[float]]]) -> None:
    for closes, volumes in data:
        for ind in (SMA(20), EMA(20), RSI(14), BollingerBands(20, 2.0), MACD(12, 26, 9), PriceChangePct(1)):
            ind.extend(closes)
        VolumeAverage(20).extend(volumes)
        VolumeSpike(20).extend(volumes)


def talipp_stream(data: list[tuple[list[float], list[float]]]) -> None:
    for closes, volumes in data:
        inds = (TSMA(20), TEMA(20), TRSI(14), TBB(20, 2.0), TMACD(12, 26, 9), TROC(1))
        vols = (TSMA(20), TSMA(20))
        sma, ema, rsi, bb, macd, roc = inds
        vavg, vspike = vols
        for c, v in zip(closes, volumes, strict=True):
            for ind in inds:
                ind.add(c)
            for ind in vols:
                ind.add(v)
            _ = (sma[-1], ema[-1], rsi[-1], bb[-1], macd[-1], roc[-1], vavg[-1], vspike[-1])


def best(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def max_diff(ours: list[float | None], ref: np.ndarray) -> float:
    worst = 0.0
    for a, b in zip(ours, ref, strict=True):
        if a is not None and not math.isnan(b):
            worst = max(worst, abs(a - b))
    return worst


def main() -> None:
    data = make_data()
    n = SYMBOLS * CANDLES
    t_ours = best(lambda: ours_timed(data))
    t_ext = best(lambda: ours_extend(data))
    t_talipp = best(lambda: talipp_stream(data))
    per = 1e9 / n
    print(f"indicator updates, {SYMBOLS} symbols x {CANDLES} candles, 8 indicators per candle:")
    print(f"  talipp add() per candle:           {t_talipp * per:8.0f} ns/candle (baseline)")
    print(
        f"  signalguard update() per candle:   {t_ours * per:8.0f} ns/candle "
        f"({t_talipp / t_ours:.1f}x talipp's throughput)"
    )
    print(
        f"  signalguard extend() (history):    {t_ext * per:8.0f} ns/candle "
        f"({t_talipp / t_ext:.1f}x talipp's throughput)"
    )
    results = ours_stream(data)
    worst = {"sma": 0.0, "ema": 0.0, "rsi": 0.0, "bbu": 0.0, "macd": 0.0}
    for (closes, _), rec in zip(data, results, strict=True):
        arr = np.array(closes)
        upper, _, _ = talib.BBANDS(arr, 20, 2.0, 2.0, 0)
        macd, _, _ = talib.MACD(arr, 12, 26, 9)
        refs = {
            "sma": talib.SMA(arr, 20),
            "ema": talib.EMA(arr, 20),
            "rsi": talib.RSI(arr, 14),
            "bbu": upper,
            "macd": macd,
        }
        for k, ref in refs.items():
            # Relative to the price scale (symbols range from 1 to 60,000): TA-Lib's own running sums
            # carry errors proportional to the price.
            scale = 1.0 if k == "rsi" else max(closes)
            worst[k] = max(worst[k], max_diff(rec[k], ref) / scale)
    print("  max |ours - TA-Lib| after warm-up (RSI absolute, others relative to the price):")
    print("   " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
