from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalguard.core.indicators import (
    EMA,
    MACD,
    RSI,
    SMA,
    Bands,
    BollingerBands,
    MACDValue,
    PriceChangePct,
    VolumeAverage,
    VolumeSpike,
)

Factory = Callable[[], Any]

ALL: list[tuple[str, Factory, int]] = [
    ("SMA(5)", lambda: SMA(5), 5),
    ("VolumeAverage(5)", lambda: VolumeAverage(5), 5),
    ("EMA(5)", lambda: EMA(5), 5),
    ("RSI(5)", lambda: RSI(5), 6),
    ("BB(5, 2)", lambda: BollingerBands(5, 2.0), 5),
    ("MACD(3, 6, 4)", lambda: MACD(3, 6, 4), 9),
    ("VolumeSpike(5)", lambda: VolumeSpike(5), 6),
    ("PriceChangePct(5)", lambda: PriceChangePct(5), 6),
]


def feed(indicator: Any, values: list[float], attr: str = "value") -> list[Any]:
    out = []
    for x in values:
        indicator.update(x)
        out.append(getattr(indicator, attr))
    return out


@pytest.mark.parametrize(("name", "make", "warmup"), ALL, ids=[a[0] for a in ALL])
def test_output_is_none_exactly_until_warmup(name: str, make: Factory, warmup: int) -> None:
    indicator = make()
    assert indicator.warmup == warmup
    for i in range(1, 40):
        indicator.update(100.0 + (i % 7) - 0.5 * (i % 3))
        assert indicator.ready == (i >= warmup), (name, i)
        assert (indicator.value is not None) == (i >= warmup), (name, i)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SMA(0),
        lambda: SMA(100_001),
        lambda: SMA(True),
        lambda: EMA(2.0),  # type: ignore[arg-type]
        lambda: RSI(1),
        lambda: BollingerBands(1, 2.0),
        lambda: BollingerBands(20, 0.0),
        lambda: BollingerBands(20, float("nan")),
        lambda: BollingerBands(20, True),
        lambda: MACD(26, 12, 9),
        lambda: MACD(12, 12, 9),
        lambda: MACD(12, 26, 0),
        lambda: VolumeSpike(0),
        lambda: PriceChangePct(0),
    ],
)
def test_bad_parameters_are_refused(make: Factory) -> None:
    with pytest.raises(ValueError):
        make()


def test_sma_and_ema_by_hand() -> None:
    assert feed(SMA(3), [1.0, 2.0, 3.0, 4.0, 5.0]) == [None, None, 2.0, 3.0, 4.0]
    # EMA(3): k = 0.5, seeded with the mean of the first three values.
    assert feed(EMA(3), [1.0, 2.0, 3.0, 4.0, 2.0]) == [None, None, 2.0, 3.0, 2.5]
    assert feed(EMA(1), [5.0, 7.0]) == [5.0, 7.0]


def test_rsi_by_hand() -> None:
    # RSI(2): first two changes +1 +1 (all gain: 100); then -1: gain (1 + 0) / 2, loss (0 + 1) / 2.
    assert feed(RSI(2), [1.0, 2.0, 3.0, 2.0]) == [None, None, 100.0, 50.0]
    assert feed(RSI(3), [5.0, 4.0, 3.0, 2.0])[-1] == 0.0
    # No movement at all: neutral 50 (TA-Lib says 0; see the module notes).
    assert feed(RSI(14), [3.0] * 30)[-1] == 50.0


def test_bollinger_by_hand() -> None:
    bands = BollingerBands(4, 2.0)
    feed(bands, [1.0, 2.0, 3.0, 4.0])
    assert bands.middle == 2.5
    std = bands.stddev
    assert std == pytest.approx(math.sqrt(1.25), abs=1e-15)
    assert std is not None and bands.value == Bands(2.5 + 2 * std, 2.5, 2.5 - 2 * std)


def test_bollinger_flat_window_has_exactly_zero_width() -> None:
    bands = BollingerBands(5, 2.0)
    # A volatile stretch, then a flat one: the leftover of the large terms must not survive.
    feed(bands, [60000.0, 61234.56, 59876.54, 60500.01, 62000.0, 58000.0] + [60123.45] * 5)
    assert bands.stddev == 0.0
    assert bands.upper == bands.middle == bands.lower == 60123.45


def test_bollinger_tiny_prices_are_not_collapsed() -> None:
    # TA-Lib zeroes variances below 1e-8, which flattens the bands of sub-cent assets; we do not.
    bands = BollingerBands(4, 2.0)
    feed(bands, [1e-6, 2e-6, 3e-6, 4e-6])
    assert bands.stddev == pytest.approx(math.sqrt(1.25) * 1e-6, rel=1e-12)


def talib_style_macd(xs: list[float], fast: int, slow: int, signal: int) -> list[float | None]:
    """TA-Lib's MACD, written out: both EMA seeds end on candle `slow`."""
    kf, ks, kg = 2 / (fast + 1), 2 / (slow + 1), 2 / (signal + 1)
    out: list[float | None] = [None] * (slow - 1)
    s = sum(xs[:slow]) / slow
    f = sum(xs[slow - fast : slow]) / fast
    macds = [f - s]
    for x in xs[slow:]:
        s = (x - s) * ks + s
        f = (x - f) * kf + f
        macds.append(f - s)
    g = sum(macds[:signal]) / signal
    out += [None] * (signal - 1) + [g]
    for m in macds[signal:]:
        g = (m - g) * kg + g
        out.append(g)
    return out


def test_macd_seeds_like_talib_not_like_two_independent_emas() -> None:
    rng = random.Random(2)
    xs = [100.0]
    for _ in range(300):
        xs.append(xs[-1] * math.exp(rng.gauss(0, 0.01)))
    macd = MACD(12, 26, 9)
    signals = feed(macd, xs, "signal")
    reference = talib_style_macd(xs, 12, 26, 9)
    assert signals[:33] == [None] * 33
    assert signals == pytest.approx(reference, abs=1e-12)
    # The naive composition (EMA(12) seeded on the first 12 prices) is measurably different.
    fast, slow = EMA(12), EMA(26)
    naive: list[float | None] = []
    for x in xs:
        fast.update(x)
        slow.update(x)
        naive.append(None if slow.value is None or fast.value is None else fast.value - slow.value)
    macd2 = MACD(12, 26, 9)
    lines = feed(macd2, xs, "macd")
    naive_40, line_40, last, signal = naive[40], lines[40], lines[-1], macd2.signal
    assert naive_40 is not None and line_40 is not None and last is not None and signal is not None
    assert abs(naive_40 - line_40) > 1e-6
    assert macd2.value == MACDValue(last, signal, last - signal)


def test_volume_spike_definition() -> None:
    spike = VolumeSpike(3)
    assert feed(spike, [10.0, 20.0, 30.0, 40.0, 20.0]) == [None, None, None, 2.0, 20.0 / 30.0]
    assert spike.average == 30.0
    # A spike does not dilute its own baseline: 100 against (20 + 30 + 40) / 3 ... = 30 → 3.33.
    spike.update(100.0)
    assert spike.value == pytest.approx(100.0 / ((30.0 + 40.0 + 20.0) / 3))


def test_volume_spike_on_a_zero_baseline_is_exact() -> None:
    spike = VolumeSpike(2)
    # After 0.1 and 0.2 leave the window a running sum is 2.8e-17, not 0; the ratio must not be
    # 1e17 or negative.
    feed(spike, [0.1, 0.2, 0.0, 0.0])
    spike.update(0.0)
    assert spike.value == 1.0 and spike.average == 0.0
    spike.update(5.0)
    assert spike.value == math.inf


def test_price_change_pct() -> None:
    assert feed(PriceChangePct(1), [100.0, 110.0, 99.0]) == [None, pytest.approx(10.0), pytest.approx(-10.0)]
    assert feed(PriceChangePct(2), [0.0, 5.0, 7.0]) == [None, None, 0.0]  # TA-Lib's rule for a zero base


def exact_mean_std(window: list[float]) -> tuple[float, float]:
    n = len(window)
    mean = math.fsum(window) / n
    mean += math.fsum(x - mean for x in window) / n
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in window) / n)


def test_no_drift_over_a_long_series() -> None:
    """300,000 updates on a BTC-like series: still within a few ulps of the exact window stats."""
    rng = random.Random(9)
    n = 20
    sma, avg, bands = SMA(n), VolumeAverage(n), BollingerBands(n, 2.0)
    price = 60_000.0
    window: list[float] = []
    worst_mean = worst_std = 0.0
    for i in range(300_000):
        price = round(price * math.exp(rng.gauss(0, 0.002)), 2)
        window.append(price)
        del window[:-n]
        sma.update(price)
        avg.update(price)
        bands.update(price)
        if i % 10_000 == 9_999:
            mean, std = exact_mean_std(window)
            assert sma.value is not None and avg.value is not None
            assert bands.stddev is not None and bands.middle is not None
            worst_mean = max(
                worst_mean, abs(sma.value - mean), abs(avg.value - mean), abs(bands.middle - mean)
            )
            worst_std = max(worst_std, abs(bands.stddev - std))
    ulp = math.ulp(price)
    assert worst_mean <= 16 * ulp, worst_mean / ulp
    assert worst_std <= 16 * ulp, worst_std / ulp


finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=1, max_size=60))
def test_finite_input_never_raises(xs: list[float]) -> None:
    indicators = [make() for _, make, _ in ALL] + [BollingerBands(2, 1e6), MACD(2, 3, 1), RSI(2)]
    for x in xs:
        for indicator in indicators:
            indicator.update(x)
    for indicator in indicators:
        value = indicator.value
        assert value is None or isinstance(value, float | Bands | MACDValue)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1e6), min_size=30, max_size=80), st.integers(2, 12))
def test_window_indicators_match_their_definition(xs: list[float], n: int) -> None:
    sma, bands, roc = SMA(n), BollingerBands(n, 2.0), PriceChangePct(n)
    for t, x in enumerate(xs):
        sma.update(x)
        bands.update(x)
        roc.update(x)
        if t >= n - 1:
            mean, std = exact_mean_std(xs[t - n + 1 : t + 1])
            # The documented bound: a few ulps of the largest input among the last max(n, 128)
            # (a running sum that held a huge value keeps that value's rounding until re-derived).
            scale = max(xs[max(0, t - 128 - n) : t + 1])
            assert sma.value == pytest.approx(mean, abs=1e-13 * scale)
            assert bands.middle == pytest.approx(mean, abs=1e-13 * scale)
            assert bands.stddev is not None
            # The variance is what carries the rounding; the square root magnifies it near zero.
            assert abs(bands.stddev**2 - std**2) <= 1e-13 * scale**2
        if t >= n:
            assert roc.value == pytest.approx((x / xs[t - n] - 1) * 100, rel=1e-12, abs=1e-12)


def state_of(indicator: Any) -> dict[str, Any]:
    out = {}
    for cls in type(indicator).__mro__:
        for name in getattr(cls, "__slots__", ()):
            value = getattr(indicator, name)
            out[name] = list(value) if isinstance(value, list) else value
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.01, max_value=1e5), max_size=200),
    st.lists(st.integers(0, 200), max_size=4),
)
def test_extend_is_update_in_a_loop(xs: list[float], cuts: list[int]) -> None:
    # Bit-identical state, whatever the chunking (including chunks that end inside the warm-up).
    bounds = sorted({0, len(xs), *(min(c, len(xs)) for c in cuts)})
    for _, make, _ in ALL:
        one, many = make(), make()
        for x in xs:
            one.update(x)
        for start, stop in itertools.pairwise(bounds):
            many.extend(xs[start:stop])
        many.extend([])
        assert state_of(many) == state_of(one), type(one).__name__
