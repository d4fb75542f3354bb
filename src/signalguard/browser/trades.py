"""The positions panel's data: stored trades as rows, live P&L, and the profitability by source.

Pure functions of what the database answered (and of the last prices the tab has seen), so they are
tested without a page. The panel shows the user's newest trades, open ones first: an open trade's
P&L is *unrealised* (at the last closed candle's price, when this tab streams that symbol), a closed
one's is *realised*, as the database computed it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from signalguard.core.candles import timestamp_us

#: Columns the panel reads.
TRADE_VIEW_COLUMNS: Final = (
    "signal_key,symbol,interval,side,size,entry_price,entry_time,take_profit_price,stop_loss_price,"
    "expires_at,status,exit_price,exit_reason,profit_loss,source,close_source,created_at"
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
    #: Signed P&L in the quote currency, or "—" when not known.
    pnl: str
    #: ``+``, ``-`` or ``0`` for styling; "" when not known.
    sign: str
    #: Why it closed ("take-profit", …), or the exit levels while open.
    detail: str


def _num(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _price(value: float | None) -> str:
    return "—" if value is None else f"{value:.8g}"


def _clock_time(value: object) -> str:
    """A stored timestamp as ``HH:MM:SS`` UTC ("" if absent or unreadable)."""
    us = timestamp_us(value)
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%H:%M:%S")


def _pnl(value: float | None) -> tuple[str, str]:
    if value is None:
        return "—", ""
    rounded = round(value, 2)
    return f"{rounded:+,.2f}", "+" if rounded > 0 else "-" if rounded < 0 else "0"


def trade_items(rows: object, last_price: Callable[[str, str], float | None]) -> list[TradeItem]:
    """Stored trades (newest first) as panel rows, open ones first; malformed rows are skipped.

    ``last_price(symbol, interval)`` is the last closed price this tab has seen, or None.
    """
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
        if status == "open":
            price = last_price(symbol, interval)
            pnl = None if price is None else size * (price - entry) * (1 if side == "long" else -1)
            levels = [
                f"{name} {_price(v)}"
                for name, v in (
                    ("target", _num(row.get("take_profit_price"))),
                    ("stop", _num(row.get("stop_loss_price"))),
                )
                if v is not None
            ]
            until = _clock_time(row.get("expires_at"))
            if until:
                levels.append(f"until {until}")
            detail = ", ".join(levels)
        else:
            price = _num(row.get("exit_price"))
            pnl = _num(row.get("profit_loss"))
            detail = _REASONS.get(str(row.get("exit_reason")), "cancelled" if status == "cancelled" else "")
        text, sign = _pnl(pnl)
        close_source = row.get("close_source")
        item = TradeItem(
            key=str(row["signal_key"]),
            symbol=symbol,
            side=side,
            status=status,
            source=str(row.get("source")),
            close_source=str(close_source) if isinstance(close_source, str) else "",
            entry=_price(entry),
            price=_price(price),
            pnl=text,
            sign=sign,
            detail=detail,
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
                avg=_pnl(_num(row.get("avg_profit")))[0],
                realised=_pnl(_num(row.get("realised_pnl")))[0],
            )
        )
    return lines
