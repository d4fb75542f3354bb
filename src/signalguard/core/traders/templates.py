"""Starter traders: well-known setups a person picks from when making a trader.

Each is an ordinary definition (the same JSON a user writes, checked by :func:`~.validation.parse_trader`
like any other), so a template is only a starting point: the page fills the form with it and the user
tunes symbols, thresholds and the paper-trade plan. The parameters are the textbook ones (Wilder's RSI
14 with 30, Bollinger's 20 periods at 2 standard deviations, the 9/21 EMA pair), and every template
carries a paper-trade plan so its preview shows what it would have made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from signalguard.core.ports import JsonValue

__all__ = ["TEMPLATES", "Template", "template"]

#: Symbols a new trader starts with (the user picks their own from the exchange's list).
_SYMBOLS: Final[list[JsonValue]] = ["BTCUSDT", "ETHUSDT"]


@dataclass(frozen=True, slots=True)
class Template:
    """A starter trader: what it is called, what it looks for, and its definition."""

    #: Stable identifier (``rsi_oversold``…), for the page's picker and its tests.
    key: str
    #: The trader's name when made from it.
    name: str
    #: One line on what it looks for, shown beside the picker.
    description: str
    #: The definition, as stored in ``traders.definition``.
    definition: Mapping[str, JsonValue]

    def as_json(self) -> dict[str, JsonValue]:
        """A fresh copy of the definition, for the user to edit."""
        return _copy(dict(self.definition))


def _copy(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    for k, v in value.items():
        if isinstance(v, dict):
            out[k] = _copy(v)
        elif isinstance(v, list):
            out[k] = [_copy(x) if isinstance(x, dict) else x for x in v]
        else:
            out[k] = v
    return out


def _definition(
    conditions: list[JsonValue], trade: dict[str, JsonValue], *, interval: str = "15m", cooldown: int = 4
) -> Mapping[str, JsonValue]:
    return MappingProxyType(
        {
            "version": 1,
            "symbols": list(_SYMBOLS),
            "interval": interval,
            "match": "all",
            "cooldown_candles": cooldown,
            "conditions": conditions,
            "trade": trade,
        }
    )


#: The starter traders, in the order the picker lists them.
TEMPLATES: Final[tuple[Template, ...]] = (
    Template(
        "rsi_oversold",
        "RSI oversold",
        "RSI(14) under 30: a sell-off that may be overdone; long, 3 % target, 2 % stop.",
        _definition(
            [{"indicator": "rsi", "period": 14, "op": "<", "value": 30}],
            {
                "side": "long",
                "notional": 100,
                "take_profit_pct": 3,
                "stop_loss_pct": 2,
                "max_hold_candles": 48,
            },
        ),
    ),
    Template(
        "bollinger_breakout",
        "Bollinger breakout",
        "A close above the upper Bollinger band (20, 2): a breakout; long, 4 % target, 2 % stop.",
        _definition(
            [{"indicator": "close_vs_bollinger", "period": 20, "k": 2, "band": "upper", "op": ">"}],
            {
                "side": "long",
                "notional": 100,
                "take_profit_pct": 4,
                "stop_loss_pct": 2,
                "max_hold_candles": 32,
            },
        ),
    ),
    Template(
        "volume_spike",
        "Volume spike",
        "Volume over 3 × its 20-candle average on a rising candle: buyers arriving; long, 2 % target.",
        _definition(
            [
                {"indicator": "volume_spike", "period": 20, "op": ">", "value": 3},
                {"indicator": "price_change_pct", "period": 1, "op": ">", "value": 0},
            ],
            {
                "side": "long",
                "notional": 100,
                "take_profit_pct": 2,
                "stop_loss_pct": 1.5,
                "max_hold_candles": 16,
            },
            interval="5m",
        ),
    ),
    Template(
        "ema_cross",
        "EMA cross",
        "EMA(9) crossing above EMA(21): a trend turning up; long until a 5 % target or 2.5 % stop.",
        _definition(
            [{"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"}],
            {
                "side": "long",
                "notional": 100,
                "take_profit_pct": 5,
                "stop_loss_pct": 2.5,
                "max_hold_candles": 96,
            },
            interval="1h",
            cooldown=0,
        ),
    ),
)


def template(key: str) -> Template:
    """The starter trader ``key``; :class:`KeyError` naming the known ones otherwise."""
    for t in TEMPLATES:
        if t.key == key:
            return t
    raise KeyError(f"no starter trader {key!r}; known: {', '.join(t.key for t in TEMPLATES)}")
