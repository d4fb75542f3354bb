"""Catching up with a lease window (core/catchup.py) on its own: warm-up split, epochs, kept matches."""

from __future__ import annotations

from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.catchup import (
    CATCH_UP_CANDLES,
    EVALUATED_CANDLES,
    CatchUp,
    LeaseWindow,
    Release,
    catch_up_horizon_us,
    close_us,
    primed_candles,
    warm_up_candles,
)

MINUTE = INTERVALS["1m"]
START = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE
MATCH = (("t1", ("RSI(14) < 30",)),)


def bar(i: int, symbol: str = "BTC", interval: str = "1m") -> Candle:
    return Candle(symbol, interval, START + i * MINUTE, 1.0, 1.0, 1.0, 1.0, 1.0, True)


def closes(i: int) -> int:
    """When 1m candle ``i`` closed, in the database's microseconds."""
    return (START + (i + 1) * MINUTE) * 1000


def test_a_candle_closes_at_the_next_open_in_microseconds() -> None:
    assert close_us(bar(0)) == closes(0) == (START + MINUTE) * 1000
    five = Candle("BTC", "5m", START - START % (5 * MINUTE), 1.0, 1.0, 1.0, 1.0, 1.0, True)
    assert close_us(five) == (five.open_time + 5 * MINUTE) * 1000


def test_the_warm_up_fetches_the_catch_up_on_top_of_the_rule_and_primes_the_oldest() -> None:
    assert warm_up_candles(0) == EVALUATED_CANDLES
    assert warm_up_candles(202) == 202 + EVALUATED_CANDLES
    # As many as asked: the rule's history primes, the catch-up is evaluated.
    assert primed_candles(202 + EVALUATED_CANDLES, 202) == 202
    # Fewer (a young market): the rule's history still primes first, only the rest is evaluated.
    assert primed_candles(210, 202) == 202
    assert primed_candles(100, 202) == 100
    # More than asked: only the newest EVALUATED_CANDLES are evaluated.
    assert primed_candles(500, 202) == 500 - EVALUATED_CANDLES
    assert primed_candles(10, 0) == 0


def test_without_a_lease_nothing_may_emit_and_no_candle_has_an_epoch() -> None:
    window = CatchUp()
    assert not window.may_generate and window.epoch is None
    assert not window.may_emit(historical=False) and not window.may_emit(historical=True)
    assert window.epoch_at(bar(0)) is None
    assert window.set_lease(None, closes(0), [LeaseWindow(3, 0, closes(5))]) == []
    assert not window.may_generate and window.epoch_at(bar(0)) is None


def test_without_a_window_start_live_candles_emit_under_the_live_epoch_and_historical_ones_wait() -> None:
    window = CatchUp()
    window.set_lease(5, None, [LeaseWindow(4, 0, closes(100))])
    assert window.may_generate and window.epoch == 5
    assert window.may_emit(historical=False) and not window.may_emit(historical=True)
    assert window.epoch_at(bar(0)) == 5  # the earlier window is not used without the live one's start


def test_with_a_window_start_only_candles_inside_a_held_window_have_an_epoch() -> None:
    window = CatchUp()
    earlier = [
        LeaseWindow(3, closes(2), closes(4)),  # [2, 4): candles 2 and 3 closed in it
        LeaseWindow(5, closes(0), closes(9)),  # the live epoch's own row: not an earlier window
        LeaseWindow(2, closes(1), closes(1)),  # empty
    ]
    window.set_lease(5, closes(6), earlier)
    assert window.may_emit(historical=True) and window.may_emit(historical=False)
    assert [window.epoch_at(bar(i)) for i in range(8)] == [None, None, 3, 3, None, None, 5, 5]


def test_the_newest_earlier_window_wins_where_two_overlap() -> None:
    window = CatchUp()
    window.set_lease(
        9, closes(10), [LeaseWindow(7, closes(0), closes(5)), LeaseWindow(8, closes(3), closes(6))]
    )
    assert [window.epoch_at(bar(i)) for i in range(7)] == [7, 7, 7, 8, 8, 8, None]


def test_a_grant_releases_the_kept_matches_its_windows_hold_in_candle_order() -> None:
    window = CatchUp()
    window.keep(bar(3, "ETH"), MATCH)
    window.keep(bar(1), MATCH)  # before every window: dropped
    window.keep(bar(3), (("t2", ()),))
    window.keep(bar(4), MATCH)  # closes as the earlier window ends, before the live one: dropped
    window.keep(bar(2, "SOL"), MATCH)
    window.keep(bar(6), MATCH)
    released = window.set_lease(5, closes(5), [LeaseWindow(4, closes(2), closes(4))])
    # Across streams by close time, then symbol: as live emission would have produced them.
    assert released == [
        Release(bar(2, "SOL"), MATCH, 4),
        Release(bar(3), (("t2", ()),), 4),
        Release(bar(3, "ETH"), MATCH, 4),
        Release(bar(6), MATCH, 5),
    ]
    window.set_lease(None, None, [])
    assert window.set_lease(6, closes(0), []) == []  # released once


def test_a_grant_without_a_window_start_drops_what_was_kept() -> None:
    window = CatchUp()
    window.keep(bar(3), MATCH)
    assert window.set_lease(5, None, []) == []
    window.set_lease(None, None, [])
    assert window.set_lease(6, closes(0), []) == []


def test_a_renewal_releases_nothing_and_losing_the_lease_keeps_what_is_kept() -> None:
    window = CatchUp()
    window.set_lease(5, None, [])
    window.keep(bar(3), MATCH)  # a historical match while the window's start was unknown
    assert window.set_lease(5, closes(0), []) == []  # the same epoch renewed: not a grant
    window.set_lease(None, None, [])
    assert not window.may_generate
    window.keep(bar(4), MATCH)
    # Held again after the pause, even under the same epoch: a grant.
    assert window.set_lease(5, closes(0), []) == [Release(bar(3), MATCH, 5), Release(bar(4), MATCH, 5)]


def test_only_the_newest_candles_with_matches_are_kept_per_stream() -> None:
    window = CatchUp()
    for i in range(CATCH_UP_CANDLES + 2):
        window.keep(bar(i), MATCH)
    window.keep(bar(0, "ETH"), MATCH)
    released = window.set_lease(5, closes(0), [])
    assert len(released) == CATCH_UP_CANDLES + 1
    assert released[0] == Release(bar(0, "ETH"), MATCH, 5)  # ETH's candle 0 closes first
    assert [r.candle for r in released[1:]] == [bar(i) for i in range(2, CATCH_UP_CANDLES + 2)]


def test_the_gap_before_a_new_epoch_is_signed_under_it_and_nothing_before_the_gap() -> None:
    # Epoch 4 (another holder) ended when candle 9 closed; epoch 5 was granted when candle 14 closed.
    # The database lets epoch 5 sign the gap (signs_from = epoch 4's end, which its window excludes):
    # the kept matches of candles 9..14 are released under epoch 5; epoch 4's are not this holder's.
    window = CatchUp()
    for i in range(5, 15):
        window.keep(bar(i), MATCH)
    released = window.set_lease(5, closes(9), [])
    assert [(r.candle.open_time, r.epoch) for r in released] == [(bar(i).open_time, 5) for i in range(9, 15)]
    assert window.epoch_at(bar(8)) is None


def test_a_gap_candle_beyond_the_horizon_is_not_signed() -> None:
    # signs_from is the 2-hour bound; for 1m candles the database allows 60 candles before the window:
    # the engine evaluates one more (a grant on a boundary), and does not emit what would be refused.
    assert catch_up_horizon_us("1m") == 60 * MINUTE * 1000
    assert catch_up_horizon_us("1d") == catch_up_horizon_us("1M") == 2 * 3600 * 1_000_000
    window = CatchUp()
    granted = closes(100) + 500_000  # the grant came half a second after candle 100 closed
    for i in range(20, 101, 2):  # 41 candles with matches: fewer than are kept
        window.keep(bar(i), MATCH)
    released = window.set_lease(9, granted - 2 * 3600 * 1_000_000, [], granted)
    assert [r.candle for r in released] == [bar(i) for i in range(42, 101, 2)]  # closed within 60 min
    assert window.epoch_at(bar(40)) is None and window.epoch_at(bar(41)) == 9
    # Without the window's start (an older database or answer), the gap's start alone decides.
    window = CatchUp()
    window.set_lease(9, closes(39), [])
    assert window.epoch_at(bar(39)) == 9 and window.epoch_at(bar(38)) is None
