"""The signals table's rows as the page reads them from the API (no browser)."""

from __future__ import annotations

from signalguard.browser.app import HISTORY_COLUMNS, history_items
from signalguard.core.codes import GAPLESS_HANDOFF

ROW = {
    "signal_key": "u:t:BTCUSDT:1m:1764979200000",
    "symbol": "BTCUSDT",
    "interval": "1m",
    "candle_open_time": "2025-12-06T00:00:00+00:00",
    "price": 91000.5,
    "status": "new",
    "source": "cloud",
}


def test_a_caught_up_signal_is_marked_and_others_are_not() -> None:
    late, live, old_schema = history_items([{**ROW, "caught_up": True}, {**ROW, "caught_up": False}, ROW])
    assert late.caught_up and not live.caught_up and not old_schema.caught_up
    assert late.candle == live.candle and late.open_ms == 1_764_979_200_000
    # Only a real true marks it: whatever else a malformed row says does not.
    assert [i.caught_up for i in history_items([{**ROW, "caught_up": "true"}, {**ROW, "caught_up": 1}])] == [
        False,
        False,
    ]


def test_the_column_is_asked_for_only_from_a_database_that_has_it() -> None:
    assert "caught_up" not in HISTORY_COLUMNS  # app.py adds it when schema_version() lists the component
    assert GAPLESS_HANDOFF.name == "gapless_handoff"


def test_a_row_names_its_trader_and_conditions_with_the_symbols_precision_in_the_chosen_zone() -> None:
    from signalguard.browser.formats import Formats

    row = {**ROW, "trader_id": "ABC", "matched_conditions": ["RSI(14) < 30", "volume > 2x"]}
    fmt = Formats(utc=False, zone="Asia/Tokyo", offset=lambda _ms: 540, precision=lambda _s: 1)
    (item,) = history_items([row], fmt, {"abc": "Dip buyer"})
    assert (item.candle, item.trader, item.price) == ("2025-12-06 09:00", "Dip buyer", "91,000.5")
    assert item.conditions == "RSI(14) < 30, volume > 2x"
    (utc,) = history_items([row])
    assert (utc.candle, utc.trader, utc.price) == ("2025-12-06 00:00", "", "91,000.50")
    # A 1s stream's times have seconds; a malformed price or label list reads as unknown, not a crash.
    (fast,) = history_items([{**ROW, "interval": "1s", "price": "x", "matched_conditions": "RSI"}])
    assert (fast.candle, fast.price, fast.conditions) == ("2025-12-06 00:00:00", "—", "")
