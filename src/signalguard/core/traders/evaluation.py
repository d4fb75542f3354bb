"""Evaluating one condition on one candle, and the errors an evaluation can raise.

The probes here are what the pool shares between traders: one per distinct condition.
"""

from __future__ import annotations

import enum
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
from signalguard.core.traders.definition import COMPARE, Band, Condition, Direction, Op

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


class _ThresholdProbe(ConditionResult):
    __slots__ = ("_compare", "_indicator", "_value")

    PRIOR = 0.1  # thresholds are usually set at extremes (RSI < 30, volume > 2x)

    def __init__(self, indicator: RSI | VolumeSpike | PriceChangePct, op: Op, value: float) -> None:
        super().__init__()
        self._indicator = indicator
        self._compare = COMPARE[op]
        self._value = value

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


class _CloseVsBandProbe(ConditionResult):
    __slots__ = ("_band", "_compare", "_indicator")

    def __init__(self, indicator: BollingerBands, band: Band, op: Op) -> None:
        super().__init__()
        self._indicator = indicator
        self._band = band
        self._compare = COMPARE[op]
        # Outside a band is rare; either side of the middle line is a coin toss.
        self.prior = 0.5 if band is Band.MIDDLE else 0.05

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

    def evaluate(self, close: float) -> None:
        h = self._macd.histogram
        if h is None:
            return
        self.ready = True
        self.matched = self._compare(h, self._value)


class _MacdCrossProbe(ConditionResult):
    __slots__ = ("_macd", "_previous", "_up")

    PRIOR = 0.02

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
