"""One way to write numbers and times on the page: prices at the symbol's precision, signed P&L, zones.

Every table and notice goes through :class:`Formats`, so that a price reads the same in the signals,
the trades and the chart, and a time is in the zone the user chose:

- **times** in the browser's zone (named in the tables' headings) or in UTC, as the header's switch
  says; minutes, and seconds only where the stream has them (``1s`` candles);
- **prices** with the symbol's own decimals (the exchange's tick size), thousands grouped with ``,``;
  a symbol the exchange list does not name gets as many decimals as its value needs (at least 2, at
  most 8 significant digits);
- **amounts** (P&L) signed, with 2 decimals and the quote currency (``+12.34 USDT``); **percentages**
  signed with 2 decimals (``-0.87 %``); **quantities** with up to 8 significant digits.

Pure: the zone's offset comes from the page (``Date.getTimezoneOffset``, which knows daylight saving
for each instant) as a function, and the precision from the market data's symbol list.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from signalguard.core.symbols import split_symbol

#: Shown for a value that is not known.
UNKNOWN: Final = "—"
#: Significant digits of a price whose symbol's tick size is not known, and of a quantity.
SIGNIFICANT: Final = 8


def _no_offset(_ms: int) -> int:
    return 0


def _no_precision(_symbol: str) -> int | None:
    return None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Formats:
    """How this page writes times and numbers (see the module documentation)."""

    #: Times in UTC (the switch), or in the browser's zone.
    utc: bool = True
    #: The browser's zone: its name, and its offset from UTC in minutes at an instant (epoch ms).
    zone: str = "UTC"
    offset: Callable[[int], int] = _no_offset
    #: A symbol's price decimals from the exchange's tick size (None: not known).
    precision: Callable[[str], int | None] = _no_precision

    @property
    def zone_label(self) -> str:
        """The zone the times are in, for headings: ``UTC`` or the browser's zone name."""
        return "UTC" if self.utc else self.zone

    def moment(self, ms: int) -> datetime:
        """The instant ``ms`` in the chosen zone."""
        if self.utc:
            return datetime.fromtimestamp(ms / 1000, UTC)
        return datetime.fromtimestamp(ms / 1000, timezone(timedelta(minutes=self.offset(ms))))

    def time(self, ms: int | None, *, seconds: bool = False) -> str:
        """``2025-12-06 11:15`` (with ``:05`` if ``seconds`` or the time has seconds)."""
        if ms is None or ms < 0:
            return UNKNOWN
        at = self.moment(ms)
        pattern = "%Y-%m-%d %H:%M:%S" if seconds or at.second else "%Y-%m-%d %H:%M"
        return at.strftime(pattern)

    def clock(self, ms: int | None) -> str:
        """``11:15`` (``11:15:05`` with seconds): a time within the day, as a notification says it."""
        if ms is None or ms < 0:
            return UNKNOWN
        at = self.moment(ms)
        return at.strftime("%H:%M:%S" if at.second else "%H:%M")

    def decimals(self, symbol: str, value: float) -> int:
        """The decimals a price of ``symbol`` is written with."""
        known = self.precision(symbol)
        if known is not None:
            return max(0, min(known, 12))
        if value == 0:
            return 2
        digits = math.floor(math.log10(abs(value))) + 1
        return max(2, min(12, SIGNIFICANT - digits))

    def price(self, symbol: str, value: float | None) -> str:
        """A price of ``symbol``: ``42,123.50``.

        At the symbol's tick size when known; otherwise up to 8 significant digits with trailing zeros
        dropped down to 2 decimals (``104.00``, ``0.0000123``).
        """
        if value is None or not _finite(value):
            return UNKNOWN
        text = f"{value:,.{self.decimals(symbol, value)}f}"
        if self.precision(symbol) is None and "." in text:
            whole, frac = text.split(".")
            text = f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
        return text

    def amount(self, value: float | None, symbol: str = "") -> str:
        """A signed amount in ``symbol``'s quote currency: ``+12.34 USDT`` (``0.00`` unsigned)."""
        if value is None or not _finite(value):
            return UNKNOWN
        rounded = round(value, 2)
        text = f"{rounded:+,.2f}" if rounded else "0.00"
        quote = split_symbol(symbol)[1] if symbol else ""
        return f"{text} {quote}" if quote else text

    @staticmethod
    def percent(value: float | None) -> str:
        """A signed percentage: ``-0.87 %`` (``0.00 %`` unsigned)."""
        if value is None or not _finite(value):
            return UNKNOWN
        rounded = round(value, 2)
        return f"{rounded:+,.2f} %" if rounded else "0.00 %"

    @staticmethod
    def quantity(value: float | None) -> str:
        """A quantity with up to 8 significant digits, no trailing zeros: ``0.0023741``."""
        if value is None or not _finite(value):
            return UNKNOWN
        text = f"{value:,.{SIGNIFICANT}g}"
        return text if "e" not in text else f"{value:,.10f}".rstrip("0").rstrip(".")

    @staticmethod
    def sign(value: float | None) -> str:
        """``+``, ``-`` or ``0`` (rounded to cents) for styling; "" when not known."""
        if value is None or not _finite(value):
            return ""
        rounded = round(value, 2)
        return "+" if rounded > 0 else "-" if rounded < 0 else "0"
