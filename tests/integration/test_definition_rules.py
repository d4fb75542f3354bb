"""The database judges a trader definition exactly as the core does.

``private.trader_definition_problem`` is compiled from the core's rules
(``signalguard.core.traders.rules``). The property: for every jsonb ``J`` it answers null exactly when
``parse_trader(J::text)`` accepts (``J::text``: PostgreSQL's rendering, the text every reader of the row
decodes), and otherwise the core's own message, so the first offending field is the same one. It is
checked on 10,000 seeded definitions in one round trip: valid ones from varied templates, and mutations
of them (wrong types, bounds and their neighbours, floats that round onto a bound, numbers beyond any
double, unknown and odd keys, missing keys, repeated symbols and conditions, non-ASCII symbols, trade
plans without an exit, nested junk, documents at the size and depth limits).

Then through PostgREST as a signed-in user: a refused insert or update names the field and changes
nothing; a valid definition is stored; a maintenance session is not judged.
"""

from __future__ import annotations

import collections
import copy
import json
import math
import random
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from stackkit import DEFINITION, Actor, Actors, Api

from signalguard.core.codes import GuardError
from signalguard.core.traders import TraderDefinitionError, database_message, parse_trader
from signalguard.core.traders.rules import DEFINITION_RULES, Conditions, Depends, Integer, Number, Shape
from signalguard.core.traders.templates import TEMPLATES

pytestmark = pytest.mark.stack

CASES = 10_000
SEED = 20251003


# -- building JSON text ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text spliced in as written: 1e400, 14.0, a 5,000-digit integer, deep nesting."""

    text: str


def dump(value: Any) -> str:
    """JSON text of ``value`` (with ", " and ": ", as PostgreSQL renders jsonb)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return json.dumps(value)


def nested(depth: int, leaf: Any = 1) -> Raw:
    """``depth`` levels of objects and arrays around ``leaf``."""
    text = dump(leaf)
    for i in range(depth):
        text = f"[{text}]" if i % 2 else f'{{"n": {text}}}'
    return Raw(text)


def fraction(x: Decimal) -> str:
    """``x`` written with a decimal point."""
    text = format(x, "f")
    return text if "." in text else text + ".0"


# -- valid definitions --------------------------------------------------------------------------------

INTERVALS = [
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
]
OPS = ["<", "<=", ">", ">="]
KINDS = [
    "rsi",
    "volume_spike",
    "price_change_pct",
    "close_vs_sma",
    "close_vs_ema",
    "close_vs_bollinger",
    "ema_cross",
    "sma_cross",
    "macd_histogram",
    "macd_cross",
]


def a_symbol(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    if rng.random() < 0.3:
        alphabet += "abcdefghijklmnopqrstuvwxyz"
    return "".join(rng.choice(alphabet) for _ in range(rng.choice([2, 3, 6, 7, 8, 12, 20])))


def a_number(rng: random.Random, low: float, high: float, *, above: bool = False) -> Any:
    """A number within bounds: at them, just inside, an integer, a rounded float."""
    r = rng.random()
    if r < 0.15:
        return Raw(repr(low + (high - low) * 1e-9)) if above else low
    if r < 0.3:
        return high if rng.random() < 0.5 else Raw(repr(float(high)))
    if r < 0.6:
        return rng.randint(math.floor(low) + (1 if above else 0), math.floor(high))
    return round(rng.uniform(low, high), rng.choice([1, 2, 3, 6, 12])) or high


def fast_slow(rng: random.Random) -> tuple[int, int]:
    fast = rng.choice([2, 3, 5, 9, 12, 50, 250, 499]) if rng.random() < 0.5 else rng.randint(2, 499)
    return fast, rng.randint(fast + 1, 500)


def a_condition(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(KINDS)
    c: dict[str, Any] = {"indicator": kind}
    if kind in ("rsi", "volume_spike", "price_change_pct"):
        c["period"] = rng.randint(1 if kind == "price_change_pct" else 2, 500)
        c["op"] = rng.choice(OPS)
        low, high, above = {
            "rsi": (0, 100, False),
            "volume_spike": (0, 1000, True),
            "price_change_pct": (-100, 10000, False),
        }[kind]
        c["value"] = a_number(rng, low, high, above=above)
    elif kind in ("close_vs_sma", "close_vs_ema"):
        c["period"] = rng.randint(2, 500)
        c["op"] = rng.choice(OPS)
    elif kind == "close_vs_bollinger":
        c["period"] = rng.randint(2, 500)
        c["k"] = a_number(rng, 0, 10, above=True)
        c["band"] = rng.choice(["upper", "middle", "lower"])
        c["op"] = rng.choice(OPS)
    elif kind in ("ema_cross", "sma_cross"):
        c["fast"], c["slow"] = fast_slow(rng)
        c["direction"] = rng.choice(["up", "down"])
    else:
        c["fast"], c["slow"] = fast_slow(rng)
        c["signal"] = rng.randint(1, 500)
        if kind == "macd_histogram":
            c["op"] = rng.choice(OPS)
            c["value"] = a_number(rng, -1e15, 1e15) if rng.random() < 0.3 else rng.choice([0, 0.5, -1.25])
        else:
            c["direction"] = rng.choice(["up", "down"])
    keys = list(c)
    if rng.random() < 0.3:
        rng.shuffle(keys)
    return {k: c[k] for k in keys}


def a_trade_plan(rng: random.Random) -> dict[str, Any]:
    side = rng.choice(["long", "short"])
    plan: dict[str, Any] = {"side": side, "notional": a_number(rng, 0, 1e9, above=True)}
    exits = [k for k in ("take_profit_pct", "stop_loss_pct", "max_hold_candles") if rng.random() < 0.6]
    for key in exits or [rng.choice(["take_profit_pct", "stop_loss_pct", "max_hold_candles"])]:
        if key == "max_hold_candles":
            plan[key] = rng.choice([1, 10000, rng.randint(1, 10000)])
        else:
            favourable = (key == "take_profit_pct") == (side == "long")
            plan[key] = a_number(rng, 0, 1000 if favourable else 99.99, above=True)
    return plan


def a_definition(rng: random.Random) -> dict[str, Any]:
    """A valid definition: a starter template, or one of random size and content."""
    if rng.random() < 0.1:
        return rng.choice(TEMPLATES).as_json()
    count = rng.choice([1, 1, 2, 3, 5, 20, 100, 500]) if rng.random() < 0.9 else rng.randint(1, 500)
    symbols: dict[str, str] = {}
    while len(symbols) < count:
        symbol = a_symbol(rng)
        symbols.setdefault(symbol.upper(), symbol)
    d: dict[str, Any] = {"version": 1, "symbols": list(symbols.values()), "interval": rng.choice(INTERVALS)}
    if rng.random() < 0.5:
        d["match"] = rng.choice(["all", "any"])
    if rng.random() < 0.5:
        d["cooldown_candles"] = rng.choice([0, 1, 10000, rng.randint(0, 10000)])
    conditions: list[dict[str, Any]] = []
    for _ in range(rng.choice([1, 1, 2, 3, 10]) if rng.random() < 0.8 else rng.randint(1, 10)):
        condition = a_condition(rng)
        if condition not in conditions:
            conditions.append(condition)
    d["conditions"] = conditions
    if rng.random() < 0.5:
        d["trade"] = a_trade_plan(rng)
    keys = list(d)
    if rng.random() < 0.3:
        rng.shuffle(keys)
    return {k: d[k] for k in keys}


# -- mutations ---------------------------------------------------------------------------------------

WRONG: list[Any] = [
    None, True, False, "", "14", "BTCUSDT", "rsi", [], [1], {}, {"a": 1}, 0, -1, 1, 2.5, "1m", "all",
    [[[[]]]], {"x": {"y": [None, {"z": []}]}},
]  # fmt: skip
ODD_KEYS = [
    "", " ", "a b", "x" * 40, "x" * 41, "y" * 60, "ключ", "😀", "\n", "\u007f", '"', "\\", "é" * 45,
    "😀" * 41, "Version", "definition", "_", "_a1", "1a", "a-b", "\t", "\u2028", "a/b", "<b>", "zz",
    "a", "conditionsX", "symbols ", "TRADE", "op", "k", "period",
]  # fmt: skip
# Non-ASCII letters and digits that Python (str.upper, str.isalnum) or a database locale would take for
# symbol characters: "ß".upper() is "SS", "ı".upper() is "I", "K" (Kelvin) lower-cases to "k".
BAD_SYMBOLS: list[Any] = [
    "ß", "ßß", "ıı", "BTCı", "straße", "ＢＴＣ", "\u212aK", "é1", "ǅǅ", "ﬀﬀ", "B", "A" * 21, "A" * 20,
    "BTC-USDT", "BTC USDT", " BTC", "", "btc_usdt", "١٢٣", "²²", "ⅫⅫ", 12, None, ["BTC"],
]  # fmt: skip


def near_bounds(rule: Any, rng: random.Random) -> list[Any]:
    """Values at and around the bounds of an Integer or Number rule."""
    if isinstance(rule, Depends):
        rule = rng.choice(rule.cases)[1]
    if isinstance(rule, Integer):
        low, high = rule.low, rule.high
        return [
            low - 1, low, high, high + 1, Raw(f"{low}.0"), Raw(f"{high}.0"), Raw(f"{high}e0"),
            Raw(f"{low * 10}e-1"), Raw(f"{high}0e-1"), Raw("1" + "0" * 30), -(10**20), 2**63, Raw("1e400"),
        ]  # fmt: skip
    if not isinstance(rule, Number):
        return []
    out: list[Any] = []
    for x in (rule.low, rule.high):
        exact = Decimal(x)
        out += [
            Raw(repr(float(x))),
            math.nextafter(x, math.inf),
            math.nextafter(x, -math.inf),
            # Beside the bound: these round onto it as doubles, or not, by its magnitude.
            Raw(fraction(exact) + "0000000000000000001"),
            Raw(fraction(exact + Decimal("1e-30"))),
            Raw(fraction(exact - Decimal("1e-30"))),
            Raw(fraction(exact + Decimal("1e-13"))),
            Raw(fraction(exact - Decimal("1e-13"))),
        ]
        out += [int(x), int(x) + 1, int(x) - 1] if x == int(x) else [math.floor(x), math.ceil(x)]
    return [
        *out,
        Raw("1e400"), Raw("-1e400"), Raw("1e-400"), Raw("-1e-400"), Raw("1e-320"), Raw("4.9e-324"),
        Raw("2.4703282292062327e-324"), Raw("2.4703282292062328e-324"), Raw("1e300"), Raw("1.5e300"),
        Raw("1" + "0" * 400 + ".5"), Raw("0.000000"), Raw("-0.0"), Raw("-0"), 10**20, Raw("1e15"),
        Raw("1000000000000000.1"), Raw("999999999999999.99"), Raw("0.1000000000000000055511151231257827"),
    ]  # fmt: skip


def rule_at(d: dict[str, Any], path: tuple[Any, ...]) -> Any:
    """The rule of the scalar field at ``path``, or None."""
    shape: Shape | None = DEFINITION_RULES
    if path[0] == "conditions":
        conditions = DEFINITION_RULES.field("conditions").rule
        assert isinstance(conditions, Conditions)
        kind = d["conditions"][path[1]].get("indicator")
        shape = conditions.variant(kind) if kind in conditions.choice.options else None
    elif path[0] == "trade":
        trade = DEFINITION_RULES.field("trade").rule
        shape = trade if isinstance(trade, Shape) else None
    if shape is None:
        return None
    return next((f.rule for f in shape.fields if f.name == path[-1]), None)


def at(d: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        d = d[key]
    return d


def walk(rng: random.Random, d: Any) -> tuple[Any, ...]:
    """A random path into ``d``: a child at each level, stopping early now and then."""
    path: tuple[Any, ...] = ()
    while isinstance(d, dict | list) and d:
        key = rng.choice(list(d)) if isinstance(d, dict) else rng.randrange(len(d))
        path, d = (*path, key), d[key]
        if rng.random() < 0.4:
            break
    return path


def scalar_fields(d: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Paths of the scalar fields: the definition's, its conditions', its trade plan's."""
    out: list[tuple[Any, ...]] = [
        (k,) for k in d if k in ("version", "interval", "match", "cooldown_candles")
    ]
    if isinstance(d.get("conditions"), list):
        out += [("conditions", i, k) for i, c in enumerate(d["conditions"]) if isinstance(c, dict) for k in c]
    if isinstance(d.get("trade"), dict):
        out += [("trade", k) for k in d["trade"]]
    return out


def objects(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = [d]
    if isinstance(d.get("conditions"), list):
        out += [c for c in d["conditions"] if isinstance(c, dict)]
    if isinstance(d.get("trade"), dict):
        out.append(d["trade"])
    return out


def respelled(value: Any, rng: random.Random) -> Any:
    """The same number written otherwise: 30 as 30.0, a float as its exact decimal (or a near twin)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int):
        return Raw(f"{value}.0")
    exact = format(Decimal(value), "f")
    return Raw(exact + ("1" if "." in exact and rng.random() < 0.5 else ""))


def mutate(rng: random.Random, d: dict[str, Any]) -> None:
    r = rng.random()
    fields = scalar_fields(d)
    numbers = [
        p
        for p in fields
        if p[-1] in ("value", "k", "fast", "slow", "notional", "take_profit_pct", "stop_loss_pct")
    ]
    if r < 0.3 and fields:  # a field: near its bounds, or of the wrong type
        path = rng.choice(fields)
        pool = near_bounds(rule_at(d, path), rng) if rng.random() < 0.75 else []
        at(d, path[:-1])[path[-1]] = copy.deepcopy(rng.choice(pool or WRONG))
    elif r < 0.42 and numbers:  # a number at its bounds; slow at fast and beside it
        path = rng.choice(numbers)
        parent, key = at(d, path[:-1]), path[-1]
        if key in ("fast", "slow"):
            other = parent.get("slow" if key == "fast" else "fast")
            if type(other) is int:
                parent[key] = other + rng.choice([-1, 0, 1])
        else:
            parent[key] = copy.deepcopy(rng.choice(near_bounds(rule_at(d, path), rng) or WRONG))
    elif r < 0.52 and isinstance(d.get("symbols"), list) and d["symbols"]:  # an odd or repeated symbol
        symbols = d["symbols"]
        i = rng.randrange(len(symbols))
        if rng.random() < 0.5:
            symbols[i] = copy.deepcopy(rng.choice(BAD_SYMBOLS))
        else:
            s = symbols[rng.randrange(len(symbols))]
            symbols.insert(i, s.swapcase() if isinstance(s, str) and rng.random() < 0.5 else s)
    elif r < 0.6 and isinstance(d.get("conditions"), list) and d["conditions"]:  # a repeated condition
        c = copy.deepcopy(rng.choice(d["conditions"]))
        if isinstance(c, dict):
            c = {k: respelled(v, rng) if rng.random() < 0.6 else v for k, v in c.items()}
        d["conditions"].insert(rng.randrange(len(d["conditions"]) + 1), c)
    elif r < 0.68:  # an unknown key
        target = rng.choice(objects(d))
        target[rng.choice(ODD_KEYS)] = copy.deepcopy(
            rng.choice([*WRONG, nested(rng.choice([30, 31, 32, 33]))])
        )
    elif r < 0.75:  # a missing key
        target = rng.choice(objects(d))
        if target:
            del target[rng.choice(list(target))]
    elif r < 0.82 and isinstance(d.get("trade"), dict):  # exits taken away, the side turned
        plan = d["trade"]
        for key in ("take_profit_pct", "stop_loss_pct", "max_hold_candles"):
            if rng.random() < 0.6:
                plan.pop(key, None)
        if rng.random() < 0.5:
            plan["side"] = "short" if plan.get("side") == "long" else "long"
    elif r < 0.93:  # anything replaced by a value of another type
        path = walk(rng, d)
        if path:
            at(d, path[:-1])[path[-1]] = copy.deepcopy(rng.choice(WRONG))
    else:  # nested junk
        path = walk(rng, d)
        if path:
            at(d, path[:-1])[path[-1]] = nested(
                rng.choice([1, 2, 20, 31, 32, 33, 34, 100, 1000]), rng.choice(WRONG)
            )


def documents() -> list[str]:
    """Whole documents: no object, sizes about 64 kB, long integer literals, deep nesting."""
    text = dump(TEMPLATES[0].as_json())  # as PostgreSQL renders it: ASCII, integers, ", " and ": "
    out = ["[]", '"definition"', "1", "null", "true", "[1, 2]", "{}", '{"version": 1}']
    for size in (65535, 65536, 65537, 70000):
        pad = size - len(text) - len(', "zz": ""')
        out += [text[:-1] + ', "zz": "' + "z" * pad + '"}', text[:-1] + ', "a": "' + "z" * (pad + 1) + '"}']
    for digits in (4299, 4300, 4301, 5000, 20000):
        for sign in ("", "-"):
            number = sign + "9" * digits
            out += [
                text[:-1] + f', "zz": {number}}}',
                text[:-1] + f', "a": [{number}, {sign}{"9" * 5000}]}}',
                text.replace('"notional": 100', f'"notional": {number}'),
                text.replace('"notional": 100', f'"notional": {number}.5'),
                text[:-1] + f', "zz": "{number}"}}',
            ]
    for depth in (31, 32, 33, 34, 40, 100, 1000, 3000):
        out += [
            text[:-1] + f', "zz": {nested(depth).text}}}',
            text[:-1] + f', "zz": "{"[" * depth}"}}',
            nested(depth).text,
        ]
    return out


def corpus(count: int = CASES, seed: int = SEED) -> list[str]:
    """``count`` definitions as JSON text: the documents above, then valid and mutated ones."""
    rng = random.Random(seed)
    out = documents()
    while len(out) < count:
        d = a_definition(rng)
        r = rng.random()
        for _ in range(0 if r < 0.3 else 1 if r < 0.75 else rng.randint(2, 4)):
            mutate(rng, d)
        out.append(dump(d))
    return out


def core(text: str) -> str | None:
    """The core's verdict: None, or its message."""
    try:
        parse_trader(text)
    except TraderDefinitionError as exc:
        return str(exc)
    return None


def judged(db: psycopg.Connection[Any], texts: list[str]) -> list[tuple[str, str | None]]:
    """(PostgreSQL's rendering, the database's answer) of each text, in one round trip."""
    rows = db.execute(
        "select t.x::text, private.trader_definition_problem(t.x)"
        "  from jsonb_array_elements(%s::text::jsonb) with ordinality as t(x, n) order by t.n",
        ("[" + ", ".join(texts) + "]",),
    ).fetchall()
    assert len(rows) == len(texts)
    return [(r[0], r[1]) for r in rows]


# -- the property ------------------------------------------------------------------------------------


def test_the_database_answers_as_the_core_on_10000_definitions(db: psycopg.Connection[Any]) -> None:
    texts = corpus()
    assert len(texts) == CASES and corpus()[-50:] == texts[-50:]  # seeded: the same every run
    answers = judged(db, texts)
    differ = []
    for source, (rendered, answer) in zip(texts, answers, strict=True):
        expected = core(rendered)
        if answer != expected:
            differ.append(f"{source[:200]}\n  core: {expected}\n  database: {answer}")
    assert not differ, f"{len(differ)} of {len(texts)} differ:\n" + "\n".join(differ[:20])

    # The corpus reaches every kind of refusal, and plenty of definitions pass.
    valid = sum(answer is None for _, answer in answers)
    kinds = collections.Counter(
        re.sub(r"\d+|\(.*\)|\".*\"", "#", answer.partition(": ")[2]) for _, answer in answers if answer
    )
    print(f"\n{CASES} definitions: {valid} valid, {CASES - valid} refused")
    assert 0.25 * CASES < valid < 0.5 * CASES
    for problem in (
        "required",
        "unknown field #",
        "must be #",
        "must be an integer between # and #",
        "must be a number between # and #",
        "must be a number greater than # and at most #",
        "must be one of #",
        "must be a JSON object",
        "must be an array of # to # symbols",
        "must be # to # ASCII letters or digits",
        "duplicates symbols[#] #",
        "must be an array of # to # conditions",
        "duplicates conditions[#]",
        "must be greater than fast #",
        "needs at least one exit rule: take_profit_pct, stop_loss_pct or max_hold_candles",
        "not valid JSON #",
        "larger than # bytes",
    ):
        assert kinds[problem] > 0, (problem, kinds)


def test_values_no_client_sends_are_answered_too(db: psycopg.Connection[Any]) -> None:
    """Deep, huge and tiny jsonb built in SQL, and SQL null: answered as the core answers, never raised."""
    rows = db.execute(
        """
        with recursive deep(n, j) as (
          select 0, '1'::jsonb
          union all
          select n + 1, case when n %% 2 = 0 then jsonb_build_array(j) else jsonb_build_object('n', j) end
            from deep where n < 5000
        ),
        cases(i, j) as (
          select 1, j from deep where n = 5000
          union all select 2, j from deep where n = 33
          union all select 3, jsonb_build_object('version', 1e60000::numeric)
          union all select 4, jsonb_build_object('version', -1e100000::numeric)
          union all select 5, %(base)s::jsonb || jsonb_build_object('version', 1e-16000::numeric)
          union all select 6, %(base)s::jsonb || jsonb_build_object('conditions', jsonb_build_array(
              jsonb_build_object('indicator', 'volume_spike', 'period', 14, 'op', '<', 'value', v)))
            from (values (1e-16000::numeric), (1e-320::numeric), (-1e-16000::numeric)) as v(v)
        )
        select j::text, private.trader_definition_problem(j) from cases order by i
        """,
        {"base": json.dumps(DEFINITION)},
    ).fetchall()
    assert [answer for _, answer in rows] == [core(text) for text, _ in rows]
    assert [answer for _, answer in rows] == [
        "definition: not valid JSON (nested 5000 levels deep, more than 32)",
        "definition: not valid JSON (nested 33 levels deep, more than 32)",
        "definition: not valid JSON (Exceeds the limit (4300 digits) for integer string conversion: "
        "value has 60001 digits; use sys.set_int_max_str_digits() to increase the limit)",
        "definition: larger than 65536 bytes",
        "version: must be 1",
        # A float that underflows is zero, not above zero; one that does not is a subnormal double.
        "conditions[0].value: must be a number greater than 0 and at most 1000",
        None,
        "conditions[0].value: must be a number greater than 0 and at most 1000",
    ]
    assert db.execute("select private.trader_definition_problem(null)").fetchone() == (
        "definition: must be a JSON object",
    )


# -- through the API ---------------------------------------------------------------------------------


def stored(db: psycopg.Connection[Any], trader_id: str) -> tuple[str, Any]:
    row = db.execute("select name, definition from public.traders where id = %s", (trader_id,)).fetchone()
    assert row is not None
    return row[0], row[1]


def refusal(definition: Any) -> str:
    """The message the API answers for a definition the core refuses."""
    message = core(json.dumps(definition))
    assert message is not None
    return database_message(message)


INVALID = [
    {**DEFINITION, "conditions": [{"indicator": "rsi", "period": 1, "op": "<", "value": 30}]},
    {**DEFINITION, "symbols": ["BTCUSDT", "btcusdt"]},
    {**DEFINITION, "trade": {"side": "short", "notional": 100, "take_profit_pct": 100}},
    {**DEFINITION, "trade": {"side": "long", "notional": 100}},
    {**DEFINITION, "conditions": [{"indicator": "ema_cross", "fast": 21, "slow": 9, "direction": "up"}]},
    {**DEFINITION, "symbols": ["straße"]},
    {**DEFINITION, "extra key": True},
    {**DEFINITION, "version": 1.0},
    [DEFINITION],
    {},
]


@pytest.mark.parametrize("definition", INVALID, ids=lambda d: (core(json.dumps(d)) or "")[:60])
def test_an_invalid_definition_is_refused_naming_the_field(
    api: Api, actors: Actors, db: psycopg.Connection[Any], definition: Any
) -> None:
    a = actors.make()
    before = db.execute("select count(*) from public.traders where user_id = %s", (a.user_id,)).fetchone()
    r = api.insert("traders", [{"name": "bad", "definition": definition}], a.token)
    assert (r.status, r.code) == (400, GuardError.INVALID_ARGUMENT), r.body
    assert r.body["message"] == refusal(definition)
    after = db.execute("select count(*) from public.traders where user_id = %s", (a.user_id,)).fetchone()
    assert after == before
    # An update is judged the same way and leaves the row as it was.
    old = stored(db, a.trader_id)
    r = api.update("traders", f"id=eq.{a.trader_id}", {"name": "renamed", "definition": definition}, a.token)
    assert (r.status, r.code) == (400, GuardError.INVALID_ARGUMENT), r.body
    assert r.body["message"] == refusal(definition)
    assert stored(db, a.trader_id) == old


def test_the_message_names_the_field_as_the_page_reads_it(api: Api, actors: Actors) -> None:
    a = actors.make()
    bad = {**DEFINITION, "conditions": [DEFINITION["conditions"][0], {"indicator": "rsi", "period": 501}]}
    r = api.insert("traders", [{"name": "bad", "definition": bad}], a.token)
    assert r.body["message"] == "invalid_argument: definition.conditions[1].op: required"
    r = api.insert("traders", [{"name": "bad", "definition": [1]}], a.token)
    assert r.body["message"] == "invalid_argument: definition: must be a JSON object"
    r = api.insert("traders", [{"name": "bad"}], a.token)  # the column's default, {}
    assert r.body["message"] == "invalid_argument: definition.version: required"


def test_a_valid_definition_is_stored_as_sent(api: Api, actors: Actors, db: psycopg.Connection[Any]) -> None:
    a = actors.make()
    for template in TEMPLATES:
        r = api.insert("traders", [{"name": template.name, "definition": template.as_json()}], a.token)
        assert r.status == 201, r.body
        assert stored(db, r.body[0]["id"]) == (template.name, template.as_json())
    edited = {**DEFINITION, "symbols": ["ethusdt", "BTCUSDT"], "cooldown_candles": 10_000}
    r = api.update("traders", f"id=eq.{a.trader_id}", {"definition": edited}, a.token)
    assert r.status == 200 and len(r.body) == 1, r.body
    assert stored(db, a.trader_id)[1] == edited


def stored_invalid(db: psycopg.Connection[Any], a: Actor) -> str:
    """A trader with an invalid definition, written as maintenance (the API is not involved)."""
    tid = str(uuid.uuid4())
    db.execute(
        "insert into public.traders (id, user_id, name, definition) values (%s, %s, 'old', %s)",
        (tid, a.user_id, psycopg.types.json.Jsonb({"version": 1})),
    )
    return tid


def test_a_row_stored_before_the_check_can_be_renamed_and_switched_off_not_edited(
    api: Api, actors: Actors, db: psycopg.Connection[Any]
) -> None:
    a = actors.make()
    tid = stored_invalid(db, a)  # maintenance is not judged
    r = api.update("traders", f"id=eq.{tid}", {"name": "renamed", "enabled": False}, a.token)
    assert r.status == 200 and len(r.body) == 1, r.body
    r = api.update("traders", f"id=eq.{tid}", {"definition": {"version": 2}}, a.token)
    assert (r.status, r.code) == (400, GuardError.INVALID_ARGUMENT), r.body
    assert r.body["message"] == "invalid_argument: definition.symbols: required"
    assert stored(db, tid) == ("renamed", {"version": 1})
    r = api.update("traders", f"id=eq.{tid}", {"definition": DEFINITION}, a.token)
    assert r.status == 200, r.body
    assert stored(db, tid) == ("renamed", DEFINITION)
