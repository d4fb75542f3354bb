"""Kline messages as hostile JSON text: accepted exactly when valid, refused only with MarketDataError,
and every refusal names the field at fault.

tests/core/test_candles_fuzz.py mutates decoded events and single REST rows. This family works on the
frames a socket delivers and on whole ``GET /api/v3/klines`` responses (never fuzzed before): raw NaN and
5,000-digit literals, keys written twice, thousands of nested brackets, frames past the size limit,
invalid UTF-8, a BOM, and the same event written with other whitespace, key order, escapes or extra
fields (which must give the same candle). It knows where it changed the message, so it checks that the
refusal's leading path (``k.t (open time)``, ``rows[3][4] (close)``, ``message``) points there.
"""

from __future__ import annotations

import copy
import itertools
import json
from datetime import date
from typing import Any

from fuzzkit import (
    STYLES,
    UNDECODABLE,
    WRONG_TYPES,
    Path,
    Tally,
    assert_clear,
    core_cases,
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
from signalguard.core.candles import (
    INTERVALS,
    MAX_MESSAGE_SIZE,
    MONTH,
    SUPPORTED_INTERVALS,
    Candle,
    ErrorCode,
    MarketDataError,
    next_open_time,
    parse_rest_klines,
    parse_ws_kline,
)

CASES = core_cases()
DEPTHS = st.one_of(st.integers(1, 40), st.sampled_from([100, 1000, 5000]))
MONDAY = 1_499_040_000_000  # 2017-07-03T00:00:00Z: aligned for every fixed interval
SYMBOLS = ["BTCUSDT", "ETHBTC", "1000SATSUSDT", "XY", "bnbusdt"]
ORDERED_INTERVALS = sorted(SUPPORTED_INTERVALS)
DECODE_CODES = {ErrorCode.NOT_JSON, ErrorCode.TOO_LARGE}
#: Fields of an event the parser ignores (Binance adds fields over time).
IGNORED = {"E", "f", "L", "n", "q", "V", "Q", "B"}
IGNORED_KEYS = st.lists(st.sampled_from(sorted(IGNORED)), max_size=3)
EXTRA_KEYS = st.lists(st.sampled_from(["E", "M", "z", "é", "<i>"]), max_size=2)
PRICE_FIELDS = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}


def open_time(interval: str, seed: int) -> int:
    if interval == MONTH:
        day = date(2000 + seed % 150, 1 + seed % 12, 1)
        return (day.toordinal() - date(1970, 1, 1).toordinal()) * 86_400_000
    return MONDAY + (seed % 100_000) * INTERVALS[interval]


def prices(seed: int) -> tuple[str, str, str, str, str]:
    scale = 10.0 ** (seed % 13 - 6)
    o, c = 1.5 * scale, (1.0 + (seed % 7) / 10) * scale
    return repr(o), repr(max(o, c) * 1.01), repr(min(o, c) * 0.99), repr(c), repr(seed * 0.25)


def event(seed: int) -> dict[str, Any]:
    """A valid kline event (single-stream form), varied by ``seed``."""
    interval = ORDERED_INTERVALS[seed % len(ORDERED_INTERVALS)]
    t = open_time(interval, seed)
    symbol = SYMBOLS[seed % len(SYMBOLS)]
    o, h, lo, c, v = prices(seed)
    return {
        "e": "kline",
        "E": t + 1,
        "s": symbol,
        "k": {
            "t": t,
            "T": next_open_time(interval, t) - 1,
            "s": symbol,
            "i": interval,
            "f": 1,
            "L": 2,
            "o": o,
            "c": c,
            "h": h,
            "l": lo,
            "v": v,
            "n": 3,
            "x": seed % 2 == 0,
            "q": "0",
        },
    }


def message(seed: int) -> dict[str, Any]:
    ev = event(seed)
    if seed % 3 == 0:
        return {"stream": f"{ev['s'].lower()}@kline_{ev['k']['i']}", "data": ev}
    return ev


def value_paths(doc: Any, prefix: Path = ()) -> list[Path]:
    out: list[Path] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((*prefix, key))
            out += value_paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out.append((*prefix, i))
            out += value_paths(value, (*prefix, i))
    return out


def lead(exc: MarketDataError) -> str:
    """The path a refusal starts with: ``data.k.t (open time)`` of ``data.k.t (open time): ...``."""
    return exc.message.split(": ", 1)[0]


def points_at(where: str, blame: set[str]) -> bool:
    """Whether a refusal's leading path is one of ``blame`` (``k*``: ``k`` or anything inside it)."""
    return any(
        where == b or (b.endswith("*") and (where == b[:-1] or where.startswith(b[:-1] + "."))) for b in blame
    )


def ws_blame(path: Path, wrapped: bool) -> set[str]:
    """Leading paths a refusal of a change at ``path`` may have (None: the change is ignored)."""
    pre = "data." if wrapped else ""
    if wrapped and path[0] == "stream":
        return {"stream"}
    if wrapped:
        path = path[1:]
        if not path:
            return {"data*"}
    head = path[0]
    if head == "e":
        return {f"{pre}e"}
    if head == "s":
        return {f"{pre}s", f"{pre}k.s", "stream"}
    if head == "k" and len(path) == 1:
        return {f"{pre}k*"}
    if head == "k":
        key = str(path[1])
        if key == "s":
            return {f"{pre}k.s", "stream"}
        if key == "i":
            return {f"{pre}k.i", f"{pre}k.t (open time)", f"{pre}k.T (close time)", "stream"}
        if key == "t":
            return {f"{pre}k.t (open time)", f"{pre}k.T (close time)"}
        if key == "T":
            return {f"{pre}k.T (close time)"}
        if key in PRICE_FIELDS:
            return {f"{pre}k.{key} ({PRICE_FIELDS[key]})", f"{pre}k"}
        if key == "x":
            return {f"{pre}k.x"}
    return set()  # an ignored field: any value is fine


class Case:
    """One input, the candle(s) it must give if it is the valid message written differently, and
    where a refusal must point."""

    def __init__(
        self, kind: str, raw: object, expected: object = None, blame: set[str] | None = None
    ) -> None:
        self.kind = kind
        self.raw = raw
        self.expected = expected
        self.blame = blame or set()
        self.may_pass = False

    def __repr__(self) -> str:
        return f"Case({self.kind!r}, {self.raw!r:.500})"


def as_form(draw: st.DrawFn, text: str) -> str | bytes:
    return text.encode() if draw(st.booleans()) else text


@st.composite
def document_damage(draw: st.DrawFn, text: str, limit: int) -> tuple[str, object]:
    """The whole text broken: truncated, trailing bytes, a BOM, invalid UTF-8, oversized."""
    how = pick(draw, ["truncated", "trailing", "bom", "utf8", "oversized", "empty"])
    if how == "truncated":
        return how, as_form(draw, text[: draw(st.integers(0, len(text) - 1))])
    if how == "trailing":
        return how, as_form(draw, text + pick(draw, [" x", "{}", ",", "]", "\x00"]))
    if how == "bom":
        return how, as_form(draw, "\ufeff" + text)
    if how == "utf8":
        cut = draw(st.integers(1, len(text) - 1))
        bad = pick(draw, [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])
        return how, text[:cut].encode() + bad + text[cut:].encode()
    if how == "oversized":
        return how, as_form(draw, text + " " * (limit - len(text) + 1))
    return how, as_form(draw, "")


@st.composite
def mutations(draw: st.DrawFn, doc: Any, blame_of: Any) -> Case:
    """One change of ``doc`` (a valid message) and where its refusal must point."""
    kind = pick(draw, ["wrong", "undecodable", "nested", "long", "dup", "doc", "py"])
    paths = value_paths(doc)
    path = pick(draw, paths)
    blame = blame_of(path)
    members = [p for p in paths if isinstance(p[-1], str)]
    if kind == "dup" and not members:
        kind = "undecodable"  # a REST response has no objects
    if kind == "wrong":
        label, fragment, _ = pick(draw, WRONG_TYPES)
        case = Case(f"wrong:{label}", as_form(draw, with_fragment(doc, path, fragment)), blame=blame)
        case.may_pass = True  # e.g. 1 where a 1 was, or a price within the candle's range
        return case
    if kind == "undecodable":
        label, fragment = pick(draw, UNDECODABLE)
        return Case(
            f"undecodable:{label}", as_form(draw, with_fragment(doc, path, fragment)), blame={"message"}
        )
    if kind == "nested":
        depth = draw(DEPTHS)
        text = with_fragment(
            doc, path, nested(json.dumps(get(doc, path)), depth, objects=draw(st.booleans()))
        )
        if safejson.nesting_depth(text) > safejson.MAX_DEPTH:
            return Case("nested:too deep", as_form(draw, text), blame={"message"})
        return Case("nested:wrong shape", as_form(draw, text), blame=blame)
    if kind == "long":
        length = pick(draw, [50, 5_000, MAX_MESSAGE_SIZE + 10])
        char = pick(draw, ["1", "x", "é", "\\u0000"])
        raw = as_form(draw, with_fragment(doc, path, '"' + char * length + '"'))
        if len(raw) > MAX_MESSAGE_SIZE:
            return Case("long:oversized", raw, blame={"message"})
        case = Case("long:string", raw, blame=blame)
        case.may_pass = char == "1"  # a long run of digits is a (huge) decimal number
        return case
    if kind == "dup":
        member = pick(draw, members)
        second = pick(draw, [json.dumps(get(doc, member)), "null", '"x"', "1"])
        return Case("duplicate key", as_form(draw, with_duplicate(doc, member, second)), blame={"message"})
    if kind == "doc":
        how, raw = draw(document_damage(render(doc, STYLES[0]), MAX_MESSAGE_SIZE))
        return Case(f"doc:{how}", raw, blame={"message"})
    out = copy.deepcopy(doc)
    get(out, path[:-1])[path[-1]] = pick(draw, [float("nan"), 10**400, object(), b"1", (1, 2), {1}])
    case = Case("python value", out, blame=blame)
    return case


@st.composite
def ws_cases(draw: st.DrawFn) -> Case:
    seed = draw(st.integers(0, 10**6))
    doc = message(seed)
    expected = parse_ws_kline(doc)
    wrapped = "stream" in doc
    if draw(st.integers(0, 9)) < 3:
        # The same event written differently, with fields the parser ignores changed or added.
        same = copy.deepcopy(doc)
        ev = same["data"] if wrapped else same
        for key in draw(IGNORED_KEYS):
            ev["k"][key] = pick(draw, [None, "x", 1.5, [], {"a": 1}, "<b>"])
        for key in draw(EXTRA_KEYS):
            ev[key] = pick(draw, [None, 1, "x", [1]])
        form = draw(st.integers(0, 2))
        text = render(same, pick(draw, STYLES))
        return Case("same", same if form == 0 else text if form == 1 else text.encode(), expected)
    if draw(st.integers(0, 9)) == 0:
        # A member added to the event or its kline: ignored, whatever it holds.
        where: Path = ("data",) if wrapped else ()
        if draw(st.booleans()):
            where = (*where, "k")
        key = pick(draw, ["zz", "<img src=x>", "", "\u202e", "w" * 100])
        fragment = pick(draw, ["null", '"x"', "[[[]]]", "1e400", '{"e": "kline"}'])
        return Case("extra member", as_form(draw, with_key(doc, where, key, fragment)), expected)
    return draw(mutations(doc, lambda path: ws_blame(path, wrapped)))


def check_ws(case: Case, tally: Tally) -> None:
    try:
        candle = parse_ws_kline(case.raw)
    except MarketDataError as exc:
        tally.reject(case.kind)
        assert case.expected is None, f"{case.kind}: refused a valid message: {exc}"
        assert isinstance(exc.code, ErrorCode) and str(exc) == exc.message
        assert_clear(exc.message, [": "])
        where = lead(exc)
        if case.blame == {"message"}:
            assert where == "message" and exc.code in DECODE_CODES, f"{case.kind}: {exc}"
        else:
            assert case.blame, f"{case.kind}: a change of an ignored field was refused: {exc}"
            assert points_at(where, case.blame), f"{case.kind}: {exc} does not point at {sorted(case.blame)}"
        return
    tally.accept()
    assert isinstance(candle, Candle)
    if case.expected is not None:
        assert candle == case.expected
    else:
        assert case.may_pass or not case.blame, f"{case.kind}: accepted {case.raw!r:.300}"


def test_kline_frames_are_accepted_or_refused_at_the_field() -> None:
    tally = Tally()

    @fuzz_settings(CASES)
    @given(ws_cases())
    def run(case: Case) -> None:
        check_ws(case, tally)

    run()
    print(f"\nkline frames: {tally.summary()}")
    tally.check(CASES)


# -- REST responses -------------------------------------------------------------------------------

REST_NAMES = {0: "open time", 1: "open", 2: "high", 3: "low", 4: "close", 5: "volume", 6: "close time"}


def rest_response(seed: int) -> tuple[list[list[Any]], str, str, int]:
    """A valid response of 1 to 12 consecutive rows, its symbol, interval and a clock after it."""
    interval = ORDERED_INTERVALS[seed % len(ORDERED_INTERVALS)]
    t = open_time(interval, seed)
    rows: list[list[Any]] = []
    for i in range(1 + seed % 12):
        o, h, lo, c, v = prices(seed + i)
        close = next_open_time(interval, t) - 1
        rows.append([t, o, h, lo, c, v, close, "0", 5, "0", "0", "0"])
        t = close + 1
    now = rows[-1][6] + 1 - (seed % 2) * 2  # after the last close, or just before it
    return rows, SYMBOLS[seed % len(SYMBOLS)], interval, now


def rest_blame(path: Path) -> set[str]:
    if len(path) == 1:
        i = int(path[0])
        return {f"rows[{i}]", f"rows[{i}][0] (open time)", f"rows[{i + 1}][0] (open time)"}
    i, j = int(path[0]), int(path[1])
    if j > 6:
        return set()  # fields after the seventh are not read
    out = {f"rows[{i}][{j}] ({REST_NAMES[j]})", f"rows[{i}]"}
    if j == 0:
        out |= {f"rows[{i}][6] (close time)", f"rows[{i + 1}][0] (open time)"}
    return out


@st.composite
def rest_cases(draw: st.DrawFn) -> tuple[Case, str, str, int]:
    seed = draw(st.integers(0, 10**6))
    rows, symbol, interval, now = rest_response(seed)
    expected = parse_rest_klines(rows, symbol=symbol, interval=interval, now_ms=now)
    choice = draw(st.integers(0, 9))
    if choice < 3:
        form = draw(st.integers(0, 2))
        text = render(rows, pick(draw, STYLES))
        case = Case("same", rows if form == 0 else text if form == 1 else text.encode(), expected)
    elif choice == 3 and len(rows) > 1:
        # Rows out of order or repeated: refused at the first row that is not after its predecessor.
        i = draw(st.integers(1, len(rows) - 1))
        changed = copy.deepcopy(rows)
        changed[i] = copy.deepcopy(rows[draw(st.integers(0, i - 1))])
        case = Case("sequence", as_form(draw, json.dumps(changed)), blame={f"rows[{i}][0] (open time)"})
    elif choice == 4:
        fragment = pick(draw, ['{"rows": []}', '"x"', "null", "1", '{"code": -1121, "msg": "x"}'])
        case = Case("not an array", as_form(draw, fragment), blame={"rows"})
    else:
        case = draw(mutations(rows, rest_blame))
    return case, symbol, interval, now


def check_rest(case: Case, symbol: str, interval: str, now: int, tally: Tally) -> None:
    try:
        candles = parse_rest_klines(case.raw, symbol=symbol, interval=interval, now_ms=now)
    except MarketDataError as exc:
        tally.reject(case.kind)
        assert case.expected is None, f"{case.kind}: refused a valid response: {exc}"
        assert isinstance(exc.code, ErrorCode)
        assert_clear(exc.message, [": "])
        where = lead(exc)
        if case.blame == {"message"}:
            assert where == "message" and exc.code in DECODE_CODES, f"{case.kind}: {exc}"
        else:
            assert case.blame, f"{case.kind}: a change of an unread field was refused: {exc}"
            assert points_at(where, case.blame), f"{case.kind}: {exc} does not point at {sorted(case.blame)}"
        return
    tally.accept()
    assert all(isinstance(c, Candle) for c in candles)
    assert all(a.open_time < b.open_time for a, b in itertools.pairwise(candles))
    if case.expected is not None:
        assert candles == case.expected
    else:
        assert case.may_pass or not case.blame, f"{case.kind}: accepted {case.raw!r:.300}"


def test_kline_responses_are_accepted_or_refused_at_the_row() -> None:
    tally = Tally()

    @fuzz_settings(CASES)
    @given(rest_cases())
    def run(generated: tuple[Case, str, str, int]) -> None:
        check_rest(*generated, tally)

    run()
    print(f"\nkline responses: {tally.summary()}")
    tally.check(CASES)
