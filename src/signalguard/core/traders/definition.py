"""The trader definition: its limits, vocabulary and condition types (with labels and warm-ups).

Pure data; :mod:`.validation` makes a :class:`TraderDefinition` from JSON.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, TypeAlias

from signalguard.core.positions import TradePlan

SCHEMA_VERSION: Final = 1
"""The only definition version this module understands."""
MAX_SYMBOLS: Final = 500
"""Most symbols one trader may watch."""
MAX_CONDITIONS: Final = 10
"""Most conditions one trader may have."""
MAX_COOLDOWN: Final = 10_000
"""Longest cooldown, in candles."""
MAX_DEFINITION_SIZE: Final = 64 * 1024
"""Largest definition accepted as str/bytes JSON."""
MIN_PERIOD: Final = 2
MAX_PERIOD: Final = 500
"""Periods are bounded so that warm-up history stays a few REST pages at most."""
SETTLE_RESIDUAL: Final = 1e-6
"""Weight of an exponential indicator's starting point below which it counts as settled."""


# --- vocabulary ---------------------------------------------------------------------------------


class Kind(enum.StrEnum):
    """The ``indicator`` of a condition."""

    RSI = "rsi"  # RSI(period) compared with a value
    VOLUME_SPIKE = "volume_spike"  # volume / average of the previous `period` volumes vs a value
    PRICE_CHANGE_PCT = "price_change_pct"  # % change of the close over `period` candles vs a value
    CLOSE_VS_SMA = "close_vs_sma"  # close compared with SMA(period)
    CLOSE_VS_EMA = "close_vs_ema"  # close compared with EMA(period)
    CLOSE_VS_BOLLINGER = "close_vs_bollinger"  # close compared with one Bollinger band
    EMA_CROSS = "ema_cross"  # EMA(fast) crossing EMA(slow)
    SMA_CROSS = "sma_cross"  # SMA(fast) crossing SMA(slow)
    MACD_HISTOGRAM = "macd_histogram"  # MACD histogram compared with a value (0: its sign)
    MACD_CROSS = "macd_cross"  # MACD line crossing its signal line


class Op(enum.StrEnum):
    """Comparison operator of a condition (equality makes no sense on floats, so it is absent)."""

    LT = "<"  # strictly below
    LE = "<="  # below or equal
    GT = ">"  # strictly above
    GE = ">="  # above or equal


class Direction(enum.StrEnum):
    """Direction of a cross."""

    UP = "up"  # the fast line crosses above the slow one
    DOWN = "down"  # the fast line crosses below the slow one


class Band(enum.StrEnum):
    """Which Bollinger band a close is compared with."""

    UPPER = "upper"  # middle + k standard deviations
    MIDDLE = "middle"  # the SMA
    LOWER = "lower"  # middle - k standard deviations


class Match(enum.StrEnum):
    """How a trader combines its conditions."""

    ALL = "all"  # every condition must hold
    ANY = "any"  # at least one condition must hold


COMPARE: Final[Mapping[Op, Callable[[float, float], bool]]] = {
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}


def _num(value: int | float) -> str:
    """Render a number as it was written in the definition."""
    return str(value) if isinstance(value, int) else repr(value)


@lru_cache(maxsize=4096)
def _settle(alpha: float) -> int:
    """Return how many updates shrink the weight of an exponential seed below SETTLE_RESIDUAL."""
    # Counted by repeated multiplication rather than with math.log, so that the browser and the
    # cloud (different libm) derive the same integer.
    weight = 1.0
    steps = 0
    while weight > SETTLE_RESIDUAL:
        weight *= 1.0 - alpha
        steps += 1
    return steps


def _ema_settle(period: int) -> int:
    return _settle(2.0 / (period + 1))


# --- conditions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    """``rsi``, ``volume_spike`` or ``price_change_pct`` compared with a value."""

    kind: Kind
    period: int
    op: Op
    value: int | float

    @property
    def label(self) -> str:
        """Human-readable condition, e.g. ``RSI(14) < 30``."""
        if self.kind is Kind.RSI:
            return f"RSI({self.period}) {self.op} {_num(self.value)}"
        if self.kind is Kind.VOLUME_SPIKE:
            return f"Volume {self.op} {_num(self.value)}x avg({self.period})"
        return f"Price change({self.period}) {self.op} {_num(self.value)}%"

    @property
    def warmup(self) -> int:
        """Closed candles needed before the condition can be evaluated."""
        return self.period + 1

    @property
    def history(self) -> int:
        """Closed candles to prime with (warm-up plus settling, see the module notes)."""
        settle = _settle(1.0 / self.period) if self.kind is Kind.RSI else 0
        return self.warmup + settle

    def to_json(self) -> dict[str, object]:
        """Return the condition as it appears in a definition."""
        return {"indicator": str(self.kind), "period": self.period, "op": str(self.op), "value": self.value}


@dataclass(frozen=True, slots=True)
class CloseVsAverage:
    """``close_vs_sma`` / ``close_vs_ema``: the close compared with a moving average."""

    kind: Kind
    period: int
    op: Op

    @property
    def label(self) -> str:
        """Human-readable condition, e.g. ``Close > SMA(50)``."""
        name = "SMA" if self.kind is Kind.CLOSE_VS_SMA else "EMA"
        return f"Close {self.op} {name}({self.period})"

    @property
    def warmup(self) -> int:
        """Closed candles needed before the condition can be evaluated."""
        return self.period

    @property
    def history(self) -> int:
        """Closed candles to prime with (warm-up plus settling, see the module notes)."""
        settle = _ema_settle(self.period) if self.kind is Kind.CLOSE_VS_EMA else 0
        return self.warmup + settle

    def to_json(self) -> dict[str, object]:
        """Return the condition as it appears in a definition."""
        return {"indicator": str(self.kind), "period": self.period, "op": str(self.op)}


@dataclass(frozen=True, slots=True)
class CloseVsBollinger:
    """``close_vs_bollinger``: the close compared with one Bollinger band."""

    period: int
    k: int | float
    band: Band
    op: Op
    kind: Kind = field(default=Kind.CLOSE_VS_BOLLINGER, init=False)

    @property
    def label(self) -> str:
        """Human-readable condition, e.g. ``Close < BB(20, 2.0) lower``."""
        return f"Close {self.op} BB({self.period}, {_num(self.k)}) {self.band}"

    @property
    def warmup(self) -> int:
        """Closed candles needed before the condition can be evaluated."""
        return self.period

    @property
    def history(self) -> int:
        """Closed candles to prime with (a windowed indicator: exact once warm)."""
        return self.warmup

    def to_json(self) -> dict[str, object]:
        """Return the condition as it appears in a definition."""
        return {
            "indicator": str(self.kind),
            "period": self.period,
            "k": self.k,
            "band": str(self.band),
            "op": str(self.op),
        }


@dataclass(frozen=True, slots=True)
class MovingAverageCross:
    """``ema_cross`` / ``sma_cross``: the fast average crossing the slow one."""

    kind: Kind
    fast: int
    slow: int
    direction: Direction

    @property
    def label(self) -> str:
        """Human-readable condition, e.g. ``EMA(9) crosses above EMA(21)``."""
        name = "EMA" if self.kind is Kind.EMA_CROSS else "SMA"
        way = "above" if self.direction is Direction.UP else "below"
        return f"{name}({self.fast}) crosses {way} {name}({self.slow})"

    @property
    def warmup(self) -> int:
        """Closed candles needed before the condition can be evaluated.

        One more than the slow average's: a cross compares with the previous candle.
        """
        return self.slow + 1

    @property
    def history(self) -> int:
        """Closed candles to prime with (warm-up plus settling, see the module notes)."""
        settle = _ema_settle(self.slow) if self.kind is Kind.EMA_CROSS else 0
        return self.warmup + settle

    def to_json(self) -> dict[str, object]:
        """Return the condition as it appears in a definition."""
        return {
            "indicator": str(self.kind),
            "fast": self.fast,
            "slow": self.slow,
            "direction": str(self.direction),
        }


@dataclass(frozen=True, slots=True)
class MacdHistogram:
    """``macd_histogram``: the MACD histogram compared with a value (``0`` tests its sign)."""

    fast: int
    slow: int
    signal: int
    op: Op
    value: int | float
    kind: Kind = field(default=Kind.MACD_HISTOGRAM, init=False)

    @property
    def label(self) -> str:
        """Human-readable condition, e.g. ``MACD(12, 26, 9) histogram > 0``."""
        return f"MACD({self.fast}, {self.slow}, {self.signal}) histogram {self.op} {_num(self.value)}"

    @property
    def warmup(self) -> int:
        """Closed candles needed before the condition can be evaluated."""
        return self.slow + self.signal - 1

    @property
    def history(self) -> int:
        """Closed candles to prime with (warm-up plus settling of the slow and signal EMAs)."""
        return self.warmup + _ema_settle(self.slow) + _ema_settle(self.signal)

    def to_json(self) -> dict[str, object]:
        """Return the condition as it appears in a definition."""
        return {
            "indicator": str(self.kind),
            "fast": self.fast,
            "slow": self.slow,
            "signal": self.signal,
            "op": str(self.op),
            "value": self.value,
        }


@dataclass(frozen=True, slots=True)
class MacdCross:
    """``macd_cross``: the MACD line crossing its signal line."""

    fast: int
    slow: int
    signal: int
    direction: Direction
    kind: Kind = field(default=Kind.MACD_CROSS, init=False)

    @property
    def label(self) -> str:
        """Human-readable condition, e.g. ``MACD(12, 26, 9) crosses above signal``."""
        way = "above" if self.direction is Direction.UP else "below"
        return f"MACD({self.fast}, {self.slow}, {self.signal}) crosses {way} signal"

    @property
    def warmup(self) -> int:
        """Closed candles needed before the condition can be evaluated.

        One more than the MACD's: a cross compares with the previous candle.
        """
        return self.slow + self.signal

    @property
    def history(self) -> int:
        """Closed candles to prime with (warm-up plus settling of the slow and signal EMAs)."""
        return self.warmup + _ema_settle(self.slow) + _ema_settle(self.signal)

    def to_json(self) -> dict[str, object]:
        """Return the condition as it appears in a definition."""
        return {
            "indicator": str(self.kind),
            "fast": self.fast,
            "slow": self.slow,
            "signal": self.signal,
            "direction": str(self.direction),
        }


Condition: TypeAlias = (
    Threshold | CloseVsAverage | CloseVsBollinger | MovingAverageCross | MacdHistogram | MacdCross
)
"""Any condition of a trader definition."""


@dataclass(frozen=True, slots=True)
class TraderDefinition:
    """A validated trader definition. Build it with :func:`parse_trader`."""

    symbols: tuple[str, ...]
    interval: str
    conditions: tuple[Condition, ...]
    match: Match = Match.ALL
    cooldown_candles: int = 0
    version: int = SCHEMA_VERSION
    #: How signals are paper-traded (None: signals only).
    trade: TradePlan | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels of the conditions, in definition order."""
        return tuple(c.label for c in self.conditions)

    @property
    def warmup(self) -> int:
        """Closed candles needed before every condition can be evaluated."""
        return max(c.warmup for c in self.conditions)

    @property
    def history(self) -> int:
        """Closed candles to prime each symbol with before streaming (the warm-up rule)."""
        return max(c.history for c in self.conditions)

    def to_json(self) -> dict[str, object]:
        """Return the canonical JSON object (``parse_trader`` of it gives back an equal value)."""
        return {
            "version": self.version,
            "symbols": list(self.symbols),
            "interval": self.interval,
            "match": str(self.match),
            "cooldown_candles": self.cooldown_candles,
            "conditions": [c.to_json() for c in self.conditions],
        } | ({"trade": self.trade.to_json()} if self.trade is not None else {})
