"""The starter traders are valid definitions, each what its name says, and copied for editing."""

from __future__ import annotations

import json

import pytest

from signalguard.core.traders import parse_trader
from signalguard.core.traders.templates import TEMPLATES, template


def test_every_template_is_a_definition_the_core_accepts_with_a_paper_trade_plan() -> None:
    assert [t.key for t in TEMPLATES] == ["rsi_oversold", "bollinger_breakout", "volume_spike", "ema_cross"]
    for t in TEMPLATES:
        d = parse_trader(t.as_json())
        assert d.trade is not None and d.trade.stop_loss_pct is not None, t.key
        assert d.symbols and t.name and t.description
        # Stored as JSON, read back the same.
        assert parse_trader(json.loads(json.dumps(t.as_json()))) == d


def test_each_template_looks_for_what_its_name_says() -> None:
    labels = {t.key: parse_trader(t.as_json()).labels for t in TEMPLATES}
    assert labels["rsi_oversold"] == ("RSI(14) < 30",)
    assert labels["bollinger_breakout"] == ("Close > BB(20, 2) upper",)
    assert labels["volume_spike"] == ("Volume > 3x avg(20)", "Price change(1) > 0%")
    assert labels["ema_cross"] == ("EMA(9) crosses above EMA(21)",)


def test_a_template_is_copied_for_editing_and_never_changed() -> None:
    t = template("rsi_oversold")
    edited = t.as_json()
    conditions = edited["conditions"]
    assert isinstance(conditions, list) and isinstance(conditions[0], dict)
    conditions[0]["value"] = 25
    edited["symbols"] = ["SOLUSDT"]
    assert parse_trader(t.as_json()).labels == ("RSI(14) < 30",)
    assert t.as_json()["symbols"] == ["BTCUSDT", "ETHUSDT"]
    with pytest.raises(TypeError):
        t.definition["interval"] = "1m"  # type: ignore[index]


def test_an_unknown_template_is_named_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="no starter trader 'nope'; known: rsi_oversold, bollinger_breakout"):
        template("nope")
