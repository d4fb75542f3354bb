"""Paper trades: a position per signal, managed by exit rules, with no I/O.

A trader whose definition has a ``trade`` plan (see :mod:`signalguard.core.traders`) opens one paper
trade on each of its signals: entry at the signal's price, when the signal's candle closed. The trade
stores its own exit levels (take-profit and stop-loss prices, an expiry time), computed once from the
plan at entry, so any executor can manage it after a handoff even if the trader's definition has
changed since: a trade is its row, not its trader.

Exit rules are checked on every closed candle of the trade's stream that opened at or after the entry
(the candle after the signal's). They are deterministic, so the browser and the cloud close a trade
at the same price and time from the same candles:

- **stop-loss** when the candle's range reaches the stop (low for a long, high for a short);
- **take-profit** when it reaches the target;
- **expiry** when the candle closes at or after ``expires_at`` (exit at the close).

When one candle reaches both the stop and the target, the stop is assumed to have come first: the
path inside a candle is unknown, and assuming the worse keeps paper results honest. A candle that
*opens* beyond a level (a gap) fills at its open, which is worse for a stop and better for a target,
as a real order would.

P&L is in the quote currency: ``size * (exit - entry)`` for a long, ``size * (entry - exit)`` for a
short, with ``size = notional / entry`` in the base asset. The database computes the stored figure
from the same columns; the engine's copy is for display (unrealised P&L).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from signalguard.core.candles import Candle, next_open_time, timestamp_us


class Side(enum.StrEnum):
    """Which way a trade bets."""

    #: Buys at entry, profits when the price rises.
    LONG = "long"
    #: Sells at entry, profits when the price falls.
    SHORT = "short"


class TradeStatus(enum.StrEnum):
    """A trade's place in its lifecycle (the ``trades.status`` column)."""

    #: Entered and being managed by the executor.
    OPEN = "open"
    #: Exited by a rule or by the user; ``profit_loss`` is realised (terminal).
    CLOSED = "closed"
    #: Withdrawn without an exit price (terminal; no P&L).
    CANCELLED = "cancelled"


class ExitReason(enum.StrEnum):
    """Why a trade closed (the ``trades.exit_reason`` column)."""

    #: The price reached the take-profit level.
    TAKE_PROFIT = "take_profit"
    #: The price reached the stop-loss level.
    STOP_LOSS = "stop_loss"
    #: The maximum holding time passed.
    EXPIRY = "expiry"
    #: The user closed it, at the last closed candle's price.
    MANUAL = "manual"


#: Columns :func:`trade_from_row` reads.
TRADE_COLUMNS: Final = (
    "signal_key,trader_id,symbol,interval,side,size,entry_price,entry_time,take_profit_price,"
    "stop_loss_price,expires_at,status,epoch"
)


@dataclass(frozen=True, slots=True)
class TradePlan:
    """How a trader trades its signals: side, size and exit rules (the definition's ``trade``)."""

    side: Side
    #: Quote-currency amount per trade (e.g. 100 USDT); the size is ``notional / entry``.
    notional: float
    #: Exit when the price moves this many percent in the trade's favour (None: no target).
    take_profit_pct: float | None = None
    #: Exit when the price moves this many percent against the trade (None: no stop).
    stop_loss_pct: float | None = None
    #: Exit at the close of the candle this many candles after entry (None: no expiry).
    max_hold_candles: int | None = None

    def to_json(self) -> dict[str, object]:
        """The canonical JSON object (absent rules are left out)."""
        out: dict[str, object] = {"side": str(self.side), "notional": self.notional}
        for key in ("take_profit_pct", "stop_loss_pct", "max_hold_candles"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Trade:
    """An open paper trade, as the executor manages it (and as stored in ``trades``)."""

    #: The trade's key: its signal's key (one trade per signal).
    key: str
    trader_id: str
    symbol: str
    interval: str
    side: Side
    #: Base-asset quantity.
    size: float
    entry_price: float
    #: When the signal's candle closed (epoch ms): the first candle that can exit opens here.
    entry_time: int
    take_profit_price: float | None
    stop_loss_price: float | None
    #: Epoch ms; the first candle closing at or after it exits at its close.
    expires_at: int | None
    #: The lease epoch it was opened under.
    epoch: int

    def unrealised(self, price: float) -> float:
        """P&L if the trade exited at ``price`` now."""
        return profit_loss(self.side, self.size, self.entry_price, price)

    def open_op(self) -> dict[str, object]:
        """The ``write_trades`` operation that opens this trade.

        The database takes the entry price and time from the signal and the source from the token;
        it is sent only what the plan decided.
        """
        return {
            "op": "open",
            "signal_key": self.key,
            "side": str(self.side),
            "size": self.size,
            "take_profit_price": self.take_profit_price,
            "stop_loss_price": self.stop_loss_price,
            "expires_at": self.expires_at,
            "epoch": self.epoch,
        }


@dataclass(frozen=True, slots=True)
class Exit:
    """How and when a trade left the market."""

    reason: ExitReason
    price: float
    #: When the deciding candle closed (epoch ms).
    time: int

    def close_op(self, key: str, epoch: int) -> dict[str, object]:
        """The ``write_trades`` operation that closes trade ``key`` under the live ``epoch``."""
        return {
            "op": "close",
            "signal_key": key,
            "exit_price": self.price,
            "exit_time": self.time,
            "exit_reason": str(self.reason),
            "epoch": epoch,
        }


def profit_loss(side: Side, size: float, entry: float, exit_price: float) -> float:
    """Quote-currency P&L of ``size`` entered at ``entry`` and exited at ``exit_price``."""
    move = exit_price - entry
    return size * (move if side is Side.LONG else -move)


def open_trade(
    plan: TradePlan,
    *,
    key: str,
    trader_id: str,
    symbol: str,
    interval: str,
    open_time: int,
    price: float,
    epoch: int,
) -> Trade:
    """The trade ``plan`` opens on a signal (its key, stream, candle open time and price)."""
    entry_time = next_open_time(interval, open_time)
    sign = 1.0 if plan.side is Side.LONG else -1.0
    target = stop = None
    if plan.take_profit_pct is not None:
        target = price * (1.0 + sign * plan.take_profit_pct / 100.0)
    if plan.stop_loss_pct is not None:
        stop = price * (1.0 - sign * plan.stop_loss_pct / 100.0)
    expires = None
    if plan.max_hold_candles is not None:
        expires = entry_time
        for _ in range(plan.max_hold_candles):
            expires = next_open_time(interval, expires)
    return Trade(
        key=key,
        trader_id=trader_id,
        symbol=symbol,
        interval=interval,
        side=plan.side,
        size=plan.notional / price,
        entry_price=price,
        entry_time=entry_time,
        take_profit_price=target,
        stop_loss_price=stop,
        expires_at=expires,
        epoch=epoch,
    )


def exit_on(trade: Trade, candle: Candle) -> Exit | None:
    """The exit ``candle`` triggers for ``trade``, or None (see the module's rules).

    Candles of another stream, unclosed ones and those that opened before the entry never exit.
    """
    if (
        not candle.closed
        or candle.open_time < trade.entry_time
        or candle.symbol != trade.symbol
        or candle.interval != trade.interval
    ):
        return None
    closed_at = next_open_time(candle.interval, candle.open_time)
    stop, target = trade.stop_loss_price, trade.take_profit_price
    if trade.side is Side.LONG:
        if stop is not None and candle.low <= stop:
            return Exit(ExitReason.STOP_LOSS, min(candle.open, stop), closed_at)
        if target is not None and candle.high >= target:
            return Exit(ExitReason.TAKE_PROFIT, max(candle.open, target), closed_at)
    else:
        if stop is not None and candle.high >= stop:
            return Exit(ExitReason.STOP_LOSS, max(candle.open, stop), closed_at)
        if target is not None and candle.low <= target:
            return Exit(ExitReason.TAKE_PROFIT, min(candle.open, target), closed_at)
    if trade.expires_at is not None and closed_at >= trade.expires_at:
        return Exit(ExitReason.EXPIRY, candle.close, closed_at)
    return None


def _number(value: object) -> float | None:
    # PostgREST prints numeric as a JSON number; a string is accepted too (numeric as text).
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


def trade_from_row(row: Mapping[str, object]) -> tuple[Trade, TradeStatus] | None:
    """A stored trade (a row with :data:`TRADE_COLUMNS`) and its status; None if malformed."""
    try:
        status = TradeStatus(str(row["status"]))
        side = Side(str(row["side"]))
        size, entry = _number(row["size"]), _number(row["entry_price"])
        entry_time = _ms(row["entry_time"])
        raw_expiry = row.get("expires_at")
        expires = _ms(raw_expiry)
        epoch = row["epoch"]
        key, trader = str(row["signal_key"]), str(row["trader_id"])
        symbol, interval = str(row["symbol"]), str(row["interval"])
    except (KeyError, ValueError):
        return None
    if size is None or entry is None or entry_time is None or not isinstance(epoch, int):
        return None
    if raw_expiry is not None and expires is None:
        return None
    trade = Trade(
        key=key,
        trader_id=trader.lower(),
        symbol=symbol,
        interval=interval,
        side=side,
        size=size,
        entry_price=entry,
        entry_time=entry_time,
        take_profit_price=_number(row.get("take_profit_price")),
        stop_loss_price=_number(row.get("stop_loss_price")),
        expires_at=expires,
        epoch=epoch,
    )
    return trade, status


@dataclass(frozen=True, slots=True)
class TradeBook:
    """What an executor adopts at a new lease: the open trades, and which open signals are traded."""

    #: The user's open trades, oldest entry first.
    open: tuple[Trade, ...] = ()
    #: Keys of the open signals that have a trade in any status (an open signal not in it has none).
    traded: frozenset[str] = frozenset()


def trade_book(open_rows: object, traded_rows: object) -> TradeBook:
    """Read the two queries behind a :class:`TradeBook`; malformed rows are skipped.

    ``open_rows``: ``trades`` rows with :data:`TRADE_COLUMNS` and status ``open``. ``traded_rows``: open
    signals' rows with ``signal_key`` (those with a trade).
    """
    trades: list[Trade] = []
    for row in open_rows if isinstance(open_rows, list) else ():
        got = trade_from_row(row) if isinstance(row, Mapping) else None
        if got is not None and got[1] is TradeStatus.OPEN:
            trades.append(got[0])
    traded = {
        str(r["signal_key"])
        for r in (traded_rows if isinstance(traded_rows, list) else ())
        if isinstance(r, Mapping) and isinstance(r.get("signal_key"), str)
    }
    trades.sort(key=lambda t: t.entry_time)
    return TradeBook(tuple(trades), frozenset(traded | {t.key for t in trades}))
