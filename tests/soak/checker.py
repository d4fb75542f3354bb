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
    A signal whose candle closed outside ``[started_at, valid_until)`` of the epoch it carries (or,
    once the gapless handoff is in effect, outside that window and the gap just before it: see
    "Exactly once" below).
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
``duplicate_evaluation``
    A candle signed by more than one executor (see "Exactly once").
``missed_evaluation``
    A judged candle signed by no executor (see "Exactly once"); a violation only while the gapless
    handoff is in effect, reported in any case.

The margins at the window edges. A grant is decided by the database at ``started_at``; the executor
learns it one round trip later, and a candle that closed in between reached an engine not yet allowed
to emit (a standby tab) or not yet streaming (a worker or tab that was just started), so it is never
generated; at the other end an executor stops generating a little before its window ends (the worker
one second before its renewal-based deadline, a stopping worker before it releases the lease). Both
gaps are a few hundred milliseconds when the machine is not loaded; the margins (2 s by default) cover
them. Every expected signal left out by a margin is counted in the figures (``expected_in_margins``),
so a margin that hides a real loss shows up as a large figure.

Exactly once (:func:`check_exactly_once`, the :class:`ExactlyOnce` of every verdict). Every closed
candle of every stream (symbol, interval) of an enabled trader is evaluated by exactly one executor
while the user has one:

- *An executor* is an epoch: one grant of the lease to one holder. Its window is
  ``[started_at, valid_until)``; the *gap before* it is ``[max(E, started_at - H), started_at)``, where
  ``E`` is the latest ``valid_until`` of the epochs that started before it and ``H``, the *reach*, is
  ``min(2 h, 60 candles of the stream's interval)`` (:attr:`Rules.gap_max`, :attr:`Rules.gap_candles`).
  The first epoch has no gap before it: the user had no executor before, so nothing is owed.
- *The user had an executor* for a candle when its close lies in an epoch's window, or in the gap
  before an epoch that is not the first. Such a candle is *judged* if it closed before
  :attr:`History.horizon` (later writes may still be in flight). Not judged, and counted: candles
  before the first grant, in a gap but further than the reach before the next epoch, after the last
  window with no epoch since (nobody holds the lease at the read), and after the horizon.
- *Evaluated by an executor* means the database accepted a signal of that candle under that epoch:
  inserted, or absorbed as a duplicate of the row already there (the signal key is unique, so the
  rows alone cannot show a second executor; :attr:`History.signings` records every accepted write,
  see ``soakdb.record_signings``). Without signings (an older ``history.json``) the stored rows are
  the only evidence.
- *The observable.* An executor evaluates every candle but signs only those its traders match, so
  a candle with no signal may simply have matched nothing. A trader whose conditions hold on every
  candle (``soakdb.always_matches``: ``price_change_pct`` over 1 candle ``>=`` -100, since a close
  is never 100 % below the previous one) signs every candle it evaluates; its signals are the
  evaluation log of its streams (:attr:`History.streams` names it for each stream). A judged candle
  on which the reference engine does not *certainly* fire it (its warm-up, or a close 99.99 % down)
  is counted as unobservable, not judged. A stream with no such trader is reported as unobserved.
  This needs nothing from the executors beyond what they already write, and a trader's signal is
  exactly what the user would lose.
- *Missed*: a judged candle whose observing trader's signal is not stored. *Duplicated*: a candle
  (any stream, judged or not) signed under more than one epoch, whatever the traders (a row stored
  twice under one key is ``duplicate_signal``'s).

Each miss says where it fell: ``gap`` (before the epoch named), ``window start`` / ``window end``
(within :attr:`Rules.start_margin` / :attr:`Rules.end_margin` of the window's edge, the end only if
the window ended before the horizon), or ``inside window``. Today's database accepts a signal only
inside its epoch's window, so every candle of a gap is missed. The issue's rule lets a holder sign
the gap before its epoch; a database that has it reports the schema component
:data:`GAPLESS_COMPONENT` (``schema_version()``, read into :attr:`History.schema_components`), and
then a miss is a violation (``missed_evaluation``) and a signal in the gap before its own epoch is
not ``signal_outside_window``. :attr:`Rules.exactly_once` overrides what the database says.
A duplicate is a violation in any case: at most once is what the lease has always guaranteed.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from signalguard.core.candles import INTERVALS, Candle
from signalguard.core.catchup import CATCH_UP_CANDLES
from signalguard.core.codes import GAPLESS_HANDOFF
from signalguard.core.positions import ExitReason, Side, Trade, exit_on

SECOND = 1_000_000
"""One second in microseconds."""

GAPLESS_COMPONENT = GAPLESS_HANDOFF.name
"""The schema component of a database that lets a holder sign the candles of the gap before its epoch."""

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
    "duplicate_evaluation",
    "missed_evaluation",
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


@dataclass(frozen=True)
class Signing:
    """A signal write the database accepted under an epoch: inserted, or absorbed by the row already
    there (``write_signals`` answered ``duplicate``). Refused writes are not signings."""

    trader_id: str
    symbol: str
    interval: str
    open_time: int
    epoch: int
    source: str
    machine_id: str | None
    at: int

    @property
    def candle(self) -> tuple[str, str, int]:
        """(symbol, interval, candle open time)."""
        return (self.symbol, self.interval, self.open_time)


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
    #: The streams (symbol, interval) of the user's enabled traders, each with the id of an enabled
    #: trader on it whose conditions hold on every candle (its signals are the stream's evaluation
    #: log), or None. Only streams with such a trader are judged by the exactly-once property.
    streams: Mapping[tuple[str, str], str | None] = field(default_factory=dict)
    #: Every signal write the database accepted (see :class:`Signing`); None if not recorded.
    signings: Sequence[Signing] | None = None
    #: The schema components the database reported (``schema_version()``).
    schema_components: Sequence[str] = ()


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
    #: The reach of the gap before an epoch: at most this long, and at most ``gap_candles`` candles of
    #: the stream's interval (the executor's catch-up limit).
    gap_max: int = 2 * 3600 * SECOND
    gap_candles: int = CATCH_UP_CANDLES
    #: Whether a missed evaluation is a violation (and a signal may lie in the gap before its epoch):
    #: None follows the database (:data:`GAPLESS_COMPONENT` among its schema components).
    exactly_once: bool | None = None

    def reach(self, interval: str) -> int:
        """How far before an epoch's start its gap may reach for candles of ``interval`` (µs)."""
        return min(self.gap_max, self.gap_candles * INTERVALS[interval] * 1000)

    def gapless(self, history: History) -> bool:
        """Whether the exactly-once property is in effect for ``history``."""
        if self.exactly_once is not None:
            return self.exactly_once
        return GAPLESS_COMPONENT in history.schema_components


@dataclass(frozen=True)
class Violation:
    """One violated property."""

    kind: str
    detail: str
    cause: str | None = None


@dataclass(frozen=True)
class Finding:
    """A candle the exactly-once property flags: missed, or signed by more than one executor."""

    symbol: str
    interval: str
    open_time: int
    close_time: int
    #: Where its close fell: ``gap``, ``window start``, ``window end`` or ``inside window``; a duplicate
    #: may also lie ``before first grant``, ``beyond reach``, under ``no executor`` or ``after horizon``.
    place: str
    #: The epoch boundary, e.g. ``7 cloud -> 8 local`` for the gap before epoch 8 or the start of its
    #: window, ``8 local -> 9 cloud`` for the end of epoch 8's, ``8 local`` inside it.
    boundary: str
    #: The epochs that signed it (none for a miss, two or more for a duplicate).
    signed_by: tuple[int, ...]
    detail: str
    cause: str | None = None


@dataclass
class ExactlyOnce:
    """The exactly-once property's result (see the module documentation): what was judged, the
    candles missed and those signed twice, and whether a miss is a violation (``enforced``)."""

    enforced: bool = False
    misses: list[Finding] = field(default_factory=list)
    duplicates: list[Finding] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    #: Whether every accepted write was recorded (:attr:`History.signings`), or only the rows are known.
    signings_recorded: bool = False

    @property
    def missed(self) -> int:
        """Judged candles no executor signed."""
        return len(self.misses)

    @property
    def duplicated(self) -> int:
        """Candles signed under more than one epoch."""
        return len(self.duplicates)

    @property
    def judged(self) -> int:
        """Candles that had an executor and whose evaluation is observable."""
        return self.figures.get("judged", 0)

    def missed_by_place(self) -> Counter[str]:
        """Misses counted by place (``gap``, ``window start``, ``window end``, ``inside window``)."""
        return Counter(f.place for f in self.misses)

    def missed_by_boundary(self) -> Counter[tuple[str, str]]:
        """Misses counted by (place, epoch boundary)."""
        return Counter((f.place, f.boundary) for f in self.misses)

    def report_lines(self, *, examples: int = 5) -> list[str]:
        """The property's figures, misses by place and boundary, and a few examples, as text lines."""
        how = "enforced" if self.enforced else f"reported only (no {GAPLESS_COMPONENT})"
        lines = [
            f"exactly once ({how}): judged {self.judged}, missed {self.missed}, "
            f"duplicated {self.duplicated}"
            + ("" if self.signings_recorded else " (signings not recorded: duplicates from rows only)")
        ]
        lines += [f"  {name}: {value}" for name, value in self.figures.items()]
        if self.misses:
            lines.append(
                "  missed by place: "
                + ", ".join(f"{place} {n}" for place, n in sorted(self.missed_by_place().items()))
            )
            boundaries = self.missed_by_boundary().most_common()
            lines.append(f"  missed at {len(boundaries)} epoch boundaries, most first:")
            lines += [f"    {place} {where}: {n}" for (place, where), n in boundaries[: max(examples, 10)]]
            lines += [f"    e.g. {f.detail}" for f in self.misses[:examples]]
        lines += [f"  duplicated e.g. {f.detail}" for f in self.duplicates[:examples]]
        return lines


@dataclass
class Verdict:
    """What :func:`check` found."""

    violations: list[Violation] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    events_by_kind: Counter[str] = field(default_factory=Counter)
    seed: int | None = None
    exactly_once: ExactlyOnce = field(default_factory=ExactlyOnce)

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
        lines += self.exactly_once.report_lines(examples=examples)
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
    _check_signals(history, epochs, rules, out)
    _check_local_writers(history, epochs, out)
    lost_figures = _check_lost(history, epochs, rules, out)
    _check_trades(history, epochs, rules, out)
    once = verdict.exactly_once = check_exactly_once(history, rules)
    out += [Violation("duplicate_evaluation", f.detail, f.cause) for f in once.duplicates]
    if once.enforced:
        out += [Violation("missed_evaluation", f.detail, f.cause) for f in once.misses]

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


def _check_signals(history: History, epochs: Mapping[int, Epoch], rules: Rules, out: list[Violation]) -> None:
    keys = Counter(s.signal_key for s in history.signals)
    out += [Violation("duplicate_signal", f"{k} stored {n} times") for k, n in keys.items() if n > 1]
    idents = Counter((s.trader_id, s.symbol, s.interval, s.open_time) for s in history.signals)
    out += [
        Violation("duplicate_signal", f"{i[1]} {i[2]} {_t(i[3])} of trader {i[0]} stored {n} times")
        for i, n in idents.items()
        if n > 1
    ]
    timeline = _Timeline(history.epochs) if rules.gapless(history) else None
    for s in history.signals:
        epoch = epochs.get(s.epoch)
        why = _held_by(epoch, s.source, s.machine_id)
        if why is not None:
            out.append(Violation("signal_unheld_epoch", f"{_short(s.signal_key)} epoch {s.epoch}: {why}"))
            continue
        assert epoch is not None
        # With the gapless handoff, a holder also signs the gap just before its epoch.
        in_gap = timeline is not None and timeline.in_gap_before(epoch, s.close_time, rules.reach(s.interval))
        if not epoch.started_at <= s.close_time < epoch.valid_until and not in_gap:
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


# -- exactly once ---------------------------------------------------------------------------------


class _Timeline:
    """The user's epochs by start: which window holds a time, or which epoch's gap it lies in."""

    def __init__(self, epochs: Sequence[Epoch]) -> None:
        self.ordered = sorted(epochs, key=lambda e: (e.started_at, e.epoch))
        self.starts = [e.started_at for e in self.ordered]
        # The latest end among the windows that started at or before each one: a time before it lies
        # in some window (overlapping windows are ``overlapping_epochs``; this stays exact even then).
        self.ended = list(itertools.accumulate((e.valid_until for e in self.ordered), max))
        self.index = {e.epoch: i for i, e in enumerate(self.ordered)}

    def gap_start(self, i: int, reach: int) -> int:
        """Where the gap before ``ordered[i]`` begins: the previous windows' end, at most ``reach`` back."""
        start = self.ordered[i].started_at - reach
        return start if i == 0 else max(start, self.ended[i - 1])

    def in_gap_before(self, epoch: Epoch, t: int, reach: int) -> bool:
        """Whether ``t`` lies in the gap before ``epoch``, where its holder may sign with the gapless
        handoff (before the first epoch too: no earlier epoch covers it, as the database's rule says)."""
        i = self.index.get(epoch.epoch)
        return i is not None and self.gap_start(i, reach) <= t < epoch.started_at

    def place(self, t: int, reach: int) -> tuple[str, int | None]:
        """Where ``t`` lies: ``window`` (with the index of the epoch whose window holds it), ``gap``
        (with the index of the epoch it precedes), ``beyond reach`` (a gap, further back than ``reach``
        from the next epoch), ``before first grant`` or ``no executor`` (after every window, no epoch
        since)."""
        i = bisect.bisect_right(self.starts, t) - 1
        if i >= 0 and t < self.ended[i]:
            j = next(j for j in range(i, -1, -1) if t < self.ordered[j].valid_until)
            return "window", j
        following = i + 1
        if following == 0:
            return "before first grant", None
        if following == len(self.ordered):
            return "no executor", None
        if t >= self.gap_start(following, reach):
            return "gap", following
        return "beyond reach", following

    def boundary(self, place: str, i: int | None, close: int, rules: Rules, horizon: int) -> tuple[str, str]:
        """The finer place of a time in a window (its start, its end, or inside) and the boundary."""
        if i is None:
            return place, "-"
        e = self.ordered[i]
        previous = self.ordered[i - 1] if i > 0 else None
        following = self.ordered[i + 1] if i + 1 < len(self.ordered) else None

        def name(x: Epoch | None) -> str:
            return "nobody" if x is None else f"{x.epoch} {x.holder_kind}"

        if place != "window":
            return place, f"{name(previous)} -> {name(e)}"
        if close < e.started_at + rules.start_margin:
            return "window start", f"{name(previous)} -> {name(e)}"
        # No end at the horizon: a window still running goes on past it.
        if e.valid_until <= horizon and close >= e.valid_until - rules.end_margin:
            return "window end", f"{name(e)} -> {name(following)}"
        return "inside window", name(e)


def check_exactly_once(history: History, rules: Rules | None = None) -> ExactlyOnce:
    """Every closed candle of every observed stream, evaluated by exactly one executor while the user
    had one: the misses and duplicates, and what was judged (see the module documentation)."""
    rules = rules or Rules()
    result = ExactlyOnce(enforced=rules.gapless(history), signings_recorded=history.signings is not None)
    timeline = _Timeline(history.epochs)
    figures = Counter(
        dict.fromkeys(
            (
                "streams",
                "streams_unobserved",
                "judged",
                "judged_in_windows",
                "judged_in_gaps",
                "unobservable",
                "before_first_grant",
                "beyond_reach",
                "no_executor",
                "after_horizon",
                "signings",
            ),
            0,
        )
    )
    figures["streams"] = len(history.streams)
    figures["streams_unobserved"] = sum(1 for t in history.streams.values() if t is None)
    figures["signings"] = len(history.signings or ())
    stored = {(s.trader_id, s.symbol, s.interval, s.open_time) for s in history.signals}
    certain = {x.ident for x in history.expected if x.certain}
    for (symbol, interval), observer in sorted(history.streams.items()):
        if observer is None:
            continue
        step = INTERVALS[interval] * 1000
        reach = rules.reach(interval)
        for candle in history.candles.get((symbol, interval), ()):
            open_time = candle.open_time * 1000
            close = open_time + step
            if close >= history.horizon:
                figures["after_horizon"] += 1
                continue
            place, i = timeline.place(close, reach)
            if place not in ("window", "gap"):
                figures[place.replace(" ", "_")] += 1
                continue
            ident = (observer, symbol, interval, open_time)
            if ident not in certain:
                figures["unobservable"] += 1
                continue
            figures["judged"] += 1
            figures["judged_in_windows" if place == "window" else "judged_in_gaps"] += 1
            if ident in stored:
                continue
            where, boundary = timeline.boundary(place, i, close, rules, history.horizon)
            assert i is not None
            epoch = timeline.ordered[i]
            cause = f"handoff {boundary}" if place == "gap" else _cause(history, epoch, close, rules)
            result.misses.append(
                Finding(
                    symbol,
                    interval,
                    open_time,
                    close,
                    where,
                    boundary,
                    (),
                    f"{symbol} {interval} {_t(open_time)} (closed {_t(close)}) signed by nobody: {where} "
                    + (f"before epoch {epoch.epoch}" if place == "gap" else f"of epoch {epoch.epoch}")
                    + f" [{boundary}]",
                    cause,
                )
            )
    # Who signed each candle: every accepted write (the stored row is one of them, and the only one
    # known when the writes were not recorded).
    signers: dict[tuple[str, str, int], set[int]] = {}
    for s in history.signals:
        signers.setdefault((s.symbol, s.interval, s.open_time), set()).add(s.epoch)
    for w in history.signings or ():
        signers.setdefault(w.candle, set()).add(w.epoch)
    for (symbol, interval, open_time), epochs in sorted(signers.items(), key=lambda kv: kv[0][2]):
        if len(epochs) < 2:
            continue
        close = open_time + INTERVALS[interval] * 1000
        place, i = timeline.place(close, rules.reach(interval))
        if close >= history.horizon:
            place = "after horizon"
        where, boundary = timeline.boundary(place, i, close, rules, history.horizon)
        signed_by = tuple(sorted(epochs))
        result.duplicates.append(
            Finding(
                symbol,
                interval,
                open_time,
                close,
                where,
                boundary,
                signed_by,
                f"{symbol} {interval} {_t(open_time)} (closed {_t(close)}) signed under epochs "
                f"{', '.join(map(str, signed_by))}: {where} [{boundary}]",
            )
        )
    result.figures = dict(figures)
    return result


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
