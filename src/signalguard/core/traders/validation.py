"""Reading a trader definition from JSON: every field checked, the first offending one named.

User input, never evaluated as code: :func:`parse_trader` returns a :class:`~.definition.TraderDefinition`
or raises :class:`TraderDefinitionError` naming the field (``conditions[1].period: ...``).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from typing import Final, NoReturn

from signalguard.core import safejson
from signalguard.core.candles import (
    INTERVALS,
    MONTH,
    SUPPORTED_INTERVALS,
    MarketDataError,
    normalize_symbol,
)
from signalguard.core.positions import Side, TradePlan
from signalguard.core.traders.definition import (
    MAX_CONDITIONS,
    MAX_COOLDOWN,
    MAX_DEFINITION_SIZE,
    MAX_PERIOD,
    MAX_SYMBOLS,
    MIN_PERIOD,
    SCHEMA_VERSION,
    Band,
    CloseVsAverage,
    CloseVsBollinger,
    Condition,
    Direction,
    Kind,
    MacdCross,
    MacdHistogram,
    Match,
    MovingAverageCross,
    Op,
    Threshold,
    TraderDefinition,
)

_ROOT: Final = "definition"
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


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
