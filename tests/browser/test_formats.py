"""One way to write numbers and times: the symbol's precision, signed amounts, the chosen zone."""

from __future__ import annotations

import math

from signalguard.browser.formats import UNKNOWN, Formats

T = 1_764_000_000_000  # 2025-11-24 16:00:00 UTC


def test_times_in_utc_or_the_browsers_zone() -> None:
    assert Formats().time(T) == "2025-11-24 16:00"
    assert Formats().time(T + 5_000) == "2025-11-24 16:00:05"
    assert Formats().time(T, seconds=True) == "2025-11-24 16:00:00"
    local = Formats(utc=False, zone="America/New_York", offset=lambda _ms: -300)
    assert local.time(T) == "2025-11-24 11:00"
    assert local.zone_label == "America/New_York"
    assert Formats(utc=True, zone="America/New_York").zone_label == "UTC"
    assert local.clock(T) == "11:00"
    assert Formats().time(None) == UNKNOWN and Formats().time(-1) == UNKNOWN


def test_the_offset_is_asked_for_each_instant() -> None:
    # Daylight saving: the page's Date knows the offset of each instant, so two times an hour apart
    # around a change read as they do on the wall clock.
    asked: list[int] = []

    def offset(ms: int) -> int:
        asked.append(ms)
        return 120 if ms < T else 60

    fmt = Formats(utc=False, zone="Europe/Berlin", offset=offset)
    assert (fmt.time(T - 3_600_000), fmt.time(T)) == ("2025-11-24 17:00", "2025-11-24 17:00")
    assert asked == [T - 3_600_000, T]


def test_prices_at_the_symbols_precision_or_by_their_size() -> None:
    known = Formats(precision=lambda s: {"BTCUSDT": 2, "SHIBUSDT": 8}.get(s))
    assert known.price("BTCUSDT", 42123.456) == "42,123.46"
    assert known.price("SHIBUSDT", 0.0000123) == "0.00001230"
    assert known.price("XYZUSDT", 42123.456) == "42,123.456"  # 8 significant digits
    assert known.price("XYZUSDT", 0.5) == "0.50"
    assert known.price("XYZUSDT", 12.0) == "12.00"
    assert known.price("XYZUSDT", 0.0000123) == "0.0000123"
    assert known.price("BTCUSDT", 42000.0) == "42,000.00"
    assert known.price("BTCUSDT", None) == UNKNOWN
    assert known.price("BTCUSDT", math.nan) == UNKNOWN


def test_amounts_are_signed_in_the_quote_currency_and_percentages_signed() -> None:
    fmt = Formats()
    assert fmt.amount(12.345, "BTCUSDT") == "+12.35 USDT"
    assert fmt.amount(-1234.5, "ETHBTC") == "-1,234.50 BTC"
    assert fmt.amount(0.001, "BTCUSDT") == "0.00 USDT"
    assert fmt.amount(3.0) == "+3.00"
    assert fmt.amount(None, "BTCUSDT") == UNKNOWN
    assert fmt.percent(-0.866) == "-0.87 %"
    assert fmt.percent(0.0) == "0.00 %"
    assert (fmt.sign(0.004), fmt.sign(-0.01), fmt.sign(2.0), fmt.sign(None)) == ("0", "-", "+", "")


def test_quantities_keep_their_significant_digits() -> None:
    assert Formats.quantity(0.0023741) == "0.0023741"
    assert Formats.quantity(2.0) == "2"
    assert Formats.quantity(1234567.0) == "1,234,567"
    assert Formats.quantity(0.000000012345) == "0.0000000123"
    assert Formats.quantity(math.inf) == UNKNOWN
