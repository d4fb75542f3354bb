"""The rules of a trader definition, declared once: every field, its type and bounds, in check order.

:func:`~.validation.parse_trader` is driven by :data:`DEFINITION_RULES`, and so are the database's
check (``private.trader_definition_problem``, compiled from these rules by
``python -m signalguard.devstack.definition_sql``) and the JSON Schema export
(:func:`definition_json_schema`). A rule changed here changes all three: the database's copy is
regenerated into a new migration (a shipped one is never edited), and a test fails while the newest
migration's copy, or the schema file's, differs from what the generator makes.

The rules, as data:

* a :class:`Shape` is a JSON object: its :class:`Field` members in the order they are checked, with
  the named cross-field rules (:class:`Greater`, :class:`AtLeastOne`) at the point where they are
  checked. Unknown keys are refused first, in the order the object holds them; then every required
  field that is missing, in member order; then the members.
* a field's value is one of :class:`Exactly`, :class:`Integer`, :class:`Number`, :class:`Choice`,
  :class:`Depends` (a rule chosen by another field's value), :class:`Symbols`, :class:`Conditions`
  (an array of objects told apart by their ``indicator``) or a nested :class:`Shape`.
* the cross-field rules are named (:data:`CROSS_FIELD_RULES`): ``distinct_symbols``,
  ``fast_below_slow``, ``distinct_conditions``, ``exit_rule`` and ``side_bounds``.

Every problem text is a property of its rule, so the validator, the database and the page say the same
thing, e.g. ``conditions[1].period: must be an integer between 2 and 500``.

The database's refusal
    Through the API, ``public.traders`` refuses a definition the core refuses, with SQLSTATE ``SG009``
    and the message :func:`database_message` makes of the core's: ``invalid_argument: definition.``
    followed by the core's ``path: problem`` (``invalid_argument: definition.conditions[1].period:
    must be an integer between 2 and 500``), or, when the core's path is the definition itself,
    ``invalid_argument: `` and the core's message (``invalid_argument: definition: must be a JSON
    object``). :func:`problem_from_database` gives the core's message back.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Final, TypeAlias

from signalguard.core import safejson
from signalguard.core.candles import INTERVALS, MONTH
from signalguard.core.positions import Side
from signalguard.core.traders.definition import (
    MAX_CONDITIONS,
    MAX_COOLDOWN,
    MAX_DEFINITION_SIZE,
    MAX_PERIOD,
    MAX_SYMBOLS,
    MIN_PERIOD,
    SCHEMA_VERSION,
    Band,
    Direction,
    Kind,
    Match,
    Op,
)

__all__ = [
    "CONDITION_RULES",
    "CROSS_FIELD_RULES",
    "DEFINITION_RULES",
    "MAX_ADVERSE_PCT",
    "MAX_DEPTH",
    "MAX_FAVOURABLE_PCT",
    "MAX_HOLD_CANDLES",
    "MAX_MACD_VALUE",
    "MAX_NOTIONAL",
    "MAX_PLAIN_KEY",
    "PLAIN_KEY",
    "ROOT",
    "TRADE_PLAN_RULES",
    "AtLeastOne",
    "Choice",
    "Conditions",
    "CrossFieldRule",
    "Depends",
    "Exactly",
    "Field",
    "Greater",
    "Integer",
    "Member",
    "Number",
    "Rule",
    "Shape",
    "Symbols",
    "child_path",
    "database_message",
    "definition_json_schema",
    "problem_from_database",
]

#: The path of the definition itself (``definition: must be a JSON object``).
ROOT: Final = "definition"
#: Deepest nesting of arrays and objects the text of a definition may have (the decoder's bound).
MAX_DEPTH: Final = safejson.MAX_DEPTH
#: Largest quote amount per paper trade.
MAX_NOTIONAL: Final = 1e9
#: Longest holding time, in candles (the cooldown's bound).
MAX_HOLD_CANDLES: Final = 10_000
#: Largest magnitude of a MACD histogram threshold.
MAX_MACD_VALUE: Final = 1e15
#: Largest take-profit of a long and stop-loss of a short, in percent.
MAX_FAVOURABLE_PCT: Final = 1000.0
#: Largest take-profit of a short and stop-loss of a long: the price would have to pass zero.
MAX_ADVERSE_PCT: Final = 99.99

#: Longest key a path shows unquoted (``conditions[0].period``); longer or odd keys are quoted.
MAX_PLAIN_KEY: Final = 40
#: A key a path shows unquoted (ASCII only: the ranges are read alike by every regex engine).
PLAIN_KEY: Final = re.compile(f"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_PLAIN_KEY - 1}}}")


# --- the named cross-field rules ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrossFieldRule:
    """A rule that relates fields or items to each other, by name."""

    name: str
    #: Which values it relates.
    where: str
    description: str
    #: How the JSON Schema export says it, or None where JSON Schema cannot.
    json_schema: str | None


#: Every cross-field rule, by name: the rules below refer to these names.
CROSS_FIELD_RULES: Final[Mapping[str, CrossFieldRule]] = MappingProxyType(
    {
        r.name: r
        for r in (
            CrossFieldRule(
                "distinct_symbols",
                "symbols",
                "no symbol appears twice once upper-cased (btcusdt and BTCUSDT are the same symbol)",
                None,
            ),
            CrossFieldRule(
                "fast_below_slow",
                "conditions[*].fast, conditions[*].slow",
                "a cross or MACD condition's slow period is greater than its fast period",
                None,
            ),
            CrossFieldRule(
                "distinct_conditions",
                "conditions",
                "no condition appears twice; numbers compare as the doubles they round to (30 and 30.0 "
                "are the same)",
                "uniqueItems (which compares numbers exactly, not as doubles)",
            ),
            CrossFieldRule(
                "exit_rule",
                "trade",
                "a trade plan has at least one exit rule: take_profit_pct, stop_loss_pct or max_hold_candles",
                "anyOf of the three required",
            ),
            CrossFieldRule(
                "side_bounds",
                "trade.take_profit_pct, trade.stop_loss_pct",
                f"a short's take_profit_pct and a long's stop_loss_pct are at most {MAX_ADVERSE_PCT:g} "
                f"(the price cannot pass zero); the other two at most {MAX_FAVOURABLE_PCT:g}",
                "if/then on side",
            ),
        )
    }
)


# --- value rules ----------------------------------------------------------------------------------


def _char_class(chars: str) -> str:
    """A bracket expression for ``chars`` (letters and digits), runs written as ranges: ``[0-9A-Z]``."""
    codes = sorted({ord(c) for c in chars})
    if not all(chr(c).isascii() and chr(c).isalnum() for c in codes):
        raise ValueError("only ASCII letters and digits have ranges that every regex engine reads alike")
    runs: list[list[int]] = []
    for code in codes:
        if runs and runs[-1][-1] == code - 1:
            runs[-1].append(code)
        else:
            runs.append([code])
    parts = (
        chr(r[0]) + (f"-{chr(r[-1])}" if len(r) > 2 else chr(r[-1]) if len(r) == 2 else "") for r in runs
    )
    return "[" + "".join(parts) + "]"


def _quoted(options: tuple[str, ...]) -> str:
    return ", ".join(json.dumps(o) for o in options)


@dataclass(frozen=True, slots=True)
class Exactly:
    """One integer and nothing else (the version)."""

    value: int

    @property
    def problem(self) -> str:
        """What the refusal says."""
        return f"must be {self.value}"


@dataclass(frozen=True, slots=True)
class Integer:
    """A JSON integer in ``[low, high]``: written without a fraction or exponent, never a boolean."""

    low: int
    high: int

    @property
    def problem(self) -> str:
        """What the refusal says."""
        return f"must be an integer between {self.low} and {self.high}"


@dataclass(frozen=True, slots=True)
class Number:
    """A JSON number in ``[low, high]``, or ``(low, high]`` with ``above``; never a boolean.

    An integer is compared exactly, a number with a fraction as the double it rounds to (a value that
    overflows is infinite, one that underflows is zero).
    """

    low: float
    high: float
    above: bool = False

    @property
    def problem(self) -> str:
        """What the refusal says."""
        if self.above:
            return f"must be a number greater than {self.low:g} and at most {self.high:g}"
        return f"must be a number between {self.low:g} and {self.high:g}"


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a fixed list of strings."""

    options: tuple[str, ...]

    @classmethod
    def of(cls, choices: type[enum.StrEnum]) -> Choice:
        """The values of an enumeration, in its order."""
        return cls(tuple(str(m) for m in choices))

    @property
    def problem(self) -> str:
        """What the refusal says."""
        return f"must be one of {_quoted(self.options)}"


@dataclass(frozen=True, slots=True)
class Depends:
    """A :class:`Number` chosen by the value of an earlier :class:`Choice` field of the same object."""

    #: The field whose value chooses (checked before this one).
    on: str
    #: (value of ``on``, the rule then), for every option of ``on``.
    cases: tuple[tuple[str, Number], ...]
    #: The cross-field rule this is.
    rule: str

    def case(self, value: str) -> Number:
        """The rule when ``on`` is ``value``."""
        return dict(self.cases)[value]


@dataclass(frozen=True, slots=True)
class Symbols:
    """An array of market symbols, each upper-cased, no two the same (``distinct_symbols``).

    A symbol is ``min_length`` to ``max_length`` ASCII letters or digits
    (:func:`~signalguard.core.candles.normalize_symbol`).
    """

    min_items: int
    max_items: int
    min_length: int
    max_length: int
    #: The characters of an upper-cased symbol (lower-case ASCII letters are upper-cased first).
    alphabet: str = string.ascii_uppercase + string.digits
    rule: str = "distinct_symbols"

    @property
    def pattern(self) -> str:
        """A regular expression a symbol matches before upper-casing (ASCII ranges only)."""
        written = self.alphabet + self.alphabet.lower()
        return f"^{_char_class(written)}{{{self.min_length},{self.max_length}}}$"

    @property
    def problem(self) -> str:
        """What the refusal of the array says."""
        return f"must be an array of {self.min_items} to {self.max_items} symbols"

    @property
    def item_problem(self) -> str:
        """What the refusal of one symbol says."""
        return f"must be {self.min_length} to {self.max_length} ASCII letters or digits"

    @staticmethod
    def duplicate_problem(path: str, index: object, symbol: object) -> str:
        """What the refusal of a repeated symbol says (``index``: where it was first)."""
        return f"duplicates {path}[{index}] ({symbol})"


@dataclass(frozen=True, slots=True)
class Conditions:
    """An array of objects told apart by ``discriminator``, no two equal (``distinct_conditions``)."""

    min_items: int
    max_items: int
    discriminator: str
    #: (value of the discriminator, the object's rules), in the discriminator's order.
    variants: tuple[tuple[str, Shape], ...]
    rule: str = "distinct_conditions"

    @property
    def choice(self) -> Choice:
        """The discriminator's rule."""
        return Choice(tuple(v for v, _ in self.variants))

    def variant(self, value: str) -> Shape:
        """The rules of an item whose discriminator is ``value``."""
        return dict(self.variants)[value]

    @property
    def problem(self) -> str:
        """What the refusal of the array says."""
        return f"must be an array of {self.min_items} to {self.max_items} conditions"

    @staticmethod
    def duplicate_problem(path: str, index: object) -> str:
        """What the refusal of a repeated item says (``index``: where it was first)."""
        return f"duplicates {path}[{index}]"


# --- objects ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """A key of an object and the rule for its value."""

    name: str
    rule: Rule
    required: bool = True
    #: The value an optional field has when it is absent (None: no value).
    default: int | str | None = None


@dataclass(frozen=True, slots=True)
class Greater:
    """The integer ``field`` must be greater than the integer ``than`` (both checked just before)."""

    field: str
    than: str
    rule: str

    def problem(self, than_value: object) -> str:
        """What the refusal says, given the value of ``than``."""
        return f"must be greater than {self.than} ({than_value})"


@dataclass(frozen=True, slots=True)
class AtLeastOne:
    """At least one of ``fields`` must be present (the refusal names the object)."""

    fields: tuple[str, ...]
    #: What one of them is, for the message ("exit rule").
    what: str
    rule: str

    @property
    def problem(self) -> str:
        """What the refusal says."""
        listed = ", ".join(self.fields[:-1]) + " or " + self.fields[-1]
        return f"needs at least one {self.what}: {listed}"


Member: TypeAlias = "Field | Greater | AtLeastOne"
"""One step of checking an object: a field, or a cross-field rule at the point it is checked."""


@dataclass(frozen=True, slots=True)
class Shape:
    """A JSON object: its members in check order (see the module documentation)."""

    members: tuple[Member, ...]
    #: The fields, in check order.
    fields: tuple[Field, ...] = dataclasses.field(init=False, repr=False, compare=False)
    #: The required keys, in the order a missing one is reported.
    required: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)
    #: The optional keys.
    optional: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)

    #: What the refusal of a value that is no object says.
    problem: ClassVar[str] = "must be a JSON object"
    #: What the refusal of a missing required field says.
    required_problem: ClassVar[str] = "required"

    def __post_init__(self) -> None:
        """Derive the fields and keys once (the validator reads them on every definition)."""
        fields = tuple(m for m in self.members if isinstance(m, Field))
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "required", tuple(f.name for f in fields if f.required))
        object.__setattr__(self, "optional", tuple(f.name for f in fields if not f.required))

    @property
    def unknown_problem(self) -> str:
        """What the refusal of a key that is not a field says."""
        return f"unknown field (allowed: {', '.join(sorted(self.required + self.optional))})"

    def field(self, name: str) -> Field:
        """The field ``name``."""
        return next(f for f in self.fields if f.name == name)


Rule: TypeAlias = "Exactly | Integer | Number | Choice | Depends | Symbols | Conditions | Shape"
"""The rule for a field's value."""


def child_path(path: str, key: str) -> str:
    """The path of ``key`` inside the object at ``path``, e.g. ``conditions[1].period``.

    An odd key (empty, not an identifier, longer than 40 characters) is quoted as JSON, cut to 37
    characters and ``...``, so that a path is always unambiguous and short: ``definition["a b"]``.
    """
    if not PLAIN_KEY.fullmatch(key):
        shown = key if len(key) <= MAX_PLAIN_KEY else key[: MAX_PLAIN_KEY - 3] + "..."
        return f"{path}[{json.dumps(shown)}]"
    return key if path == ROOT else f"{path}.{key}"


# --- the definition ---------------------------------------------------------------------------------

_OP: Final = Field("op", Choice.of(Op))
_DIRECTION: Final = Field("direction", Choice.of(Direction))
_FAST_SLOW: Final[tuple[Member, ...]] = (
    Field("fast", Integer(MIN_PERIOD, MAX_PERIOD - 1)),
    Field("slow", Integer(MIN_PERIOD + 1, MAX_PERIOD)),
    Greater("slow", "fast", "fast_below_slow"),
)
_SIGNAL: Final = Field("signal", Integer(1, MAX_PERIOD))


def _threshold(min_period: int, value: Number) -> tuple[Member, ...]:
    return (Field("period", Integer(min_period, MAX_PERIOD)), _OP, Field("value", value))


def _condition(kind: Kind, *members: Member) -> tuple[str, Shape]:
    return str(kind), Shape((Field("indicator", Choice.of(Kind)), *members))


#: The rules of each kind of condition (``indicator`` first, then the members in check order).
CONDITION_RULES: Final = Conditions(
    min_items=1,
    max_items=MAX_CONDITIONS,
    discriminator="indicator",
    variants=(
        _condition(Kind.RSI, *_threshold(MIN_PERIOD, Number(0.0, 100.0))),
        _condition(Kind.VOLUME_SPIKE, *_threshold(MIN_PERIOD, Number(0.0, 1000.0, above=True))),
        _condition(Kind.PRICE_CHANGE_PCT, *_threshold(1, Number(-100.0, 10000.0))),
        _condition(Kind.CLOSE_VS_SMA, Field("period", Integer(MIN_PERIOD, MAX_PERIOD)), _OP),
        _condition(Kind.CLOSE_VS_EMA, Field("period", Integer(MIN_PERIOD, MAX_PERIOD)), _OP),
        _condition(
            Kind.CLOSE_VS_BOLLINGER,
            Field("period", Integer(MIN_PERIOD, MAX_PERIOD)),
            Field("k", Number(0.0, 10.0, above=True)),
            Field("band", Choice.of(Band)),
            _OP,
        ),
        _condition(Kind.EMA_CROSS, *_FAST_SLOW, _DIRECTION),
        _condition(Kind.SMA_CROSS, *_FAST_SLOW, _DIRECTION),
        _condition(
            Kind.MACD_HISTOGRAM,
            *_FAST_SLOW,
            _SIGNAL,
            _OP,
            Field("value", Number(-MAX_MACD_VALUE, MAX_MACD_VALUE)),
        ),
        _condition(Kind.MACD_CROSS, *_FAST_SLOW, _SIGNAL, _DIRECTION),
    ),
)


def _side_bounds(long_high: float, short_high: float) -> Depends:
    return Depends(
        "side",
        (
            (str(Side.LONG), Number(0.0, long_high, above=True)),
            (str(Side.SHORT), Number(0.0, short_high, above=True)),
        ),
        "side_bounds",
    )


#: The rules of a paper-trade plan (``trade``).
TRADE_PLAN_RULES: Final = Shape(
    (
        Field("side", Choice.of(Side)),
        Field("notional", Number(0.0, MAX_NOTIONAL, above=True)),
        Field("take_profit_pct", _side_bounds(MAX_FAVOURABLE_PCT, MAX_ADVERSE_PCT), required=False),
        Field("stop_loss_pct", _side_bounds(MAX_ADVERSE_PCT, MAX_FAVOURABLE_PCT), required=False),
        Field("max_hold_candles", Integer(1, MAX_HOLD_CANDLES), required=False),
        AtLeastOne(("take_profit_pct", "stop_loss_pct", "max_hold_candles"), "exit rule", "exit_rule"),
    )
)

#: The rules of a trader definition, in the order :func:`~.validation.parse_trader` checks them.
DEFINITION_RULES: Final = Shape(
    (
        Field("version", Exactly(SCHEMA_VERSION)),
        Field("symbols", Symbols(1, MAX_SYMBOLS, 2, 20)),
        Field("interval", Choice((*INTERVALS, MONTH))),
        Field("match", Choice.of(Match), required=False, default=str(Match.ALL)),
        Field("cooldown_candles", Integer(0, MAX_COOLDOWN), required=False, default=0),
        Field("conditions", CONDITION_RULES),
        Field("trade", TRADE_PLAN_RULES, required=False),
    )
)


# --- the database's refusal -----------------------------------------------------------------------

_DATABASE_PREFIX: Final = "invalid_argument: "
_COLUMN: Final = "definition."


def database_message(problem: str) -> str:
    """The message of the database's refusal (SG009) of a definition the core refuses with ``problem``.

    ``problem`` is the core's ``path: problem``; a path inside the definition gets the column's name
    in front (``definition.conditions[1].period: ...``), the definition's own path is left as it is.
    """
    if problem.startswith((f"{ROOT}:", f"{ROOT}[")):
        return _DATABASE_PREFIX + problem
    return _DATABASE_PREFIX + _COLUMN + problem


def problem_from_database(message: str) -> str | None:
    """The core's ``path: problem`` in the database's refusal of a definition, else None.

    The inverse of :func:`database_message` (no path of the core starts with ``definition.``).
    """
    if not message.startswith(_DATABASE_PREFIX):
        return None
    rest = message.removeprefix(_DATABASE_PREFIX)
    if rest.startswith(_COLUMN):
        return rest.removeprefix(_COLUMN)
    if rest.startswith((f"{ROOT}:", f"{ROOT}[")):
        return rest
    return None


# --- JSON Schema ------------------------------------------------------------------------------------

_DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"


def _schema_of(rule: Rule) -> dict[str, object]:
    if isinstance(rule, Exactly):
        return {"type": "integer", "const": rule.value}
    if isinstance(rule, Integer):
        return {"type": "integer", "minimum": rule.low, "maximum": rule.high}
    if isinstance(rule, Number):
        low = "exclusiveMinimum" if rule.above else "minimum"
        return {"type": "number", low: rule.low, "maximum": rule.high}
    if isinstance(rule, Choice):
        return {"type": "string", "enum": list(rule.options)}
    if isinstance(rule, Depends):
        # The field's own bounds are the loosest case; the object narrows them by `on` (_shape_schema).
        numbers = [n for _, n in rule.cases]
        return _schema_of(Number(min(n.low for n in numbers), max(n.high for n in numbers), numbers[0].above))
    if isinstance(rule, Symbols):
        return {
            "type": "array",
            "minItems": rule.min_items,
            "maxItems": rule.max_items,
            "items": {"type": "string", "pattern": rule.pattern},
            "x-rules": [rule.rule],
        }
    if isinstance(rule, Conditions):
        variants = []
        for value, shape in rule.variants:
            schema = _shape_schema(shape)
            properties = schema["properties"]
            assert isinstance(properties, dict)
            properties[rule.discriminator] = {"const": value}
            variants.append(schema)
        return {
            "type": "array",
            "minItems": rule.min_items,
            "maxItems": rule.max_items,
            "uniqueItems": True,
            "items": {"oneOf": variants},
            "x-rules": [rule.rule],
        }
    return _shape_schema(rule)


def _shape_schema(shape: Shape) -> dict[str, object]:
    schema: dict[str, object] = {
        "type": "object",
        "additionalProperties": False,
        "required": list(shape.required),
        "properties": {
            f.name: _schema_of(f.rule) | ({} if f.default is None else {"default": f.default})
            for f in shape.fields
        },
    }
    narrowed: dict[tuple[str, str], dict[str, object]] = {}
    rules: list[str] = []
    for member in shape.members:
        if isinstance(member, Field) and isinstance(member.rule, Depends):
            for value, number in member.rule.cases:
                narrowed.setdefault((member.rule.on, value), {})[member.name] = _schema_of(number)
            rules.append(member.rule.rule)
        elif isinstance(member, AtLeastOne):
            schema["anyOf"] = [{"required": [name]} for name in member.fields]
            rules.append(member.rule)
        elif isinstance(member, Greater):
            rules.append(member.rule)
    if narrowed:
        schema["allOf"] = [
            {"if": {"properties": {on: {"const": value}}}, "then": {"properties": properties}}
            for (on, value), properties in narrowed.items()
        ]
    if rules:
        schema["x-rules"] = list(dict.fromkeys(rules))
    return schema


def definition_json_schema() -> dict[str, object]:
    """The rules as a JSON Schema (draft 2020-12) document, for editors and other clients.

    It says everything a schema can: types, bounds, choices, required and unknown keys, the trade
    plan's side-dependent bounds (``if``/``then``) and its exit rule (``anyOf``). What it cannot say
    is listed under ``x-cross-field-rules`` (each with ``json_schema: null``, or how far the schema
    gets), and every object or array a named rule applies to carries ``x-rules`` with its names.
    The core is stricter than a schema validator in three more ways, stated in the ``description``:
    an integer is a number written without a fraction or exponent (``14.0`` is no integer), the text
    of a definition is at most :data:`~.definition.MAX_DEFINITION_SIZE` characters, and it nests at
    most :data:`MAX_DEPTH` levels deep.
    """
    schema = _shape_schema(DEFINITION_RULES)
    return {
        "$schema": _DRAFT,
        "title": "signalguard trader definition",
        "description": (
            f"A trader definition, version {SCHEMA_VERSION}, as signalguard.core.traders.parse_trader "
            "checks it. Also checked, beyond this schema: an integer is written without a fraction or "
            f"exponent (14.0 is no integer); a number with a fraction is compared as the double it rounds "
            f"to; the text is at most {MAX_DEFINITION_SIZE} characters and nests at most {MAX_DEPTH} "
            "levels deep; and the rules under x-cross-field-rules."
        ),
        **schema,
        "x-cross-field-rules": [
            {
                "name": r.name,
                "where": r.where,
                "description": r.description,
                "json_schema": r.json_schema,
            }
            for r in CROSS_FIELD_RULES.values()
        ],
    }
