"""The one retry schedule: 1 s, doubling, at most 5 s; scaled for tests, never random."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signalguard.core.backoff import BACKOFF, Backoff


def test_the_products_schedule() -> None:
    assert [BACKOFF.delay(n) for n in range(0, 8)] == [1.0, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


def test_a_long_outage_stays_at_the_ceiling() -> None:
    assert BACKOFF.delay(10**9) == 5.0
    assert Backoff(0.01, 0.05).delay(10**9) == 0.05


@given(st.integers(min_value=0, max_value=10_000), st.floats(0.001, 10), st.floats(0.001, 100))
def test_delays_never_shrink_and_stay_within_first_and_ceiling(
    failures: int, first: float, ceiling: float
) -> None:
    b = Backoff(first, max(first, ceiling))
    assert b.first <= b.delay(failures) <= b.ceiling
    assert b.delay(failures) <= b.delay(failures + 1)
