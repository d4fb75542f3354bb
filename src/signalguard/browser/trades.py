"""The positions panel's data: stored trades as rows, live P&L, and the profitability by source.

Pure functions of what the database answered (and of the last prices the tab has seen), so they are
tested without a page. The panel shows the user's newest trades, open ones first: an open trade's
P&L is *unrealised* (at the last closed candle's price, when this tab streams that symbol), a closed
one's is *realised*, as the database computed it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from signalguard.browser.formats import UNKNOWN, Formats
from signalguard.core.candles import timestamp_us

#: Columns the panel reads.
TRADE_VIEW_COLUMNS: Final = (
    "signal_key,symbol,interval,side,size,entry_price,entry_time,take_profit_price,stop_loss_price,"
    "expires_at,status,exit_price,exit_time,exit_reason,profit_loss,source,close_source,created_at"
)
#: Trades shown at most.
TRADES_SHOWN: Final = 50
#: Which open signals have a trade (a signal's embedded trades, only those with one).
TRADED_SIGNALS: Final = "signal_key,trades!inner(status)"

_SOURCE_NAMES: Final = {"local": "Browser", "cloud": "Cloud"}
_REASONS: Final = {
    "take_profit": "take-profit",
    "stop_loss": "stop-loss",
    "expiry": "expiry",
    "manual": "manual",
}


@dataclass(frozen=True, slots=True)
class TradeItem:
    """A row of the positions panel, as text."""

    key: str
    symbol: str
    side: str
    status: str
    #: ``local``/``cloud``: who opened it, and who closed it ("" while open).
    source: str
    close_source: str
    entry: str
    #: The exit price (closed), the last price (open, when known), or "—".
    price: str
    #: Signed P&L in the quote currency (``+12.34 USDT``), or "—" when not known.
    pnl: str
    #: ``+``, ``-`` or ``0`` for styling; "" when not known.
    sign: str
    #: Why it closed ("take-profit", …), or the exit levels while open.
    detail: str
    #: When it opened and closed ("" while open), in the page's zone.
    opened: str = ""
    closed: str = ""
    #: The quantity of the base asset.
    quantity: str = ""
    #: The P&L as a percentage of the entry, signed, or "—".
    pnl_pct: str = UNKNOWN


def _num(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _ms(value: object) -> int | None:
    us = timestamp_us(value)
    return None if us is None else us // 1000


def trade_items(
    rows: object, last_price: Callable[[str, str], float | None], fmt: Formats | None = None
) -> list[TradeItem]:
    """Stored trades (newest first) as panel rows, open ones first; malformed rows are skipped.

    ``last_price(symbol, interval)`` is the last closed price this tab has seen, or None; ``fmt``
    writes the numbers and times (UTC and the default precision if not given).
    """
    fmt = fmt or Formats()
    items: list[tuple[bool, int, TradeItem]] = []
    for i, row in enumerate(rows if isinstance(rows, list) else ()):
        if not isinstance(row, Mapping) or not isinstance(row.get("signal_key"), str):
            continue
        status = str(row.get("status"))
        side = str(row.get("side"))
        size, entry = _num(row.get("size")), _num(row.get("entry_price"))
        if status not in ("open", "closed", "cancelled") or side not in ("long", "short"):
            continue
        if size is None or entry is None:
            continue
        symbol, interval = str(row.get("symbol")), str(row.get("interval"))
        seconds = interval.endswith("s")
        direction = 1 if side == "long" else -1
        if status == "open":
            price = last_price(symbol, interval)
            pnl = None if price is None else size * (price - entry) * direction
            levels = [
                f"{name} {fmt.price(symbol, v)}"
                for name, v in (
                    ("target", _num(row.get("take_profit_price"))),
                    ("stop", _num(row.get("stop_loss_price"))),
                )
                if v is not None
            ]
            until = _ms(row.get("expires_at"))
            if until is not None:
                levels.append(f"until {fmt.time(until, seconds=seconds)}")
            detail = ", ".join(levels)
        else:
            price = _num(row.get("exit_price"))
            pnl = _num(row.get("profit_loss"))
            detail = _REASONS.get(str(row.get("exit_reason")), "cancelled" if status == "cancelled" else "")
        pct = None if price is None or status == "cancelled" else (price - entry) / entry * 100 * direction
        close_source = row.get("close_source")
        exit_ms = _ms(row.get("exit_time"))
        item = TradeItem(
            key=str(row["signal_key"]),
            symbol=symbol,
            side=side,
            status=status,
            source=str(row.get("source")),
            close_source=str(close_source) if isinstance(close_source, str) else "",
            entry=fmt.price(symbol, entry),
            price=fmt.price(symbol, price),
            pnl=fmt.amount(pnl, symbol),
            sign=fmt.sign(pnl),
            detail=detail,
            opened=fmt.time(_ms(row.get("entry_time")), seconds=seconds),
            closed=fmt.time(exit_ms, seconds=seconds) if exit_ms is not None else "",
            quantity=fmt.quantity(size),
            pnl_pct=fmt.percent(pct),
        )
        items.append((status != "open", i, item))
    items.sort(key=lambda t: (t[0], t[1]))
    return [it for _, _, it in items]


def source_name(source: str) -> str:
    """``local``/``cloud`` as the page names them."""
    return _SOURCE_NAMES.get(source, source)


@dataclass(frozen=True, slots=True)
class ProfitLine:
    """A row of the profitability by source (the seed's "compare profitability by source")."""

    source: str
    label: str
    signals: int
    trades: int
    open: int
    wins: int
    losses: int
    avg: str
    realised: str


def profit_lines(answer: object) -> list[ProfitLine]:
    """``trade_summary``'s answer as rows, one per source; malformed parts are skipped."""
    by_source = answer.get("by_source") if isinstance(answer, Mapping) else None
    lines: list[ProfitLine] = []
    for row in by_source if isinstance(by_source, list) else ():
        if not isinstance(row, Mapping) or row.get("source") not in _SOURCE_NAMES:
            continue

        def count(key: str, row: Mapping[str, object] = row) -> int:
            value = row.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        source = str(row["source"])
        lines.append(
            ProfitLine(
                source=source,
                label=_SOURCE_NAMES[source],
                signals=count("total_signals"),
                trades=count("trades_executed"),
                open=count("open_trades"),
                wins=count("wins"),
                losses=count("losses"),
                avg=Formats().amount(_num(row.get("avg_profit"))),
                realised=Formats().amount(_num(row.get("realised_pnl"))),
            )
        )
    return lines
