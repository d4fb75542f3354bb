"""The executor's open trades (core/tradebook.py), on their own: held, waiting, filled, exited, closed."""

from __future__ import annotations

from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.positions import Exit, ExitReason, Side, Trade
from signalguard.core.tradebook import RECENT_CANDLES, CandleRange, OpenTrades

MINUTE = INTERVALS["1m"]
START = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE


def at(i: int) -> int:
    """Candle ``i``'s open time (and candle ``i - 1``'s close)."""
    return START + i * MINUTE


def bar(
    i: int, price: float, *, low: float | None = None, high: float | None = None, symbol: str = "BTC"
) -> Candle:
    lo = price if low is None else low
    hi = price if high is None else high
    return Candle(symbol, "1m", at(i), price, hi, lo, price, 1.0, True)


def trade(key: str, entry: int, *, stop: float = 90.0, target: float = 110.0, symbol: str = "BTC") -> Trade:
    """A long entered at 100 when candle ``entry - 1`` closed: candle ``entry`` is the first that can exit."""
    return Trade(key, "t1", symbol, "1m", Side.LONG, 1.0, 100.0, at(entry), target, stop, None, 7)


def book_with(*candles: Candle) -> OpenTrades:
    book = OpenTrades()
    for c in candles:
        book.remember(c)
    return book


def test_remember_keeps_only_newer_candles_and_at_most_the_recent_window() -> None:
    book = book_with(bar(1, 100.0), bar(2, 101.0))
    book.remember(bar(2, 500.0))  # the same candle again: the first copy stands
    book.remember(bar(0, 500.0))  # an older one
    assert book.last_price("BTC", "1m") == 101.0
    assert book.last_price("ETH", "1m") is None
    for i in range(3, 3 + RECENT_CANDLES):
        book.remember(bar(i, 100.0))
    # The oldest kept candle is now past candle 2: a trade entering there waits.
    assert book.hold(trade("k", 2)) == []
    assert book.history_needs() == [CandleRange("BTC", "1m", at(2), at(3))]


def test_a_trade_held_before_any_candle_waits_for_the_warm_up() -> None:
    book = OpenTrades()
    assert book.hold(trade("k", 5)) == []
    assert book.history_needs() == [CandleRange("BTC", "1m", at(5), None)]
    assert book.trades() == [trade("k", 5)] and book.keys() == {"k"} and book.streams() == {("BTC", "1m")}
    assert book.on_candle(bar(5, 50.0)) == []  # waiting trades are not managed


def test_a_held_trade_is_checked_at_once_against_the_candles_it_missed() -> None:
    book = book_with(bar(3, 100.0), bar(4, 100.0), bar(5, 100.0, low=80.0), bar(6, 100.0, high=120.0))
    # Candle 4 is before its entry (it cannot exit there); candle 5 reaches the stop first.
    assert book.hold(trade("k", 5)) == [(trade("k", 5), Exit(ExitReason.STOP_LOSS, 90.0, at(6)))]
    assert book.trades() == [] and book.streams() == set()


def test_a_held_trade_that_no_missed_candle_ends_is_managed_from_then_on() -> None:
    book = book_with(bar(3, 100.0), bar(4, 100.0))
    assert book.hold(trade("k", 4)) == []
    assert book.history_needs() == []  # not waiting: managed
    assert book.on_candle(bar(5, 100.0)) == []
    assert book.on_candle(bar(6, 100.0, high=115.0)) == [
        (trade("k", 4), Exit(ExitReason.TAKE_PROFIT, 110.0, at(7)))
    ]
    assert book.trades() == []


def test_holding_a_trade_checks_only_that_trade_against_the_missed_candles() -> None:
    book = book_with(bar(3, 100.0), bar(4, 100.0))
    assert book.hold(trade("tight", 4, stop=99.5)) == []
    book.remember(bar(5, 99.0))  # would stop "tight", but only live candles manage it
    assert book.hold(trade("late", 4, stop=95.0)) == []
    assert [t.key for t in book.trades()] == ["tight", "late"]
    (closed,) = book.on_candle(bar(6, 99.0))
    assert closed[0].key == "tight" and closed[1].reason is ExitReason.STOP_LOSS


def test_a_live_candle_closes_only_what_it_ends_on_its_own_stream() -> None:
    book = book_with(bar(3, 100.0), bar(3, 100.0, symbol="ETH"))
    book.hold(trade("btc-a", 4, stop=95.0))
    book.hold(trade("btc-b", 4, stop=85.0))
    book.hold(trade("eth", 4, stop=95.0, symbol="ETH"))
    assert book.on_candle(bar(4, 100.0, symbol="SOL")) == []  # no book on that stream
    assert [t.key for t, _ in book.on_candle(bar(4, 100.0, low=92.0))] == ["btc-a"]
    assert [t.key for t, _ in book.on_candle(bar(5, 100.0, low=80.0))] == ["btc-b"]
    assert book.streams() == {("ETH", "1m")} and [t.key for t in book.trades()] == ["eth"]


def test_take_covered_returns_the_waiting_trades_the_recent_candles_now_reach() -> None:
    book = OpenTrades()
    assert book.take_covered(("BTC", "1m")) == []  # nothing waits
    book.hold(trade("old", 2))
    book.hold(trade("new", 6))
    assert book.take_covered(("BTC", "1m")) == []  # no candles yet
    book.remember(bar(4, 100.0))
    assert book.take_covered(("BTC", "1m")) == [trade("new", 6)]
    assert book.history_needs() == [CandleRange("BTC", "1m", at(2), at(4))]  # "old" still waits
    book.remember(bar(5, 100.0))
    assert book.take_covered(("BTC", "1m")) == []


def test_take_covered_forgets_a_stream_whose_trades_all_left() -> None:
    book = OpenTrades()
    book.hold(trade("k", 3))
    book.remember(bar(2, 100.0))
    assert book.take_covered(("BTC", "1m")) == [trade("k", 3)]
    assert book.history_needs() == [] and book.streams() == set() and book.keys() == set()


def test_history_needs_one_range_per_stream_from_its_oldest_entry() -> None:
    book = book_with(bar(10, 100.0))
    book.hold(trade("b", 5))
    book.hold(trade("a", 3))
    book.hold(trade("eth", 4, symbol="ETH"))
    assert book.history_needs() == [
        CandleRange("BTC", "1m", at(3), at(10)),
        CandleRange("ETH", "1m", at(4), None),
    ]


def test_fill_without_a_waiting_trade_does_nothing() -> None:
    book = book_with(bar(10, 100.0))
    assert book.fill("BTC", "1m", [bar(3, 50.0)]) == []
    assert book.trades() == []


def test_fill_with_nothing_usable_or_a_hole_or_disorder_leaves_the_trades_waiting() -> None:
    book = OpenTrades()
    book.hold(trade("k", 3))
    unclosed = Candle("BTC", "1m", at(3), 100.0, 100.0, 100.0, 100.0, 1.0, False)
    assert book.fill("BTC", "1m", [unclosed, bar(3, 100.0, symbol="ETH")]) == []  # no candle of its own
    book.remember(bar(6, 100.0))
    assert book.fill("BTC", "1m", [bar(3, 100.0), bar(4, 100.0)]) == []  # candle 5 missing
    assert book.fill("BTC", "1m", [bar(4, 100.0), bar(3, 100.0), bar(5, 100.0)]) == []  # out of order
    assert book.fill("BTC", "1m", [bar(4, 100.0), bar(5, 100.0)]) == []  # does not reach its entry
    assert book.history_needs() == [CandleRange("BTC", "1m", at(3), at(6))]
    assert book.trades() == [trade("k", 3)]


def test_fill_decides_on_the_fetched_candles_then_the_recent_ones() -> None:
    book = book_with(bar(6, 100.0), bar(7, 100.0, high=120.0))
    book.hold(trade("early", 3))
    book.hold(trade("later", 5, target=115.0))
    book.hold(trade("too-old", 1, stop=50.0, target=150.0))
    fetched = [bar(2, 100.0), bar(3, 100.0), bar(4, 100.0, low=80.0), bar(5, 100.0)]
    # "early" stops at fetched candle 4; "later" ignores it (before its entry) and reaches its target
    # at recent candle 7; "too-old" entered before the fetched candles and still waits.
    assert book.fill("BTC", "1m", fetched) == [
        (trade("early", 3), Exit(ExitReason.STOP_LOSS, 90.0, at(5))),
        (trade("later", 5, target=115.0), Exit(ExitReason.TAKE_PROFIT, 115.0, at(8))),
    ]
    assert book.history_needs() == [CandleRange("BTC", "1m", at(1), at(6))]
    assert book.fill("BTC", "1m", [bar(1, 100.0), *fetched]) == []
    assert book.history_needs() == [] and book.trades() == [trade("too-old", 1, stop=50.0, target=150.0)]
    assert book.on_candle(bar(8, 100.0, low=40.0)) == [
        (trade("too-old", 1, stop=50.0, target=150.0), Exit(ExitReason.STOP_LOSS, 50.0, at(9)))
    ]


def test_fill_prefers_the_fetched_candles_over_recent_copies_of_them() -> None:
    book = book_with(bar(6, 100.0), bar(7, 100.0))
    book.hold(trade("k", 5))
    # The fetched candle 6 (which reaches the target) stands; only the recent candles after it are added.
    assert book.fill("BTC", "1m", [bar(5, 100.0), bar(6, 100.0, high=112.0)]) == [
        (trade("k", 5), Exit(ExitReason.TAKE_PROFIT, 110.0, at(7)))
    ]


def test_fill_ignores_fetched_candles_still_open_or_of_another_stream() -> None:
    book = book_with(bar(5, 100.0, low=80.0))
    book.hold(trade("k", 3))
    still_open = Candle("BTC", "1m", at(5), 100.0, 100.0, 100.0, 100.0, 1.0, False)
    # The fetched range ends in the still-open candle 5: the recent closed copy of it decides.
    assert book.fill("BTC", "1m", [bar(3, 100.0), bar(4, 100.0), bar(4, 1.0, symbol="ETH"), still_open]) == [
        (trade("k", 3), Exit(ExitReason.STOP_LOSS, 90.0, at(6)))
    ]


def test_fill_without_recent_candles_manages_the_trade_on_the_fetched_ones() -> None:
    book = OpenTrades()
    book.hold(trade("k", 3))
    assert book.fill("BTC", "1m", [bar(3, 100.0), bar(4, 100.0)]) == []
    assert book.history_needs() == [] and book.trades() == [trade("k", 3)]
    # Managed, but with no recent candle of its own stream there is no price to close it at by hand.
    assert book.close("k") is None
    assert book.on_candle(bar(5, 100.0, low=10.0)) == [
        (trade("k", 3), Exit(ExitReason.STOP_LOSS, 90.0, at(6)))
    ]


def test_close_by_hand_at_the_last_closed_price() -> None:
    book = book_with(bar(3, 100.0), bar(4, 104.0))
    book.hold(trade("k", 4))
    book.hold(trade("other", 4))
    assert book.close("nope") is None
    assert book.close("k") == (trade("k", 4), Exit(ExitReason.MANUAL, 104.0, at(5)))
    assert book.close("k") is None  # it left the book
    assert book.streams() == {("BTC", "1m")}
    assert book.close("other") is not None and book.streams() == set()


def test_close_by_hand_never_exits_before_the_entry() -> None:
    # Taken over from an executor that was ahead: its entry is after this side's last candle.
    book = book_with(bar(3, 100.0))
    assert book.hold(trade("k", 6)) == []
    assert book.close("k") == (trade("k", 6), Exit(ExitReason.MANUAL, 100.0, at(6)))


def test_a_waiting_trade_cannot_be_closed_by_hand() -> None:
    book = book_with(bar(5, 100.0))
    book.hold(trade("k", 2))
    assert book.close("k") is None and book.keys() == {"k"}


def test_clear_forgets_managed_and_waiting_trades_but_not_the_candles() -> None:
    book = book_with(bar(5, 100.0))
    book.hold(trade("managed", 5))
    book.hold(trade("waiting", 2))
    assert [t.key for t in book.trades()] == ["waiting", "managed"]  # oldest entry first
    assert book.keys() == {"managed", "waiting"}
    book.clear()
    assert book.trades() == [] and book.keys() == set() and book.history_needs() == []
    assert book.last_price("BTC", "1m") == 100.0
