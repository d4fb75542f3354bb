"""The positions panel's rows and the profitability by source, from what the database answers."""

from __future__ import annotations

from typing import Any

from signalguard.browser.formats import Formats
from signalguard.browser.trades import profit_lines, trade_items

OPEN_LONG = {
    "signal_key": "k-open", "symbol": "BTCUSDT", "interval": "1m", "side": "long", "size": 0.5,
    "entry_price": 100, "take_profit_price": 102, "stop_loss_price": None,
    "expires_at": "2026-11-21T10:15:00+00:00", "status": "open", "source": "cloud", "close_source": None,
}  # fmt: skip
CLOSED_SHORT = {
    "signal_key": "k-closed", "symbol": "ETHUSDT", "interval": "1m", "side": "short", "size": "2",
    "entry_price": "50.5", "status": "closed", "exit_price": 49, "exit_reason": "take_profit",
    "profit_loss": 3.0, "source": "local", "close_source": "cloud",
}  # fmt: skip


def test_open_trades_come_first_with_unrealised_pnl_at_the_last_price() -> None:
    def last(symbol: str, interval: str) -> float | None:
        return 104.0 if (symbol, interval) == ("BTCUSDT", "1m") else None

    items = trade_items([CLOSED_SHORT, OPEN_LONG], last)
    assert [i.key for i in items] == ["k-open", "k-closed"]
    o, c = items
    assert (o.price, o.pnl, o.sign, o.detail) == (
        "104.00",
        "+2.00 USDT",
        "+",
        "target 102.00, until 2026-11-21 10:15",
    )
    assert (o.source, o.close_source, o.status, o.quantity, o.pnl_pct) == (
        "cloud",
        "",
        "open",
        "0.5",
        "+4.00 %",
    )
    assert (c.price, c.pnl, c.sign, c.detail) == ("49.00", "+3.00 USDT", "+", "take-profit")
    assert (c.source, c.close_source, c.entry, c.quantity) == ("local", "cloud", "50.50", "2")
    assert c.pnl_pct == "+2.97 %"  # short: (50.5 - 49) / 50.5
    # Without a last price the unrealised P&L is unknown, not zero.
    (unknown,) = trade_items([OPEN_LONG], lambda _s, _i: None)
    assert (unknown.price, unknown.pnl, unknown.sign, unknown.pnl_pct) == ("—", "—", "", "—")


def test_trade_times_in_the_chosen_zone_and_prices_at_the_symbols_precision() -> None:
    row = {
        **CLOSED_SHORT,
        "entry_time": "2026-11-21T10:15:00+00:00",
        "exit_time": "2026-11-21T10:47:30+00:00",
    }
    fmt = Formats(utc=False, zone="Europe/Berlin", offset=lambda _ms: 60, precision=lambda _s: 4)
    (item,) = trade_items([row], lambda _s, _i: None, fmt)
    assert (item.opened, item.closed) == ("2026-11-21 11:15", "2026-11-21 11:47:30")
    assert (item.entry, item.price) == ("50.5000", "49.0000")
    (utc,) = trade_items([row], lambda _s, _i: None, Formats())
    assert (utc.opened, utc.closed) == ("2026-11-21 10:15", "2026-11-21 10:47:30")


def test_malformed_rows_are_skipped() -> None:
    bad: list[Any] = [
        "row",
        {**OPEN_LONG, "side": "sideways"},
        {**OPEN_LONG, "status": "half"},
        {**OPEN_LONG, "size": None},
        {**OPEN_LONG, "signal_key": 7},
    ]
    assert trade_items([*bad, CLOSED_SHORT], lambda _s, _i: None)[0].key == "k-closed"
    assert len(trade_items(bad, lambda _s, _i: None)) == 0
    assert trade_items({"not": "a list"}, lambda _s, _i: None) == []


def test_profit_lines_per_source() -> None:
    answer = {
        "by_source": [
            {"source": "local", "total_signals": 9, "trades_executed": 9, "open_trades": 7, "wins": 1,
             "losses": 0, "avg_profit": 0.1, "realised_pnl": "0.2"},
            {"source": "cloud", "total_signals": 0, "trades_executed": 0, "open_trades": 0, "wins": 0,
             "losses": 0, "avg_profit": None, "realised_pnl": 0},
            {"source": "elsewhere", "total_signals": 1},
            "junk",
        ]
    }  # fmt: skip
    local, cloud = profit_lines(answer)
    assert (local.label, local.signals, local.trades, local.open, local.avg, local.realised) == (
        "Browser", 9, 9, 7, "+0.10", "+0.20",
    )  # fmt: skip
    assert (cloud.label, cloud.avg, cloud.realised, cloud.wins) == ("Cloud", "—", "0.00", 0)
    assert profit_lines(None) == [] and profit_lines({"by_source": "x"}) == []
