"""The SignalManager: candles in, signals and status changes out, with no I/O.

``feed(candle)`` then ``drain()``. The manager runs every enabled trader on the candles of its
symbols, creates a signal when one matches, and runs each signal's lifecycle. It performs no I/O: what
it produces are *effects* (a signal to persist, a status to change, a trader that failed) which the
adapter writes through the outbox. It generates only while the guard says it may, and stamps what it
produces with the guard's epoch.

Determinism: browser and cloud must produce the *same* signals from the same candles, or the unique
signal key could not collapse a handoff's overlap. So a trader is evaluated on every closed candle
whether or not this side may generate (cooldowns advance the same way on both sides); only the
*emission* depends on the guard. A signal's key, price and labels depend on the candle and the trader
alone.

Work per candle: the traders of one (symbol, interval) share an
:class:`~signalguard.core.traders.IndicatorPool`, which computes each distinct indicator and condition
once and then visits only the traders that can signal on that candle; a candle burst over hundreds of
symbols costs the indicators plus the matches, not traders × symbols. When an indicator or a
condition raises, the traders that use it are stopped and reported (:class:`TraderFailed`); the
others, on the same symbol too, go on.

Signal lifecycle (the same transitions the database's write guard enforces)::

    new ──next candle──▶ active ──expiry──▶ expired
     │                     │
     └──────close──────────┴──────close────▶ closed

A signal is *new* on the candle that triggered it, *active* from the next closed candle of its
symbol, *expired* ``expire_after_candles`` candles after it was created, and *closed* when the user
or the trade it opened closes it. Only the executor moves statuses (the database refuses anyone else).

Paper trades (:mod:`signalguard.core.positions`): a trader with a ``trade`` plan opens one trade per
signal it creates (:class:`TradeOpened`); the executor checks each open trade's exit rules on every
closed candle of its stream and closes it (:class:`TradeClosed`), which closes its signal. A signal
with a trade does not expire by age: its trade's rules end it. The manager manages trades only while
it may generate; when it stops, it forgets its book at once, and at its next lease the adapter loads
the open trades from the database (:meth:`SignalManager.adopt_trades`), which the new executor
manages from then on. The last :data:`RECENT_CANDLES` closed candles of each stream are kept, so an
adopted trade is checked against the candles it missed while nobody held the lease.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from signalguard.core.candles import Candle, candle_index, next_open_time, timestamp_us
from signalguard.core.positions import Exit, ExitReason, Trade, exit_on, open_trade
from signalguard.core.traders import (
    IndicatorPool,
    TraderDefinition,
    TraderDefinitionError,
    TraderEvaluationError,
    TraderState,
    parse_trader,
)

#: Candles after which a signal that nobody closed expires (one hour of 1m candles).
DEFAULT_EXPIRE_AFTER: Final = 60
#: Signals tracked at most (new or active); past it the oldest expire early, so memory is bounded.
DEFAULT_MAX_TRACKED: Final = 5_000
#: Closed candles kept per stream to check an adopted trade against what it missed (2 h of 1m).
RECENT_CANDLES: Final = 120


class SignalStatus(enum.Enum):
    """A signal's place in its lifecycle (the ``signals.status`` column)."""

    #: Just created, on the candle that triggered it.
    NEW = "new"
    #: Confirmed by the next closed candle; being tracked.
    ACTIVE = "active"
    #: Reached its expiry without being closed (terminal).
    EXPIRED = "expired"
    #: Closed by the user or by the trade it opened (terminal).
    CLOSED = "closed"


class Lifecycle(enum.Enum):
    """What happens to a tracked signal."""

    #: A later closed candle of its symbol and interval arrived.
    NEXT_CANDLE = "next_candle"
    #: Its expiry was reached.
    EXPIRE = "expire"
    #: The user or its trade closed it.
    CLOSE = "close"


#: The lifecycle's transition table; a pair not listed leaves the status unchanged.
LIFECYCLE: Final[Mapping[tuple[SignalStatus, Lifecycle], SignalStatus]] = {
    (SignalStatus.NEW, Lifecycle.NEXT_CANDLE): SignalStatus.ACTIVE,
    (SignalStatus.NEW, Lifecycle.EXPIRE): SignalStatus.EXPIRED,
    (SignalStatus.ACTIVE, Lifecycle.EXPIRE): SignalStatus.EXPIRED,
    (SignalStatus.NEW, Lifecycle.CLOSE): SignalStatus.CLOSED,
    (SignalStatus.ACTIVE, Lifecycle.CLOSE): SignalStatus.CLOSED,
}

TERMINAL: Final = frozenset({SignalStatus.EXPIRED, SignalStatus.CLOSED})


def signal_key(user_id: str, trader_id: str, symbol: str, interval: str, open_time: int) -> str:
    """The deterministic signal key, exactly as the database generates it (``private.signal_key``)."""
    return f"{user_id.lower()}:{trader_id.lower()}:{symbol}:{interval}:{open_time}"


@dataclass(frozen=True, slots=True)
class TraderRecord:
    """A trader as stored: its id, name, raw JSON definition and whether it is enabled."""

    id: str
    name: str
    definition: object
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Signal:
    """A signal as created by the manager."""

    key: str
    trader_id: str
    symbol: str
    interval: str
    #: The triggering candle's open time, epoch milliseconds.
    open_time: int
    #: The triggering candle's close price.
    price: float
    matched_conditions: tuple[str, ...]
    #: The lease epoch it was generated under.
    epoch: int
    status: SignalStatus = SignalStatus.NEW

    def row(self, *, source: str, machine_id: str | None = None) -> dict[str, object]:
        """The object ``write_signals`` takes for this signal."""
        return {
            "trader_id": self.trader_id,
            "symbol": self.symbol,
            "interval": self.interval,
            "candle_open_time": self.open_time,
            "price": self.price,
            "matched_conditions": list(self.matched_conditions),
            "status": self.status.value,
            "source": source,
            "machine_id": machine_id,
            "epoch": self.epoch,
        }


#: Columns :func:`signal_from_row` reads.
SIGNAL_COLUMNS: Final = (
    "signal_key,trader_id,symbol,interval,candle_open_time,price,matched_conditions,epoch,status"
)
#: The statuses of the signals an executor adopts at a new lease (and how many at most: all it tracks).
OPEN_STATUSES: Final = ("new", "active")


def open_signals(rows: object) -> list[Signal]:
    """Stored rows (newest first, as read) as signals to :meth:`SignalManager.adopt`, oldest first.

    Rows that are not signals the engine can track are skipped.
    """
    found = [signal_from_row(r) for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []
    return [s for s in reversed(found) if s is not None]


def signal_from_row(row: Mapping[str, object]) -> Signal | None:
    """A stored signal (a row with :data:`SIGNAL_COLUMNS`) as a :class:`Signal` to :meth:`adopt`.

    None if the row is not one the engine can track (malformed, or an unknown status).
    """
    try:
        status = SignalStatus(row["status"])
        open_us = timestamp_us(row["candle_open_time"])
        epoch, price, labels = row["epoch"], row["price"], row.get("matched_conditions") or ()
        if open_us is None or not isinstance(epoch, int) or not isinstance(price, int | float | str):
            return None
        if not isinstance(labels, list | tuple):
            return None
        return Signal(
            key=str(row["signal_key"]),
            trader_id=str(row["trader_id"]),
            symbol=str(row["symbol"]),
            interval=str(row["interval"]),
            open_time=open_us // 1000,
            price=float(price),
            matched_conditions=tuple(str(c) for c in labels),
            epoch=epoch,
            status=status,
        )
    except (KeyError, TypeError, ValueError):
        return None


# -- effects ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignalCreated:
    """Persist this new signal."""

    signal: Signal


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """Persist this status change (made under ``epoch``, the live lease)."""

    key: str
    old: SignalStatus
    new: SignalStatus
    epoch: int


@dataclass(frozen=True, slots=True)
class TraderFailed:
    """A trader was taken out of service: its definition is invalid, or evaluating it failed."""

    trader_id: str
    name: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class TradeOpened:
    """Persist this new paper trade (opened under ``trade.epoch``, the live lease)."""

    trade: Trade


@dataclass(frozen=True, slots=True)
class TradeClosed:
    """Persist this trade's exit (decided under ``epoch``, the live lease)."""

    trade: Trade
    exit: Exit
    epoch: int

    @property
    def profit_loss(self) -> float:
        """Realised P&L in the quote currency (the database computes the stored figure alike)."""
        return self.trade.unrealised(self.exit.price)


Effect = SignalCreated | StatusChanged | TradeOpened | TradeClosed | TraderFailed


@dataclass(frozen=True, slots=True)
class HistoryNeed:
    """Closed candles a stream needs before live candles (the warm-up rule)."""

    symbol: str
    interval: str
    candles: int


@dataclass(slots=True)
class _Tracked:
    signal: Signal
    index: int
    status: SignalStatus


@dataclass(slots=True)
class _Running:
    record: TraderRecord
    definition: TraderDefinition
    states: dict[str, TraderState]


@dataclass(slots=True)
class SignalManager:
    """Runs one user's traders; see the module documentation."""

    user_id: str
    expire_after_candles: int = DEFAULT_EXPIRE_AFTER
    max_tracked: int = DEFAULT_MAX_TRACKED
    _traders: dict[str, _Running] = field(default_factory=dict)
    _pools: dict[tuple[str, str], IndicatorPool] = field(default_factory=dict)
    _by_stream: dict[tuple[str, str], list[tuple[_Running, TraderState]]] = field(default_factory=dict)
    _owner: dict[TraderState, _Running] = field(default_factory=dict)
    _tracked: OrderedDict[str, _Tracked] = field(default_factory=OrderedDict)
    # The same signals by stream, oldest candle first, so a candle touches only its own stream's
    # signals and, of those, only the ones that change: the new ones (activated) and the oldest
    # (expired). Work per candle is proportional to the changes, not to the signals tracked.
    _by_age: dict[tuple[str, str], OrderedDict[str, _Tracked]] = field(default_factory=dict)
    _fresh: dict[tuple[str, str], dict[str, _Tracked]] = field(default_factory=dict)
    _effects: list[Effect] = field(default_factory=list)
    # Open trades by stream (the executor's book), and recent closed candles by stream.
    _book: dict[tuple[str, str], dict[str, Trade]] = field(default_factory=dict)
    _recent: dict[tuple[str, str], deque[Candle]] = field(default_factory=dict)
    _may_generate: bool = False
    _epoch: int | None = None
    #: Signals the traders matched, emitted or not (the reference count for determinism checks).
    matches: int = 0

    def __post_init__(self) -> None:
        """Normalise the user id as the database prints uuids."""
        self.user_id = self.user_id.lower()

    # -- configuration ----------------------------------------------------------------------------

    def set_traders(self, traders: Iterable[TraderRecord]) -> list[HistoryNeed]:
        """Run exactly these traders (enabled ones), keeping the state of those that did not change.

        Returns the streams whose history must be primed before their next live candle (new or
        changed traders). An invalid definition is reported as :class:`TraderFailed` and skipped.
        """
        wanted = {t.id.lower(): t for t in traders if t.enabled}
        for tid in list(self._traders):
            running = self._traders[tid]
            new = wanted.get(tid)
            if new is None or new.definition != running.record.definition:
                self._stop(tid)
        needs: dict[tuple[str, str], int] = {}
        for tid, record in wanted.items():
            if tid in self._traders:
                continue
            try:
                definition = parse_trader(record.definition)
            except TraderDefinitionError as exc:
                self._effects.append(TraderFailed(tid, record.name, "invalid_definition", str(exc)))
                continue
            running = _Running(record, definition, {})
            for symbol in definition.symbols:
                stream = (symbol, definition.interval)
                pool = self._pools.get(stream)
                if pool is None:
                    pool = self._pools[stream] = IndicatorPool(symbol, definition.interval)
                state = TraderState(definition, symbol, pool)
                pool.enlist(state)
                self._owner[state] = running
                running.states[symbol] = state
                self._by_stream.setdefault(stream, []).append((running, state))
                needs[stream] = max(needs.get(stream, 0), definition.history)
            self._traders[tid] = running
        return [HistoryNeed(s, i, n) for (s, i), n in sorted(needs.items())]

    def _stop(self, trader_id: str) -> None:
        running = self._traders.pop(trader_id)
        for symbol, state in running.states.items():
            stream = (symbol, running.definition.interval)
            self._by_stream[stream] = [(r, s) for r, s in self._by_stream[stream] if s is not state]
            del self._owner[state]
            state.close()
            if not self._by_stream[stream]:
                del self._by_stream[stream]
                self._pools.pop(stream, None)

    def streams(self) -> list[HistoryNeed]:
        """Every (symbol, interval) the running traders watch, with the history each needs."""
        needs: dict[tuple[str, str], int] = dict.fromkeys(self._book, 1)  # open trades need candles too
        for stream, pairs in self._by_stream.items():
            needs[stream] = max(r.definition.history for r, _ in pairs)
        return [HistoryNeed(s, i, n) for (s, i), n in sorted(needs.items())]

    def authorize(self, may_generate: bool, epoch: int | None) -> None:
        """Apply the guard's decision: generate (under ``epoch``) or not.

        Losing the right to generate forgets the trade book at once: another executor may manage
        those trades from now on, and this side reloads them (:meth:`adopt_trades`) at its next lease.
        """
        self._may_generate = bool(may_generate and epoch is not None)
        self._epoch = epoch if self._may_generate else None
        if not self._may_generate:
            self._book.clear()

    @property
    def may_generate(self) -> bool:
        """Whether the manager currently creates signals and moves statuses."""
        return self._may_generate

    # -- candles ----------------------------------------------------------------------------------

    def prime(self, candle: Candle) -> None:
        """Feed a historical closed candle to every trader on its stream (nothing is signalled)."""
        stream = (candle.symbol, candle.interval)
        self._remember(stream, candle)
        pool = self._pools.get(stream)
        if pool is None:
            return
        try:
            pool.prime(candle)
        except TraderEvaluationError as exc:
            self._fail_stream(stream, exc)
            return
        if pool.broken:
            self._fail_broken(stream)

    def feed(self, candle: Candle) -> None:
        """Feed a live candle. Unclosed candles are ignored: traders decide on closed candles only."""
        if not candle.closed:
            return
        stream = (candle.symbol, candle.interval)
        self._remember(stream, candle)
        if self._may_generate and stream in self._book:
            self._manage_trades(stream, (candle,))
        pool = self._pools.get(stream)
        if pool is None:
            return
        self._advance_lifecycle(candle)
        try:
            # The pool visits only the traders that can signal on this candle (see IndicatorPool).
            signalling = pool.advance(candle)
        except TraderEvaluationError as exc:
            self._fail_stream(stream, exc)
            return
        if pool.broken:
            self._fail_broken(stream)
        self.matches += len(signalling)
        if not self._may_generate:
            return
        assert self._epoch is not None
        for state, labels in signalling:
            running = self._owner[state]
            tid = running.record.id.lower()
            key = signal_key(self.user_id, tid, candle.symbol, candle.interval, candle.open_time)
            if key in self._tracked:
                continue
            signal = Signal(
                key, tid, candle.symbol, candle.interval, candle.open_time, candle.close, labels, self._epoch
            )
            self._track(signal, candle_index(candle.interval, candle.open_time))
            self._effects.append(SignalCreated(signal))
            if running.definition.trade is not None:
                self._open_trade(signal, running)

    def _fail_stream(self, stream: tuple[str, str], exc: TraderEvaluationError) -> None:
        # The candle itself was refused (wrong stream, out of step): nothing on the stream took it.
        for running, _ in list(self._by_stream.get(stream, ())):
            self._fail(running, str(exc.code), str(exc))

    def _fail_broken(self, stream: tuple[str, str]) -> None:
        # An indicator or condition raised: stop the traders that use it (on every symbol, since a
        # trader is one unit); the others, on this stream too, go on.
        for running, state in list(self._by_stream.get(stream, ())):
            failure = state.failure
            if failure is not None:
                self._fail(running, "internal", failure)

    def _fail(self, running: _Running, code: str, message: str) -> None:
        tid = running.record.id.lower()
        if tid in self._traders:
            self._stop(tid)
            self._effects.append(TraderFailed(tid, running.record.name, code, message))

    # -- lifecycle --------------------------------------------------------------------------------

    def _track(self, signal: Signal, index: int) -> None:
        t = _Tracked(signal, index, signal.status)
        stream = (signal.symbol, signal.interval)
        self._tracked[signal.key] = t
        aged = self._by_age.setdefault(stream, OrderedDict())
        aged[signal.key] = t
        if len(aged) > 1 and next(reversed(aged.values())).index < next(iter(aged.values())).index:
            # Only adopted signals arrive out of candle order; keep the stream's list sorted.
            self._by_age[stream] = OrderedDict(sorted(aged.items(), key=lambda kv: kv[1].index))
        if t.status is SignalStatus.NEW:
            self._fresh.setdefault(stream, {})[signal.key] = t
        while len(self._tracked) > self.max_tracked:
            oldest = next(iter(self._tracked))
            if self._may_generate:
                self._move(oldest, Lifecycle.EXPIRE)
            else:
                self._untrack(oldest)  # not the executor: nothing to write, just forget

    def _untrack(self, key: str) -> None:
        t = self._tracked.pop(key)
        stream = (t.signal.symbol, t.signal.interval)
        aged = self._by_age.get(stream)
        if aged is not None:
            aged.pop(key, None)  # a traded signal left it when its trade opened
            if not aged:
                del self._by_age[stream]
        fresh = self._fresh.get(stream)
        if fresh is not None:
            fresh.pop(key, None)
            if not fresh:
                del self._fresh[stream]

    def adopt(self, signals: Iterable[Signal]) -> None:
        """Take over tracking signals another executor created (loaded from the database)."""
        for s in signals:
            if s.status in TERMINAL or s.key in self._tracked:
                continue
            self._track(s, candle_index(s.interval, s.open_time))

    def close_signal(self, key: str) -> bool:
        """Close a tracked signal (the user, or its trade); False if it cannot be closed now."""
        if not self._may_generate or key not in self._tracked:
            return False
        return self._move(key, Lifecycle.CLOSE)

    def _advance_lifecycle(self, candle: Candle) -> None:
        if not self._may_generate:
            return
        stream = (candle.symbol, candle.interval)
        aged = self._by_age.get(stream)
        fresh = self._fresh.get(stream)
        if not aged and not fresh:
            return
        index = candle_index(candle.interval, candle.open_time)
        oldest_alive = index - self.expire_after_candles
        while aged:
            key, t = next(iter(aged.items()))
            if t.index > oldest_alive:
                break
            self._move(key, Lifecycle.EXPIRE)
            aged = self._by_age.get(stream, OrderedDict())
        fresh = self._fresh.get(stream)
        if fresh:
            for key, t in list(fresh.items()):
                if index > t.index:
                    self._move(key, Lifecycle.NEXT_CANDLE)
                    fresh.pop(key, None)
            if not fresh:
                self._fresh.pop(stream, None)

    def _move(self, key: str, what: Lifecycle) -> bool:
        t = self._tracked[key]
        new = LIFECYCLE.get((t.status, what))
        if new is None:
            return False
        assert self._epoch is not None  # only the executor moves statuses
        self._effects.append(StatusChanged(key, t.status, new, self._epoch))
        t.status = new
        if new in TERMINAL:
            self._untrack(key)
        return True

    # -- trades -----------------------------------------------------------------------------------

    def _remember(self, stream: tuple[str, str], candle: Candle) -> None:
        recent = self._recent.get(stream)
        if recent is None:
            recent = self._recent[stream] = deque(maxlen=RECENT_CANDLES)
        if not recent or candle.open_time > recent[-1].open_time:
            recent.append(candle)

    def _open_trade(self, signal: Signal, running: _Running) -> None:
        plan = running.definition.trade
        assert plan is not None and self._epoch is not None
        trade = open_trade(
            plan,
            key=signal.key,
            trader_id=signal.trader_id,
            symbol=signal.symbol,
            interval=signal.interval,
            open_time=signal.open_time,
            price=signal.price,
            epoch=self._epoch,
        )
        self._effects.append(TradeOpened(trade))
        self._hold(trade)

    def _hold(self, trade: Trade) -> None:
        stream = (trade.symbol, trade.interval)
        self._book.setdefault(stream, {})[trade.key] = trade
        # Its trade's rules end the signal, not its age (the trade may outlive the expiry).
        aged = self._by_age.get(stream)
        if aged is not None:
            aged.pop(trade.key, None)
            if not aged:
                del self._by_age[stream]
        # Candles it missed (an adopted trade, a signal adopted late): check them now, in order.
        missed = [c for c in self._recent.get(stream, ()) if c.open_time >= trade.entry_time]
        if missed:
            self._manage_trades(stream, missed, only=trade.key)

    def _manage_trades(
        self, stream: tuple[str, str], candles: Iterable[Candle], only: str | None = None
    ) -> None:
        book = self._book[stream]
        for candle in candles:
            for key, trade in list(book.items()):
                if only is not None and key != only:
                    continue
                done = exit_on(trade, candle)
                if done is not None:
                    self._close_trade(trade, done)
            if not book:
                break
        if not book:
            self._book.pop(stream, None)

    def _close_trade(self, trade: Trade, done: Exit) -> None:
        assert self._epoch is not None
        stream = (trade.symbol, trade.interval)
        book = self._book.get(stream, {})
        book.pop(trade.key, None)
        self._effects.append(TradeClosed(trade, done, self._epoch))
        if trade.key in self._tracked:
            self._move(trade.key, Lifecycle.CLOSE)

    def adopt_trades(self, trades: Iterable[Trade], traded: Collection[str] = ()) -> None:
        """Manage the open trades loaded from the database (at a new lease, or to re-check).

        ``trades`` are the user's open trades; ``traded`` the keys of every signal that has a trade
        in any status. A tracked signal of a trader with a plan and no trade at all gets its trade
        now (its opener's write was refused, say because the lease moved before it landed): an open
        signal always has its trade. A tracked signal whose trade is already over is closed. Each
        adopted trade is checked at once against the recent candles it missed. Does nothing unless
        this side may generate.
        """
        if not self._may_generate:
            return
        held = {k for book in self._book.values() for k in book}
        open_keys: set[str] = set()
        for trade in trades:
            open_keys.add(trade.key)
            if trade.key not in held:
                self._hold(trade)
                held.add(trade.key)
        for key, t in list(self._tracked.items()):
            if key in held or key in open_keys or not self._may_generate:
                continue
            if key in traded:
                self._move(key, Lifecycle.CLOSE)  # its trade closed; the signal's close did not land
                continue
            running = self._traders.get(t.signal.trader_id)
            if running is not None and running.definition.trade is not None:
                self._open_trade(t.signal, running)

    def close_trade(self, key: str) -> bool:
        """Close an open trade by hand at its stream's last closed price; False if it cannot be now."""
        if not self._may_generate:
            return False
        for stream, book in self._book.items():
            trade = book.get(key)
            if trade is None:
                continue
            recent = self._recent.get(stream)
            if not recent:
                return False
            last = recent[-1]
            closed_at = next_open_time(last.interval, last.open_time)
            self._close_trade(trade, Exit(ExitReason.MANUAL, last.close, max(closed_at, trade.entry_time)))
            if not book:
                self._book.pop(stream, None)
            return True
        return False

    def open_trades(self) -> list[Trade]:
        """The trades this executor manages, oldest entry first (empty unless it may generate)."""
        return sorted((t for book in self._book.values() for t in book.values()), key=lambda t: t.entry_time)

    def last_price(self, symbol: str, interval: str) -> float | None:
        """The close of the newest closed candle seen on a stream (for unrealised P&L)."""
        recent = self._recent.get((symbol, interval))
        return recent[-1].close if recent else None

    def tracked(self) -> list[tuple[Signal, SignalStatus]]:
        """Signals being tracked (new or active), oldest first, with their current status."""
        return [(t.signal, t.status) for t in self._tracked.values()]

    # -- output -----------------------------------------------------------------------------------

    def drain(self) -> list[Effect]:
        """Return and forget the effects produced since the last drain, in order."""
        out, self._effects = self._effects, []
        return out
