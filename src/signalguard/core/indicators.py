"""Incremental technical indicators: O(1) work per closed candle, TA-Lib-compatible results.

Every indicator is a small mutable object fed one value at a time, oldest first, with
``update(x)``, or many at once with ``extend(values)``, which reaches the same state bit for bit
with less interpreter overhead (use it to replay history). Each has a ``warmup``: the number of
values it must receive before its output is defined. Until then the output attributes are
``None``; from the ``warmup``-th value on they are always floats. The value after the
``warmup``-th input corresponds to TA-Lib's first output (TA-Lib's lookback is ``warmup - 1``).

What the indicators agree with, and how closely (see ``tests/core/test_indicators_golden.py``):

- ``RSI`` performs TA-Lib's floating-point operations in TA-Lib's order and reproduces TA-Lib's
  output bit for bit. ``EMA`` and ``MACD`` do the same, but the reference TA-Lib build fuses
  ``(x - ema) * k + ema`` into one multiply-add, which pure Python 3.11 cannot express; the results
  differ by an ulp now and then, and the difference does not accumulate (an EMA forgets it).
- ``SMA``, ``VolumeAverage`` and ``VolumeSpike`` keep a running sum, which on its own would drift
  over a long series; they re-derive it exactly (:func:`math.fsum`) from their window at least every
  ``max(period, 128)`` values. ``BollingerBands`` keeps sums of deviations from a point near the
  mean and re-derives them when accuracy demands it (see the class). Either way the error stays
  within a few units in the last place (ulps) of the largest recent input (among the last
  ``max(period, 128)`` values; 1024 for the bands), however long the series runs. TA-Lib's own
  running sums are never corrected (and its variance is ``E[x²] - E[x]²``), so on long or
  high-priced series the remaining difference is TA-Lib's error, not ours.

Deliberate deviations from TA-Lib, all in degenerate cases where TA-Lib applies an *absolute*
threshold of ``1e-8`` that misfires for assets priced below a cent:

- ``RSI``: when both Wilder averages are exactly zero (no price movement at all since the start),
  the value is 50 (neutral). TA-Lib returns 0 — an "oversold" reading on a dead market — and does so
  whenever ``avg_gain + avg_loss < 1e-8``.
- ``BollingerBands``: the variance is computed to rounding accuracy with no threshold (a flat
  window gives exactly zero width). TA-Lib zeroes any variance below ``1e-8``, which collapses the
  bands of every asset priced under about 0.01.

Inputs are meant to be finite floats (prices positive, volumes non-negative); the indicators never
raise on float input. Updates allocate no containers: windows are preallocated ring buffers, and
every class uses ``__slots__``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "EMA",
    "MACD",
    "MAX_PERIOD",
    "RSI",
    "SMA",
    "Bands",
    "BollingerBands",
    "Indicator",
    "MACDValue",
    "PriceChangePct",
    "VolumeAverage",
    "VolumeSpike",
]

MAX_PERIOD = 100_000
"""Largest period any indicator accepts (TA-Lib's own limit)."""

# Running sums are re-derived from the window at least this often (in updates), so that rounding
# error cannot accumulate. Short windows are re-derived less often than once per pass because the
# cost of a re-derivation is dominated by a fixed call overhead.
_RESYNC_EVERY = 128

# When a running variance falls below this fraction of its peak, what is left is of the order of the
# rounding error of the peak's terms, so it is re-derived exactly.
_CANCELLATION = 2.0**-20

# Bollinger sums are taken around a shift point; once the window mean has moved more than
# sqrt(_MAX_SHIFT_DRIFT) standard deviations away from it, cancellation would start to cost digits.
_MAX_SHIFT_DRIFT = 64.0

# The Bollinger sums are re-derived at least this often (in updates), whatever happens.
_BANDS_RESYNC_EVERY = 1024

# A module-level alias: `update` runs once per indicator per candle, and a global lookup is cheaper
# than a global lookup followed by an attribute lookup on the module.
_sqrt = math.sqrt


class Indicator(Protocol):
    """What every indicator in this module provides."""

    @property
    def warmup(self) -> int:
        """Number of values to feed before the output is defined."""
        ...

    @property
    def ready(self) -> bool:
        """Whether the output is defined (at least ``warmup`` values have been fed)."""
        ...

    def update(self, x: float) -> None:
        """Feed the next value (oldest first)."""
        ...

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first (equivalent to ``update`` on each; faster for some)."""
        ...


def _check_period(name: str, period: int, minimum: int) -> int:
    # bool is an int subclass; a period of True is a bug in the caller, not a period of 1.
    if type(period) is not int or not minimum <= period <= MAX_PERIOD:
        raise ValueError(f"{name} must be an integer between {minimum} and {MAX_PERIOD}, got {period!r}")
    return period


def _exact_sum(values: list[float]) -> float:
    """Return the correctly rounded sum of ``values``; fall back to plain summation on overflow."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        # fsum refuses intermediate overflow and inf - inf; plain summation degrades to inf/nan,
        # which is the documented outcome for non-finite or absurdly large input.
        return sum(values)


def _resync_wraps(period: int) -> int:
    """Return after how many complete passes over a window its running sums are re-derived."""
    return max(1, _RESYNC_EVERY // period)


class SMA:
    """Simple moving average of the last ``period`` values (TA-Lib ``SMA``).

    ``warmup == period``.
    """

    __slots__ = ("_buf", "_full", "_i", "_n", "_sum", "_wraps", "_wraps_per_resync", "period", "value")

    def __init__(self, period: int) -> None:
        """Create an SMA over ``period`` values (1 ≤ period ≤ 100,000)."""
        self.period: int = _check_period("period", period, 1)
        self.value: float | None = None
        """The average of the last ``period`` values, or None during warm-up."""
        self._buf: list[float] = [0.0] * period
        # The period as a float: CPython divides a float by a float faster than by an int, and the
        # quotient is the same (every valid period is exactly representable).
        self._n = float(period)
        self._i = 0
        self._sum = 0.0
        self._full = False
        self._wraps = 0
        self._wraps_per_resync = _resync_wraps(period)

    @property
    def warmup(self) -> int:
        """Number of values to feed before ``value`` is defined."""
        return self.period

    @property
    def ready(self) -> bool:
        """Whether ``value`` is defined."""
        return self.value is not None

    def update(self, x: float) -> None:
        """Feed the next value."""
        buf = self._buf
        i = self._i
        # The buffer starts as zeros, so the running sum is right during warm-up as well. The sum
        # lives in a local until the end, so that it is read and written once.
        total = self._sum + (x - buf[i])
        buf[i] = x
        i += 1
        if i == self.period:
            i = 0
            self._full = True
            self._wraps += 1
            if self._wraps >= self._wraps_per_resync:
                self._wraps = 0
                total = _exact_sum(buf)
        self._i = i
        self._sum = total
        if self._full:
            self.value = total / self._n

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each, several times faster."""
        buf = self._buf
        n = self.period
        i = self._i
        total = self._sum
        full = self._full
        wraps = self._wraps
        per_resync = self._wraps_per_resync
        for x in values:
            total += x - buf[i]
            buf[i] = x
            i += 1
            if i == n:
                i = 0
                full = True
                wraps += 1
                if wraps >= per_resync:
                    wraps = 0
                    total = _exact_sum(buf)
        self._i = i
        self._sum = total
        self._full = full
        self._wraps = wraps
        if full:
            self.value = total / n


class VolumeAverage(SMA):
    """Average volume: the simple moving average of the last ``period`` volumes.

    Identical to :class:`SMA`; it exists so that code reads as what it computes.
    """

    __slots__ = ()


class EMA:
    """Exponential moving average, seeded like TA-Lib's ``EMA``.

    The first value (after ``period`` inputs) is the simple average of those inputs; afterwards
    ``value = (x - value) * k + value`` with ``k = 2 / (period + 1)``. ``warmup == period``.
    """

    __slots__ = ("_count", "_k", "_seed", "period", "value")

    def __init__(self, period: int) -> None:
        """Create an EMA over ``period`` values (1 ≤ period ≤ 100,000)."""
        self.period: int = _check_period("period", period, 1)
        self.value: float | None = None
        """The moving average, or None during warm-up."""
        self._k = 2.0 / (period + 1)
        self._seed = 0.0
        self._count = 0

    @property
    def warmup(self) -> int:
        """Number of values to feed before ``value`` is defined."""
        return self.period

    @property
    def ready(self) -> bool:
        """Whether ``value`` is defined."""
        return self.value is not None

    def update(self, x: float) -> None:
        """Feed the next value."""
        v = self.value
        if v is not None:
            # Same operation order as TA-Lib, so that results are bit-identical.
            self.value = (x - v) * self._k + v
            return
        self._seed += x
        self._count += 1
        if self._count == self.period:
            self.value = self._seed / self.period

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each, several times faster."""
        iterator = iter(values)
        if self.value is None:
            for x in iterator:
                self.update(x)
                if self.value is not None:
                    break
        v = self.value
        if v is None:
            return
        k = self._k
        for x in iterator:
            v = (x - v) * k + v
        self.value = v


class RSI:
    """Relative strength index with Wilder smoothing, computed like TA-Lib's ``RSI``.

    The first ``period`` price changes are averaged; afterwards each average becomes
    ``(average * (period - 1) + change) / period``. The value is
    ``100 * avg_gain / (avg_gain + avg_loss)`` (equal to ``100 - 100 / (1 + RS)``), and 50 when both
    averages are exactly zero (see the module notes). ``warmup == period + 1``: ``period`` changes
    need ``period + 1`` prices.
    """

    __slots__ = ("_count", "_gain", "_inv", "_keep", "_loss", "_n", "_prev", "period", "value")

    def __init__(self, period: int) -> None:
        """Create an RSI over ``period`` price changes (2 ≤ period ≤ 100,000)."""
        self.period: int = _check_period("period", period, 2)
        self.value: float | None = None
        """The RSI in [0, 100], or None during warm-up."""
        self._prev: float = 0.0
        self._gain = 0.0
        self._loss = 0.0
        self._count = -1  # the first price yields no change
        self._n = float(period)
        self._inv = 1.0 / period
        self._keep = float(period - 1)

    @property
    def warmup(self) -> int:
        """Number of values to feed before ``value`` is defined."""
        return self.period + 1

    @property
    def ready(self) -> bool:
        """Whether ``value`` is defined."""
        return self.value is not None

    def update(self, x: float) -> None:
        """Feed the next closing price."""
        change = x - self._prev
        self._prev = x
        if self.value is not None:
            # TA-Lib's operations in TA-Lib's order: scale both averages by (n - 1), add today's
            # move to one of them, then scale both by 1/n (TA-Lib's build multiplies by the
            # reciprocal here rather than dividing; doing the same keeps the results bit-identical).
            keep = self._keep
            inv = self._inv
            if change < 0.0:
                gain = self._gain * keep * inv
                loss = (self._loss * keep - change) * inv
            else:
                gain = (self._gain * keep + change) * inv
                loss = self._loss * keep * inv
        elif self._count < 0:
            self._count = 0
            return
        else:
            if change < 0.0:
                self._loss -= change
            else:
                self._gain += change
            self._count += 1
            if self._count < self.period:
                return
            gain = self._gain / self._n
            loss = self._loss / self._n
        self._gain = gain
        self._loss = loss
        total = gain + loss
        self.value = 100.0 * (gain / total) if total != 0.0 else 50.0

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each, several times faster."""
        iterator = iter(values)
        if self.value is None:
            for x in iterator:
                self.update(x)
                if self.value is not None:
                    break
            else:
                return
        prev = self._prev
        gain = self._gain
        loss = self._loss
        keep = self._keep
        inv = self._inv
        seen = False
        for x in iterator:
            change = x - prev
            prev = x
            if change < 0.0:
                gain = gain * keep * inv
                loss = (loss * keep - change) * inv
            else:
                gain = (gain * keep + change) * inv
                loss = loss * keep * inv
            seen = True
        if not seen:
            return
        self._prev = prev
        self._gain = gain
        self._loss = loss
        total = gain + loss
        self.value = 100.0 * (gain / total) if total != 0.0 else 50.0


@dataclass(frozen=True, slots=True)
class Bands:
    """A snapshot of Bollinger bands."""

    upper: float
    middle: float
    lower: float


class BollingerBands:
    """Bollinger bands: the SMA of ``period`` values ± ``k`` population standard deviations.

    Matches TA-Lib ``BBANDS(period, k, k, matype=SMA)`` (TA-Lib also divides by ``period``, not
    ``period - 1``). TA-Lib computes the variance as ``E[x²] - E[x]²`` from running sums of raw
    prices, which loses most of its digits to cancellation on high prices. Here the running sums
    are of deviations from a shift point near the window mean. They are re-derived exactly from the
    window (O(period), so amortised O(1)) when the shift has drifted more than 8 standard deviations
    from the mean, when the variance has collapsed below 2⁻²⁰ of its peak (a volatile stretch
    leaving the window: the rounding left over from the large terms would swamp the small true
    variance), and in any case at least every ``max(period, 1024)`` values. The error then stays
    within a few units in the last place of the price, on any series length.
    ``warmup == period``.
    """

    __slots__ = (
        "_buf",
        "_full",
        "_i",
        "_n",
        "_peak",
        "_s1",
        "_s2",
        "_shift",
        "_wraps",
        "_wraps_per_resync",
        "k",
        "lower",
        "middle",
        "period",
        "stddev",
        "upper",
    )

    def __init__(self, period: int, k: float) -> None:
        """Create bands over ``period`` values (2 ≤ period ≤ 100,000), ``k`` (0 < k ≤ 1e6) wide."""
        self.period: int = _check_period("period", period, 2)
        if isinstance(k, bool) or not isinstance(k, int | float) or not 0.0 < k <= 1e6:
            raise ValueError(f"k must be a number greater than 0 and at most 1e6, got {k!r}")
        self.k: float = float(k)
        self.upper: float | None = None
        """Upper band, or None during warm-up."""
        self.middle: float | None = None
        """Middle band (the SMA), or None during warm-up."""
        self.lower: float | None = None
        """Lower band, or None during warm-up."""
        self.stddev: float | None = None
        """Population standard deviation of the window, or None during warm-up."""
        self._buf: list[float] = [0.0] * period
        self._n = float(period)  # a float divisor is faster and gives the same quotient (see SMA)
        self._i = 0
        self._full = False
        self._shift = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self._peak = 0.0
        self._wraps = 0
        self._wraps_per_resync = max(1, _BANDS_RESYNC_EVERY // period)

    @property
    def warmup(self) -> int:
        """Number of values to feed before the bands are defined."""
        return self.period

    @property
    def ready(self) -> bool:
        """Whether the bands are defined."""
        return self.middle is not None

    @property
    def value(self) -> Bands | None:
        """The current bands as one snapshot, or None during warm-up."""
        if self.upper is None or self.middle is None or self.lower is None:
            return None
        return Bands(self.upper, self.middle, self.lower)

    def _resync(self) -> float:
        """Re-derive the sums from the window; return the variance."""
        buf = self._buf
        self._wraps = 0
        if min(buf) == max(buf):
            # A flat window: exactly zero width (the mean below could be an ulp off).
            self._shift = buf[0]
            self._s1 = self._s2 = self._peak = 0.0
            return 0.0
        n = self.period
        shift = _exact_sum(buf) / n
        if not math.isfinite(shift):
            shift = 0.0
        deviations = [v - shift for v in buf]
        s1 = _exact_sum(deviations)
        s2 = _exact_sum([d * d for d in deviations])
        self._shift = shift
        self._s1 = s1
        self._s2 = s2
        mean_dev = s1 / n
        var = s2 / n - mean_dev * mean_dev
        self._peak = var
        return var

    def update(self, x: float) -> None:
        """Feed the next value."""
        buf = self._buf
        i = self._i
        n = self._n
        if self._full:
            shift = self._shift
            d_new = x - shift
            d_old = buf[i] - shift
            s1 = self._s1 + (d_new - d_old)
            s2 = self._s2 + (d_new * d_new - d_old * d_old)
            buf[i] = x
            i += 1
            if i == self.period:
                i = 0
                self._wraps += 1
            self._i = i
            mean_dev = s1 / n
            sq = mean_dev * mean_dev
            var = s2 / n - sq
            peak = self._peak
            if var > peak:
                self._peak = peak = var
            # `_wraps` only grows when the index wraps to 0 (and a resync resets it), so the
            # periodic resync can only fall due then; testing `i` first skips two reads otherwise.
            if (
                var < peak * _CANCELLATION
                or sq > var * _MAX_SHIFT_DRIFT
                or (i == 0 and self._wraps >= self._wraps_per_resync)
            ):
                var = self._resync()
                shift = self._shift
                mean_dev = self._s1 / n
            else:
                # Stored only when kept: a resync replaces them anyway.
                self._s1 = s1
                self._s2 = s2
        else:
            buf[i] = x
            i += 1
            if i < self.period:
                self._i = i
                return
            self._i = 0
            self._full = True
            var = self._resync()
            shift = self._shift
            mean_dev = self._s1 / n
        std = _sqrt(var) if var > 0.0 else 0.0
        middle = shift + mean_dev
        width = std * self.k
        self.stddev = std
        self.middle = middle
        self.upper = middle + width
        self.lower = middle - width

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each."""
        update = self.update
        for x in values:
            update(x)


@dataclass(frozen=True, slots=True)
class MACDValue:
    """A snapshot of MACD outputs."""

    macd: float
    signal: float
    histogram: float


class MACD:
    """Moving average convergence/divergence, seeded exactly like TA-Lib's ``MACD``.

    ``macd = EMA(fast) - EMA(slow)``, ``signal = EMA(signal) of macd``,
    ``histogram = macd - signal``. TA-Lib seeds *both* price EMAs so that their seeds end on the
    same candle: the slow EMA with the average of the first ``slow`` prices, the fast EMA with the
    average of the ``fast`` prices ending at that same candle (prices before it are ignored). A
    naive composition of two independent EMAs instead seeds the fast EMA on the first ``fast``
    prices, and differs from TA-Lib by an amount that decays only slowly. The signal EMA is seeded
    with the average of the first ``signal`` MACD values. ``warmup == slow + signal - 1``; all three
    outputs become defined together, as in TA-Lib.
    """

    __slots__ = (
        "_count",
        "_fast",
        "_fast_sum",
        "_k_fast",
        "_k_signal",
        "_k_slow",
        "_sig_count",
        "_sig_sum",
        "_slow",
        "_slow_sum",
        "fast",
        "histogram",
        "macd",
        "signal",
        "signal_period",
        "slow",
    )

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        """Create a MACD (2 ≤ fast < slow ≤ 100,000; 1 ≤ signal ≤ 100,000)."""
        self.fast: int = _check_period("fast", fast, 2)
        self.slow: int = _check_period("slow", slow, 2)
        self.signal_period: int = _check_period("signal", signal, 1)
        if fast >= slow:
            # TA-Lib silently swaps them; fast >= slow is a mistake worth reporting.
            raise ValueError(f"fast ({fast}) must be smaller than slow ({slow})")
        self.macd: float | None = None
        """MACD line, or None during warm-up."""
        self.signal: float | None = None
        """Signal line, or None during warm-up."""
        self.histogram: float | None = None
        """``macd - signal``, or None during warm-up."""
        self._k_fast = 2.0 / (fast + 1)
        self._k_slow = 2.0 / (slow + 1)
        self._k_signal = 2.0 / (signal + 1)
        self._count = 0
        self._fast_sum = 0.0
        self._slow_sum = 0.0
        self._fast: float = 0.0
        self._slow: float | None = None
        self._sig_sum = 0.0
        self._sig_count = 0

    @property
    def warmup(self) -> int:
        """Number of values to feed before the outputs are defined."""
        return self.slow + self.signal_period - 1

    @property
    def ready(self) -> bool:
        """Whether the outputs are defined."""
        return self.histogram is not None

    @property
    def value(self) -> MACDValue | None:
        """The current outputs as one snapshot, or None during warm-up."""
        if self.macd is None or self.signal is None or self.histogram is None:
            return None
        return MACDValue(self.macd, self.signal, self.histogram)

    def update(self, x: float) -> None:
        """Feed the next closing price."""
        slow = self._slow
        if slow is not None:
            fast = self._fast
            slow = (x - slow) * self._k_slow + slow
            fast = (x - fast) * self._k_fast + fast
            self._slow = slow
            self._fast = fast
            sig = self.signal
            if sig is not None:
                # The steady state, kept apart so that it does no more work than it must.
                macd = fast - slow
                sig = (macd - sig) * self._k_signal + sig
                self.macd = macd
                self.signal = sig
                self.histogram = macd - sig
                return
        else:
            self._count += 1
            self._slow_sum += x
            # The fast seed covers only the last `fast` prices of the slow seed window (TA-Lib).
            if self._count > self.slow - self.fast:
                self._fast_sum += x
            if self._count < self.slow:
                return
            slow = self._slow_sum / self.slow
            fast = self._fast_sum / self.fast
            self._slow = slow
            self._fast = fast
        # The signal EMA is still being seeded (`signal` is None until it is).
        macd = fast - slow
        self._sig_sum += macd
        self._sig_count += 1
        if self._sig_count < self.signal_period:
            return
        sig = self._sig_sum / self.signal_period
        self.macd = macd
        self.signal = sig
        self.histogram = macd - sig

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each."""
        update = self.update
        for x in values:
            update(x)


class VolumeSpike:
    """Ratio of the current volume to the average of the ``period`` volumes before it.

    ``value = volume[t] / mean(volume[t - period] .. volume[t - 1])`` — the current volume is *not*
    part of its own baseline, so a spike cannot dilute the average it is compared with. This equals
    ``volume / SMA(volume, period)`` with the SMA taken one candle earlier (TA-Lib has no such
    function; the golden test derives it from TA-Lib's ``SMA``). When every previous volume is zero
    the ratio is ``inf`` for a positive current volume and ``1.0`` (no change) for a zero one.
    Volumes must be non-negative. ``warmup == period + 1``.
    """

    __slots__ = (
        "_buf",
        "_full",
        "_i",
        "_n",
        "_nonzero",
        "_sum",
        "_wraps",
        "_wraps_per_resync",
        "average",
        "period",
        "value",
    )

    def __init__(self, period: int) -> None:
        """Create a spike ratio against the previous ``period`` volumes (1 ≤ period ≤ 100,000)."""
        self.period: int = _check_period("period", period, 1)
        self.value: float | None = None
        """The ratio, or None during warm-up."""
        self.average: float | None = None
        """The baseline the last ratio was computed against, or None during warm-up."""
        self._buf: list[float] = [0.0] * period
        self._n = float(period)  # a float divisor is faster and gives the same quotient (see SMA)
        self._i = 0
        self._sum = 0.0
        # Counting non-zero volumes makes "the baseline is exactly zero" exact, which a running sum
        # cannot promise (0.1 + 0.2 - 0.1 - 0.2 != 0.0).
        self._nonzero = 0
        self._full = False
        self._wraps = 0
        self._wraps_per_resync = _resync_wraps(period)

    @property
    def warmup(self) -> int:
        """Number of values to feed before ``value`` is defined."""
        return self.period + 1

    @property
    def ready(self) -> bool:
        """Whether ``value`` is defined."""
        return self.value is not None

    def update(self, x: float) -> None:
        """Feed the next volume."""
        buf = self._buf
        total = self._sum
        if self._full:
            nonzero = self._nonzero
            average = total / self._n if nonzero else 0.0
            if average > 0.0:
                # The usual case, tested first.
                self.average = average
                self.value = x / average
            else:
                if average <= 0.0 < nonzero:
                    # Cancellation (a huge volume left the window and took the small ones' digits
                    # with it) or underflow: re-derive the sum before trusting it.
                    total = _exact_sum(buf)
                    average = total / self._n
                if average > 0.0:
                    self.average = average
                    self.value = x / average
                else:
                    self.average = 0.0
                    self.value = 1.0 if x == 0.0 else math.inf
        i = self._i
        old = buf[i]
        total += x - old
        # The count changes only when exactly one of the two volumes is zero; branching on that
        # avoids storing it on every update.
        if x == 0.0:
            if old != 0.0:
                self._nonzero -= 1
        elif old == 0.0:
            self._nonzero += 1
        buf[i] = x
        i += 1
        if i == self.period:
            i = 0
            self._full = True
            self._wraps += 1
            if self._wraps >= self._wraps_per_resync:
                self._wraps = 0
                total = _exact_sum(buf)
        self._i = i
        self._sum = total

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each."""
        update = self.update
        for x in values:
            update(x)


class PriceChangePct:
    """Percentage change of the price over ``period`` candles (TA-Lib ``ROC``).

    ``value = (price[t] / price[t - period] - 1) * 100``; 0 if the earlier price is 0, as in TA-Lib.
    ``warmup == period + 1``.
    """

    __slots__ = ("_buf", "_full", "_i", "period", "value")

    def __init__(self, period: int) -> None:
        """Create a price change over ``period`` candles (1 ≤ period ≤ 100,000)."""
        self.period: int = _check_period("period", period, 1)
        self.value: float | None = None
        """The change in percent, or None during warm-up."""
        self._buf: list[float] = [0.0] * period
        self._i = 0
        self._full = False

    @property
    def warmup(self) -> int:
        """Number of values to feed before ``value`` is defined."""
        return self.period + 1

    @property
    def ready(self) -> bool:
        """Whether ``value`` is defined."""
        return self.value is not None

    def update(self, x: float) -> None:
        """Feed the next closing price."""
        buf = self._buf
        i = self._i
        if self._full:
            old = buf[i]
            self.value = (x / old - 1.0) * 100.0 if old != 0.0 else 0.0
            buf[i] = x
            i += 1
            # No store of `_full` here: with short periods the index wraps on most updates.
            self._i = 0 if i == self.period else i
            return
        buf[i] = x
        i += 1
        if i == self.period:
            i = 0
            self._full = True
        self._i = i

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each, several times faster."""
        buf = self._buf
        n = self.period
        i = self._i
        full = self._full
        value = self.value
        for x in values:
            if full:
                old = buf[i]
                value = (x / old - 1.0) * 100.0 if old != 0.0 else 0.0
            buf[i] = x
            i += 1
            if i == n:
                i = 0
                full = True
        self._i = i
        self._full = full
        self.value = value
