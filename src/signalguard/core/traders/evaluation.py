"""Evaluating one condition on one candle, and the errors an evaluation can raise.

The probes here are what the pool shares between traders: one per distinct condition.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING

from signalguard.core.indicators import (
    EMA,
    MACD,
    RSI,
    SMA,
    BollingerBands,
    PriceChangePct,
    VolumeSpike,
)
from signalguard.core.traders.definition import (
    COMPARE,
    Band,
    CloseVsAverage,
    CloseVsBollinger,
    Condition,
    Direction,
    Kind,
    MacdHistogram,
    MovingAverageCross,
    Op,
    Threshold,
)

if TYPE_CHECKING:
    from signalguard.core.traders.pool import TraderState


class EvaluationErrorCode(enum.StrEnum):
    """Why a trader could not evaluate a candle. The values are stable."""

    WRONG_STREAM = "wrong_stream"  # the candle is for another symbol or interval
    NOT_CLOSED = "not_closed"  # only closed candles are evaluated
    OUT_OF_STEP = "out_of_step"  # the shared pool already moved past this candle
    RELEASED = "released"  # the trader state was closed
    INTERNAL = "internal"  # an indicator or condition raised; the traders using it are stopped


class TraderEvaluationError(Exception):
    """A trader could not evaluate a candle. Catch it per trader: others are unaffected."""

    def __init__(self, code: EvaluationErrorCode, message: str) -> None:
        """Create the error with a stable ``code``."""
        super().__init__(message)
        self.code: EvaluationErrorCode = code
        self.message: str = message


def figure(value: float, scale: float | None = None) -> str:
    """A value as a signal's reading shows it: six significant digits, no exponent, no trailing zeros.

    ``91234.5``, ``101.235``, ``0.00001234``. With ``scale`` (the price), a difference of two nearly
    equal averages keeps six digits of the price or two of its own (``0.0041`` near 138), and never
    the digits below a 10^-12 share of the price, where its operands may disagree across hosts. The worker and
    the browser warm their averages up from different first candles; the decisions agree (the warm-up
    rule settles the averages), the last digits of a difference need not.
    """
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value == 0:
        return "0"
    own = math.floor(math.log10(abs(value)))
    if scale:
        # Six digits of the price, or two of the value itself, but never below a millionth of a
        # millionth of the price, where two hosts' averages may differ.
        of_scale = math.floor(math.log10(abs(scale)))
        decimals = min(max(5 - of_scale, 1 - own), 9 - of_scale)
    else:
        decimals = 5 - own
    text = f"{value:.{max(0, decimals)}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def _with_value(label: str, op: str, value: str) -> str:
    """``RSI(14) < 30`` with ``27.4`` before its operator: ``RSI(14) 27.4 < 30``."""
    lhs, sep, rhs = label.partition(f" {op} ")
    return f"{lhs} {value} {op} {rhs}" if sep else f"{label} ({value})"


def reading_text(condition: Condition, close: float, value: float | None) -> str:
    """A matched condition with the values that decided it, as a signal records it.

    ``value`` is the figure the condition compared on the candle (the preview's
    :class:`~signalguard.core.preview.Reading` value): the indicator of a threshold (``RSI(14) 27.4 <
    30``, ``Volume 3.12x > 2x avg(20)``, ``Price change(5) 2.41% > 2%``), the average or band the close
    was compared with (``Close 101.2 > SMA(50) 99.8``), fast minus slow for a cross (``EMA(9) crosses
    above EMA(21) by 0.42``), the MACD histogram (``MACD(12, 26, 9) histogram 0.42 > 0``). The engine
    and the preview write it with this one function from the same figures, so that a preview's
    trigger and the signal it foretells read alike. None (not warm): the label alone.
    """
    label = condition.label
    if value is None:
        return label
    if isinstance(condition, Threshold):
        unit = {Kind.RSI: "", Kind.VOLUME_SPIKE: "x"}.get(condition.kind, "%")
        text = f"{value:.1f}" if condition.kind is Kind.RSI else f"{value:.2f}{unit}"
        return _with_value(label, str(condition.op), text)
    if isinstance(condition, CloseVsAverage | CloseVsBollinger):
        return f"{_with_value(label, str(condition.op), figure(close))} {figure(value)}"
    # Differences of averages: written to the digits of the price (see figure()).
    if isinstance(condition, MovingAverageCross):
        return f"{label} by {figure(value, close)}"
    if isinstance(condition, MacdHistogram):
        return _with_value(label, str(condition.op), figure(value, close))
    return f"{label} (histogram {figure(value, close)})"


class ConditionResult:
    """The result of one distinct condition of a pool, re-evaluated once per closed candle."""

    __slots__ = ("anchored", "born", "condition", "failure", "hits", "matched", "prior", "ready")

    #: Expected share of candles on which a condition of this kind holds, before any is seen. Only
    #: the order matters: it picks which condition a ``match: all`` trader is first anchored on.
    PRIOR: float = 0.5

    def __init__(self) -> None:
        """Start not ready (and not matched)."""
        self.ready: bool = False
        """Whether the condition could be evaluated on the last candle (its indicators are warm)."""
        self.matched: bool = False
        """Whether the condition held on the last candle (always False while not ready)."""
        self.anchored: list[TraderState] = []
        """``match: all`` trader states visited only when this condition holds (see the pool)."""
        self.hits: int = 0
        """Live candles on which the condition held."""
        self.born: int = 0
        """The pool's live candle count when the condition joined it."""
        self.prior: float = self.PRIOR
        self.condition: Condition | None = None
        """The condition computed (set by the pool)."""
        self.failure: str | None = None
        """Why the condition can no longer be evaluated (it, or an indicator it reads, raised)."""

    def evaluate(self, close: float) -> None:
        """Re-evaluate after the pool's indicators took the candle closing at ``close``."""
        raise NotImplementedError

    def figure(self) -> float | None:
        """The figure the condition compared on the last candle (see :func:`reading_text`)."""
        return None

    def reading(self, label: str, close: float) -> str:
        """``label`` with the values that decided it on the last candle (closing at ``close``).

        ``RSI(14) 27.4 < 30``. Read only when a trader signals (a signal records what triggered it),
        never on the hot path.
        """
        condition = self.condition
        return label if condition is None else reading_text(condition, close, self.figure())


class _ThresholdProbe(ConditionResult):
    __slots__ = ("_compare", "_indicator", "_value")

    PRIOR = 0.1  # thresholds are usually set at extremes (RSI < 30, volume > 2x)

    def __init__(self, indicator: RSI | VolumeSpike | PriceChangePct, op: Op, value: float) -> None:
        super().__init__()
        self._indicator = indicator
        self._compare = COMPARE[op]
        self._value = value

    def figure(self) -> float | None:
        return self._indicator.value

    def evaluate(self, close: float) -> None:
        v = self._indicator.value
        if v is None:
            return
        self.ready = True
        self.matched = self._compare(v, self._value)


class _CloseVsAverageProbe(ConditionResult):
    __slots__ = ("_compare", "_indicator")

    def __init__(self, indicator: SMA | EMA, op: Op) -> None:
        super().__init__()
        self._indicator = indicator
        self._compare = COMPARE[op]

    def evaluate(self, close: float) -> None:
        v = self._indicator.value
        if v is None:
            return
        self.ready = True
        self.matched = self._compare(close, v)

    def figure(self) -> float | None:
        return self._indicator.value


class _CloseVsBandProbe(ConditionResult):
    __slots__ = ("_band", "_compare", "_indicator")

    def __init__(self, indicator: BollingerBands, band: Band, op: Op) -> None:
        super().__init__()
        self._indicator = indicator
        self._band = band
        self._compare = COMPARE[op]
        # Outside a band is rare; either side of the middle line is a coin toss.
        self.prior = 0.5 if band is Band.MIDDLE else 0.05

    def figure(self) -> float | None:
        bands = self._indicator
        band = self._band
        return bands.lower if band is Band.LOWER else bands.upper if band is Band.UPPER else bands.middle

    def evaluate(self, close: float) -> None:
        bands = self._indicator
        band = self._band
        if band is Band.LOWER:
            v = bands.lower
        elif band is Band.UPPER:
            v = bands.upper
        else:
            v = bands.middle
        if v is None:
            return
        self.ready = True
        self.matched = self._compare(close, v)


class _CrossProbe(ConditionResult):
    """Fast minus slow changing sign between two consecutive candles."""

    __slots__ = ("_fast", "_previous", "_slow", "_up")

    PRIOR = 0.02  # a cross happens on one candle of many

    def __init__(self, fast: SMA | EMA, slow: SMA | EMA, direction: Direction) -> None:
        super().__init__()
        self._fast = fast
        self._slow = slow
        self._up = direction is Direction.UP
        self._previous: float | None = None

    def figure(self) -> float | None:
        f, s = self._fast.value, self._slow.value
        return None if f is None or s is None else f - s

    def evaluate(self, close: float) -> None:
        f = self._fast.value
        s = self._slow.value
        if f is None or s is None:
            return
        diff = f - s
        previous = self._previous
        self._previous = diff
        if previous is None:
            return
        self.ready = True
        self.matched = previous <= 0.0 < diff if self._up else previous >= 0.0 > diff


class _MacdHistogramProbe(ConditionResult):
    __slots__ = ("_compare", "_macd", "_value")

    def __init__(self, macd: MACD, op: Op, value: float) -> None:
        super().__init__()
        self._macd = macd
        self._compare = COMPARE[op]
        self._value = value

    def figure(self) -> float | None:
        return self._macd.histogram

    def evaluate(self, close: float) -> None:
        h = self._macd.histogram
        if h is None:
            return
        self.ready = True
        self.matched = self._compare(h, self._value)


class _MacdCrossProbe(ConditionResult):
    __slots__ = ("_macd", "_previous", "_up")

    PRIOR = 0.02

    def figure(self) -> float | None:
        return self._macd.histogram

    def __init__(self, macd: MACD, direction: Direction) -> None:
        super().__init__()
        self._macd = macd
        self._up = direction is Direction.UP
        self._previous: float | None = None

    def evaluate(self, close: float) -> None:
        h = self._macd.histogram
        if h is None:
            return
        previous = self._previous
        self._previous = h
        if previous is None:
            return
        self.ready = True
        self.matched = previous <= 0.0 < h if self._up else previous >= 0.0 > h
