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
raise on float input. Updates allocate no containers: windows are preallocated ring buffers.

How ``update`` is made cheap. Except ``EMA`` (one float of state, for which an ordinary method is as
fast), every indicator runs as a generator started in ``__init__``: its running state (sums, ring
buffer index, seeds, ...) lives in the generator's local variables, which CPython reads and writes
several times faster than attributes, and it writes only the outputs to the instance's slots.
``ind.update`` is an *instance attribute*, the generator's bound ``send``, so that a call resumes the
generator with no method frame in between; ``extend`` throws the remaining values into the
generator, which consumes them in a loop of its own (see :class:`_Generated`). This makes the
once-per-candle updates about a fifth cheaper, with results bit-identical to the method-based
version. What it costs:

- Each such indicator is a reference cycle (instance -> ``update`` -> generator -> instance), so it
  is freed by the cyclic garbage collector rather than as soon as the last reference goes.
- The indicators cannot be copied or pickled (a suspended generator cannot); ``copy``, ``deepcopy``
  and ``pickle`` raise ``TypeError`` rather than silently sharing the generator.
- An exception inside ``update`` or ``extend`` (possible only for non-numeric input) ends the
  generator: the indicator is then unusable (later calls raise ``StopIteration``). The method-based
  version left the state as it was; callers treat such a failure as fatal anyway.
- The running state is not visible as attributes (only the outputs and parameters are).
- Replacing ``update`` on a *class* does not reach existing instances (their own ``update``
  shadows it); replace it on the instance instead.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import NoReturn, Protocol, SupportsIndex

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


class _Batch(Exception):
    """Thrown into an indicator's generator by ``extend``: the values to consume in one go."""

    def __init__(self, values: Iterator[float]) -> None:
        super().__init__()
        self.values = values


class _Generated:
    """Base of the generator-driven indicators: ``update`` is the ``send`` of a generator.

    The generator (``_steps_of`` in each subclass) keeps the whole running state in its local
    variables, which CPython reads and writes several times faster than attributes, and writes the
    outputs to the instance's slots. ``__init__`` starts it and stores its bound ``send`` as the
    instance attribute ``update``, so that ``ind.update(x)`` resumes the generator directly, with no
    method frame in between (see the module notes for what this costs).

    Deliberately without ``__slots__``: ``update`` and the generator live in the instance
    ``__dict__``, so that the slots of the subclasses hold exactly the outputs and the parameters —
    plain values that can be read, compared and inspected.
    """

    _steps: Generator[None, float, None]

    def update(self, x: float) -> None:
        """Feed the next value.

        Instances shadow this method with their generator's ``send``, which does the same faster;
        it serves calls through the class (``SMA.update(sma, x)``).
        """
        self._steps.send(x)

    def _start(self, steps: Generator[None, float, None]) -> None:
        next(steps)  # run to the first `yield`, where the generator waits for the first value
        self._steps = steps
        # An instance attribute, which shadows the method (see the class notes).
        vars(self)["update"] = steps.send

    @property
    def ready(self) -> bool:
        """Whether the output is defined (at least ``warmup`` values have been fed)."""
        raise NotImplementedError

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each."""
        update = self.update
        for x in values:
            update(x)

    def _extend_in_batch(self, values: Iterable[float]) -> None:
        # Warm-up values one at a time; the rest in the generator's batch loop, which gives the same
        # state as sending them one by one with less interpreter overhead.
        iterator = iter(values)
        if not self.ready:
            update = self.update
            for x in iterator:
                update(x)
                if self.ready:
                    break
            else:
                return
        self._steps.throw(_Batch(iterator))

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        # A suspended generator cannot be copied or pickled; a shallow copy would even share it.
        raise TypeError(f"{type(self).__name__} objects cannot be copied or pickled")


class SMA(_Generated):
    """Simple moving average of the last ``period`` values (TA-Lib ``SMA``).

    ``warmup == period``.
    """

    __slots__ = ("period", "value")

    def __init__(self, period: int) -> None:
        """Create an SMA over ``period`` values (1 ≤ period ≤ 100,000)."""
        self.period: int = _check_period("period", period, 1)
        self.value: float | None = None
        """The average of the last ``period`` values, or None during warm-up."""
        self._start(self._steps_of(period))

    @property
    def warmup(self) -> int:
        """Number of values to feed before ``value`` is defined."""
        return self.period

    @property
    def ready(self) -> bool:
        """Whether ``value`` is defined."""
        return self.value is not None

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each, several times faster."""
        self._extend_in_batch(values)

    def _steps_of(self, period: int) -> Generator[None, float, None]:
        buf = [0.0] * period
        # The period as a float: CPython divides a float by a float faster than by an int, and the
        # quotient is the same (every valid period is exactly representable).
        n = float(period)
        per_resync = _resync_wraps(period)
        # The buffer starts as zeros, so the running sum is right during warm-up as well.
        total = 0.0
        for i in range(period):
            x = yield
            total += x - buf[i]
            buf[i] = x
        i = 0
        wraps = 1
        if wraps >= per_resync:
            wraps = 0
            total = _exact_sum(buf)
        self.value = total / n
        while True:
            try:
                x = yield
            except _Batch as batch:
                for x in batch.values:
                    total += x - buf[i]
                    buf[i] = x
                    i += 1
                    if i == period:
                        i = 0
                        wraps += 1
                        if wraps >= per_resync:
                            wraps = 0
                            total = _exact_sum(buf)
                self.value = total / n
                continue
            total += x - buf[i]
            buf[i] = x
            i += 1
            if i == period:
                i = 0
                wraps += 1
                if wraps >= per_resync:
                    wraps = 0
                    total = _exact_sum(buf)
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


class RSI(_Generated):
    """Relative strength index with Wilder smoothing, computed like TA-Lib's ``RSI``.

    The first ``period`` price changes are averaged; afterwards each average becomes
    ``(average * (period - 1) + change) / period``. The value is
    ``100 * avg_gain / (avg_gain + avg_loss)`` (equal to ``100 - 100 / (1 + RS)``), and 50 when both
    averages are exactly zero (see the module notes). ``warmup == period + 1``: ``period`` changes
    need ``period + 1`` prices.
    """

    __slots__ = ("period", "value")

    def __init__(self, period: int) -> None:
        """Create an RSI over ``period`` price changes (2 ≤ period ≤ 100,000)."""
        self.period: int = _check_period("period", period, 2)
        self.value: float | None = None
        """The RSI in [0, 100], or None during warm-up."""
        self._start(self._steps_of(period))

    @property
    def warmup(self) -> int:
        """Number of values to feed before ``value`` is defined."""
        return self.period + 1

    @property
    def ready(self) -> bool:
        """Whether ``value`` is defined."""
        return self.value is not None

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each, several times faster."""
        self._extend_in_batch(values)

    def _steps_of(self, period: int) -> Generator[None, float, None]:
        n = float(period)
        inv = 1.0 / period
        keep = float(period - 1)
        prev = yield  # the first price yields no change
        gain = 0.0
        loss = 0.0
        for _ in range(period):
            x = yield
            change = x - prev
            prev = x
            if change < 0.0:
                loss -= change
            else:
                gain += change
        gain /= n
        loss /= n
        total = gain + loss
        self.value = 100.0 * (gain / total) if total != 0.0 else 50.0
        while True:
            try:
                x = yield
            except _Batch as batch:
                for x in batch.values:
                    change = x - prev
                    prev = x
                    if change < 0.0:
                        gain = gain * keep * inv
                        loss = (loss * keep - change) * inv
                    else:
                        gain = (gain * keep + change) * inv
                        loss = loss * keep * inv
                total = gain + loss
                self.value = 100.0 * (gain / total) if total != 0.0 else 50.0
                continue
            change = x - prev
            prev = x
            # TA-Lib's operations in TA-Lib's order: scale both averages by (n - 1), add today's
            # move to one of them, then scale both by 1/n (TA-Lib's build multiplies by the
            # reciprocal here rather than dividing; doing the same keeps the results bit-identical).
            if change < 0.0:
                gain = gain * keep * inv
                loss = (loss * keep - change) * inv
            else:
                gain = (gain * keep + change) * inv
                loss = loss * keep * inv
            total = gain + loss
            self.value = 100.0 * (gain / total) if total != 0.0 else 50.0


@dataclass(frozen=True, slots=True)
class Bands:
    """A snapshot of Bollinger bands."""

    upper: float
    middle: float
    lower: float


def _bands_sums(buf: list[float], period: int) -> tuple[float, float, float, float]:
    """Derive the Bollinger sums from the window: return ``(shift, s1, s2, variance)``."""
    if min(buf) == max(buf):
        # A flat window: exactly zero width (the mean below could be an ulp off).
        return buf[0], 0.0, 0.0, 0.0
    shift = _exact_sum(buf) / period
    if not math.isfinite(shift):
        shift = 0.0
    deviations = [v - shift for v in buf]
    s1 = _exact_sum(deviations)
    s2 = _exact_sum([d * d for d in deviations])
    mean_dev = s1 / period
    return shift, s1, s2, s2 / period - mean_dev * mean_dev


class BollingerBands(_Generated):
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

    __slots__ = ("k", "lower", "middle", "period", "stddev", "upper")

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
        self._start(self._steps_of(period, self.k))

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

    def _steps_of(self, period: int, k: float) -> Generator[None, float, None]:
        buf = [0.0] * period
        n = float(period)  # a float divisor is faster and gives the same quotient (see SMA)
        per_resync = max(1, _BANDS_RESYNC_EVERY // period)
        cancellation = _CANCELLATION
        max_drift = _MAX_SHIFT_DRIFT
        sqrt = _sqrt
        for i in range(period):
            buf[i] = yield
        i = 0
        wraps = 0
        shift, s1, s2, var = _bands_sums(buf, period)
        # `peak * cancellation` is kept, not recomputed on every value (the same product either way).
        peak = var
        floor = peak * cancellation
        mean_dev = s1 / n
        while True:
            std = sqrt(var) if var > 0.0 else 0.0
            middle = shift + mean_dev
            width = std * k
            self.stddev = std
            self.middle = middle
            self.upper = middle + width
            self.lower = middle - width
            x = yield
            d_new = x - shift
            d_old = buf[i] - shift
            s1 += d_new - d_old
            s2 += d_new * d_new - d_old * d_old
            buf[i] = x
            i += 1
            if i == period:
                i = 0
                wraps += 1
            mean_dev = s1 / n
            sq = mean_dev * mean_dev
            var = s2 / n - sq
            if var > peak:
                peak = var
                floor = peak * cancellation
            # `wraps` only grows when the index wraps to 0 (and a resync resets it), so the periodic
            # resync can only fall due then; testing `i` first saves a comparison otherwise.
            if var < floor or sq > var * max_drift or (i == 0 and wraps >= per_resync):
                wraps = 0
                shift, s1, s2, var = _bands_sums(buf, period)
                peak = var
                floor = peak * cancellation
                mean_dev = s1 / n


@dataclass(frozen=True, slots=True)
class MACDValue:
    """A snapshot of MACD outputs."""

    macd: float
    signal: float
    histogram: float


class MACD(_Generated):
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

    __slots__ = ("fast", "histogram", "macd", "signal", "signal_period", "slow")

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
        self._start(self._steps_of(fast, slow, signal))

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

    def _steps_of(
        self, fast_period: int, slow_period: int, signal_period: int
    ) -> Generator[None, float, None]:
        k_fast = 2.0 / (fast_period + 1)
        k_slow = 2.0 / (slow_period + 1)
        k_signal = 2.0 / (signal_period + 1)
        slow_sum = 0.0
        fast_sum = 0.0
        # The fast seed covers only the last `fast` prices of the slow seed window (TA-Lib).
        fast_from = slow_period - fast_period
        for count in range(slow_period):
            x = yield
            slow_sum += x
            if count >= fast_from:
                fast_sum += x
        slow = slow_sum / slow_period
        fast = fast_sum / fast_period
        # The signal EMA is seeded with the average of the first `signal_period` MACD values.
        macd = fast - slow
        sig_sum = 0.0
        sig_sum += macd
        for _ in range(signal_period - 1):
            x = yield
            slow = (x - slow) * k_slow + slow
            fast = (x - fast) * k_fast + fast
            macd = fast - slow
            sig_sum += macd
        sig = sig_sum / signal_period
        while True:
            self.macd = macd
            self.signal = sig
            self.histogram = macd - sig
            x = yield
            slow = (x - slow) * k_slow + slow
            fast = (x - fast) * k_fast + fast
            macd = fast - slow
            sig = (macd - sig) * k_signal + sig


class VolumeSpike(_Generated):
    """Ratio of the current volume to the average of the ``period`` volumes before it.

    ``value = volume[t] / mean(volume[t - period] .. volume[t - 1])`` — the current volume is *not*
    part of its own baseline, so a spike cannot dilute the average it is compared with. This equals
    ``volume / SMA(volume, period)`` with the SMA taken one candle earlier (TA-Lib has no such
    function; the golden test derives it from TA-Lib's ``SMA``). When every previous volume is zero
    the ratio is ``inf`` for a positive current volume and ``1.0`` (no change) for a zero one.
    Volumes must be non-negative. ``warmup == period + 1``.
    """

    __slots__ = ("average", "period", "value")

    def __init__(self, period: int) -> None:
        """Create a spike ratio against the previous ``period`` volumes (1 ≤ period ≤ 100,000)."""
        self.period: int = _check_period("period", period, 1)
        self.value: float | None = None
        """The ratio, or None during warm-up."""
        self.average: float | None = None
        """The baseline the last ratio was computed against, or None during warm-up."""
        self._start(self._steps_of(period))

    @property
    def warmup(self) -> int:
        """Number of values to feed before ``value`` is defined."""
        return self.period + 1

    @property
    def ready(self) -> bool:
        """Whether ``value`` is defined."""
        return self.value is not None

    def _steps_of(self, period: int) -> Generator[None, float, None]:
        buf = [0.0] * period
        n = float(period)  # a float divisor is faster and gives the same quotient (see SMA)
        per_resync = _resync_wraps(period)
        total = 0.0
        # Counting non-zero volumes makes "the baseline is exactly zero" exact, which a running sum
        # cannot promise (0.1 + 0.2 - 0.1 - 0.2 != 0.0).
        nonzero = 0
        for i in range(period):
            x = yield
            total += x - buf[i]
            if x != 0.0:
                nonzero += 1
            buf[i] = x
        i = 0
        wraps = 1
        if wraps >= per_resync:
            wraps = 0
            total = _exact_sum(buf)
        while True:
            x = yield
            average = total / n if nonzero else 0.0
            if average > 0.0:
                # The usual case, tested first.
                self.average = average
                self.value = x / average
            else:
                if average <= 0.0 < nonzero:
                    # Cancellation (a huge volume left the window and took the small ones' digits
                    # with it) or underflow: re-derive the sum before trusting it.
                    total = _exact_sum(buf)
                    average = total / n
                if average > 0.0:
                    self.average = average
                    self.value = x / average
                else:
                    self.average = 0.0
                    self.value = 1.0 if x == 0.0 else math.inf
            old = buf[i]
            total += x - old
            # The count changes only when exactly one of the two volumes is zero.
            if x == 0.0:
                if old != 0.0:
                    nonzero -= 1
            elif old == 0.0:
                nonzero += 1
            buf[i] = x
            i += 1
            if i == period:
                i = 0
                wraps += 1
                if wraps >= per_resync:
                    wraps = 0
                    total = _exact_sum(buf)


class PriceChangePct(_Generated):
    """Percentage change of the price over ``period`` candles (TA-Lib ``ROC``).

    ``value = (price[t] / price[t - period] - 1) * 100``; 0 if the earlier price is 0, as in TA-Lib.
    ``warmup == period + 1``.
    """

    __slots__ = ("period", "value")

    def __init__(self, period: int) -> None:
        """Create a price change over ``period`` candles (1 ≤ period ≤ 100,000)."""
        self.period: int = _check_period("period", period, 1)
        self.value: float | None = None
        """The change in percent, or None during warm-up."""
        self._start(self._steps_of(period))

    @property
    def warmup(self) -> int:
        """Number of values to feed before ``value`` is defined."""
        return self.period + 1

    @property
    def ready(self) -> bool:
        """Whether ``value`` is defined."""
        return self.value is not None

    def extend(self, values: Iterable[float]) -> None:
        """Feed many values, oldest first: the same state as ``update`` on each, several times faster."""
        self._extend_in_batch(values)

    def _steps_of(self, period: int) -> Generator[None, float, None]:
        buf = [0.0] * period
        for i in range(period):
            buf[i] = yield
        if period == 1:
            # The common case: the previous price is all the window there is.
            old = buf[0]
            while True:
                try:
                    x = yield
                except _Batch as batch:
                    value = self.value
                    for x in batch.values:
                        value = (x / old - 1.0) * 100.0 if old != 0.0 else 0.0
                        old = x
                    self.value = value
                    continue
                self.value = (x / old - 1.0) * 100.0 if old != 0.0 else 0.0
                old = x
        i = 0
        while True:
            try:
                x = yield
            except _Batch as batch:
                value = self.value
                for x in batch.values:
                    old = buf[i]
                    value = (x / old - 1.0) * 100.0 if old != 0.0 else 0.0
                    buf[i] = x
                    i += 1
                    if i == period:
                        i = 0
                self.value = value
                continue
            old = buf[i]
            self.value = (x / old - 1.0) * 100.0 if old != 0.0 else 0.0
            buf[i] = x
            i += 1
            if i == period:
                i = 0
