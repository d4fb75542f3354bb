"""The soak's history checker: a pure function over the rows a run left in the database.

:func:`check` takes a :class:`History` (the lease epochs, the stored signals and trades, what the
reference engine says must and may trigger on the candles the replay served, those candles, the nemesis
events and the executor's known down time) and returns a :class:`Verdict`: every violation by kind,
and the figures. It does no I/O; :mod:`soakdb` reads the rows, :mod:`soakkit` runs the soak.

Times are integers in microseconds since the Unix epoch (database timestamps are microsecond-exact;
candle times are milliseconds, multiplied by 1000), so every comparison is exact.

What is checked, and why each kind can fail:

``duplicate_signal``
    A signal key, or a (trader, symbol, interval, candle), stored more than once.
``signal_unheld_epoch``
    A signal whose ``epoch`` was never granted, or was granted to the other kind of writer, or (cloud)
    to another machine, or whose ``machine_id`` does not follow its ``source``.
``signal_outside_window``
    A signal whose candle closed outside ``[started_at, valid_until)`` of the epoch it carries.
``write_by_non_holder``
    A browser device sent a write (signals, status changes, trade opens and closes) under a local epoch
    that none of its tabs held. The database cannot see this (it knows the writer's kind, not which
    browser), so the devices' own requests are the evidence.
``overlapping_epochs``
    Two windows of the user overlapping by the database clock (``valid_until`` of one after
    ``started_at`` of the next), epochs out of order or not consecutive, or a window ending before it
    starts.
``lost_signal``
    A (trader, symbol, candle) the reference engine certainly triggers, whose candle closed inside an
    epoch's window — more than ``start_margin`` after its start and more than ``end_margin`` before its
    end (or the horizon) — that is not stored. Each loss carries a *cause* (see :func:`_cause`); every
    cause counts in the verdict.
``phantom_signal``
    A stored signal the reference engine does not trigger even with the threshold loosened, or whose
    price is not the candle's close.
``trade_unheld_epoch`` / ``trade_close_unheld_epoch``
    A trade opened (closed) under an epoch its opener (closer) did not hold, by kind and machine, or
    written (``created_at``, ``updated_at`` for the close) outside that epoch's window.
``trade_exit_before_entry``
    A closed trade whose exit time is before its entry.
``trade_exit_not_by_rule``
    A trade closed by a rule (not by hand) at another time, price or reason than the exit rules give
    on the candles the replay served (see :func:`signalguard.core.positions.exit_on`). Its cause is
    ``adopted after its exit candle closed`` when the closer's epoch began after the rule's exit.
``trade_duplicate`` / ``trade_without_signal`` / ``missing_trade``
    Two trades for one signal; a trade whose signal is not stored; a signal of a trader with a trade
    plan, old enough, without a trade (an open signal always has its trade).
``orphan_open_trade``
    At the end (after the settling period), a trade still open whose entry is older than its maximum
    holding time plus ``open_slack``: nobody manages it.

The margins at the window edges. A grant is decided by the database at ``started_at``; the executor
learns it one round trip later, and a candle that closed in between reached an engine not yet allowed
to emit (a standby tab) or not yet streaming (a worker or tab that was just started), so it is never
generated; at the other end an executor stops generating a little before its window ends (the worker
one second before its renewal-based deadline, a stopping worker before it releases the lease). Both
gaps are a few hundred milliseconds when the machine is not loaded; the margins (2 s by default) cover
them. Every expected signal left out by a margin is counted in the figures (``expected_in_margins``),
so a margin that hides a real loss shows up as a large figure.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.positions import ExitReason, Side, Trade, exit_on

SECOND = 1_000_000
"""One second in microseconds."""

KINDS = (
    "duplicate_signal",
    "signal_unheld_epoch",
    "signal_outside_window",
    "write_by_non_holder",
    "overlapping_epochs",
    "lost_signal",
    "phantom_signal",
    "trade_unheld_epoch",
    "trade_close_unheld_epoch",
    "trade_exit_before_entry",
    "trade_exit_not_by_rule",
    "trade_duplicate",
    "trade_without_signal",
    "missing_trade",
    "orphan_open_trade",
)


# -- the rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Epoch:
    """A row of ``lease_epochs``: an epoch and its window ``[started_at, valid_until)``."""

    epoch: int
    holder_kind: str
    holder_id: str
    machine_id: str | None
    started_at: int
    valid_until: int
    ended_reason: str | None = None


@dataclass(frozen=True)
class StoredSignal:
    """A row of ``signals``."""

    signal_key: str
    trader_id: str
    symbol: str
    interval: str
    open_time: int
    price: float
    source: str
    machine_id: str | None
    epoch: int
    status: str = "new"

    @property
    def close_time(self) -> int:
        """When the signal's candle closed."""
        return self.open_time + INTERVALS[self.interval] * 1000


@dataclass(frozen=True)
class StoredTrade:
    """A row of ``trades``."""

    signal_key: str
    trader_id: str
    symbol: str
    interval: str
    status: str
    side: str
    size: float
    entry_price: float
    entry_time: int
    source: str
    machine_id: str | None
    epoch: int
    created_at: int
    updated_at: int
    take_profit_price: float | None = None
    stop_loss_price: float | None = None
    expires_at: int | None = None
    close_source: str | None = None
    close_machine_id: str | None = None
    close_epoch: int | None = None
    exit_time: int | None = None
    exit_price: float | None = None
    exit_reason: str | None = None


@dataclass(frozen=True)
class ExpectedSignal:
    """A signal of the reference run: ``certain`` if it triggers even with the threshold tightened."""

    trader_id: str
    symbol: str
    interval: str
    open_time: int
    price: float
    certain: bool = True

    @property
    def close_time(self) -> int:
        """When its candle closed."""
        return self.open_time + INTERVALS[self.interval] * 1000

    @property
    def ident(self) -> tuple[str, str, str, int]:
        """(trader, symbol, interval, candle open time)."""
        return (self.trader_id, self.symbol, self.interval, self.open_time)


@dataclass(frozen=True)
class NemesisEvent:
    """One applied nemesis event: what, from when to when (wall clock, same host as the database)."""

    index: int
    kind: str
    start: int
    end: int
    detail: str = ""


@dataclass(frozen=True)
class Downtime:
    """An interval in which the executor of one kind was known to be unable to generate.

    The cloud machine between a SIGKILL and the next worker's start, or while SIGSTOPped: its lease
    (and so its window) may still run, but no process exists to generate inside it.
    """

    holder_kind: str
    start: int
    end: int
    cause: str


@dataclass(frozen=True)
class LocalWrite:
    """A write a browser device sent (seen in its requests): which RPC, under which epoch, for what."""

    device: str
    rpc: str
    epoch: int
    what: str


@dataclass
class History:
    """Everything :func:`check` judges."""

    user_id: str
    epochs: Sequence[Epoch]
    signals: Sequence[StoredSignal]
    trades: Sequence[StoredTrade]
    #: The reference run's signals: certain ones (threshold tightened) and possible ones (loosened).
    expected: Sequence[ExpectedSignal]
    #: Candle close prices of the replay, by (symbol, interval), oldest first.
    candles: Mapping[tuple[str, str], Sequence[Candle]]
    #: Candles closing after this are not judged (their writes may still be in flight).
    horizon: int
    #: When the rows were read (database clock).
    read_at: int
    #: The maximum holding time of each traded trader's trades, in microseconds.
    max_hold: Mapping[str, int] = field(default_factory=dict)
    events: Sequence[NemesisEvent] = ()
    downtime: Sequence[Downtime] = ()
    #: The writes each browser device sent, and the holder ids its tabs used (from its requests). The
    #: database fences browser writes by kind only; these tell one device's writes from another's.
    local_writes: Sequence[LocalWrite] = ()
    device_holders: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: The current lease row's epoch (``execution_leases.epoch``), if any.
    lease_epoch: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Rules:
    """The checker's tolerances (see the module documentation)."""

    start_margin: int = 2 * SECOND
    end_margin: int = 2 * SECOND
    #: How much longer than its maximum holding time a trade may stay open before it is an orphan.
    open_slack: int = 15 * SECOND
    #: A traded signal whose candle closed this long before the read must have its trade.
    trade_slack: int = 45 * SECOND
    #: The cloud worker's flush period: signals of candles closed this long before a SIGKILL of the
    #: holder may have been in its memory only.
    flush_period: int = 10 * SECOND
    #: How far back a loss looks for the nemesis event that preceded it.
    cause_lookback: int = 60 * SECOND


@dataclass(frozen=True)
class Violation:
    """One violated property."""

    kind: str
    detail: str
    cause: str | None = None


@dataclass
class Verdict:
    """What :func:`check` found."""

    violations: list[Violation] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    events_by_kind: Counter[str] = field(default_factory=Counter)
    seed: int | None = None

    @property
    def ok(self) -> bool:
        """No violation of any kind."""
        return not self.violations

    def by_kind(self) -> Counter[str]:
        """Violations counted by kind (every kind present, zeros included)."""
        counts = Counter(dict.fromkeys(KINDS, 0))
        counts.update(v.kind for v in self.violations)
        return counts

    def lost_by_cause(self) -> Counter[str]:
        """Lost signals counted by their cause."""
        return Counter(v.cause or "unexplained" for v in self.violations if v.kind == "lost_signal")

    def by_cause(self) -> Counter[tuple[str, str | None]]:
        """Violations counted by (kind, cause)."""
        return Counter((v.kind, v.cause) for v in self.violations)

    def count(self, kind: str, cause: str | None = None) -> int:
        """Violations of ``kind`` (and ``cause``, if given)."""
        return sum(1 for v in self.violations if v.kind == kind and (cause is None or v.cause == cause))

    def report(self, *, examples: int = 5) -> str:
        """The figures, the violations by kind (with a few examples each) and the seed, as text."""
        lines = [f"seed: {self.seed}"]
        total = sum(self.events_by_kind.values())
        lines.append(f"events applied: {total}")
        lines += [f"  {kind}: {n}" for kind, n in sorted(self.events_by_kind.items())]
        lines += [f"{name}: {value}" for name, value in self.figures.items()]
        kinds = self.by_kind()
        lines.append(f"violations: {sum(kinds.values())}")
        for kind, n in kinds.items():
            lines.append(f"  {kind}: {n}")
            if kind == "lost_signal" and n:
                for cause, m in sorted(self.lost_by_cause().items()):
                    lines.append(f"    cause {cause}: {m}")
                    shown = [
                        v for v in self.violations if v.kind == kind and (v.cause or "unexplained") == cause
                    ]
                    lines += [f"      e.g. {v.detail}" for v in shown[:examples]]
                continue
            shown = [v for v in self.violations if v.kind == kind][:examples]
            lines += [f"    e.g. {v.detail}" + (f" [{v.cause}]" if v.cause else "") for v in shown]
        lines.append("verdict: " + ("OK" if self.ok else "VIOLATED"))
        return "\n".join(lines)


# -- the check --------------------------------------------------------------------------------------


def check(history: History, rules: Rules | None = None) -> Verdict:
    """Judge ``history``; see the module documentation for what each kind of violation means."""
    rules = rules or Rules()
    verdict = Verdict(seed=history.seed)
    verdict.events_by_kind.update(e.kind for e in history.events)
    epochs = {e.epoch: e for e in history.epochs}
    out = verdict.violations

    _check_epochs(history, out)
    _check_signals(history, epochs, out)
    _check_local_writers(history, epochs, out)
    lost_figures = _check_lost(history, epochs, rules, out)
    _check_trades(history, epochs, rules, out)

    holders = [(e.holder_kind, e.holder_id) for e in sorted(history.epochs, key=lambda e: e.epoch)]
    verdict.figures.update(
        {
            "epochs": len(history.epochs),
            "handoffs": sum(1 for a, b in itertools.pairwise(holders) if a != b),
            "handoffs_between_kinds": sum(1 for a, b in itertools.pairwise(holders) if a[0] != b[0]),
            "signals_stored": len(history.signals),
            "signals_checked": lost_figures["checked"],
            "expected_in_margins": lost_figures["in_margins"],
            "missing_in_margins (not violations)": lost_figures["lost_in_margins"],
            "expected_outside_windows": lost_figures["outside"],
            "expected_before_first_grant": lost_figures["before_first_grant"],
            "expected_after_horizon": lost_figures["after_horizon"],
            "trades_checked": len(history.trades),
            "trades_closed": sum(1 for t in history.trades if t.status == "closed"),
            "trades_open_at_end": sum(1 for t in history.trades if t.status == "open"),
        }
    )
    return verdict


def _check_epochs(history: History, out: list[Violation]) -> None:
    ordered = sorted(history.epochs, key=lambda e: e.epoch)
    for e in ordered:
        if e.valid_until < e.started_at:
            out.append(Violation("overlapping_epochs", f"epoch {e.epoch} ends before it starts"))
    for a, b in itertools.pairwise(ordered):
        if b.epoch != a.epoch + 1:
            out.append(Violation("overlapping_epochs", f"epoch {b.epoch} follows epoch {a.epoch}"))
        if b.started_at < a.started_at:
            out.append(Violation("overlapping_epochs", f"epoch {b.epoch} starts before epoch {a.epoch}"))
        if a.valid_until > b.started_at:
            out.append(
                Violation(
                    "overlapping_epochs",
                    f"epoch {a.epoch} ({a.holder_kind}) is valid until {_t(a.valid_until)}, after epoch "
                    f"{b.epoch} ({b.holder_kind}) started at {_t(b.started_at)}",
                )
            )
    if ordered and history.lease_epoch is not None and history.lease_epoch != ordered[-1].epoch:
        out.append(
            Violation(
                "overlapping_epochs",
                f"the lease row names epoch {history.lease_epoch}, the history ends at {ordered[-1].epoch}",
            )
        )


def _held_by(epoch: Epoch | None, kind: str, machine: str | None) -> str | None:
    """Why ``epoch`` was not held by a writer of ``kind`` (and ``machine``); None if it was."""
    if epoch is None:
        return "never granted"
    if epoch.holder_kind != kind:
        return f"granted to {epoch.holder_kind}, written by {kind}"
    if kind == "cloud" and (machine is None or epoch.machine_id != machine):
        return f"granted to machine {epoch.machine_id}, written by machine {machine}"
    if kind == "local" and machine is not None:
        return f"a local write names machine {machine}"
    return None


def _check_signals(history: History, epochs: Mapping[int, Epoch], out: list[Violation]) -> None:
    keys = Counter(s.signal_key for s in history.signals)
    out += [Violation("duplicate_signal", f"{k} stored {n} times") for k, n in keys.items() if n > 1]
    idents = Counter((s.trader_id, s.symbol, s.interval, s.open_time) for s in history.signals)
    out += [
        Violation("duplicate_signal", f"{i[1]} {i[2]} {_t(i[3])} of trader {i[0]} stored {n} times")
        for i, n in idents.items()
        if n > 1
    ]
    for s in history.signals:
        epoch = epochs.get(s.epoch)
        why = _held_by(epoch, s.source, s.machine_id)
        if why is not None:
            out.append(Violation("signal_unheld_epoch", f"{_short(s.signal_key)} epoch {s.epoch}: {why}"))
            continue
        assert epoch is not None
        if not epoch.started_at <= s.close_time < epoch.valid_until:
            out.append(
                Violation(
                    "signal_outside_window",
                    f"{_short(s.signal_key)}: candle closed {_t(s.close_time)}, outside epoch {s.epoch}'s "
                    f"[{_t(epoch.started_at)}, {_t(epoch.valid_until)})",
                )
            )


def _check_local_writers(history: History, epochs: Mapping[int, Epoch], out: list[Violation]) -> None:
    seen: set[tuple[str, str, int]] = set()
    for w in history.local_writes:
        epoch = epochs.get(w.epoch)
        holders = history.device_holders.get(w.device, ())
        if epoch is not None and epoch.holder_kind == "local" and epoch.holder_id in holders:
            continue
        if (w.device, w.rpc, w.epoch) in seen:  # one violation per device, call and epoch
            continue
        seen.add((w.device, w.rpc, w.epoch))
        held = "never granted" if epoch is None else f"held by {epoch.holder_kind} {epoch.holder_id[:10]}"
        out.append(
            Violation(
                "write_by_non_holder",
                f"device {w.device} sent {w.rpc} ({w.what}) under epoch {w.epoch}, {held}",
            )
        )


def _window_of(ordered: Sequence[Epoch], starts: Sequence[int], t: int) -> Epoch | None:
    """The epoch whose window holds ``t``: the last one to start at or before it, if still valid."""
    i = bisect.bisect_right(starts, t) - 1
    return ordered[i] if i >= 0 and t < ordered[i].valid_until else None


def _check_lost(
    history: History, epochs: Mapping[int, Epoch], rules: Rules, out: list[Violation]
) -> dict[str, int]:
    ordered = sorted(history.epochs, key=lambda e: e.started_at)
    starts = [e.started_at for e in ordered]
    stored: dict[tuple[str, str, str, int], list[StoredSignal]] = {}
    for s in history.signals:
        stored.setdefault((s.trader_id, s.symbol, s.interval, s.open_time), []).append(s)
    possible = {x.ident: x for x in history.expected}
    figures = Counter(
        {
            "checked": 0,
            "in_margins": 0,
            "lost_in_margins": 0,
            "outside": 0,
            "before_first_grant": 0,
            "after_horizon": 0,
        }
    )
    for x in history.expected:
        if not x.certain:
            continue
        close = x.close_time
        if close >= history.horizon:
            figures["after_horizon"] += 1
            continue
        if not starts or close < starts[0]:
            figures["before_first_grant"] += 1
            continue
        epoch = _window_of(ordered, starts, close)
        if epoch is None:
            figures["outside"] += 1
            continue
        # No margin at the horizon: the window goes on past it.
        ends = epoch.valid_until <= history.horizon
        if close < epoch.started_at + rules.start_margin or (
            ends and close >= epoch.valid_until - rules.end_margin
        ):
            figures["in_margins"] += 1
            figures["lost_in_margins"] += x.ident not in stored
            continue
        figures["checked"] += 1
        found = stored.get(x.ident, [])
        if len(found) == 1:
            continue
        if not found:
            out.append(
                Violation(
                    "lost_signal",
                    f"{x.symbol} {_t(x.open_time)} of trader {x.trader_id[:8]} (closed {_t(close)}, "
                    f"in epoch {epoch.epoch} {epoch.holder_kind} [{_t(epoch.started_at)}, "
                    f"{_t(epoch.valid_until)}))",
                    _cause(history, epoch, close, rules),
                )
            )
        # More than one is a duplicate_signal, reported above.
    for s in history.signals:
        ref = possible.get((s.trader_id, s.symbol, s.interval, s.open_time))
        if ref is None:
            out.append(
                Violation("phantom_signal", f"{_short(s.signal_key)}: the reference engine never triggers it")
            )
        elif not math.isclose(ref.price, s.price, rel_tol=1e-9):
            out.append(
                Violation(
                    "phantom_signal",
                    f"{_short(s.signal_key)}: price {s.price}, the candle closed {ref.price}",
                )
            )
    return dict(figures)


def _cause(history: History, epoch: Epoch, close: int, rules: Rules) -> str:
    """Why a signal of a candle closing at ``close`` inside ``epoch`` may be missing.

    - ``holder down (killed)``: the holder's kind was known dead (see :class:`Downtime`) when the
      candle closed;
    - ``unflushed at SIGKILL``: the cloud held the epoch and was SIGKILLed less than one flush period
      after the candle closed: the signal may have been in its memory only;
    - ``holder down (<cause>)``: the holder was otherwise known down (SIGSTOPped, stopping);
    - ``after <kind>``: the latest nemesis event that began before the candle closed (within the
      lookback);
    - ``unexplained``: none of these.
    """
    down = [d for d in history.downtime if d.holder_kind == epoch.holder_kind and d.start <= close < d.end]
    if any(d.cause == "killed" for d in down):
        return "holder down (killed)"
    if epoch.holder_kind == "cloud":
        for e in history.events:
            if e.kind == "worker_sigkill" and close <= e.start <= close + rules.flush_period:
                return "unflushed at SIGKILL"
    if down:
        return f"holder down ({down[0].cause})"
    before = [e for e in history.events if e.start <= close and close - e.start <= rules.cause_lookback]
    if before:
        return f"after {max(before, key=lambda e: e.start).kind}"
    return "unexplained"


def _check_trades(history: History, epochs: Mapping[int, Epoch], rules: Rules, out: list[Violation]) -> None:
    signals = {s.signal_key: s for s in history.signals}
    counts = Counter(t.signal_key for t in history.trades)
    out += [Violation("trade_duplicate", f"{_short(k)}: {n} trades") for k, n in counts.items() if n > 1]
    for t in history.trades:
        name = _short(t.signal_key)
        if t.signal_key not in signals:
            out.append(Violation("trade_without_signal", f"{name}: no stored signal"))
        opener = epochs.get(t.epoch)
        why = _held_by(opener, t.source, t.machine_id)
        if why is None and opener is not None and not opener.started_at <= t.created_at < opener.valid_until:
            why = f"opened at {_t(t.created_at)}, outside [{_t(opener.started_at)}, {_t(opener.valid_until)})"
        if why is not None:
            out.append(Violation("trade_unheld_epoch", f"{name} opened under epoch {t.epoch}: {why}"))
        if t.status == "open":
            hold = history.max_hold.get(t.trader_id)
            if hold is not None and t.entry_time + hold + rules.open_slack < history.read_at:
                out.append(
                    Violation(
                        "orphan_open_trade",
                        f"{name}: entered {_t(t.entry_time)}, still open at {_t(history.read_at)}",
                    )
                )
            continue
        if t.close_source is None or t.close_epoch is None:
            out.append(Violation("trade_close_unheld_epoch", f"{name} is {t.status} without a closer"))
            continue
        closer = epochs.get(t.close_epoch)
        why = _held_by(closer, t.close_source, t.close_machine_id)
        if why is None and closer is not None and not closer.started_at <= t.updated_at < closer.valid_until:
            why = f"closed at {_t(t.updated_at)}, outside [{_t(closer.started_at)}, {_t(closer.valid_until)})"
        if why is not None:
            out.append(
                Violation("trade_close_unheld_epoch", f"{name} closed under epoch {t.close_epoch}: {why}")
            )
        if t.status != "closed":
            continue
        if t.exit_time is None or t.exit_time < t.entry_time:
            out.append(
                Violation(
                    "trade_exit_before_entry",
                    f"{name}: exit {_t(t.exit_time)} before entry {_t(t.entry_time)}",
                )
            )
            continue
        if t.exit_reason != ExitReason.MANUAL:
            problem, due = _exit_problem(t, history.candles.get((t.symbol, t.interval), ()))
            if problem is not None:
                # The closer's epoch began after the rule's exit candle had closed: it adopted the trade
                # late, and judged it on the candles it had seen.
                late = closer is not None and due is not None and closer.started_at > due
                out.append(
                    Violation(
                        "trade_exit_not_by_rule",
                        f"{name}: {problem}",
                        "adopted after its exit candle closed" if late else None,
                    )
                )
    traded = {t.signal_key for t in history.trades}
    for s in history.signals:
        if (
            s.trader_id in history.max_hold
            and s.signal_key not in traded
            and s.close_time + rules.trade_slack < history.read_at
        ):
            out.append(
                Violation("missing_trade", f"{_short(s.signal_key)} ({s.status}, {s.source}): no trade")
            )


def _exit_problem(t: StoredTrade, candles: Sequence[Candle]) -> tuple[str | None, int | None]:
    """How the stored exit differs from the rule's on the served candles (None if it does not), and
    when the rule's exit candle closed (µs; None if no served candle exits)."""
    trade = Trade(
        key=t.signal_key,
        trader_id=t.trader_id,
        symbol=t.symbol,
        interval=t.interval,
        side=Side(t.side),
        size=t.size,
        entry_price=t.entry_price,
        entry_time=t.entry_time // 1000,
        take_profit_price=t.take_profit_price,
        stop_loss_price=t.stop_loss_price,
        expires_at=None if t.expires_at is None else t.expires_at // 1000,
        epoch=t.epoch,
    )
    opens = [c.open_time for c in candles]
    for candle in candles[bisect.bisect_left(opens, trade.entry_time) :]:
        done = exit_on(trade, candle)
        if done is None:
            continue
        stored_time = None if t.exit_time is None else t.exit_time // 1000
        if (
            done.reason != t.exit_reason
            or done.time != stored_time
            or t.exit_price is None
            or not math.isclose(done.price, t.exit_price, rel_tol=1e-9)
        ):
            return (
                f"closed {t.exit_reason} at {_t(t.exit_time)} @ {t.exit_price} (by {t.close_source}, epoch "
                f"{t.close_epoch}); the rule says {done.reason} at {_t(done.time * 1000)} @ {done.price}"
            ), done.time * 1000
        return None, done.time * 1000
    return f"closed {t.exit_reason} at {_t(t.exit_time)}, but no served candle triggers an exit", None


# -- printing ---------------------------------------------------------------------------------------


def _t(us: int | None) -> str:
    """A time as HH:MM:SS.mmm (UTC)."""
    if us is None:
        return "-"
    seconds, micros = divmod(us, SECOND)
    h, rest = divmod(seconds % 86_400, 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}.{micros // 1000:03d}"


def _short(key: str) -> str:
    """A signal key without the user id (the trader id shortened)."""
    parts = key.split(":")
    return ":".join([parts[1][:8], *parts[2:]]) if len(parts) == 5 else key
