"""Deterministic synthetic candles with planted setups, for replays and tests.

Each symbol gets a random walk (small moves, pulled back towards its start price, volumes between half
and one and a half times a base), interrupted every ``spacing`` candles or so by one planted setup:

- ``sharp_drop``: six red candles of -0.6 %, then one closing 4.5 % lower. On that candle RSI(14) < 30
  and the 1-candle price change is <= -3 %; the walk never moves 3 % in one candle, so nowhere else.
- ``volume_spike``: a candle with 12 times the base volume, so at least 8 times the mean of any
  20 candles before it; the walk never reaches 5 times.
- ``ema_cross``: a dip (EMA(9) well below EMA(21)), then a rise until EMA(9) crosses above EMA(21), with
  a margin of 0.02 % of the price on both sides of the cross so that any engine warmed up by the usual
  rule sees it on the same candle.

:func:`generate` returns the series and the list of :class:`Planted` setups (symbol, candle index,
kind). The same arguments give byte-identical output on every Python from 3.11 on, in CPython and in
Pyodide: the only randomness is ``random.Random.random()`` with a string seed (both guaranteed stable
across versions), every value is an integer number of ticks, and the only float operations are the
basic arithmetic IEEE 754 rounds identically everywhere (no ``math`` functions, whose last bit may
differ between C libraries). Each symbol has its own generator, so adding a symbol changes no other.

Pure Python, standard library only: it runs in the browser too.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

from signalguard.replay.series import Bar, Series, interval_ms, to_document

__all__ = ["Planted", "Setup", "Synthetic", "generate"]

_START_PRICES = {
    "BTCUSDT": 60_000.0,
    "ETHUSDT": 3_000.0,
    "BNBUSDT": 600.0,
    "SOLUSDT": 150.0,
    "XRPUSDT": 0.5,
    "DOGEUSDT": 0.15,
}
_SIGMA = 0.0015  # the walk's typical move per candle
_REVERSION = 0.01  # share of the distance to the start price made up per candle
_QUOTE_PER_CANDLE = 1_000_000.0  # base volume, in quote currency
_VOLUME_DECIMALS = 5
_BINANCE_DECIMALS = 8  # Binance prints prices and volumes with 8 decimals
_DROP_RUN, _DROP_STEP, _DROP = 6, -0.006, -0.045
_SPIKE = 12
_DIP_STEP, _RISE_STEP = -0.0035, 0.004
_CROSS_MARGIN = 0.0002  # of the price: far above the 1e-6 an engine's warm-up may leave
_EMA_FAST, _EMA_SLOW = 9, 21


class Setup(enum.StrEnum):
    """The kinds of planted setup."""

    SHARP_DROP = "sharp_drop"  # RSI(14) < 30 and price change(1) <= -3 % on the planted candle only
    VOLUME_SPIKE = "volume_spike"  # volume >= 5x the mean of the previous 20 on the planted candle only
    EMA_CROSS = "ema_cross"  # EMA(9) crosses above EMA(21) on the planted candle, after a dip


@dataclass(frozen=True, slots=True)
class Planted:
    """A planted setup: the candle (index into the symbol's bars) on which it triggers."""

    symbol: str
    index: int
    setup: Setup


@dataclass(frozen=True)
class Synthetic:
    """A generated series and the setups planted in it, ordered by index then symbol."""

    series: Series
    planted: tuple[Planted, ...]

    def to_json(self) -> dict[str, object]:
        """The series in the JSON candle-file form and the planted setups as [symbol, index, kind]."""
        return {
            "series": to_document(self.series),
            "planted": [[p.symbol, p.index, p.setup.value] for p in self.planted],
        }


class _Ema:
    """EMA as TA-Lib seeds and updates it (SMA of the first ``period`` values, then the recursion)."""

    def __init__(self, period: int) -> None:
        self.k = 2.0 / (period + 1)
        self.period = period
        self.seed: list[float] = []
        self.value: float | None = None

    def after(self, x: float) -> float | None:
        """The EMA if ``x`` came next (without taking it)."""
        if self.value is None:
            return _total([*self.seed, x]) / self.period if len(self.seed) + 1 == self.period else None
        return (x - self.value) * self.k + self.value

    def update(self, x: float) -> None:
        value = self.after(x)
        if value is None:
            self.seed.append(x)
        self.value = value


class _Walk:
    """One symbol's candles, built one at a time in integer ticks."""

    def __init__(self, symbol: str, seed: int) -> None:
        self.rng = random.Random(f"signalguard.replay.synthetic:{seed}:{symbol}")
        start = _START_PRICES.get(symbol) or 10.0 + 490.0 * self.rng.random()
        # Ticks fine enough that one is at most 1e-5 of the price: well below the walk's moves.
        self.decimals = 2
        while start * 10**self.decimals < 100_000 and self.decimals < _BINANCE_DECIMALS:
            self.decimals += 1
        self.scale: int = 10**self.decimals
        self.start: int = round(start * self.scale)
        self.close: int = self.start
        self.base_volume = _QUOTE_PER_CANDLE / start
        self.bars: list[Bar] = []
        self.fast, self.slow = _Ema(_EMA_FAST), _Ema(_EMA_SLOW)

    def price(self, ticks: int) -> float:
        return ticks / self.scale

    def noise(self) -> float:
        """About normal with mean 0 and deviation 1, within +-6 (Irwin-Hall: no math functions)."""
        return _total([self.rng.random() for _ in range(12)]) - 6.0

    def walk_step(self) -> float:
        return _SIGMA * self.noise() - _REVERSION * (self.close / self.start - 1.0)

    def ticks_after(self, change: float) -> int:
        return max(1, round(self.close * (1.0 + change)))

    def add(self, close: int, volume_factor: float | None = None) -> None:
        """Append a candle from the previous close to ``close``, with random wicks and volumes."""
        rng, open_ = self.rng, self.close
        wick = _SIGMA * 0.5
        high = max(open_, close) + round(max(open_, close) * wick * rng.random())
        low = max(1, min(open_, close) - round(min(open_, close) * wick * rng.random()))
        factor = 0.5 + rng.random() if volume_factor is None else volume_factor
        volume = round(self.base_volume * factor * 10**_VOLUME_DECIMALS)
        taker = round(volume * (0.3 + 0.4 * rng.random()))
        mid = self.price(open_ + close) / 2
        self.bars.append(
            Bar(
                open=_fmt(open_, self.decimals),
                high=_fmt(high, self.decimals),
                low=_fmt(low, self.decimals),
                close=_fmt(close, self.decimals),
                volume=_fmt(volume, _VOLUME_DECIMALS),
                quote_volume=_fmt(round(volume * mid * 1000), _VOLUME_DECIMALS + 3),
                trades=max(1, round(100 * factor)),
                taker_buy_volume=_fmt(taker, _VOLUME_DECIMALS),
                taker_buy_quote_volume=_fmt(round(taker * mid * 1000), _VOLUME_DECIMALS + 3),
            )
        )
        self.close = close
        self.fast.update(self.price(close))
        self.slow.update(self.price(close))

    def current_gap(self) -> float:
        """EMA(9) - EMA(21) now (0 while they warm up)."""
        fast, slow = self.fast.value, self.slow.value
        return 0.0 if fast is None or slow is None else fast - slow

    def gap(self, close: int) -> float | None:
        """EMA(9) - EMA(21) if the next candle closed at ``close``; None while they warm up."""
        fast, slow = self.fast.after(self.price(close)), self.slow.after(self.price(close))
        return None if fast is None or slow is None else fast - slow

    # --- setups: each appends candles and returns the index of the one that triggers -------------

    def sharp_drop(self) -> int:
        for _ in range(_DROP_RUN):
            self.add(self.ticks_after(_DROP_STEP))
        self.add(self.ticks_after(_DROP))
        return len(self.bars) - 1

    def volume_spike(self) -> int:
        self.add(self.ticks_after(self.walk_step()), volume_factor=_SPIKE)
        return len(self.bars) - 1

    def ema_cross(self) -> int:
        margin = _CROSS_MARGIN * self.price(self.close)
        # Dip until EMA(9) is clearly below EMA(21) (at least 8 candles).
        dips = 0
        while dips < 8 or self.current_gap() > -3 * margin:
            self.add(self.ticks_after(_DIP_STEP))
            dips += 1
        # Rise; the candle whose gap would come within the margin of zero crosses by at least the margin,
        # so every candle before the cross is at least the margin below.
        while True:
            close = self.ticks_after(_RISE_STEP)
            gap = self.gap(close)
            assert gap is not None  # the slow EMA is warm after the warm-up candles
            if gap <= -margin:
                self.add(close)
                continue
            # The gap grows with the close (k_fast > k_slow): find the lowest close that clears it.
            while (self.gap(close) or 0.0) < margin:
                close += max(1, close // 10_000)
            self.add(close)
            return len(self.bars) - 1


def _total(values: list[float]) -> float:
    """Add left to right (``sum`` of floats compensates rounding from Python 3.12 on: not portable)."""
    total = 0.0
    for value in values:
        total += value
    return total


def _fmt(units: int, decimals: int) -> str:
    """Print ``units * 10**-decimals`` exactly, with Binance's 8 decimals."""
    whole, frac = divmod(units, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}" + "0" * (_BINANCE_DECIMALS - decimals)


def generate(
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"),
    *,
    interval: str = "1m",
    candles: int = 2000,
    seed: int = 1,
    warmup: int = 100,
    spacing: int = 150,
) -> Synthetic:
    """Generate ``candles`` candles per symbol with setups planted every ``spacing`` or so.

    The first ``warmup`` candles (at least 30) and the last 40 are plain walk, so indicators are warm
    before the first setup and every setup completes. Setups rotate through the three kinds, starting
    at a kind and offset drawn per symbol, so symbols trigger at different candles.
    """
    interval_ms(interval)
    if warmup < 30 or spacing < 60 or candles < warmup + 40:
        raise ValueError("need warmup >= 30, spacing >= 60 and candles >= warmup + 40")
    if len(set(symbols)) != len(symbols):
        raise ValueError("symbols must be distinct")
    bars: dict[str, list[Bar]] = {}
    planted: list[Planted] = []
    kinds = list(Setup)
    for symbol in symbols:
        walk = _Walk(symbol, seed)
        kind = int(walk.rng.random() * len(kinds))
        next_setup = warmup + int(walk.rng.random() * (spacing // 2))
        while len(walk.bars) < candles:
            # A setup takes at most ~40 candles: plant only if it completes before the end.
            if len(walk.bars) >= next_setup and len(walk.bars) + 40 <= candles:
                setup = kinds[kind % len(kinds)]
                plant = {
                    Setup.SHARP_DROP: walk.sharp_drop,
                    Setup.VOLUME_SPIKE: walk.volume_spike,
                    Setup.EMA_CROSS: walk.ema_cross,
                }[setup]
                index = plant()
                if index < candles:  # a setup that ran past the end is cut off, so not planted
                    planted.append(Planted(symbol, index, setup))
                kind += 1
                next_setup = len(walk.bars) + spacing + int(walk.rng.random() * (spacing // 4))
            else:
                walk.add(walk.ticks_after(walk.walk_step()))
        bars[symbol] = walk.bars[:candles]
    planted.sort(key=lambda p: (p.index, p.symbol))
    return Synthetic(Series(interval, bars), tuple(planted))
