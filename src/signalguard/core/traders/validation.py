"""Reading a trader definition from JSON: every field checked, the first offending one named.

User input, never evaluated as code: :func:`parse_trader` returns a :class:`~.definition.TraderDefinition`
or raises :class:`TraderDefinitionError` naming the field (``conditions[1].period: ...``). What is
checked, and in which order, is declared in :mod:`.rules` (:data:`~.rules.DEFINITION_RULES`, from
which the database's check is generated too); this module walks those rules over the decoded JSON
and builds the dataclasses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, NoReturn

from signalguard.core import safejson
from signalguard.core.candles import MarketDataError, normalize_symbol
from signalguard.core.positions import Side, TradePlan
from signalguard.core.traders.definition import (
    MAX_DEFINITION_SIZE,
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
from signalguard.core.traders.rules import (
    DEFINITION_RULES,
    MAX_HOLD_CANDLES,
    MAX_NOTIONAL,
    ROOT,
    AtLeastOne,
    Choice,
    Conditions,
    Depends,
    Exactly,
    Field,
    Greater,
    Integer,
    Number,
    Rule,
    Shape,
    Symbols,
    child_path,
)

__all__ = ["MAX_HOLD_CANDLES", "MAX_NOTIONAL", "TraderDefinitionError", "parse_trader"]

_THRESHOLDS: Final = (Kind.RSI, Kind.VOLUME_SPIKE, Kind.PRICE_CHANGE_PCT)
_AVERAGES: Final = (Kind.CLOSE_VS_SMA, Kind.CLOSE_VS_EMA)
_CROSSES: Final = (Kind.EMA_CROSS, Kind.SMA_CROSS)


class TraderDefinitionError(ValueError):
    """A trader definition is invalid. ``path`` names the field, e.g. ``conditions[1].period``."""

    def __init__(self, path: str, problem: str) -> None:
        """Create the error for the field at ``path``."""
        super().__init__(f"{path}: {problem}")
        self.path: str = path
        self.problem: str = problem


def _fail(path: str, problem: str) -> NoReturn:
    raise TraderDefinitionError(path, problem)


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


# --- walking the rules ----------------------------------------------------------------------------


def _fields(raw: object, path: str, shape: Shape) -> Mapping[str, object]:
    """Check that ``raw`` is an object with exactly the allowed keys; return it."""
    if not isinstance(raw, Mapping):
        _fail(path, shape.problem)
    allowed = shape.required + shape.optional
    for key in raw:
        if not isinstance(key, str):
            _fail(path, f"keys must be strings, got {type(key).__name__}")
        if key not in allowed:
            _fail(child_path(path, key), shape.unknown_problem)
    for key in shape.required:
        if key not in raw:
            _fail(child_path(path, key), shape.required_problem)
    return raw


def _shape(raw: object, path: str, shape: Shape) -> dict[str, object]:
    """Check an object member by member; return its values (absent optional ones at their default)."""
    obj = _fields(raw, path, shape)
    values: dict[str, object] = {}
    for member in shape.members:
        if isinstance(member, Field):
            if member.name in obj:
                field_path = child_path(path, member.name)
                values[member.name] = _value(obj[member.name], field_path, member.rule, values)
            elif member.default is not None:
                values[member.name] = member.default
        elif isinstance(member, Greater):
            high, low = _int(values, member.field), _int(values, member.than)
            if high <= low:
                _fail(child_path(path, member.field), member.problem(low))
        elif isinstance(member, AtLeastOne) and not any(name in obj for name in member.fields):
            _fail(path, member.problem)
    return values


def _value(value: object, path: str, rule: Rule, siblings: Mapping[str, object]) -> object:
    """Check one value against its rule; return it (symbols upper-cased, conditions built)."""
    if isinstance(rule, Depends):
        rule = rule.case(_str(siblings, rule.on))
    if isinstance(rule, Exactly):
        if type(value) is not int or value != rule.value:
            _fail(path, rule.problem)
        return value
    if isinstance(rule, Integer):
        if type(value) is not int or not rule.low <= value <= rule.high:
            _fail(path, rule.problem)
        return value
    if isinstance(rule, Number):
        # Range-check the value as given: an int too large for a float must fail, not overflow.
        # NaN and infinities fail the comparisons.
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (rule.low < value if rule.above else rule.low <= value)
            or not value <= rule.high
        ):
            _fail(path, rule.problem)
        return value
    if isinstance(rule, Choice):
        if not isinstance(value, str) or value not in rule.options:
            _fail(path, rule.problem)
        return value
    if isinstance(rule, Symbols):
        return _symbols(value, path, rule)
    if isinstance(rule, Conditions):
        return _conditions(value, path, rule)
    return _shape(value, path, rule)


def _symbols(raw: object, path: str, rule: Symbols) -> tuple[str, ...]:
    if not isinstance(raw, list | tuple) or not rule.min_items <= len(raw) <= rule.max_items:
        _fail(path, rule.problem)
    first: dict[str, int] = {}
    for i, item in enumerate(raw):
        try:
            symbol = normalize_symbol(item)
        except MarketDataError:
            _fail(f"{path}[{i}]", rule.item_problem)
        if symbol in first:
            _fail(f"{path}[{i}]", rule.duplicate_problem(path, first[symbol], symbol))
        first[symbol] = i
    return tuple(first)


def _conditions(raw: object, path: str, rule: Conditions) -> tuple[Condition, ...]:
    if not isinstance(raw, list | tuple) or not rule.min_items <= len(raw) <= rule.max_items:
        _fail(path, rule.problem)
    conditions: list[Condition] = []
    for i, item in enumerate(raw):
        item_path = f"{path}[{i}]"
        condition = _condition(item, item_path, rule)
        # Dataclass equality: the same kind and equal fields (30 == 30.0).
        if condition in conditions:
            _fail(item_path, rule.duplicate_problem(path, conditions.index(condition)))
        conditions.append(condition)
    return tuple(conditions)


def _condition(raw: object, path: str, rule: Conditions) -> Condition:
    # The indicator first: it says which other keys the condition has.
    if not isinstance(raw, Mapping):
        _fail(path, Shape.problem)
    key = rule.discriminator
    if key not in raw:
        _fail(child_path(path, key), Shape.required_problem)
    kind = Kind(_str({key: _value(raw[key], child_path(path, key), rule.choice, {})}, key))
    return _build_condition(kind, _shape(raw, path, rule.variant(kind)))


# --- building the definition ----------------------------------------------------------------------


def _int(values: Mapping[str, object], key: str) -> int:
    value = values[key]
    assert type(value) is int, key  # the rules checked it
    return value


def _number(values: Mapping[str, object], key: str) -> int | float:
    value = values[key]
    assert isinstance(value, int | float), key  # the rules checked it
    return value


def _str(values: Mapping[str, object], key: str) -> str:
    value = values[key]
    assert isinstance(value, str), key  # the rules checked it
    return value


def _build_condition(kind: Kind, v: Mapping[str, object]) -> Condition:
    if kind in _THRESHOLDS:
        return Threshold(kind, _int(v, "period"), Op(_str(v, "op")), _number(v, "value"))
    if kind in _AVERAGES:
        return CloseVsAverage(kind, _int(v, "period"), Op(_str(v, "op")))
    if kind is Kind.CLOSE_VS_BOLLINGER:
        return CloseVsBollinger(_int(v, "period"), _number(v, "k"), Band(_str(v, "band")), Op(_str(v, "op")))
    if kind in _CROSSES:
        return MovingAverageCross(kind, _int(v, "fast"), _int(v, "slow"), Direction(_str(v, "direction")))
    if kind is Kind.MACD_HISTOGRAM:
        return MacdHistogram(
            _int(v, "fast"), _int(v, "slow"), _int(v, "signal"), Op(_str(v, "op")), _number(v, "value")
        )
    return MacdCross(_int(v, "fast"), _int(v, "slow"), _int(v, "signal"), Direction(_str(v, "direction")))


def _trade_plan(v: Mapping[str, object]) -> TradePlan:
    def optional(key: str) -> int | float | None:
        return _number(v, key) if key in v else None

    hold = optional("max_hold_candles")
    assert hold is None or type(hold) is int  # the rules checked it
    return TradePlan(
        Side(_str(v, "side")),
        _number(v, "notional"),
        optional("take_profit_pct"),
        optional("stop_loss_pct"),
        hold,
    )


def _decode(definition: str | bytes | bytearray) -> object:
    if len(definition) > MAX_DEFINITION_SIZE:
        _fail(ROOT, f"larger than {MAX_DEFINITION_SIZE} bytes")
    try:
        return safejson.loads(definition, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; absurd nesting recurses.
        _fail(ROOT, f"not valid JSON ({str(exc)[:200]})")


def parse_trader(definition: object) -> TraderDefinition:
    """Validate a trader definition and return it as a :class:`TraderDefinition`.

    ``definition`` is the decoded JSON object, or its str/bytes text. Raises
    :class:`TraderDefinitionError` naming the first offending field, and nothing else. The rules and
    their order are :data:`~.rules.DEFINITION_RULES`.
    """
    if isinstance(definition, str | bytes | bytearray):
        definition = _decode(definition)
    v = _shape(definition, ROOT, DEFINITION_RULES)
    symbols, conditions, trade = v["symbols"], v["conditions"], v.get("trade")
    assert isinstance(symbols, tuple) and isinstance(conditions, tuple)  # the rules built them
    assert trade is None or isinstance(trade, dict)
    return TraderDefinition(
        symbols=symbols,
        interval=_str(v, "interval"),
        conditions=conditions,
        match=Match(_str(v, "match")),
        cooldown_candles=_int(v, "cooldown_candles"),
        version=_int(v, "version"),
        trade=None if trade is None else _trade_plan(trade),
    )
