"""JSON decoding with a bound on nesting, the same on CPython and in Pyodide.

CPython's decoder raises :class:`RecursionError` on absurdly nested input, but in Pyodide the same
input exhausts the JavaScript stack first and kills the interpreter: one hostile kline message or
trader definition would take the tab's Python down. So nesting is measured before decoding, with a
linear scan that skips string contents, and anything deeper than the formats need is refused as
:class:`ValueError` like any other malformed JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

#: Deeper than any message or definition this project reads (those need 4 or 5 levels).
MAX_DEPTH: Final = 32

_STRINGS_OR_BRACKETS: Final = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets inside strings don't count)."""
    depth = deepest = 0
    for match in _STRINGS_OR_BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif token in "]}":
            depth -= 1
    return deepest


def loads(
    text: str | bytes | bytearray,
    *,
    max_depth: int = MAX_DEPTH,
    parse_constant: Callable[[str], Any] | None = None,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """:func:`json.loads`, refusing input nested deeper than ``max_depth`` (a ``ValueError``)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError
    depth = nesting_depth(text)
    if depth > max_depth:
        raise ValueError(f"nested {depth} levels deep, more than {max_depth}")
    return json.loads(text, parse_constant=parse_constant, object_pairs_hook=object_pairs_hook)
