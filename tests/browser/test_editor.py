"""The trader editor's model: typed fields, the core's messages by field, templates, kept drafts."""

from __future__ import annotations

import json

import pytest

from signalguard.browser.editor import DEFAULT_CONDITIONS, Draft, FieldKind, draft_key, problems
from signalguard.core.traders import parse_trader
from signalguard.core.traders.templates import TEMPLATES


def test_every_template_and_default_condition_makes_a_valid_trader() -> None:
    for t in TEMPLATES:
        draft = Draft.new(t.key)
        assert draft.valid(), t.key
        assert draft.form().summary
    for indicator in DEFAULT_CONDITIONS:
        draft = Draft.new()
        draft.set_indicator(0, indicator)
        assert draft.valid(), indicator
        assert draft.definition["conditions"][0]["indicator"] == indicator  # type: ignore[index,call-overload]


def test_a_new_draft_is_a_copy_of_its_template() -> None:
    draft = Draft.new("rsi_oversold")
    draft.set_field("conditions[0].value", "20")
    assert Draft.new("rsi_oversold").definition["conditions"] == [
        {"indicator": "rsi", "period": 14, "op": "<", "value": 30}
    ]


@pytest.mark.parametrize(
    ("typed", "kind", "stored"),
    [
        ("14", FieldKind.INTEGER, 14),
        (" 14 ", FieldKind.INTEGER, 14),
        ("14.0", FieldKind.INTEGER, 14.0),
        ("2.5", FieldKind.NUMBER, 2.5),
        ("-3", FieldKind.NUMBER, -3),
        ("1e3", FieldKind.NUMBER, 1000.0),
        ("abc", FieldKind.NUMBER, "abc"),
        ("1e999", FieldKind.NUMBER, "1e999"),
        ("nan", FieldKind.NUMBER, "nan"),
    ],
)
def test_typed_text_keeps_what_was_written(typed: str, kind: FieldKind, stored: object) -> None:
    draft = Draft.new()
    path = "conditions[0].period" if kind is FieldKind.INTEGER else "conditions[0].value"
    draft.set_field(path, typed)
    value = draft.definition["conditions"][0]  # type: ignore[index]
    assert value[path.rsplit(".", 1)[1]] == stored  # type: ignore[call-overload]
    assert type(value[path.rsplit(".", 1)[1]]) is type(stored)  # type: ignore[call-overload]


def test_every_faulty_field_gets_its_own_message() -> None:
    draft = Draft.new()
    draft.set_field("conditions[0].period", "1")
    draft.set_field("conditions[0].value", "abc")
    draft.add_condition("ema_cross")
    draft.set_field("conditions[1].slow", "5")
    draft.set_field("name", "  ")
    found = draft.problems()
    assert found == {
        "name": "required",
        "conditions[0].period": "must be an integer between 2 and 500",
        "conditions[0].value": "must be a number between 0 and 100",
        "conditions[1].slow": "must be greater than fast (9)",
    }
    form = draft.form()
    assert not form.valid
    by_path = {f.path: f for g in form.conditions for f in g.fields}
    assert by_path["conditions[0].value"].error == "must be a number between 0 and 100"
    assert by_path["conditions[0].value"].value == "abc"
    assert form.general[0].error == "required"
    assert form.error == ""  # every message sits by its field


def test_an_empty_field_removes_its_key_and_the_validator_says_so() -> None:
    draft = Draft.new()
    draft.set_field("conditions[0].op", "")
    assert "op" not in draft.definition["conditions"][0]  # type: ignore[operator,index]
    assert draft.problems() == {"conditions[0].op": "required"}
    draft.set_field("cooldown_candles", "")
    assert "cooldown_candles" not in draft.definition


def test_the_page_refuses_exactly_what_the_core_refuses() -> None:
    draft = Draft.new("volume_spike")
    for text in ("0", "1001", "x", "2"):
        draft.set_field("conditions[0].value", text)
        try:
            parse_trader(draft.definition)
        except ValueError:
            core_ok = False
        else:
            core_ok = True
        assert draft.valid() is core_ok, text


def test_the_trade_plan_can_be_added_and_needs_an_exit() -> None:
    draft = Draft.new()
    draft.set_trade(False)
    assert "trade" not in draft.definition and draft.valid()
    assert draft.form().trade == ()
    draft.set_trade(True)
    assert draft.valid()
    for key in ("take_profit_pct", "stop_loss_pct", "max_hold_candles"):
        draft.set_field(f"trade.{key}", "")
    assert draft.problems() == {
        "trade": "needs at least one exit rule: take_profit_pct, stop_loss_pct or max_hold_candles"
    }
    assert draft.form().trade_error.startswith("needs at least one exit rule")
    draft.set_field("trade.max_hold_candles", "10")
    draft.set_field("trade.side", "sideways")
    assert draft.problems() == {"trade.side": 'must be one of "long", "short"'}


def test_symbols_are_added_once_upper_cased_and_checked_each() -> None:
    draft = Draft.new()
    assert not draft.add_symbol("btcusdt")  # already there
    assert draft.add_symbol(" solusdt ")
    assert draft.add_symbol("no-such!")
    form = draft.form()
    assert form.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT", "NO-SUCH!")
    assert form.symbol_errors[3] == "must be 2 to 20 ASCII letters or digits"
    draft.remove_symbol(3)
    draft.remove_symbol(0)
    draft.remove_symbol(0)
    draft.remove_symbol(0)
    assert draft.problems() == {"symbols": "must be an array of 1 to 500 symbols"}
    assert draft.form().symbols_error


def test_switching_indicator_keeps_periods_not_thresholds() -> None:
    draft = Draft.new()
    draft.set_field("conditions[0].period", "7")
    draft.set_field("conditions[0].value", "25")
    draft.set_field("conditions[0].indicator", "volume_spike")
    assert draft.definition["conditions"] == [
        {"indicator": "volume_spike", "period": 7, "op": ">", "value": 2}
    ]
    draft.set_field("conditions[0].indicator", "nonsense")
    assert draft.definition["conditions"][0]["indicator"] == "volume_spike"  # type: ignore[index,call-overload]


def test_unknown_paths_change_nothing() -> None:
    draft = Draft.new()
    before = json.dumps(draft.definition)
    for path in ("conditions[9].period", "trade.nonsense", "version", "__proto__", "conditions[0].evil", ""):
        draft.set_field(path, "1")
    assert json.dumps(draft.definition) == before


def test_the_json_view_replaces_the_definition_or_says_why_not() -> None:
    draft = Draft.new()
    draft.set_json("{not json")
    assert draft.problems()["json"].startswith("not valid JSON")
    assert draft.form().json_text == "{not json"  # the person's text stays while they fix it
    assert draft.definition["conditions"]  # the last good definition is kept
    draft.set_json("[]")
    assert draft.problems()["json"] == "the definition is a JSON object ({…})"
    text = json.dumps({**Draft.new().definition, "interval": "2m"})
    draft.set_json(text)
    assert list(draft.problems()) == ["interval"]
    assert draft.problems()["interval"].startswith('must be one of "1s", "1m"')
    draft.set_field("interval", "5m")
    assert draft.valid()
    assert json.loads(draft.form().json_text)["interval"] == "5m"


def test_a_refused_save_is_shown_by_the_field_the_database_names() -> None:
    draft = Draft.of("t1", "Mine", Draft.new().definition)
    draft.refuse("invalid_argument: definition.conditions[0].period: must be an integer between 2 and 500")
    assert draft.problems() == {"conditions[0].period": "must be an integer between 2 and 500"}
    draft.set_field("conditions[0].period", "15")  # any edit clears the refusal
    assert draft.valid()
    draft.refuse("permission denied for table traders")
    assert draft.form().error == "permission denied for table traders"


def test_an_edit_is_dirty_only_when_it_differs_from_what_is_stored() -> None:
    stored = Draft.new().definition
    draft = Draft.of("t1", "Mine", stored)
    assert not draft.dirty and draft.form().title == "Edit Mine"
    draft.set_field("conditions[0].value", "31")
    assert draft.dirty
    draft.set_field("conditions[0].value", "30")
    assert not draft.dirty
    copy = Draft.duplicate("Mine", stored)
    assert copy.trader_id is None and copy.name == "Mine (copy)" and copy.dirty


def test_problems_of_a_definition_that_is_not_an_object() -> None:
    assert problems("x", "nonsense") == {
        "definition": "not valid JSON (Expecting value: line 1 column 1 (char 0))"
    }
    assert problems("x", 5) == {"definition": "must be a JSON object"}
    assert Draft.of("t", "x", [1, 2]).definition == {}


def test_a_kept_draft_comes_back_as_it_was() -> None:
    draft = Draft.of("t1", "Mine", Draft.new().definition)
    draft.set_field("conditions[0].period", "1")
    draft.set_field("name", "Mine, tuned")
    again = Draft.loads(draft.dumps())
    assert again is not None
    assert (again.trader_id, again.name, again.definition) == (draft.trader_id, draft.name, draft.definition)
    assert again.stored == draft.stored and again.dirty
    half = Draft.new()
    half.set_json('{"version": 1,')
    back = Draft.loads(half.dumps())
    assert back is not None and back.form().json_text == '{"version": 1,'
    for junk in ("", "x", "[]", '{"name": 5, "definition": {}}', '{"name": "a", "definition": []}'):
        assert Draft.loads(junk) is None, junk
    assert draft_key("ABC") == "trader-draft:abc"


def test_fields_follow_the_rules_order_and_say_their_bounds() -> None:
    draft = Draft.new("bollinger_breakout")
    fields = draft.form().conditions[0].fields
    assert [(f.path.rsplit(".", 1)[1], f.hint) for f in fields] == [
        ("indicator", ""),
        ("period", "2–500"),
        ("k", "> 0, ≤ 10"),
        ("band", ""),
        ("op", ""),
    ]
    hints = {f.path: f.hint for f in draft.form().trade}
    assert hints["trade.stop_loss_pct"] == "> 0, ≤ 99.99"  # a long's stop cannot pass zero
    draft.set_field("trade.side", "short")
    hints = {f.path: f.hint for f in draft.form().trade}
    assert hints["trade.stop_loss_pct"] == "> 0, ≤ 1000" and hints["trade.take_profit_pct"] == "> 0, ≤ 99.99"
    assert {f.path: f.hint for f in draft.form().general}["cooldown_candles"] == "0–10,000"
