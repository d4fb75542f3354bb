"""Bounded JSON decoding: deep nesting is refused before the decoder can recurse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalguard.core import safejson


def test_depth_ignores_brackets_in_strings() -> None:
    assert safejson.nesting_depth('{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert safejson.nesting_depth(r'["\"[[[", []]') == 2
    assert safejson.nesting_depth("42") == 0


@pytest.mark.parametrize("text", ["[" * 60_000, '{"a":' * 8_000, "[" * 33 + "]" * 33])
def test_deep_input_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="levels deep"):
        safejson.loads(text)


def test_ordinary_documents_decode() -> None:
    assert safejson.loads(b'{"e": "kline", "k": {"t": 1}}') == {"e": "kline", "k": {"t": 1}}
    assert safejson.loads("[" * 32 + "]" * 32) == nested(32)
    with pytest.raises(ValueError):
        safejson.loads(b"\xff")


def nested(n: int) -> list[object]:
    out: list[object] = []
    for _ in range(n - 1):
        out = [out]
    return out


@given(
    st.recursive(st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c))
)
def test_agrees_with_json_on_shallow_documents(value: object) -> None:
    import json

    text = json.dumps(value)
    if safejson.nesting_depth(text) <= safejson.MAX_DEPTH:
        assert safejson.loads(text) == json.loads(text)
