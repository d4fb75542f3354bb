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
manages from then on. The book itself, with the recent candles an adopted trade is checked against
and the trades that wait for older ones, is :class:`~signalguard.core.tradebook.OpenTrades`.

Catching up with a window: a lease's window can open before the engine may emit, and the candles
that closed in between still owe their signals. Which candles are evaluated at warm-up, which matches
are held back, and under which epoch each is emitted at a grant is
:class:`~signalguard.core.catchup.CatchUp` (see :mod:`signalguard.core.catchup`).

This module composes the two with the traders, their streams and the signal lifecycle, and is the
one API the hosts use: the names that moved are re-exported here.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from signalguard.core.candles import Candle, candle_index, timestamp_us
from signalguard.core.catchup import (
    CATCH_UP_CANDLES,
    CatchUp,
    LeaseWindow,
    primed_candles,
    warm_up_candles,
)
from signalguard.core.positions import Exit, Trade, open_trade
from signalguard.core.tradebook import RECENT_CANDLES, CandleRange, Closing, OpenTrades
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

# CATCH_UP_CANDLES and LeaseWindow belong to catchup, RECENT_CANDLES and CandleRange to tradebook; they
# are re-exported so that this module stays the one the hosts import the engine's names from.
__all__ = [
    "CATCH_UP_CANDLES",
    "DEFAULT_EXPIRE_AFTER",
    "DEFAULT_MAX_TRACKED",
    "LIFECYCLE",
    "OPEN_STATUSES",
    "RECENT_CANDLES",
    "SIGNAL_COLUMNS",
    "TERMINAL",
    "CandleRange",
    "Drained",
    "Effect",
    "HistoryNeed",
    "LeaseWindow",
    "Lifecycle",
    "Signal",
    "SignalCreated",
    "SignalManager",
    "SignalStatus",
    "StatusChanged",
    "StreamsChanged",
    "TradeClosed",
    "TradeOpened",
    "TraderFailed",
    "TraderRecord",
    "Write",
    "open_signals",
    "signal_from_row",
    "signal_key",
    "sort_effects",
]


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


@dataclass(frozen=True, slots=True)
class StreamsChanged:
    """Watch these streams now (the traders or the open trades changed); prime ``needs`` first.

    What the engine needs from the market is said here, with its other effects, rather than asked
    for after each change: the host passes ``needs`` to the feed and restarts it on ``streams``.
    """

    #: Every (symbol, interval) the running traders and the open trades watch, sorted.
    streams: tuple[tuple[str, str], ...]
    #: Streams whose history must be fetched before their next live candle (new or changed traders).
    needs: tuple[HistoryNeed, ...]


Effect = SignalCreated | StatusChanged | TradeOpened | TradeClosed | TraderFailed | StreamsChanged
#: What the engine asks to be written (the outbox's intake).
Write = SignalCreated | StatusChanged | TradeOpened | TradeClosed


@dataclass(frozen=True, slots=True)
class Drained:
    """One drain's effects sorted by who takes them: the outbox, the feed, the user (or the log).

    Both hosts route the same effects the same way; only what they do with each part differs.
    """

    #: For the outbox, in the engine's order.
    writes: tuple[Write, ...] = ()
    #: Traders taken out of service.
    failed: tuple[TraderFailed, ...] = ()
    #: The streams to watch, if they changed (the latest, with every need of the drain).
    streams: StreamsChanged | None = None

    @property
    def traded(self) -> bool:
        """Whether a paper trade was opened or closed."""
        return any(isinstance(w, TradeOpened | TradeClosed) for w in self.writes)

    @property
    def new_rows(self) -> bool:
        """Whether a signal or a trade is new or closed (written soon; status changes can wait)."""
        return any(not isinstance(w, StatusChanged) for w in self.writes)


def sort_effects(effects: Iterable[Effect]) -> Drained:
    """Sort what :meth:`SignalManager.drain` returned (see :class:`Drained`)."""
    writes: list[Write] = []
    failed: list[TraderFailed] = []
    streams: StreamsChanged | None = None
    for effect in effects:
        if isinstance(effect, TraderFailed):
            failed.append(effect)
        elif isinstance(effect, StreamsChanged):
            needs = (*streams.needs, *effect.needs) if streams is not None else effect.needs
            streams = StreamsChanged(effect.streams, needs)
        else:
            writes.append(effect)
    return Drained(tuple(writes), tuple(failed), streams)


@dataclass(frozen=True, slots=True)
class HistoryNeed:
    """Closed candles a stream needs before live candles: the warm-up rule's, plus the catch-up.

    Fetch the newest ``candles`` closed candles and give them to :meth:`SignalManager.warm_up`.
    """

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
    # The executor's open trades and the recent candles they are checked against.
    _trades: OpenTrades = field(default_factory=OpenTrades)
    # The lease window, its epoch, and the matches held back until a grant.
    _window: CatchUp = field(default_factory=CatchUp)
    # While evaluating warm-up candles: emit only if the window's start is known.
    _historical: bool = False
    # The streams last announced (StreamsChanged).
    _announced: tuple[tuple[str, str], ...] = ()
    #: Signals the traders matched, emitted or not (the reference count for determinism checks).
    matches: int = 0
    #: Matches not emitted because their candle closed before the held window opened.
    before_window: int = 0
    #: Signals emitted at a grant for candles that closed before the engine was allowed to emit.
    caught_up: int = 0
    #: Of those, and of historical candles, signals emitted under an earlier window of this holder.
    caught_up_earlier: int = 0

    def __post_init__(self) -> None:
        """Normalise the user id as the database prints uuids."""
        self.user_id = self.user_id.lower()

    # -- configuration ----------------------------------------------------------------------------

    def set_traders(self, traders: Iterable[TraderRecord]) -> list[HistoryNeed]:
        """Run exactly these traders (enabled ones), keeping the state of those that did not change.

        Returns the streams whose history must be primed before their next live candle (new or
        changed traders), which :meth:`drain` also reports (:class:`StreamsChanged`) whenever the
        streams or the needs change. An invalid definition is reported as :class:`TraderFailed` and
        skipped.
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
                needs[stream] = max(needs.get(stream, 0), warm_up_candles(definition.history))
            self._traders[tid] = running
        primes = [HistoryNeed(s, i, n) for (s, i), n in sorted(needs.items())]
        self._announce(primes)
        return primes

    def _announce(self, needs: Sequence[HistoryNeed] = ()) -> None:
        """Report the streams to watch if they changed, or if some need their history."""
        streams = tuple((n.symbol, n.interval) for n in self.streams())
        if streams != self._announced or needs:
            self._announced = streams
            self._effects.append(StreamsChanged(streams, tuple(needs)))

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
        # Open trades need candles too, on a stream no trader watches as well.
        needs: dict[tuple[str, str], int] = dict.fromkeys(self._trades.streams(), 1)
        for stream in self._by_stream:
            needs[stream] = warm_up_candles(self._settle(stream))
        return [HistoryNeed(s, i, n) for (s, i), n in sorted(needs.items())]

    def _settle(self, stream: tuple[str, str]) -> int:
        """The warm-up rule's history of a stream: the most any of its traders needs."""
        return max((r.definition.history for r, _ in self._by_stream.get(stream, ())), default=0)

    def authorize(
        self,
        may_generate: bool,
        epoch: int | None,
        since_us: int | None = None,
        earlier: Iterable[LeaseWindow] = (),
        started_us: int | None = None,
    ) -> None:
        """Apply the guard's decision: generate (under ``epoch``, whose window opened at ``since_us``) or not.

        ``since_us`` is the window's start by the database clock (epoch microseconds, the lease's
        ``acquired_at``). At a grant (a new epoch, or allowed again), the kept matches of candles that
        closed inside the window are emitted; from then on nothing is emitted under ``epoch`` for a
        candle that closed before it. ``earlier`` are windows of earlier epochs that the same holder
        held (the database's epoch history): a match whose candle closed inside one of them, and before
        ``since_us``, is emitted under that earlier epoch.

        Losing the right to generate forgets the trade book at once: another executor may manage those
        trades from now on, and this side reloads them (:meth:`adopt_trades`) at its next lease.
        """
        released = self._window.set_lease(epoch if may_generate else None, since_us, earlier, started_us)
        if not self.may_generate:
            self._trades.clear()
            return
        for release in released:
            for tid, labels in release.matches:
                running = self._traders.get(tid)
                if running is not None and self._emit(release.candle, running, labels, release.epoch):
                    self.caught_up += 1
                    if release.epoch != self._epoch:
                        self.caught_up_earlier += 1

    @property
    def may_generate(self) -> bool:
        """Whether the manager currently creates signals and moves statuses."""
        return self._window.may_generate

    @property
    def _epoch(self) -> int | None:
        """The live lease's epoch, under which statuses move and trades open and close."""
        return self._window.epoch

    # -- candles ----------------------------------------------------------------------------------

    def prime(self, candle: Candle) -> None:
        """Feed a historical closed candle to every trader on its stream (nothing is signalled)."""
        stream = (candle.symbol, candle.interval)
        self._trades.remember(candle)
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

    def warm_up(self, candles: Sequence[Candle]) -> None:
        """Feed a stream's warm-up history, oldest first (the newest closed candles a HistoryNeed asked for).

        The oldest candles, as many as the warm-up rule asks, prime the traders (nothing is evaluated:
        their indicators have not settled yet); the rest (at most
        :data:`~signalguard.core.catchup.EVALUATED_CANDLES`) are evaluated like live candles. Their
        signals are emitted only inside a known window (see :meth:`authorize`), otherwise kept for
        the next grant. Candles a running stream has already
        taken are skipped, so warming up a stream again is harmless.
        """
        if not candles:
            return
        stream = (candles[0].symbol, candles[0].interval)
        split = primed_candles(len(candles), self._settle(stream))
        for candle in candles[:split]:
            self.prime(candle)
        self._release_covered(stream)
        self._historical = True
        try:
            for candle in candles[split:]:
                self.feed(candle)
        finally:
            self._historical = False

    def feed(self, candle: Candle) -> None:
        """Feed a live candle. Unclosed candles are ignored: traders decide on closed candles only."""
        if not candle.closed:
            return
        stream = (candle.symbol, candle.interval)
        if self._trades.remember(candle):
            self._release_covered(stream)
            if self.may_generate:
                self._closed(self._trades.on_candle(candle))
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
        if not signalling:
            return
        self.matches += len(signalling)
        window = self._window
        if not window.may_emit(historical=self._historical):
            window.keep(candle, tuple((self._owner[s].record.id.lower(), lb) for s, lb in signalling))
            return
        epoch = window.epoch_at(candle)
        if epoch is None:
            self.before_window += len(signalling)  # the database would refuse it (SG002)
            return
        live = window.epoch  # read once: this loop is the burst's hot path
        for state, labels in signalling:
            if self._emit(candle, self._owner[state], labels, epoch) and epoch != live:
                self.caught_up_earlier += 1

    def _emit(self, candle: Candle, running: _Running, labels: tuple[str, ...], epoch: int) -> bool:
        """Create the signal of ``running`` on ``candle`` (and its trade); False if it exists.

        The signal carries ``epoch``, the live epoch or an earlier window's (see :meth:`authorize`); a
        trade always opens under the live epoch, which the database checks when it is written.
        """
        tid = running.record.id.lower()
        key = signal_key(self.user_id, tid, candle.symbol, candle.interval, candle.open_time)
        if key in self._tracked:
            return False
        signal = Signal(
            key,
            tid,
            candle.symbol,
            candle.interval,
            candle.open_time,
            candle.close,
            labels,
            epoch,
        )
        self._track(signal, candle_index(candle.interval, candle.open_time))
        self._effects.append(SignalCreated(signal))
        if running.definition.trade is not None:
            self._open_trade(signal, running)
        return True

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
            if self.may_generate:
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
        if not self.may_generate or key not in self._tracked:
            return False
        return self._move(key, Lifecycle.CLOSE)

    def _advance_lifecycle(self, candle: Candle) -> None:
        stream = (candle.symbol, candle.interval)
        aged = self._by_age.get(stream)
        fresh = self._fresh.get(stream)
        if (not aged and not fresh) or not self.may_generate:
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
        epoch = self._epoch
        assert epoch is not None  # only the executor moves statuses
        self._effects.append(StatusChanged(key, t.status, new, epoch))
        t.status = new
        if new in TERMINAL:
            self._untrack(key)
        return True

    # -- trades -----------------------------------------------------------------------------------

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
        # Its trade's rules end the signal, not its age (the trade may outlive the expiry).
        stream = (trade.symbol, trade.interval)
        aged = self._by_age.get(stream)
        if aged is not None:
            aged.pop(trade.key, None)
            if not aged:
                del self._by_age[stream]
        self._closed(self._trades.hold(trade))

    def _release_covered(self, stream: tuple[str, str]) -> None:
        """Manage the waiting trades of ``stream`` that its recent candles now cover (after a warm-up)."""
        for trade in self._trades.take_covered(stream):
            self._hold(trade)

    def _closed(self, closings: Iterable[Closing]) -> None:
        """Write the trades' exits under the live lease, and close their signals."""
        for trade, done in closings:
            assert self._epoch is not None
            self._effects.append(TradeClosed(trade, done, self._epoch))
            if trade.key in self._tracked:
                self._move(trade.key, Lifecycle.CLOSE)

    def trade_history_needs(self) -> list[CandleRange]:
        """The candles the waiting trades need: from the oldest entry to the stream's recent candles.

        Fetch each range (closed candles only) and give it to :meth:`fill_trade_history`.
        """
        return self._trades.history_needs()

    def fill_trade_history(self, symbol: str, interval: str, candles: Sequence[Candle]) -> None:
        """Check the stream's waiting trades against ``candles`` and the recent candles after them.

        ``candles`` are a range of :meth:`trade_history_needs`, oldest first; the trades still open
        after them are managed from then on. If the candles do not reach back to a trade's entry, or
        leave a hole before the recent candles, the trades stay waiting (the range is asked again).
        """
        if self.may_generate:
            self._closed(self._trades.fill(symbol, interval, candles))

    def adopt_trades(self, trades: Iterable[Trade], traded: Collection[str] = ()) -> None:
        """Manage the open trades loaded from the database (at a new lease, or to re-check).

        ``trades`` are the user's open trades; ``traded`` the keys of every signal that has a trade
        in any status. A tracked signal of a trader with a plan and no trade at all gets its trade
        now (its opener's write was refused, say because the lease moved before it landed): an open
        signal always has its trade. A tracked signal whose trade is already over is closed. Each
        adopted trade is checked at once against the recent candles it missed. Does nothing unless
        this side may generate.
        """
        if not self.may_generate:
            return
        held = self._trades.keys()
        open_keys: set[str] = set()
        for trade in trades:
            open_keys.add(trade.key)
            if trade.key not in held:
                self._hold(trade)
                held.add(trade.key)
        for key, t in list(self._tracked.items()):
            if key in held or key in open_keys or not self.may_generate:
                continue
            if key in traded:
                self._move(key, Lifecycle.CLOSE)  # its trade closed; the signal's close did not land
                continue
            running = self._traders.get(t.signal.trader_id)
            if running is not None and running.definition.trade is not None:
                self._open_trade(t.signal, running)
        self._announce()  # a trade on a stream no trader watches still needs its candles

    def close_trade(self, key: str) -> bool:
        """Close an open trade by hand at its stream's last closed price; False if it cannot be now."""
        if not self.may_generate:
            return False
        closing = self._trades.close(key)
        if closing is None:
            return False
        self._closed((closing,))
        return True

    def open_trades(self) -> list[Trade]:
        """The trades this executor manages or waits to, oldest entry first (none unless it may generate)."""
        return self._trades.trades()

    def last_price(self, symbol: str, interval: str) -> float | None:
        """The close of the newest closed candle seen on a stream (for unrealised P&L)."""
        return self._trades.last_price(symbol, interval)

    def tracked(self) -> list[tuple[Signal, SignalStatus]]:
        """Signals being tracked (new or active), oldest first, with their current status."""
        return [(t.signal, t.status) for t in self._tracked.values()]

    # -- output -----------------------------------------------------------------------------------

    def drain(self) -> list[Effect]:
        """Return and forget the effects produced since the last drain, in order."""
        out, self._effects = self._effects, []
        return out
