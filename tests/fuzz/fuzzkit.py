"""Helpers of the fuzz tests: case counts, tallies, clear-message checks and JSON text surgery.

Every family here feeds a reader documents that are valid, almost valid and hostile, and asserts that
each one is either accepted (and then correct) or rejected with the reader's documented error, whose
message is one printable line naming the field at fault. A tally of accepted and rejected cases makes
sure that both paths were exercised, so that a family cannot pass by rejecting (or accepting)
everything.

JSON text surgery builds documents that no ``json.dumps`` makes: a raw fragment (``NaN``, a 5,000-digit
number, 2,000 nested brackets) at one place of an otherwise valid document, a key written twice, a
document rendered with other whitespace, key order and string escapes.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Set to run every family with this many cases (the HTTP family runs fewer by default).
CASES_VARIABLE: Final = "SIGNALGUARD_FUZZ_CASES"
#: Cases of each in-process family: never fewer, whatever the variable says.
CORE_CASES: Final = 10_000
#: Longest rejection message accepted as "clear": a message quotes at most a short piece of the input.
MAX_MESSAGE: Final = 600

_SOUP: Final = re.compile(r" at 0x[0-9a-fA-F]+|Traceback|<class '|<object ")


def cases(default: int) -> int:
    """The number of cases to run: ``SIGNALGUARD_FUZZ_CASES`` if set, else ``default``."""
    raw = os.environ.get(CASES_VARIABLE, "").strip()
    return int(raw) if raw else default


def core_cases() -> int:
    """Cases of an in-process family: at least :data:`CORE_CASES`."""
    return max(CORE_CASES, cases(CORE_CASES))


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings of a family: a fixed seed, no example database, no deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


T = TypeVar("T")


def pick(draw: st.DrawFn, items: Sequence[T]) -> T:
    """One of ``items``: an index draw, much cheaper than building ``st.sampled_from`` per case."""
    return items[draw(st.integers(0, len(items) - 1))]


@dataclass
class Tally:
    """How many cases were accepted and rejected, and the rejections by reason."""

    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def accept(self) -> None:
        self.accepted += 1

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1

    def judge(self, judgement: Callable[[], None]) -> None:
        """Run one case's judgement (it tallies itself, or fails the test)."""
        judgement()

    @property
    def total(self) -> int:
        return self.accepted + self.rejected

    def summary(self) -> str:
        top = ", ".join(f"{k}: {v}" for k, v in self.reasons.most_common(8))
        return f"{self.total} cases, {self.accepted} accepted, {self.rejected} rejected ({top})"

    def check(self, cases: int, *, share: float = 0.10) -> None:
        """At least ``cases`` cases ran, and each of accept and reject took ``share`` of them."""
        assert self.total >= cases, f"only {self.summary()}"
        assert self.accepted >= share * self.total, f"too few accepted: {self.summary()}"
        assert self.rejected >= share * self.total, f"too few rejected: {self.summary()}"


def assert_clear(message: str, names: Iterable[str] = ()) -> None:
    """A rejection message a person can act on: one printable, bounded line naming a field."""
    assert message, "empty rejection message"
    assert message.isprintable(), f"rejection message is not one printable line: {message[:200]!r}"
    assert len(message) <= MAX_MESSAGE, f"rejection message of {len(message)} characters: {message[:200]!r}"
    assert not _SOUP.search(message), f"rejection message shows internals: {message[:200]!r}"
    wanted = list(names)
    if wanted:
        assert any(n in message for n in wanted), f"{message[:200]!r} names none of {wanted}"


# -- JSON text surgery -----------------------------------------------------------------------------

Path = tuple[str | int, ...]
_SLOT: Final = "\x00fuzz-slot\x00"
_SLOT_JSON: Final = json.dumps(_SLOT)


def get(doc: Any, path: Path) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _slotted(doc: Any, path: Path) -> tuple[Any, Any]:
    """A copy of ``doc`` with the slot at ``path``, and the value that was there."""
    out = copy.deepcopy(doc)
    parent = get(out, path[:-1])
    old = parent[path[-1]]
    parent[path[-1]] = _SLOT
    return out, old


def with_fragment(doc: Any, path: Path, fragment: str) -> str:
    """``doc`` as JSON text with the raw text ``fragment`` as the value at ``path``."""
    if not path:
        return fragment
    out, _ = _slotted(doc, path)
    return json.dumps(out).replace(_SLOT_JSON, fragment, 1)


def with_duplicate(doc: Any, path: Path, second: str) -> str:
    """``doc`` as JSON text with the key at ``path`` written twice, the second time as ``second``."""
    out, old = _slotted(doc, path)
    pair = f"{json.dumps(old)}, {json.dumps(path[-1])}: {second}"
    return json.dumps(out).replace(_SLOT_JSON, pair, 1)


def with_key(doc: Any, path: Path, key: str, fragment: str) -> str:
    """``doc`` as JSON text with one more member ``key: fragment`` in the object at ``path``."""
    out = copy.deepcopy(doc)
    target = get(out, path)
    assert isinstance(target, dict) and key not in target
    target[key] = _SLOT
    return json.dumps(out).replace(_SLOT_JSON, fragment, 1)


def nested(inner: str, depth: int, *, objects: bool = False) -> str:
    """``inner`` wrapped in ``depth`` arrays (or single-member objects)."""
    if objects:
        return '{"a": ' * depth + inner + "}" * depth
    return "[" * depth + inner + "]" * depth


def depth_of(doc: Any) -> int:
    """Nesting depth of a decoded document (a scalar is 0)."""
    if isinstance(doc, dict):
        return 1 + max((depth_of(v) for v in doc.values()), default=0)
    if isinstance(doc, list):
        return 1 + max((depth_of(v) for v in doc), default=0)
    return 0


@dataclass(frozen=True)
class Style:
    """How :func:`render` writes a document: separators, key order, string escapes."""

    item: str = ", "
    colon: str = ": "
    reverse_keys: bool = False
    escape: bool = False
    pad: str = ""


STYLES: Final[Sequence[Style]] = (
    Style(),
    Style(",", ":"),
    Style(" ,\n\t", " :\r\n ", reverse_keys=True),
    Style(escape=True),
    Style(",", ":", reverse_keys=True, escape=True, pad=" \n"),
    Style(pad=" " * 200),
)


def _string(s: str, escape: bool) -> str:
    if not escape:
        return json.dumps(s, ensure_ascii=False)
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else json.dumps(c)[1:-1] for c in s) + '"'


def render(doc: Any, style: Style) -> str:
    """``doc`` as JSON text in ``style`` (a different text of the same document)."""

    def go(v: Any) -> str:
        if isinstance(v, dict):
            keys = list(v)[::-1] if style.reverse_keys else list(v)
            members = (f"{_string(k, style.escape)}{style.colon}{go(v[k])}" for k in keys)
            return "{" + style.item.join(members) + "}"
        if isinstance(v, list):
            return "[" + style.item.join(go(x) for x in v) + "]"
        if isinstance(v, str):
            return _string(v, style.escape)
        return json.dumps(v)

    return style.pad + go(doc) + style.pad


# Fragments that replace one value of a document. Each is (label, text, may_be_valid): a fragment
# that is a valid value of some field may be accepted; the others must be refused where they are.
WRONG_TYPES: Final = (
    ("null", "null", False),
    ("true", "true", False),
    ("false", "false", False),
    ("empty object", "{}", False),
    ("empty array", "[]", False),
    ("object", '{"a": 1}', False),
    ("number string", '"14"', True),  # a valid symbol
    ("empty string", '""', False),
    ("negative", "-1", True),
    ("zero", "0", True),
    ("one", "1", True),
    ("fraction", "0.5", True),
    ("float 1e400", "1e400", False),
    ("float -1e400", "-1e400", False),
    ("tiny", "5e-324", True),
    ("lone surrogate", '"\\ud800"', False),
    ("nul", '"\\u0000"', False),
    ("bidi", '"\\u202eTDSUCTB"', False),
    ("dotless i", '"b\\u0131tusdt"', False),
    ("markup", '"<img src=x onerror=alert(1)>"', False),
    ("emoji", '"\\ud83d\\ude80"', False),
)
#: Fragments that JSON readers must refuse before looking at any field.
UNDECODABLE: Final = (
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("-Infinity", "-Infinity"),
    ("bare word", "nope"),
    ("single quotes", "'x'"),
    ("trailing comma", "[1,]"),
    ("hex", "0x10"),
    ("leading zero", "012"),
    ("raw newline in string", '"a\nb"'),
    ("bad escape", '"\\x41"'),
    ("unterminated", '"abc'),
    ("huge integer", "1" + "0" * 5000),
)
