"""Trader definitions: a strict JSON schema, readable condition labels, and evaluation on candles.

A trader watches some symbols on one interval and signals when its conditions hold on a closed
candle. The definition is JSON, validated by :func:`parse_trader`; nothing in it is ever evaluated
as code. Schema (version 1; every key below is the full set — unknown keys are rejected)::

    {
      "version": 1,                       # required, must be 1
      "symbols": ["BTCUSDT", "ETHUSDT"],  # required, 1..500 distinct symbols (upper-cased)
      "interval": "1m",                   # required, a Binance kline interval
      "match": "all",                     # optional, "all" (default) or "any"
      "cooldown_candles": 5,              # optional, 0..10000 (default 0)
      "conditions": [ ... ],              # required, 1..10 distinct conditions
      "trade": { ... }                    # optional: paper-trade every signal (below)
    }

A ``trade`` plan opens one paper trade per signal (see :mod:`signalguard.core.positions`)::

    {
      "side": "long",                     # required, "long" or "short"
      "notional": 100,                    # required, quote amount per trade, 0 < v <= 1e9
      "take_profit_pct": 2.5,             # optional, 0 < v <= 1000 (<= 99.99 for a short)
      "stop_loss_pct": 1.0,               # optional, 0 < v <= 99.99 (<= 1000 for a short)
      "max_hold_candles": 240             # optional, 1..10000
    }

At least one exit rule is required, so that no trade stays open for ever by its plan alone.

Conditions (``op`` is one of ``<``, ``<=``, ``>``, ``>=``; periods are integers 2..500 unless
noted; ``direction`` is ``"up"`` or ``"down"``; numbers are JSON numbers, never booleans):

=====================  ===================================  =====================================
``indicator``          other keys (all required)            label example
=====================  ===================================  =====================================
``rsi``                period, op, value (0..100)           ``RSI(14) < 30``
``volume_spike``       period, op, value (0 < v <= 1000)    ``Volume > 2.0x avg(20)``
``price_change_pct``   period (1..500), op,                 ``Price change(1) <= -3%``
                       value (-100..10000)
``close_vs_sma``       period, op                           ``Close > SMA(50)``
``close_vs_ema``       period, op                           ``Close < EMA(200)``
``close_vs_bollinger`` period, k (0 < k <= 10),             ``Close < BB(20, 2.0) lower``
                       band ("upper"/"middle"/"lower"), op
``ema_cross``          fast, slow (fast < slow), direction  ``EMA(9) crosses above EMA(21)``
``sma_cross``          fast, slow (fast < slow), direction  ``SMA(50) crosses below SMA(200)``
``macd_histogram``     fast, slow (fast < slow), signal     ``MACD(12, 26, 9) histogram > 0``
                       (1..500), op, value (|v| <= 1e15)
``macd_cross``         fast, slow, signal, direction        ``MACD(12, 26, 9) crosses above
                                                            signal``
=====================  ===================================  =====================================

Semantics: ``volume_spike`` compares ``volume / mean(previous period volumes)`` (see
:class:`~signalguard.core.indicators.VolumeSpike`); ``price_change_pct`` is
``(close / close[period candles ago] - 1) * 100``. "Crosses above" means the fast line was at or
below the slow line on the previous closed candle and is strictly above it now ("below" mirrors
it); ``macd_cross`` is the MACD line crossing its signal line (the histogram crossing zero). A
number in a label is printed as written in the JSON (``2`` stays ``2``, ``2.0`` stays ``2.0``).

Evaluation: a :class:`TraderState` evaluates one trader on one symbol. Its indicators live in an
:class:`IndicatorPool` for that (symbol, interval), which may be shared by any number of trader
states: each distinct indicator and each distinct condition is then computed once per candle,
however many traders use it, and a trader's own work per candle is a few attribute reads.

Warm-up rule (shared by the browser and the cloud worker)
    Before streaming a (trader, symbol), fetch the newest ``definition.history`` *closed* klines by
    REST (page backwards with ``endTime`` past Binance's 1000-row limit; drop the still-open last
    row), feed them oldest first to :meth:`TraderState.prime`, then feed every closed stream candle
    to :meth:`TraderState.update`. Candles not newer than the last one seen are ignored, so the
    REST/stream overlap is harmless. ``history = max over conditions of (warmup + settle)``:
    ``warmup`` is the number of closed candles before the condition can be evaluated at all (the
    trader's :attr:`~TraderDefinition.warmup` is the maximum), and ``settle`` is 0 for windowed
    indicators (SMA, Bollinger, volume, price change — exact once warm) and, for exponentially
    smoothed ones (EMA, RSI, MACD), the number of further candles after which the weight of the
    starting point has decayed below 10⁻⁶ (counted by repeated multiplication, so that every
    platform derives the same number). Two engines that follow the rule from different starting
    candles — a browser tab opened now, a cloud worker running for days — then differ by at most
    10⁻⁶ of the difference between their starting states. No signal is emitted before every
    condition of the trader is warm.
"""

from __future__ import annotations

import enum
import json
import operator
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, NoReturn, TypeAlias

from signalguard.core import safejson
from signalguard.core.candles import (
    INTERVALS,
    MONTH,
    SUPPORTED_INTERVALS,
    Candle,
    MarketDataError,
    candle_index,
    normalize_symbol,
)
from signalguard.core.indicators import (
    EMA,
    MACD,
    RSI,
    SMA,
    BollingerBands,
    PriceChangePct,
    VolumeSpike,
)
from signalguard.core.positions import Side, TradePlan

__all__ = [
    "MAX_CONDITIONS",
    "MAX_COOLDOWN",
    "MAX_DEFINITION_SIZE",
    "MAX_PERIOD",
    "MAX_SYMBOLS",
    "MIN_PERIOD",
    "SCHEMA_VERSION",
    "SETTLE_RESIDUAL",
    "Band",
    "CloseVsAverage",
    "CloseVsBollinger",
    "Condition",
    "ConditionResult",
    "Direction",
    "EvaluationErrorCode",
    "IndicatorPool",
    "Kind",
    "MacdCross",
    "MacdHistogram",
    "Match",
    "MovingAverageCross",
    "Op",
    "Threshold",
    "TraderDefinition",
    "TraderDefinitionError",
    "TraderEvaluationError",
    "TraderState",
    "parse_trader",
]

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

_ROOT: Final = "definition"
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


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


_COMPARE: Final[Mapping[Op, Callable[[float, float], bool]]] = {
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


# --- validation ---------------------------------------------------------------------------------


class TraderDefinitionError(ValueError):
    """A trader definition is invalid. ``path`` names the field, e.g. ``conditions[1].period``."""

    def __init__(self, path: str, problem: str) -> None:
        """Create the error for the field at ``path``."""
        super().__init__(f"{path}: {problem}")
        self.path: str = path
        self.problem: str = problem


def _fail(path: str, problem: str) -> NoReturn:
    raise TraderDefinitionError(path, problem)


def _child(path: str, key: str) -> str:
    """Return the path of ``key`` inside ``path``, e.g. ``conditions[1].period``."""
    if not _IDENTIFIER.fullmatch(key):
        # Odd keys ("", "a b", very long ones) are quoted so that the path stays unambiguous.
        shown = key if len(key) <= 40 else key[:37] + "..."
        return f"{path}[{json.dumps(shown)}]"
    return key if path == _ROOT else f"{path}.{key}"


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {json.dumps(key)}")
            seen.add(key)
    return result


def _fields(
    obj: object, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Mapping[str, object]:
    """Check that ``obj`` is an object with exactly the allowed keys; return it."""
    if not isinstance(obj, Mapping):
        _fail(path, "must be a JSON object")
    allowed = required + optional
    for key in obj:
        if not isinstance(key, str):
            _fail(path, f"keys must be strings, got {type(key).__name__}")
        if key not in allowed:
            _fail(_child(path, key), f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in obj:
            _fail(_child(path, key), "required")
    return obj


def _int_in(obj: Mapping[str, object], key: str, path: str, low: int, high: int) -> int:
    value = obj[key]
    if type(value) is not int or not low <= value <= high:
        _fail(_child(path, key), f"must be an integer between {low} and {high}")
    return value


def _number_in(
    obj: Mapping[str, object], key: str, path: str, low: float, high: float, *, above: bool = False
) -> int | float:
    """Read a finite JSON number in [low, high] (or (low, high] with ``above``)."""
    value = obj[key]
    # Range-check the value as given: an int too large for a float must fail, not overflow.
    # NaN and infinities fail the comparisons.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (low < value if above else low <= value)
        or not value <= high
    ):
        if above:
            _fail(_child(path, key), f"must be a number greater than {low:g} and at most {high:g}")
        _fail(_child(path, key), f"must be a number between {low:g} and {high:g}")
    return value


def _choice(obj: Mapping[str, object], key: str, path: str, choices: type[enum.StrEnum]) -> str:
    value = obj[key]
    options = tuple(str(m) for m in choices)
    if not isinstance(value, str) or value not in options:
        _fail(_child(path, key), f"must be one of {_quoted(options)}")
    return value


def _fast_slow(obj: Mapping[str, object], path: str) -> tuple[int, int]:
    fast = _int_in(obj, "fast", path, MIN_PERIOD, MAX_PERIOD - 1)
    slow = _int_in(obj, "slow", path, MIN_PERIOD + 1, MAX_PERIOD)
    if slow <= fast:
        _fail(_child(path, "slow"), f"must be greater than fast ({fast})")
    return fast, slow


_THRESHOLD_RANGES: Final[Mapping[Kind, tuple[int, float, float, bool]]] = {
    # kind: (minimum period, lowest value, highest value, value must exceed the lowest)
    Kind.RSI: (MIN_PERIOD, 0.0, 100.0, False),
    Kind.VOLUME_SPIKE: (MIN_PERIOD, 0.0, 1000.0, True),
    Kind.PRICE_CHANGE_PCT: (1, -100.0, 10000.0, False),
}
_MAX_MACD_VALUE: Final = 1e15


def _parse_condition(raw: object, path: str) -> Condition:
    if not isinstance(raw, Mapping):
        _fail(path, "must be a JSON object")
    if "indicator" not in raw:
        _fail(_child(path, "indicator"), "required")
    kind = Kind(_choice(raw, "indicator", path, Kind))
    if kind in _THRESHOLD_RANGES:
        obj = _fields(raw, path, ("indicator", "period", "op", "value"))
        min_period, low, high, above = _THRESHOLD_RANGES[kind]
        period = _int_in(obj, "period", path, min_period, MAX_PERIOD)
        op = Op(_choice(obj, "op", path, Op))
        value = _number_in(obj, "value", path, low, high, above=above)
        return Threshold(kind, period, op, value)
    if kind in (Kind.CLOSE_VS_SMA, Kind.CLOSE_VS_EMA):
        obj = _fields(raw, path, ("indicator", "period", "op"))
        period = _int_in(obj, "period", path, MIN_PERIOD, MAX_PERIOD)
        return CloseVsAverage(kind, period, Op(_choice(obj, "op", path, Op)))
    if kind is Kind.CLOSE_VS_BOLLINGER:
        obj = _fields(raw, path, ("indicator", "period", "k", "band", "op"))
        period = _int_in(obj, "period", path, MIN_PERIOD, MAX_PERIOD)
        k = _number_in(obj, "k", path, 0.0, 10.0, above=True)
        band = Band(_choice(obj, "band", path, Band))
        return CloseVsBollinger(period, k, band, Op(_choice(obj, "op", path, Op)))
    if kind in (Kind.EMA_CROSS, Kind.SMA_CROSS):
        obj = _fields(raw, path, ("indicator", "fast", "slow", "direction"))
        fast, slow = _fast_slow(obj, path)
        direction = Direction(_choice(obj, "direction", path, Direction))
        return MovingAverageCross(kind, fast, slow, direction)
    if kind is Kind.MACD_HISTOGRAM:
        obj = _fields(raw, path, ("indicator", "fast", "slow", "signal", "op", "value"))
        fast, slow = _fast_slow(obj, path)
        signal = _int_in(obj, "signal", path, 1, MAX_PERIOD)
        op = Op(_choice(obj, "op", path, Op))
        value = _number_in(obj, "value", path, -_MAX_MACD_VALUE, _MAX_MACD_VALUE)
        return MacdHistogram(fast, slow, signal, op, value)
    obj = _fields(raw, path, ("indicator", "fast", "slow", "signal", "direction"))
    fast, slow = _fast_slow(obj, path)
    signal = _int_in(obj, "signal", path, 1, MAX_PERIOD)
    return MacdCross(fast, slow, signal, Direction(_choice(obj, "direction", path, Direction)))


def _decode(definition: str | bytes | bytearray) -> object:
    if len(definition) > MAX_DEFINITION_SIZE:
        _fail(_ROOT, f"larger than {MAX_DEFINITION_SIZE} bytes")
    try:
        return safejson.loads(definition, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; absurd nesting recurses.
        _fail(_ROOT, f"not valid JSON ({str(exc)[:200]})")


def parse_trader(definition: object) -> TraderDefinition:
    """Validate a trader definition and return it as a :class:`TraderDefinition`.

    ``definition`` is the decoded JSON object, or its str/bytes text. Raises
    :class:`TraderDefinitionError` naming the first offending field, and nothing else.
    """
    if isinstance(definition, str | bytes | bytearray):
        definition = _decode(definition)
    obj = _fields(
        definition,
        _ROOT,
        ("version", "symbols", "interval", "conditions"),
        ("match", "cooldown_candles", "trade"),
    )
    version = obj["version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        _fail("version", f"must be {SCHEMA_VERSION}")

    raw_symbols = obj["symbols"]
    if not isinstance(raw_symbols, list | tuple) or not 1 <= len(raw_symbols) <= MAX_SYMBOLS:
        _fail("symbols", f"must be an array of 1 to {MAX_SYMBOLS} symbols")
    symbols: list[str] = []
    for i, raw in enumerate(raw_symbols):
        try:
            symbol = normalize_symbol(raw)
        except MarketDataError:
            _fail(f"symbols[{i}]", "must be 2 to 20 ASCII letters or digits")
        if symbol in symbols:
            _fail(f"symbols[{i}]", f"duplicates symbols[{symbols.index(symbol)}] ({symbol})")
        symbols.append(symbol)

    interval = obj["interval"]
    if not isinstance(interval, str) or interval not in SUPPORTED_INTERVALS:
        _fail("interval", f"must be one of {_quoted((*INTERVALS, MONTH))}")

    match = Match(_choice(obj, "match", _ROOT, Match)) if "match" in obj else Match.ALL
    cooldown = _int_in(obj, "cooldown_candles", _ROOT, 0, MAX_COOLDOWN) if "cooldown_candles" in obj else 0

    raw_conditions = obj["conditions"]
    if not isinstance(raw_conditions, list | tuple) or not 1 <= len(raw_conditions) <= MAX_CONDITIONS:
        _fail("conditions", f"must be an array of 1 to {MAX_CONDITIONS} conditions")
    conditions: list[Condition] = []
    for i, raw in enumerate(raw_conditions):
        condition = _parse_condition(raw, f"conditions[{i}]")
        if condition in conditions:
            _fail(f"conditions[{i}]", f"duplicates conditions[{conditions.index(condition)}]")
        conditions.append(condition)

    return TraderDefinition(
        symbols=tuple(symbols),
        interval=interval,
        conditions=tuple(conditions),
        match=match,
        cooldown_candles=cooldown,
        version=version,
        trade=_parse_trade_plan(obj["trade"], "trade") if "trade" in obj else None,
    )


#: Largest quote amount per paper trade.
MAX_NOTIONAL: Final = 1e9
#: Longest holding time, in candles (the cooldown's bound).
MAX_HOLD_CANDLES: Final = 10_000


def _parse_trade_plan(raw: object, path: str) -> TradePlan:
    obj = _fields(raw, path, ("side", "notional"), ("take_profit_pct", "stop_loss_pct", "max_hold_candles"))
    side = Side(_choice(obj, "side", path, Side))
    notional = _number_in(obj, "notional", path, 0.0, MAX_NOTIONAL, above=True)
    # A short's target and a long's stop cannot pass zero: the price would have to be negative.
    tp_high = 1000.0 if side is Side.LONG else 99.99
    sl_high = 99.99 if side is Side.LONG else 1000.0
    take = stop = hold = None
    if "take_profit_pct" in obj:
        take = _number_in(obj, "take_profit_pct", path, 0.0, tp_high, above=True)
    if "stop_loss_pct" in obj:
        stop = _number_in(obj, "stop_loss_pct", path, 0.0, sl_high, above=True)
    if "max_hold_candles" in obj:
        hold = _int_in(obj, "max_hold_candles", path, 1, MAX_HOLD_CANDLES)
    if take is None and stop is None and hold is None:
        _fail(path, "needs at least one exit rule: take_profit_pct, stop_loss_pct or max_hold_candles")
    return TradePlan(side, notional, take, stop, hold)


# --- evaluation ---------------------------------------------------------------------------------


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
        self._compare = _COMPARE[op]
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
        self._compare = _COMPARE[op]

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
        self._compare = _COMPARE[op]
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
        self._compare = _COMPARE[op]
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


_Indicator: TypeAlias = SMA | EMA | RSI | BollingerBands | MACD | VolumeSpike | PriceChangePct
_IndicatorKey: TypeAlias = tuple[str, int, int, int, float]


class IndicatorPool:
    """Indicators and condition results of one (symbol, interval), shared by trader states.

    Every distinct indicator (kind and parameters) and every distinct condition exists once and is
    updated once per closed candle, whichever trader first presents the candle; the other traders
    only read the results. The pool also keeps the most recent closes and volumes, as many as its
    traders' warm-up rule asks for, so that an indicator added later (a new trader joining a running
    pool) is replayed to the present immediately.

    A pool can also drive its trader states itself (:meth:`enlist`, :meth:`prime`, :meth:`advance`):
    that is how the SignalManager screens hundreds of traders per candle. A ``match: all`` trader
    can only signal on a candle where each of its conditions holds, so it is *anchored* on one of
    them and visited only when that one holds; the anchor is the condition that held least often
    so far (smoothed by a prior per kind), re-chosen as the candles come. Which trader is visited
    changes the work, never the result: a visited trader still checks all of its conditions and
    its cooldown, and a trader that is not visited could not have signalled.
    """

    __slots__ = (
        "_any",
        "_close_feeds",
        "_close_keys",
        "_closes",
        "_dead",
        "_enlisted",
        "_indicators",
        "_live",
        "_probe_list",
        "_probes",
        "_rotation",
        "_seq",
        "_volume_feeds",
        "_volume_keys",
        "_volumes",
        "broken",
        "gaps",
        "index",
        "interval",
        "last_close",
        "last_open_time",
        "symbol",
    )

    def __init__(self, symbol: str, interval: str) -> None:
        """Create an empty pool for ``symbol`` (normalised) on ``interval``."""
        self.symbol: str = normalize_symbol(symbol)
        if interval not in SUPPORTED_INTERVALS:
            raise ValueError(f"interval {interval!r} is not a Binance kline interval")
        self.interval: str = interval
        self.last_open_time: int = -1
        """Open time of the last candle applied (-1 before the first)."""
        self.last_close: float | None = None
        self.index: int = -1
        """:func:`~signalguard.core.candles.candle_index` of the last candle applied."""
        self.gaps: int = 0
        """How many applied candles did not directly follow the previous one."""
        self._indicators: dict[_IndicatorKey, tuple[_Indicator, int]] = {}
        self._probes: dict[Condition, tuple[ConditionResult, int]] = {}
        self._probe_list: list[ConditionResult] = []
        self._close_feeds: list[Callable[[float], None]] = []
        self._volume_feeds: list[Callable[[float], None]] = []
        self._close_keys: list[_IndicatorKey] = []
        self._volume_keys: list[_IndicatorKey] = []
        self._closes: deque[float] = deque(maxlen=1)
        self._volumes: deque[float] = deque(maxlen=1)
        self._dead: set[_IndicatorKey] = set()
        self.broken: dict[Condition, str] = {}
        """Conditions that raised (or read an indicator that raised), and why. They are no longer
        evaluated and never match; each stays here until its last user releases it."""
        self._enlisted: list[TraderState] = []
        self._any: list[TraderState] = []
        self._live = 0
        self._seq = 0
        self._rotation = 0

    def __len__(self) -> int:
        """Return the number of distinct indicators held."""
        return len(self._indicators)

    @property
    def conditions(self) -> int:
        """Number of distinct conditions evaluated per candle."""
        return len(self._probes)

    # - membership -

    def _indicator(self, key: _IndicatorKey) -> _Indicator:
        entry = self._indicators.get(key)
        if entry is not None:
            self._indicators[key] = (entry[0], entry[1] + 1)
            return entry[0]
        name, a, b, c, k = key
        indicator: _Indicator
        if name == "sma":
            indicator = SMA(a)
        elif name == "ema":
            indicator = EMA(a)
        elif name == "rsi":
            indicator = RSI(a)
        elif name == "bb":
            indicator = BollingerBands(a, k)
        elif name == "macd":
            indicator = MACD(a, b, c)
        elif name == "vspike":
            indicator = VolumeSpike(a)
        else:
            indicator = PriceChangePct(a)
        # Replay what the pool remembers, so that a late indicator catches up with the others.
        indicator.extend(self._volumes if name == "vspike" else self._closes)
        self._indicators[key] = (indicator, 1)
        self._rebuild_feeds()
        return indicator

    def _release_indicator(self, key: _IndicatorKey) -> None:
        indicator, refs = self._indicators[key]
        if refs > 1:
            self._indicators[key] = (indicator, refs - 1)
            return
        del self._indicators[key]
        self._dead.discard(key)
        self._rebuild_feeds()

    def _rebuild_feeds(self) -> None:
        live = [(key, ind) for key, (ind, _) in self._indicators.items() if key not in self._dead]
        self._close_keys = [key for key, _ in live if key[0] != "vspike"]
        self._close_feeds = [ind.update for key, ind in live if key[0] != "vspike"]
        self._volume_keys = [key for key, _ in live if key[0] == "vspike"]
        self._volume_feeds = [ind.update for key, ind in live if key[0] == "vspike"]

    @staticmethod
    def _keys(condition: Condition) -> tuple[_IndicatorKey, ...]:
        if isinstance(condition, Threshold):
            name = {Kind.RSI: "rsi", Kind.VOLUME_SPIKE: "vspike"}.get(condition.kind, "roc")
            return ((name, condition.period, 0, 0, 0.0),)
        if isinstance(condition, CloseVsAverage):
            name = "sma" if condition.kind is Kind.CLOSE_VS_SMA else "ema"
            return ((name, condition.period, 0, 0, 0.0),)
        if isinstance(condition, CloseVsBollinger):
            return (("bb", condition.period, 0, 0, float(condition.k)),)
        if isinstance(condition, MovingAverageCross):
            name = "ema" if condition.kind is Kind.EMA_CROSS else "sma"
            return ((name, condition.fast, 0, 0, 0.0), (name, condition.slow, 0, 0, 0.0))
        return (("macd", condition.fast, condition.slow, condition.signal, 0.0),)

    def acquire(self, condition: Condition, history: int = 0) -> ConditionResult:
        """Register a user of ``condition``; return its shared per-candle result.

        ``history`` is how many recent closes the user's warm-up rule needs the pool to remember
        for indicators added later. Pair every call with :meth:`release`.
        """
        if history > (self._closes.maxlen or 0):
            self._closes = deque(self._closes, maxlen=history)
            self._volumes = deque(self._volumes, maxlen=history)
        entry = self._probes.get(condition)
        if entry is not None:
            self._probes[condition] = (entry[0], entry[1] + 1)
            return entry[0]
        indicators = [self._indicator(key) for key in self._keys(condition)]
        probe: ConditionResult
        if isinstance(condition, Threshold):
            source = indicators[0]
            assert isinstance(source, RSI | VolumeSpike | PriceChangePct)
            probe = _ThresholdProbe(source, condition.op, float(condition.value))
        elif isinstance(condition, CloseVsAverage):
            source = indicators[0]
            assert isinstance(source, SMA | EMA)
            probe = _CloseVsAverageProbe(source, condition.op)
        elif isinstance(condition, CloseVsBollinger):
            source = indicators[0]
            assert isinstance(source, BollingerBands)
            probe = _CloseVsBandProbe(source, condition.band, condition.op)
        elif isinstance(condition, MovingAverageCross):
            fast, slow = indicators
            assert isinstance(fast, SMA | EMA) and isinstance(slow, SMA | EMA)
            probe = _CrossProbe(fast, slow, condition.direction)
        else:
            source = indicators[0]
            assert isinstance(source, MACD)
            if isinstance(condition, MacdHistogram):
                probe = _MacdHistogramProbe(source, condition.op, float(condition.value))
            else:
                probe = _MacdCrossProbe(source, condition.direction)
        if self.last_close is not None:
            # Bring the new condition up to the candle the pool is at (a cross gets its
            # "previous" side from here).
            probe.evaluate(self.last_close)
        probe.born = self._live
        probe.condition = condition
        self._probes[condition] = (probe, 1)
        dead = [key for key in self._keys(condition) if key in self._dead]
        if dead:
            # It would read an indicator retired after a failure (until that one's last user
            # leaves): born failed, so that its user is stopped on the next candle.
            probe.failure = f"{condition.label} on {self.symbol} {self.interval} reads a failed indicator"
            self.broken[condition] = probe.failure
        else:
            self._probe_list.append(probe)
        return probe

    def release(self, condition: Condition) -> None:
        """Drop one user of ``condition``; free it (and unused indicators) with the last one."""
        probe, refs = self._probes[condition]
        if refs > 1:
            self._probes[condition] = (probe, refs - 1)
            return
        # An anchored state holds a reference to its anchor, so the last user is not anchored here.
        assert not probe.anchored, "release a state's conditions after delisting it"
        del self._probes[condition]
        if probe.failure is None:
            self._probe_list.remove(probe)
        self.broken.pop(condition, None)
        for key in self._keys(condition):
            self._release_indicator(key)

    # - trader states driven by the pool -

    def enlist(self, state: TraderState) -> None:
        """Let :meth:`advance` evaluate ``state`` (made on this pool) from the next candle on.

        An enlisted state must not also be given candles through its own ``prime``/``update``.
        """
        if state.pool is not self or state._enlisted:
            raise ValueError("the state is not this pool's, or is enlisted already")
        state._enlisted = True
        state._seq = self._seq
        self._seq += 1
        self._enlisted.append(state)
        if state._match_all:
            self._anchor(state)
        else:
            self._any.append(state)

    def delist(self, state: TraderState) -> None:
        """Stop evaluating ``state``; call before closing it."""
        if not state._enlisted or state.pool is not self:
            return
        state._enlisted = False
        self._enlisted.remove(state)
        if state._anchor is not None:
            state._anchor.anchored.remove(state)
            state._anchor = None
        else:
            self._any.remove(state)

    def _rate(self, probe: ConditionResult) -> float:
        # How often the condition held, with 32 imaginary candles at its kind's prior so that a
        # young condition is judged by its kind until it has a record of its own.
        return (probe.hits + 32.0 * probe.prior) / (self._live - probe.born + 32.0)

    def _anchor(self, state: TraderState) -> None:
        best = min(state._probes, key=self._rate)  # min keeps the first of equals: definition order
        if best is state._anchor:
            return
        if state._anchor is not None:
            state._anchor.anchored.remove(state)
        best.anchored.append(state)
        state._anchor = best

    def prime(self, candle: Candle) -> None:
        """Apply a historical closed candle for the enlisted states (nothing is evaluated).

        Candles not newer than the last one applied are skipped. Raises
        :class:`TraderEvaluationError` like :meth:`update`.
        """
        if candle.symbol != self.symbol or candle.interval != self.interval or not candle.closed:
            self._reject(candle)
        if candle.open_time > self.last_open_time:
            self._apply(candle)

    def advance(self, candle: Candle) -> list[tuple[TraderState, tuple[str, ...]]]:
        """Apply a live closed candle and return the enlisted states that signal on it, with labels.

        The states come in the order they were enlisted. A candle not newer than the last one
        applied returns ``[]``. Raises :class:`TraderEvaluationError` like :meth:`update` (the
        pool's failure is every enlisted state's failure).
        """
        if candle.symbol != self.symbol or candle.interval != self.interval or not candle.closed:
            self._reject(candle)
        if candle.open_time <= self.last_open_time:
            return []
        self._apply(candle)
        self._live += 1
        index = self.index
        visit: list[TraderState] = []
        for probe in self._probe_list:
            if probe.matched:
                probe.hits += 1
                if probe.anchored:
                    visit += probe.anchored
        if self._any:
            visit += self._any
        out: list[tuple[TraderState, tuple[str, ...]]] = []
        for state in visit:
            labels = state._decide(index)
            if labels:
                out.append((state, labels))
        if self.broken and out:
            # A ``match: any`` trader must not signal on its other conditions while one has failed.
            out = [(s, labels) for s, labels in out if s.failure is None]
        if len(out) > 1:
            out.sort(key=_by_seq)
        # Re-choose one state's anchor per candle: the rates move slowly, and one at a time keeps
        # the work flat (all of a user's pools see the same candle count, so a periodic sweep would
        # land on the same burst everywhere).
        enlisted = self._enlisted
        if enlisted:
            self._rotation = (self._rotation + 1) % len(enlisted)
            state = enlisted[self._rotation]
            if state._anchor is not None:
                self._anchor(state)
        return out

    # - candles -

    def update(self, candle: Candle) -> bool:
        """Apply a closed candle; return False if it is the candle applied last (a no-op).

        Raises :class:`TraderEvaluationError` for a candle of another stream, an unclosed candle, a
        candle older than the last one applied, or after an internal failure.
        """
        if candle.symbol != self.symbol or candle.interval != self.interval or not candle.closed:
            self._reject(candle)
        if candle.open_time == self.last_open_time:
            return False
        self._apply(candle)
        return True

    def _reject(self, candle: Candle) -> NoReturn:
        if candle.symbol != self.symbol or candle.interval != self.interval:
            raise TraderEvaluationError(
                EvaluationErrorCode.WRONG_STREAM,
                f"candle for {candle.symbol} {candle.interval} given to the pool of "
                f"{self.symbol} {self.interval}",
            )
        raise TraderEvaluationError(
            EvaluationErrorCode.NOT_CLOSED,
            f"candle {candle.symbol} {candle.interval} at {candle.open_time} is not closed",
        )

    def _apply(self, candle: Candle) -> None:
        t = candle.open_time
        if t < self.last_open_time:
            raise TraderEvaluationError(
                EvaluationErrorCode.OUT_OF_STEP,
                f"candle at {t} is older than the last candle applied ({self.last_open_time})",
            )
        close = candle.close
        volume = candle.volume
        done = 0  # steps completed, so that a failure is pinned on the one that raised
        try:
            for feed in self._close_feeds:
                feed(close)
                done += 1
            for feed in self._volume_feeds:
                feed(volume)
                done += 1
            for probe in self._probe_list:
                probe.evaluate(close)
                done += 1
        except Exception as exc:  # pinned on its condition, reported via `broken`
            self._salvage(close, volume, done, exc)
        self._closes.append(close)
        self._volumes.append(volume)
        index = candle_index(self.interval, t)
        if self.last_open_time >= 0 and index != self.index + 1:
            self.gaps += 1
        self.index = index
        self.last_close = close
        self.last_open_time = t

    def _salvage(self, close: float, volume: float, done: int, exc: Exception) -> None:
        """Finish a candle on which step ``done`` raised ``exc``, isolating what failed.

        An indicator that raised may be half-updated, so it is retired with every condition that
        reads it; a condition that raised is retired alone. Everything else takes the candle as
        usual, exactly once.
        """
        steps = [(k, f, close) for k, f in zip(self._close_keys, self._close_feeds, strict=True)]
        steps += [(k, f, volume) for k, f in zip(self._volume_keys, self._volume_feeds, strict=True)]
        failed: dict[_IndicatorKey, Exception] = {}
        first_probe = 0
        if done < len(steps):
            failed[steps[done][0]] = exc
            for key, feed, x in steps[done + 1 :]:
                try:
                    feed(x)
                except Exception as other:
                    failed[key] = other
        else:
            first_probe = done - len(steps)
        for i, probe in enumerate(list(self._probe_list)):
            if i < first_probe:
                continue  # evaluated before the failure
            condition = probe.condition
            assert condition is not None
            error: Exception | None = exc if i == first_probe and done >= len(steps) else None
            if error is None:
                error = next((failed[k] for k in self._keys(condition) if k in failed), None)
            if error is None:
                try:
                    probe.evaluate(close)
                except Exception as other:
                    error = other
            if error is not None:
                probe.failure = f"{condition.label} on {self.symbol} {self.interval} failed: {error!r}"
                probe.matched = probe.ready = False
                self._probe_list.remove(probe)
                self.broken[condition] = probe.failure
        if failed:
            self._dead.update(failed)
            self._rebuild_feeds()


_NO_SIGNAL: Final[tuple[str, ...]] = ()


def _by_seq(pair: tuple[TraderState, tuple[str, ...]]) -> int:
    return pair[0]._seq


class TraderState:
    """Evaluation state of one trader on one symbol.

    Feed history with :meth:`prime` and live closed candles with :meth:`update` (see the module's
    warm-up rule). ``update`` returns the labels of the matched conditions when the trader signals
    — all of them for ``match: all``, the matching ones for ``match: any`` — and ``()`` otherwise:
    when a condition fails or is not yet warm, during the cooldown, and for a candle already seen.
    After a signal on candle ``i`` the next one can come on candle ``i + cooldown_candles + 1`` at
    the earliest (counted in candle open times, so a gap in the stream also counts).
    """

    __slots__ = (
        "_anchor",
        "_enlisted",
        "_last_open_time",
        "_match_all",
        "_next_index",
        "_probes",
        "_released",
        "_seq",
        "_step",
        "_warm",
        "definition",
        "interval",
        "labels",
        "pool",
        "symbol",
    )

    def __init__(self, definition: TraderDefinition, symbol: str, pool: IndicatorPool | None = None) -> None:
        """Start evaluating ``definition`` on ``symbol``, with a private pool unless one is given.

        A shared ``pool`` must be for the same symbol and interval. Joining a pool that has already
        applied candles starts after its last candle.
        """
        symbol = normalize_symbol(symbol)
        if symbol not in definition.symbols:
            raise ValueError(f"{symbol} is not one of the trader's symbols")
        if pool is None:
            pool = IndicatorPool(symbol, definition.interval)
        elif pool.symbol != symbol or pool.interval != definition.interval:
            raise ValueError(
                f"pool of {pool.symbol} {pool.interval} cannot serve {symbol} {definition.interval}"
            )
        self.definition: TraderDefinition = definition
        self.symbol: str = symbol
        self.interval: str = definition.interval
        self.pool: IndicatorPool = pool
        self.labels: tuple[str, ...] = definition.labels
        """Labels of all conditions, in definition order."""
        history = definition.history
        self._probes: tuple[ConditionResult, ...] = tuple(
            pool.acquire(c, history) for c in definition.conditions
        )
        self._match_all = definition.match is Match.ALL
        self._step = definition.cooldown_candles + 1
        self._next_index = -1
        self._last_open_time = pool.last_open_time
        self._warm = False
        self._released = False
        self._enlisted = False
        self._anchor: ConditionResult | None = None
        self._seq = 0

    @property
    def warmup(self) -> int:
        """Closed candles needed before the trader can signal."""
        return self.definition.warmup

    @property
    def history(self) -> int:
        """Closed candles to :meth:`prime` with before streaming (the warm-up rule)."""
        return self.definition.history

    @property
    def ready(self) -> bool:
        """Whether every condition can be evaluated."""
        if not self._warm:
            self._warm = all(p.ready for p in self._probes)
        return self._warm

    def status(self) -> tuple[tuple[str, bool | None], ...]:
        """Return each condition's label with its result on the last candle (None: not warm)."""
        return tuple(
            (label, p.matched if p.ready else None)
            for label, p in zip(self.labels, self._probes, strict=True)
        )

    def _check(self, candle: Candle) -> None:
        if self._released:
            raise TraderEvaluationError(EvaluationErrorCode.RELEASED, "the trader state was closed")
        if self._enlisted:
            raise TraderEvaluationError(
                EvaluationErrorCode.INTERNAL, "an enlisted trader state takes candles through its pool"
            )
        if candle.symbol != self.symbol or candle.interval != self.interval:
            raise TraderEvaluationError(
                EvaluationErrorCode.WRONG_STREAM,
                f"candle for {candle.symbol} {candle.interval} given to a trader on "
                f"{self.symbol} {self.interval}",
            )
        if not candle.closed:
            raise TraderEvaluationError(
                EvaluationErrorCode.NOT_CLOSED,
                f"candle {candle.symbol} {candle.interval} at {candle.open_time} is not closed",
            )

    def prime(self, candle: Candle) -> None:
        """Feed a historical closed candle: indicators advance, nothing is signalled.

        Candles not newer than the last one seen are skipped, and so are candles a shared pool has
        already moved past (they are in it already). Raises :class:`TraderEvaluationError`.
        """
        self._check(candle)
        t = candle.open_time
        if t <= self._last_open_time:
            return
        if t > self.pool.last_open_time:
            self.pool._apply(candle)
        self._last_open_time = t
        if self.pool.broken and (failure := self.failure) is not None:
            raise TraderEvaluationError(EvaluationErrorCode.INTERNAL, failure)

    def update(self, candle: Candle) -> tuple[str, ...]:
        """Evaluate a live closed candle; return the matched labels if the trader signals.

        Raises :class:`TraderEvaluationError` (and nothing else) if the candle cannot be evaluated.
        """
        # A closed state has an empty symbol, so that it fails this test without a test of its own.
        if (
            candle.symbol != self.symbol
            or candle.interval != self.interval
            or not candle.closed
            or self._enlisted
        ):
            self._check(candle)
        t = candle.open_time
        if t <= self._last_open_time:
            return _NO_SIGNAL
        pool = self.pool
        if pool.last_open_time != t:
            pool._apply(candle)
        self._last_open_time = t
        if pool.broken:
            failure = self.failure
            if failure is not None:
                raise TraderEvaluationError(EvaluationErrorCode.INTERNAL, failure)
        return self._decide(pool.index)

    @property
    def failure(self) -> str | None:
        """Why one of the trader's conditions can no longer be evaluated (None while all can)."""
        for probe in self._probes:
            if probe.failure is not None:
                return probe.failure
        return None

    def _decide(self, index: int) -> tuple[str, ...]:
        # The hot path: the pool has applied the candle of ``index``; one trader of hundreds
        # sharing it reads its conditions' results.
        if index < self._next_index:
            return _NO_SIGNAL
        if self._match_all:
            for probe in self._probes:
                if not probe.matched:
                    return _NO_SIGNAL
            labels = self.labels
        else:
            for probe in self._probes:
                if probe.matched:
                    break
            else:
                return _NO_SIGNAL
            if not self._warm and not self.ready:
                return _NO_SIGNAL
            labels = tuple(label for label, p in zip(self.labels, self._probes, strict=True) if p.matched)
        self._next_index = index + self._step
        return labels

    def close(self) -> None:
        """Release the trader's conditions from the pool. The state cannot be used afterwards."""
        if self._released:
            return
        self._released = True
        self.pool.delist(self)
        self.symbol = ""
        for condition in self.definition.conditions:
            self.pool.release(condition)
