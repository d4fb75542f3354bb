"""The rules of a trader definition, declared once (signalguard.core.traders.rules).

The validator walks them, the JSON Schema export states them, and the database's check is compiled
from them (signalguard.devstack.definition_sql) into SQL that ships verbatim in a migration and in the
schema files. These tests are of the core alone (they run in Pyodide too); the generator's are in
tests/integration/test_definition_sql.py, and tests/integration/test_definition_rules.py runs the
compiled check against the core.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from typing import Any

import pytest

from signalguard.core.candles import MarketDataError, normalize_symbol
from signalguard.core.traders import (
    DEFINITION_RULES,
    TraderDefinitionError,
    database_message,
    definition_json_schema,
    parse_trader,
    problem_from_database,
)
from signalguard.core.traders.rules import (
    CROSS_FIELD_RULES,
    AtLeastOne,
    Conditions,
    Depends,
    Field,
    Greater,
    Shape,
    Symbols,
    child_path,
)
from signalguard.core.traders.templates import TEMPLATES

#: One condition of each kind.
CONDITIONS: list[dict[str, Any]] = [
    {"indicator": "rsi", "period": 14, "op": "<", "value": 30},
    {"indicator": "volume_spike", "period": 20, "op": ">", "value": 2.0},
    {"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -3},
    {"indicator": "close_vs_sma", "period": 50, "op": ">"},
    {"indicator": "close_vs_ema", "period": 200, "op": "<"},
    {"indicator": "close_vs_bollinger", "period": 20, "k": 2.0, "band": "lower", "op": "<"},
    {"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"},
    {"indicator": "sma_cross", "fast": 50, "slow": 200, "direction": "down"},
    {"indicator": "macd_histogram", "fast": 12, "slow": 26, "signal": 9, "op": ">", "value": 0},
    {"indicator": "macd_cross", "fast": 12, "slow": 26, "signal": 9, "direction": "up"},
]


def definition(*conditions: dict[str, Any], **top: Any) -> dict[str, Any]:
    d = {"version": 1, "symbols": ["BTCUSDT"], "interval": "1m", "conditions": list(conditions), **top}
    return copy.deepcopy(d)


EXAMPLES = [definition(c) for c in CONDITIONS] + [t.as_json() for t in TEMPLATES]


def core(value: Any) -> str | None:
    try:
        parse_trader(value)
    except TraderDefinitionError as exc:
        return str(exc)
    return None


# -- a small JSON Schema checker (the keywords the export uses) -----------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, booleans apart from numbers, objects whatever their key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: _is_number(v) and math.isfinite(v) and v == int(v),
}
IGNORED = {"$schema", "title", "description", "default"}


def conforms(v: Any, schema: dict[str, Any]) -> bool:
    for key, want in schema.items():
        if key in IGNORED or key.startswith("x-") or key == "then":
            continue
        if key == "type":
            ok = TYPES[want](v)
        elif key == "const":
            ok = _same(v, want)
        elif key == "enum":
            ok = any(_same(v, w) for w in want)
        elif key == "minimum":
            ok = not _is_number(v) or v >= want
        elif key == "maximum":
            ok = not _is_number(v) or v <= want
        elif key == "exclusiveMinimum":
            ok = not _is_number(v) or v > want
        elif key == "pattern":
            ok = not isinstance(v, str) or re.search(want, v) is not None
        elif key in ("minItems", "maxItems"):
            ok = not isinstance(v, list) or (len(v) >= want if key == "minItems" else len(v) <= want)
        elif key == "uniqueItems":
            ok = not isinstance(v, list) or not any(
                _same(v[i], v[j]) for i in range(len(v)) for j in range(i + 1, len(v))
            )
        elif key == "items":
            ok = not isinstance(v, list) or all(conforms(x, want) for x in v)
        elif key == "properties":
            ok = not isinstance(v, dict) or all(conforms(v[k], s) for k, s in want.items() if k in v)
        elif key == "required":
            ok = not isinstance(v, dict) or all(k in v for k in want)
        elif key == "additionalProperties":
            assert want is False
            ok = not isinstance(v, dict) or set(v) <= set(schema.get("properties", {}))
        elif key == "oneOf":
            ok = sum(conforms(v, s) for s in want) == 1
        elif key == "anyOf":
            ok = any(conforms(v, s) for s in want)
        elif key == "allOf":
            ok = all(conforms(v, s) for s in want)
        elif key == "if":
            ok = not conforms(v, want) or conforms(v, schema["then"])
        else:
            raise AssertionError(f"the checker does not know {key}")
        if not ok:
            return False
    return True


SCHEMA = definition_json_schema()


# -- the JSON Schema export --------------------------------------------------------------------------


def test_the_json_schema_is_a_json_document_of_draft_2020_12() -> None:
    assert json.loads(json.dumps(SCHEMA)) == SCHEMA
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert definition_json_schema() == SCHEMA  # a fresh copy each call, the same every time


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda d: d["conditions"][0]["indicator"])
def test_every_example_conforms_to_the_json_schema(example: dict[str, Any]) -> None:
    assert core(example) is None
    assert conforms(example, SCHEMA)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(version=2), "version: must be 1"),
        (lambda d: d.update(symbols=[]), "symbols: must be an array of 1 to 500 symbols"),
        (lambda d: d.update(symbols=["BTC-USDT"]), "symbols[0]: must be 2 to 20 ASCII letters or digits"),
        (lambda d: d.update(symbols=["straße"]), "symbols[0]: must be 2 to 20 ASCII letters or digits"),
        (lambda d: d.update(interval="1y"), "interval: must be one of"),
        (lambda d: d.update(match=None), "match: must be one of"),
        (lambda d: d.update(cooldown_candles=10_001), "cooldown_candles: must be an integer between"),
        (lambda d: d.pop("interval"), "interval: required"),
        (lambda d: d.update(extra=1), "extra: unknown field"),
        (lambda d: d["conditions"][0].update(period=1), "conditions[0].period: must be an integer"),
        (lambda d: d["conditions"][0].update(value=100.5), "conditions[0].value: must be a number"),
        (lambda d: d["conditions"][0].update(value=True), "conditions[0].value: must be a number"),
        (lambda d: d["conditions"][0].update(indicator="RSI"), "conditions[0].indicator: must be one of"),
        (lambda d: d["conditions"][0].update(k=2), "conditions[0].k: unknown field"),
        (lambda d: d["conditions"].append(CONDITIONS[0]), "conditions[1]: duplicates conditions[0]"),
        (lambda d: d.update(trade={"side": "long", "notional": 100}), "trade: needs at least one exit rule"),
        (
            lambda d: d.update(trade={"side": "short", "notional": 100, "take_profit_pct": 100}),
            "trade.take_profit_pct: must be a number greater than 0 and at most 99.99",
        ),
        (
            lambda d: d.update(trade={"side": "long", "notional": 100, "stop_loss_pct": 99.991}),
            "trade.stop_loss_pct: must be a number greater than 0 and at most 99.99",
        ),
    ],
)
def test_what_the_json_schema_says_it_refuses_as_the_core_does(change: Any, problem: str) -> None:
    d = definition(CONDITIONS[0])
    change(d)
    assert (core(d) or "").startswith(problem)
    assert not conforms(d, SCHEMA)


def test_what_it_cannot_say_is_listed_by_name() -> None:
    listed = {r["name"]: r for r in SCHEMA["x-cross-field-rules"]}
    assert set(listed) == set(CROSS_FIELD_RULES)
    cannot = {name for name, r in listed.items() if r["json_schema"] is None}
    assert cannot == {"distinct_symbols", "fast_below_slow"}
    for d, problem in [
        (definition(CONDITIONS[0], symbols=["BTCUSDT", "btcusdt"]), "symbols[1]: duplicates symbols[0]"),
        (definition({**CONDITIONS[6], "fast": 21, "slow": 9}), "conditions[0].slow: must be greater than"),
        (definition(CONDITIONS[0], version=1.0), "version: must be 1"),  # 1.0 is no integer to the core
    ]:
        assert (core(d) or "").startswith(problem)
        assert conforms(d, SCHEMA), d
    # Every object or array a named rule applies to carries it.
    text = json.dumps(SCHEMA)
    assert {
        n for names in re.findall(r'"x-rules": \[([^\]]*)\]', text) for n in json.loads(f"[{names}]")
    } == set(CROSS_FIELD_RULES)


def test_the_json_schema_accepts_everything_the_core_accepts() -> None:
    # The schema is the looser of the two: whatever the core accepts conforms (seeded mutations).
    rng = random.Random(7)
    values: list[Any] = [None, True, 0, 1, -1, 1.5, 2, 99.99, 100, 1000, 1e9, 1e15, "x", [], {}, 30, 30.0]
    accepted = 0
    for _ in range(10_000):
        d = copy.deepcopy(rng.choice(EXAMPLES))
        for _ in range(rng.randint(1, 2)):
            conditions = d.get("conditions") if isinstance(d.get("conditions"), list) else []
            inner = [v for v in [*conditions, d.get("trade")] if isinstance(v, dict)]
            target = rng.choice([d, *inner])
            key = rng.choice([*target, "extra"])
            target[key] = rng.choice(values)
        if core(d) is None:
            accepted += 1
            assert conforms(d, SCHEMA), d
    assert accepted > 300


# -- the rules drive the validator ----------------------------------------------------------------


def shapes() -> list[tuple[str, Shape, dict[str, Any]]]:
    """(path, shape, a valid definition holding it) of every object the rules describe."""
    conditions = DEFINITION_RULES.field("conditions").rule
    trade = DEFINITION_RULES.field("trade").rule
    assert isinstance(conditions, Conditions) and isinstance(trade, Shape)
    plan = {"side": "long", "notional": 100, "max_hold_candles": 5}
    return [
        ("definition", DEFINITION_RULES, definition(CONDITIONS[0])),
        ("trade", trade, definition(CONDITIONS[0], trade=plan)),
    ] + [
        ("conditions[0]", shape, definition(next(c for c in CONDITIONS if c["indicator"] == kind)))
        for kind, shape in conditions.variants
    ]


def test_every_rule_name_is_a_known_cross_field_rule() -> None:
    used = set()
    for _, shape, _ in shapes():
        for member in shape.members:
            if isinstance(member, Greater | AtLeastOne):
                used.add(member.rule)
            elif isinstance(member, Field) and isinstance(member.rule, Depends | Symbols | Conditions):
                used.add(member.rule.rule)
    assert used == set(CROSS_FIELD_RULES)


def test_each_field_is_refused_with_its_rules_message() -> None:
    checked = 0
    for path, shape, example in shapes():
        assert core(example) is None
        for f in shape.fields:
            if path.startswith("conditions") and f.name == "indicator":
                continue  # another indicator is another shape
            d = copy.deepcopy(example)
            target = d if path == "definition" else d["trade"] if path == "trade" else d["conditions"][0]
            target[f.name] = "not this"
            rule = f.rule.case("long") if isinstance(f.rule, Depends) else f.rule
            problem = Shape.problem if isinstance(rule, Shape) else rule.problem
            field_path = f.name if path == "definition" else f"{path}.{f.name}"
            assert core(d) == f"{field_path}: {problem}"
            checked += 1
    assert checked > 30


def test_the_symbol_rule_is_normalize_symbols() -> None:
    rule = DEFINITION_RULES.field("symbols").rule
    assert isinstance(rule, Symbols)
    pattern = re.compile(rule.pattern)
    chars = [chr(c) for c in range(0x3000)] + ["\U0001d400", "\U0001f600", "\ufb00", "\uff21"]
    for c in chars:
        for text in (c * rule.min_length, "A" + c, c * rule.max_length, c * (rule.max_length + 1)):
            try:
                normalize_symbol(text)
                accepted = True
            except MarketDataError:
                accepted = False
            assert accepted == (pattern.fullmatch(text) is not None), repr(text)


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("period", "conditions[0].period"),
        ("_a1", "conditions[0]._a1"),
        ("x" * 40, "conditions[0]." + "x" * 40),
        ("x" * 41, 'conditions[0]["' + "x" * 37 + '..."]'),
        ("", 'conditions[0][""]'),
        ("a b", 'conditions[0]["a b"]'),
        ("1a", 'conditions[0]["1a"]'),
        ("é", 'conditions[0]["\\u00e9"]'),
        ("😀", 'conditions[0]["\\ud83d\\ude00"]'),
        ('"\\\n\x7f', 'conditions[0]["\\"\\\\\\n\\u007f"]'),
    ],
)
def test_a_path_quotes_odd_keys(key: str, path: str) -> None:
    assert child_path("conditions[0]", key) == path
    assert child_path("definition", "period") == "period"


@pytest.mark.parametrize(
    "problem",
    [
        "conditions[1].period: must be an integer between 2 and 500",
        "symbols[0]: duplicates symbols[1] (BTCUSDT)",
        "trade: needs at least one exit rule: take_profit_pct, stop_loss_pct or max_hold_candles",
        "definition: must be a JSON object",
        'definition["a b"]: unknown field (allowed: conditions)',
        "definitionx: unknown field (allowed: conditions)",
    ],
)
def test_the_databases_message_gives_the_cores_back(problem: str) -> None:
    message = database_message(problem)
    assert message.startswith("invalid_argument: definition")
    assert problem_from_database(message) == problem
    assert problem_from_database("invalid_argument: a trader's name is 1 to 100 characters") is None
    assert problem_from_database("lease_not_held: ...") is None


def test_the_databases_message_names_the_field_as_a_column_path() -> None:
    assert database_message("conditions[1].period: must be an integer between 2 and 500") == (
        "invalid_argument: definition.conditions[1].period: must be an integer between 2 and 500"
    )
    assert database_message("definition: must be a JSON object") == (
        "invalid_argument: definition: must be a JSON object"
    )
