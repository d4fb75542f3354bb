"""Trader definitions as hostile JSON text: accepted exactly when valid, refused only with
TraderDefinitionError, and every refusal names the field at fault.

tests/core/test_traders_fuzz.py mutates decoded definitions and checks that nothing but
TraderDefinitionError escapes. This family works on the text a database row or a file holds (NaN and
5,000-digit literals, keys written twice, thousands of nested brackets, oversized documents, invalid
UTF-8, a BOM) and on Python values no JSON decoder makes, and it knows where it changed the document,
so it checks that the refusal points there: a broken ``conditions[2].period`` must not be reported as
``symbols`` or as the whole definition.
"""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from typing import Any

from fuzzkit import (
    STYLES,
    UNDECODABLE,
    WRONG_TYPES,
    Path,
    Tally,
    assert_clear,
    core_cases,
    depth_of,
    fuzz_settings,
    get,
    nested,
    pick,
    render,
    with_duplicate,
    with_fragment,
    with_key,
)
from hypothesis import given
from hypothesis import strategies as st

from signalguard.core import safejson
from signalguard.core.traders import (
    MAX_DEFINITION_SIZE,
    TraderDefinition,
    TraderDefinitionError,
    parse_trader,
)

CASES = core_cases()
DEPTHS = st.one_of(st.integers(1, 40), st.sampled_from([100, 1000, 5000]))

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
SYMBOLS = ["BTCUSDT", "ETHUSDT", "1000SATSUSDT", "XY", "bnbbtc", "SOLUSDT"]
INTERVALS = ["1s", "1m", "5m", "1h", "4h", "1d", "1w", "1M"]
ROOT_KEYS = ("version", "symbols", "interval", "match", "cooldown_candles", "conditions")
CONDITION_KEYS = ("indicator", "period", "op", "value", "k", "band", "fast", "slow", "signal", "direction")
PATH_SYNTAX = re.compile(
    r'^[A-Za-z_][A-Za-z0-9_]{0,39}(?:\[(?:\d+|"(?:[^"\\]|\\.)*")\]|\.[A-Za-z_][A-Za-z0-9_]{0,39})*$'
)
# Python values no JSON decoder makes, for callers that hand over objects.
EXOTIC: list[Any] = [
    Decimal("14"),
    Decimal("NaN"),
    {1, 2},
    b"BTCUSDT",
    bytearray(b"1m"),
    1 + 0j,
    object(),
    float("nan"),
    float("-inf"),
    10**400,
    True,
    {1: "x"},
    frozenset(),
]


def template(seed: int) -> dict[str, Any]:
    """A valid definition, varied by ``seed``."""
    count = 1 + seed % 4
    conditions = [copy.deepcopy(CONDITIONS[(seed + 3 * i) % len(CONDITIONS)]) for i in range(count)]
    doc: dict[str, Any] = {
        "version": 1,
        "symbols": [SYMBOLS[(seed + i) % len(SYMBOLS)] for i in range(1 + seed % 3)],
        "interval": INTERVALS[seed % len(INTERVALS)],
        "conditions": conditions,
    }
    if seed % 2:
        doc["match"] = ["all", "any"][seed // 2 % 2]
    if seed % 3:
        doc["cooldown_candles"] = seed % 10_001
    return doc


def value_paths(doc: Any, prefix: Path = ()) -> list[Path]:
    """Every value's path in ``doc`` (not the root)."""
    out: list[Path] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out.append((*prefix, key))
        out += value_paths(value, (*prefix, key))
    return out


def blame(path: Path) -> str:
    """Where a refusal of a change at ``path`` must point: the field, or the element it is in."""
    if path[0] in ("conditions", "symbols") and len(path) > 1:
        return f"{path[0]}[{path[1]}]"
    return str(path[0])


def object_paths(doc: dict[str, Any]) -> list[Path]:
    return [(), *[("conditions", i) for i in range(len(doc["conditions"]))]]


hostile_keys = st.one_of(
    st.sampled_from(
        [
            "<img src=x onerror=alert(1)>",
            "<script>x</script>",
            "",
            " ",
            "a b",
            "Version",
            "symbols ",
            "__proto__",
            "constructor",
            "x" * 300,
            "\ud800",
            "\u202eabc",
            "\x00",
            "ok_identifier",
            "période",
        ]
    ),
    st.text(max_size=50),
)

UNKNOWN_ROOT_KEYS = hostile_keys.filter(lambda k: k not in ROOT_KEYS)
UNKNOWN_CONDITION_KEYS = hostile_keys.filter(lambda k: k not in CONDITION_KEYS)


class Case:
    """One input, with what the reader must do with it."""

    def __init__(self, kind: str, raw: object, expected: TraderDefinition | None, *, blame: str = "") -> None:
        self.kind = kind
        self.raw = raw
        #: For documents that are the template written differently: the definition they must give.
        self.expected = expected
        #: Where a refusal must point ("definition" for the document as a whole); "" if it may pass.
        self.blame = blame
        self.may_pass = False
        self.problem = ""
        #: For an unknown key: the key, and the object it was added to.
        self.unknown_key: str | None = None
        self.unknown_in = ""
        self.duplicate_of: int | None = None

    def __repr__(self) -> str:
        return f"Case({self.kind!r}, {self.raw!r:.500})"


def as_form(draw: st.DrawFn, text: str) -> str | bytes:
    return text.encode() if draw(st.booleans()) else text


@st.composite
def cases(draw: st.DrawFn) -> Case:
    doc = template(draw(st.integers(0, 10**6)))
    expected = parse_trader(doc)
    kind = pick(draw, ["same"] * 3 + ["wrong", "undecodable", "nested", "long", "dup", "key", "doc", "py"])
    if kind == "same":
        style = pick(draw, STYLES)
        form = draw(st.integers(0, 2))
        raw: object = doc if form == 0 else render(doc, style)
        if form == 2:
            raw = render(doc, style).encode()
        return Case(kind, raw, expected)
    paths = value_paths(doc)
    path = pick(draw, paths)
    if kind == "wrong":
        label, fragment, may_be_valid = pick(draw, WRONG_TYPES)
        case = Case(
            f"wrong:{label}", as_form(draw, with_fragment(doc, path, fragment)), None, blame=blame(path)
        )
        case.may_pass = may_be_valid
        if path[0] == "conditions" and len(path) > 2:
            case.duplicate_of = int(path[1])
        return case
    if kind == "undecodable":
        label, fragment = pick(draw, UNDECODABLE)
        return Case(
            f"undecodable:{label}",
            as_form(draw, with_fragment(doc, path, fragment)),
            None,
            blame="definition",
        )
    if kind == "nested":
        depth = draw(DEPTHS)
        objects = draw(st.booleans())
        text = with_fragment(doc, path, nested(json.dumps(get(doc, path)), depth, objects=objects))
        total = safejson.nesting_depth(text)
        if total > safejson.MAX_DEPTH:
            case = Case("nested:too deep", as_form(draw, text), None, blame="definition")
            case.problem = "nested"
            return case
        return Case("nested:wrong shape", as_form(draw, text), None, blame=blame(path))
    if kind == "long":
        length = pick(draw, [50, 5_000, MAX_DEFINITION_SIZE + 10])
        char = pick(draw, ["x", "A", "é", "\\u0000", "<"])
        raw = as_form(draw, with_fragment(doc, path, '"' + char * length + '"'))
        if len(raw) > MAX_DEFINITION_SIZE:
            case = Case("long:oversized", raw, None, blame="definition")
            case.problem = "larger than"
            return case
        return Case("long:string", raw, None, blame=blame(path))
    if kind == "dup":
        members = [p for p in paths if isinstance(p[-1], str)]
        member = pick(draw, members)
        second = pick(draw, [json.dumps(get(doc, member)), "null", '"x"', "1"])
        case = Case(
            "duplicate key", as_form(draw, with_duplicate(doc, member, second)), None, blame="definition"
        )
        case.problem = "duplicate key"
        return case
    if kind == "key":
        where = pick(draw, object_paths(doc))
        key = draw(UNKNOWN_ROOT_KEYS if not where else UNKNOWN_CONDITION_KEYS)
        value = pick(draw, ["1", "null", '"x"', "[]", "{}"])
        case = Case("unknown key", as_form(draw, with_key(doc, where, key, value)), None)
        case.unknown_key = key
        case.unknown_in = "definition" if not where else f"conditions[{where[1]}]"
        case.problem = "unknown field"
        return case
    if kind == "doc":
        text = render(doc, STYLES[0])
        how = pick(
            draw, ["truncated", "trailing", "bom", "utf8", "oversized", "array", "string", "number", "empty"]
        )
        raw = text
        if how == "truncated":
            raw = text[: draw(st.integers(0, len(text) - 1))]
        elif how == "trailing":
            raw = text + pick(draw, [" x", "{}", ",", "]", "\x00"])
        elif how == "bom":
            raw = "\ufeff" + text
        elif how == "utf8":
            cut = draw(st.integers(1, len(text) - 1))
            bad = pick(draw, [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
            return Case(
                "doc:invalid utf-8", text[:cut].encode() + bad + text[cut:].encode(), None, blame="definition"
            )
        elif how == "oversized":
            raw = text + " " * (MAX_DEFINITION_SIZE - len(text) + 1)
        elif how == "array":
            raw = f"[{text}]"
        elif how == "string":
            raw = json.dumps(text)
        elif how == "number":
            raw = "1"
        elif how == "empty":
            raw = ""
        return Case(f"doc:{how}", as_form(draw, raw), None, blame="definition")
    # A Python value no decoder makes, where a JSON value belongs.
    out = copy.deepcopy(doc)
    get(out, path[:-1])[path[-1]] = pick(draw, EXOTIC)
    case = Case("python value", out, None, blame=blame(path))
    if path[0] == "conditions" and len(path) > 2:
        case.duplicate_of = int(path[1])
    return case


def check(case: Case, tally: Tally) -> None:
    try:
        definition = parse_trader(case.raw)
    except TraderDefinitionError as exc:
        tally.reject(case.kind)
        assert case.expected is None, f"{case.kind}: refused a valid definition: {exc}"
        assert exc.path and exc.problem and str(exc) == f"{exc.path}: {exc.problem}"
        assert PATH_SYNTAX.match(exc.path), f"path {exc.path!r} is not a field path"
        assert_clear(str(exc), [exc.path])
        pointed = exc.path.startswith(case.blame) if case.blame != "definition" else exc.path == "definition"
        if case.unknown_key is not None:
            key = case.unknown_key
            quoted = f"{case.unknown_in}[{json.dumps(key if len(key) <= 40 else key[:37] + '...')}]"
            plain = key if case.unknown_in == "definition" else f"{case.unknown_in}.{key}"
            pointed = exc.path in (quoted, plain)
        if case.duplicate_of is not None and exc.problem == f"duplicates conditions[{case.duplicate_of}]":
            pointed = True  # the changed condition became a copy of a later one
        assert pointed, f"{case.kind}: the refusal {str(exc)!r} does not point at {case.blame!r}"
        assert case.problem in exc.problem, f"{case.kind}: {exc} is not about {case.problem!r}"
        return
    tally.accept()
    assert isinstance(definition, TraderDefinition)
    if case.expected is not None:
        assert definition == case.expected
    else:
        assert case.may_pass, f"{case.kind}: accepted {case.raw!r:.300}"
    assert parse_trader(json.dumps(definition.to_json())) == definition


def test_definition_text_is_accepted_or_refused_at_the_field() -> None:
    tally = Tally()

    @fuzz_settings(CASES)
    @given(cases())
    def run(case: Case) -> None:
        check(case, tally)

    run()
    print(f"\ntrader definitions: {tally.summary()}")
    tally.check(CASES)
    assert depth_of(template(0)) < safejson.MAX_DEPTH
