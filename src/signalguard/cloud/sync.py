"""The StateSynchronizer: the engine's writes, queued in the core outbox and written in batches.

The worker flushes every 10 s; :class:`~signalguard.core.outbox.Outbox` keeps the order and the answers.

Between flushes, effects wait in three lists: new signals, trade opens and closes (in the engine's order),
and status changes by signal key (a later change of the same signal replaces the earlier one: every
lifecycle path from ``new`` or ``active`` to the later status is itself a valid transition). A flush queues
the new signals first, then the trades (an open needs its signal's row), then the status changes, so
that a whole period's signals go in one ``write_signals`` call instead of alternating with the status
changes of the previous candle; a status change never overtakes its signal's insert, because that insert
is either queued earlier or in the same flush. From there the outbox's rules hold: entries leave in order,
a failed batch (network, 5xx) stays at the head with back-off, every answer settles its entries, and
rejected entries are kept and logged, never dropped silently.

What a batch becomes (which RPC, under which epoch, and what is answered without sending: the status
changes and trades of a refused signal, and those that need a lease the worker no longer holds) is the
core's decision, the same as the page's (:mod:`signalguard.core.writes`).

A rejection whose code says the writer is no longer the executor (``SG001``, ``SG002``, ``SG004``) is
reported to ``on_verdict`` at once: the worker stops generating and re-claims.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from signalguard.cloud.database import Database, DatabaseRefused, DatabaseUnavailable
from signalguard.core.codes import GuardError
from signalguard.core.engine import (
    TERMINAL,
    SignalCreated,
    SignalStatus,
    TradeClosed,
    TradeOpened,
)
from signalguard.core.outbox import Batch, Entry, EntryKind, Outbox, Rejection
from signalguard.core.writes import (
    Answer,
    Answered,
    Call,
    Lost,
    Refused,
    RefusedSignals,
    Settled,
    Write,
    entry_for,
    plan,
    settle,
)

__all__ = ["FlushReport", "StateSynchronizer", "SyncCounters"]

log = logging.getLogger("signalguard.cloud.sync")

#: The most entries sent in one call (``write_signals`` takes at most 500).
MAX_BATCH = 200
#: Pause between attempts while draining at stop (the back-off is ignored then: time is short).
_DRAIN_PAUSE = 0.5


@dataclass(slots=True)
class SyncCounters:
    """What the synchronizer has done since it started."""

    #: Signals the engine created and this side queued.
    signals_created: int = 0
    #: Status changes queued (after coalescing).
    status_changes: int = 0
    #: Paper trades opened and closed (queued).
    trades_opened: int = 0
    trades_closed: int = 0
    #: Calls answered by the database (``write_signals`` or a status batch).
    batches_written: int = 0
    #: Batches that failed in transit and stayed queued.
    retries: int = 0
    #: Entries the database refused (see :attr:`StateSynchronizer.outbox` ``.rejected``).
    rejected: int = 0
    #: Status changes and trade operations answered here, not sent: their signal was refused, or the
    #: worker held no lease any more (see :mod:`signalguard.core.writes`).
    dropped_statuses: int = 0
    #: Answers by outcome: inserted, duplicate, updated, rejected.
    outcomes: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line for the log."""
        return (
            f"signals created {self.signals_created}, status changes {self.status_changes}, "
            f"trades opened {self.trades_opened}, closed {self.trades_closed}, "
            f"batches written {self.batches_written}, retries {self.retries}, rejected {self.rejected}"
            + (f", status changes dropped {self.dropped_statuses}" if self.dropped_statuses else "")
        )


@dataclass(slots=True)
class FlushReport:
    """What one flush did."""

    batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failed: str | None = None
    verdicts: list[GuardError] = field(default_factory=list)


class StateSynchronizer:
    """Queues the engine's effects and writes them; see the module documentation."""

    def __init__(
        self,
        db: Database,
        machine_id: str,
        *,
        live_epoch: Callable[[], int | None],
        on_verdict: Callable[[Sequence[GuardError], Sequence[Rejection]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_batch: int = MAX_BATCH,
        max_entries: int = 10_000,
    ) -> None:
        """Write through ``db`` as ``machine_id``; ``on_verdict`` hears of guard verdicts at once.

        ``live_epoch`` is the epoch of the lease the writer holds now (None: none). A status change needs
        the live lease when it is *written*, so it is sent under that epoch rather than the one it was
        made under: after an outage that outlived the lease and a new grant, the queued changes still
        apply (the lifecycle check in the database keeps them from undoing anyone else's).
        """
        self._db = db
        self._machine_id = machine_id
        self._on_verdict = on_verdict
        self._live_epoch = live_epoch
        self._clock = clock
        self._max_batch = max_batch
        self.outbox = Outbox(max_entries=max_entries)
        self.counters = SyncCounters()
        self._signals: list[Entry] = []
        self._trades: list[Entry] = []
        self._statuses: dict[str, tuple[SignalStatus, int]] = {}
        # Signals the database refused: their status changes are not sent.
        self._refused = RefusedSignals()
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        """Writes not yet answered: waiting for the next flush, or in the outbox."""
        return len(self._signals) + len(self._trades) + len(self._statuses) + len(self.outbox)

    def add(self, effect: Write) -> None:
        """Queue an effect for the next flush."""
        if isinstance(effect, SignalCreated):
            self._signals.append(
                entry_for(effect, self._clock(), source="cloud", machine_id=self._machine_id)
            )
            self.counters.signals_created += 1
        elif isinstance(effect, TradeOpened | TradeClosed):
            self._trades.append(entry_for(effect, self._clock(), source="cloud", machine_id=self._machine_id))
            if isinstance(effect, TradeOpened):
                self.counters.trades_opened += 1
            else:
                self.counters.trades_closed += 1
        else:
            if effect.key in self._refused:  # its signal was refused: there is no row to change
                self.counters.dropped_statuses += 1
                if effect.new in TERMINAL:
                    self._refused.forget(effect.key)
                return
            if effect.key not in self._statuses:
                self.counters.status_changes += 1
            self._statuses[effect.key] = (effect.new, effect.epoch)

    def _enqueue(self) -> None:
        """Move the period's effects into the outbox: signals first, then status changes.

        Each effect leaves its list only once the outbox took it, so :class:`OutboxFull` loses nothing.
        """
        now = self._clock()
        for queue in (self._signals, self._trades):
            while queue:
                self.outbox.add(queue[0])
                del queue[0]
        while self._statuses:
            key, (status, epoch) = next(iter(self._statuses.items()))
            self.outbox.add(Entry.status(key, status.value, epoch, now))
            del self._statuses[key]

    async def flush(self, *, force: bool = False) -> FlushReport:
        """Queue the period's effects and write every batch that is due; stop at the first failure.

        ``force`` ignores the back-off of a failed head (the database just answered something else, or
        the worker is stopping).
        """
        async with self._lock:
            self._enqueue()
            report = FlushReport()
            while True:
                now = self._clock()
                if force:
                    now = max(now, self.outbox.next_attempt_at())
                batch = self.outbox.take(now, self._max_batch)
                if batch is None:
                    return report
                if not await self._write(batch, report):
                    return report

    async def _write(self, batch: Batch, report: FlushReport) -> bool:
        call = plan(batch, live_epoch=self._live_epoch(), refused=self._refused)
        done: Settled | None = None
        try:
            answer = await self._send(call) if call.rpc is not None else None
            done = settle(self.outbox, self._refused, call, answer, self._clock())
        finally:
            if done is None:  # cancelled (stopping) or an unexpected error: the batch is not lost
                self.outbox.fail(batch, self._clock())
        if done.lost is not None:
            self.counters.retries += 1
            report.failed = done.lost
            log.warning(
                "writing %d %s entr%s failed (%s); kept at the head, next attempt in %.1f s",
                len(call.sent),
                batch.kind.value,
                "y" if len(call.sent) == 1 else "ies",
                done.lost,
                max(0.0, (done.retry_at or 0.0) - self._clock()),
            )
            return False
        if call.rpc is not None:
            report.batches += 1
            self.counters.batches_written += 1
        tally = Counter(done.outcomes)
        report.outcomes.update(tally)
        self.counters.outcomes.update(tally)
        self.counters.dropped_statuses += len(call.local)
        if done.refused:
            self.counters.rejected += len(done.refused)
            for r in done.refused[:5]:
                log.warning(
                    "the database refused %s %s: %s %s", r.entry.kind.value, r.entry.key, r.code, r.message
                )
            if len(done.refused) > 5:
                log.warning("... and %d more refused entries in this batch", len(done.refused) - 5)
        if done.verdicts:
            report.verdicts.extend(done.verdicts)
            if self._on_verdict is not None:
                self._on_verdict(list(done.verdicts), list(done.refused))
        return True

    async def _send(self, call: Call) -> Answer:
        """Make the call through the database port; what came back, as the core reads it."""
        send = {
            EntryKind.SIGNAL: self._db.write_signals,
            EntryKind.STATUS: self._db.update_statuses,
            EntryKind.TRADE: self._db.write_trades,
        }[call.batch.kind]
        try:
            return Answered(list(await send(list(call.payloads))))
        except DatabaseUnavailable as exc:
            return Lost(str(exc))
        except DatabaseRefused as exc:
            # The whole call was refused (e.g. a permission error): one verdict for every entry.
            return Refused(exc.code, exc.message)

    async def drain(self, timeout: float) -> bool:
        """Write everything queued, retrying without back-off for at most ``timeout`` s; True if empty."""
        try:
            # The bound covers a call that hangs, too: cancelling it keeps its batch at the head.
            async with asyncio.timeout(timeout):
                while True:
                    await self.flush(force=True)
                    if not len(self):
                        return True
                    await asyncio.sleep(_DRAIN_PAUSE)
        except TimeoutError:
            return not len(self)

    def unsent(self) -> str:
        """Every write not yet answered, as JSON (logged when the worker must exit with some unsent)."""
        entries = json.loads(self.outbox.to_json())["entries"]
        entries += [
            {"key": e.key, "kind": e.kind.value, "payload": e.payload} for e in self._signals + self._trades
        ]
        entries += [
            {
                "key": f"{k}#{st.value}",
                "kind": "status",
                "payload": {"signal_key": k, "status": st.value, "updated_epoch": ep},
            }
            for k, (st, ep) in self._statuses.items()
        ]
        return json.dumps(entries, separators=(",", ":"))
