"""What a signal records of its conditions: each matched one with the figures that decided it."""

from __future__ import annotations

from signalguard.core.traders import parse_trader
from signalguard.core.traders.definition import Condition
from signalguard.core.traders.evaluation import figure, reading_text


def conditions(*raw: dict[str, object]) -> tuple[Condition, ...]:
    d = parse_trader({"version": 1, "symbols": ["BTCUSDT"], "interval": "1m", "conditions": list(raw)})
    return d.conditions


def test_each_kind_reads_with_its_figures() -> None:
    rsi, volume, change, sma, band, cross, hist, macd = conditions(
        {"indicator": "rsi", "period": 14, "op": "<", "value": 30},
        {"indicator": "volume_spike", "period": 20, "op": ">", "value": 2},
        {"indicator": "price_change_pct", "period": 5, "op": ">", "value": 2},
        {"indicator": "close_vs_sma", "period": 50, "op": ">"},
        {"indicator": "close_vs_bollinger", "period": 20, "k": 2, "band": "lower", "op": "<"},
        {"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"},
        {"indicator": "macd_histogram", "fast": 12, "slow": 26, "signal": 9, "op": ">", "value": 0},
        {"indicator": "macd_cross", "fast": 12, "slow": 26, "signal": 9, "direction": "down"},
    )
    close = 91234.56
    assert reading_text(rsi, close, 27.44) == "RSI(14) 27.4 < 30"
    assert reading_text(volume, close, 3.125) == "Volume 3.12x > 2x avg(20)"
    assert reading_text(change, close, 2.414) == "Price change(5) 2.41% > 2%"
    assert reading_text(sma, close, 90000.0) == "Close 91234.6 > SMA(50) 90000"
    assert reading_text(band, 95.1, 95.64) == "Close 95.1 < BB(20, 2) lower 95.64"
    # A difference of two averages keeps the digits of the price: those both hosts agree on.
    assert reading_text(cross, close, 0.4213) == "EMA(9) crosses above EMA(21) by 0.42"
    assert reading_text(cross, 138.2, 0.00405856) == "EMA(9) crosses above EMA(21) by 0.0041"
    assert reading_text(hist, 138.2, 0.000123) == "MACD(12, 26, 9) histogram 0.00012 > 0"
    assert reading_text(macd, close, -1.5) == "MACD(12, 26, 9) crosses below signal (histogram -1.5)"
    # Not warm: the label alone.
    assert reading_text(rsi, close, None) == "RSI(14) < 30"


def test_figures_have_six_significant_digits_and_no_exponent() -> None:
    assert [figure(v) for v in (91234.5678, 101.23456, 0.0000123456, 12.0, 0.0, -3.25)] == [
        "91234.6",
        "101.235",
        "0.0000123456",
        "12",
        "0",
        "-3.25",
    ]
    # Two hosts' averages differ far below these digits: both write the same text.
    assert figure(0.00405856, 138.2) == figure(0.00405855, 138.2) == "0.0041"
    assert figure(1e-13, 138.2) == "0"  # below the price's reliable digits
