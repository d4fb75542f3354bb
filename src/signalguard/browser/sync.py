"""The tab's writes: the core :class:`~signalguard.core.outbox.Outbox`, kept in IndexedDB, sent in batches.

Every signal the engine creates, and every status change, becomes an outbox entry. The outbox is written
through to the :class:`~.ports.KeyValueStore` (IndexedDB) *before* anything is sent, so a reload, a
crash or an outage loses nothing: the next start reads it back and sends it again. Sending twice is
harmless: ``write_signals`` upserts on the signal key and answers ``duplicate``.

- Signals go to ``write_signals`` (``source='local'``, no machine, the epoch they were made under: the
  database keeps a signal whose candle closed inside that epoch's window even if it arrives later).
- Status changes go to ``update_signal_statuses`` and paper trades' opens and closes to ``write_trades``,
  under the current epoch: they need the *live* lease when written. What a batch becomes is the core's
  decision, the same as the worker's (:mod:`signalguard.core.writes`): a tab that is not the executor any
  more answers them itself (``not_executor``), and so are those of a signal the database refused
  (``signal_not_written``). A close of a closed trade is answered ``already_closed``: nothing is closed
  twice.
- A whole call that fails in transit (network, 5xx) stays at the head and is retried after the outbox's
  back-off, the one schedule of :mod:`signalguard.core.backoff` (at most 5 s: an open tab drains soon
  after the network is back).
- A refusal whose code says this tab is not (or no longer) the executor goes to ``on_verdict`` at once:
  the guard stops generating and re-polls.

Only the tab holding the tab lock (:meth:`SignalSync.set_active`) reads, sends and writes the stored
outbox, so two tabs of one browser never race on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from signalguard.browser.ports import ApiResult, Backend, Spawn, Timers
from signalguard.core.codes import GuardError
from signalguard.core.outbox import Batch, Entry, EntryKind, Outbox, OutboxFormatError, OutboxFull
from signalguard.core.ports import Clock, JsonValue, KeyValueStore
from signalguard.core.writes import (
    Answer,
    Answered,
    Lost,
    Refused,
    RefusedSignals,
    Write,
    entry_for,
    plan,
    settle,
)

#: Entries per call (``write_signals`` takes at most 500).
MAX_BATCH: Final = 200
#: How often the outbox is looked at (retries fall due between writes).
PUMP_SECONDS: Final = 1.0
PUMP_TIMER: Final = "outbox-pump"
#: Codes that are verdicts (retrying gives the same answer). Unlike the cloud worker, an expired or
#: missing token (401, ``PGRST3xx``) is *not* one here: supabase-js refreshes the session, and the
#: signals must not be dropped meanwhile.
_VERDICT: Final = re.compile(r"SG\d{3}|42501")


def store_key(user_id: str) -> str:
    """Where a user's outbox is kept in IndexedDB."""
    return f"outbox:{user_id.lower()}"


def is_verdict(result: ApiResult) -> bool:
    """Whether a failed call was refused (a verdict) rather than lost in transit."""
    if result.error is None:
        return False
    code = result.error.code or ""
    if _VERDICT.fullmatch(code):
        return True
    return 400 <= result.status < 500 and result.status not in (401, 408, 429)


def answer_of(result: ApiResult) -> Answer:
    """What a call's result says to the outbox: answered, refused with one verdict, or lost."""
    if result.error is None:
        return Answered(result.data)
    if is_verdict(result):
        return Refused(result.error.code or f"HTTP{result.status}", result.error.message)
    return Lost(str(result.error))


class SignalSync:
    """The outbox of one signed-in user in one tab; see the module documentation."""

    def __init__(
        self,
        user_id: str,
        backend: Backend,
        store: KeyValueStore,
        timers: Timers,
        clock: Clock,
        spawn: Spawn,
        *,
        on_count: Callable[[int, str], None],
        on_verdict: Callable[[GuardError], None],
        on_written: Callable[[], None],
        on_problem: Callable[[str], None],
    ) -> None:
        """Prepare; nothing is read or sent until :meth:`set_active`."""
        self.user_id = user_id.lower()
        self.outbox = Outbox()
        self._backend = backend
        self._store = store
        self._timers = timers
        self._clock = clock
        self._spawn = spawn
        self._on_count = on_count
        self._on_verdict = on_verdict
        self._on_written = on_written
        self._on_problem = on_problem
        self._active = False
        self._loaded = False
        self._pumping = False
        self._again = False
        self._dirty = False
        self._problem = ""
        self._live_epoch: int | None = None
        # Signals the database refused: their status changes and trades are not sent.
        self._refused = RefusedSignals()
        # Made while the stored outbox was still being read: added once it is.
        self._early: list[Entry] = []

    # -- state --------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Writes not yet answered."""
        return len(self.outbox) + len(self._early)

    def set_live_epoch(self, epoch: int | None) -> None:
        """The epoch of the lease this tab holds now (None: it is not the executor)."""
        self._live_epoch = epoch

    def set_active(self, active: bool) -> None:
        """Read the stored outbox and send (True: this tab holds the tab lock)."""
        if active == self._active:
            return
        self._active = active
        if active:
            self._timers.every(PUMP_TIMER, PUMP_SECONDS, self.kick)
            self.kick()
        else:
            self._timers.clear(PUMP_TIMER)

    def stop(self) -> None:
        """Signed out or leaving: stop sending (what is stored stays for the next start)."""
        self.set_active(False)

    def pending_signals(self) -> list[Mapping[str, JsonValue]]:
        """The payloads of signals not yet acknowledged, oldest first (shown as pending)."""
        early = [e for e in self._early if e.kind is EntryKind.SIGNAL]
        return [e.payload for e in self.outbox.entries(EntryKind.SIGNAL) + early]

    def pending_keys(self) -> list[str]:
        """Idempotency keys of the signals not yet acknowledged."""
        early = [e for e in self._early if e.kind is EntryKind.SIGNAL]
        return [e.key for e in self.outbox.entries(EntryKind.SIGNAL) + early]

    # -- intake -------------------------------------------------------------------------------

    def add(self, effect: Write) -> None:
        """Queue a new signal, a status change or a trade's open or close; stored before it is sent."""
        entry = entry_for(effect, self._clock(), source="local")
        if not self._loaded:
            self._early.append(entry)
        elif self._early:
            # Older writes wait for room first: the caller holds this one (and pauses), as when full.
            raise OutboxFull(f"{len(self._early)} older writes wait for room in the outbox")
        else:
            self.outbox.add(entry)
            self._dirty = True
        self._report()
        self.kick()

    def kick(self) -> None:
        """Store and send what is due (again, if a pass is running)."""
        if not self._active:
            return
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        self._spawn(self._pump())

    # -- the pump -----------------------------------------------------------------------------

    async def _pump(self) -> None:
        try:
            while True:
                self._again = False
                if not self._loaded:
                    await self._load()
                while self._active:
                    # Write-through: stored before it is sent, including what was added while the
                    # last save was in flight (its snapshot was taken when it started).
                    while self._dirty:
                        await self._save()
                    batch = self.outbox.take(self._clock(), MAX_BATCH)
                    if batch is None:
                        break
                    if not await self._send(batch):
                        break
                    self._admit()  # room was made
                if self._dirty:
                    await self._save()
                if not self._again:
                    return
        finally:
            self._pumping = False
            self._report()

    async def _load(self) -> None:
        text: str | None = None
        try:
            text = await self._store.get(store_key(self.user_id))
        except Exception as exc:  # IndexedDB unavailable (private mode, quota): keep going in memory
            self._on_problem(f"The outbox cannot be read from this browser's storage ({exc}).")
        if text:
            try:
                stored = Outbox.from_json(text)
            except OutboxFormatError as exc:
                self._on_problem(f"The stored outbox was unreadable and is ignored: {exc}")
            else:
                self._early[:0] = stored.entries()  # the stored ones first, in their order
                self.outbox.acknowledged_total = stored.acknowledged_total
                self.outbox.rejected_total = stored.rejected_total
        self._loaded = True
        self._admit()

    def _admit(self) -> None:
        """Move what waits in memory into the outbox, in order, as far as it has room.

        The stored outbox and the writes made while it was read may be more than the outbox holds
        (the tab was closed with it full): the rest waits here, counted, and comes in as batches are
        answered, instead of failing every pass.
        """
        while self._early:
            try:
                self.outbox.add(self._early[0])
            except OutboxFull:
                return
            del self._early[0]
            self._dirty = True

    async def _save(self) -> None:
        self._dirty = False
        error = await self._store.put(store_key(self.user_id), self.outbox.to_json())
        if error:
            self._on_problem(f"The outbox could not be stored ({error}); writes are kept in memory only.")

    async def _send(self, batch: Batch) -> bool:
        """Send one batch and settle it; False if it failed in transit (stop for now)."""
        call = plan(batch, live_epoch=self._live_epoch, refused=self._refused)
        answer = answer_of(await self._backend.rpc(call.rpc, call.args)) if call.rpc is not None else None
        done = settle(self.outbox, self._refused, call, answer, self._clock())
        self._dirty = True
        if done.lost is not None:
            # The reason names the failure already (e.g. "The database API is not reachable (...)").
            self._problem = f"Not saved yet: {done.lost.rstrip('.')}. Retrying."
            return False
        self._problem = ""
        for code in done.verdicts:
            self._on_verdict(code)
        if done.refused:
            r = done.refused[0]
            more = f" (and {len(done.refused) - 1} more)" if len(done.refused) > 1 else ""
            self._on_problem(
                f"The database refused {r.entry.kind.value} {r.entry.key}: {r.code} {r.message}{more}"
            )
        if batch.kind is not EntryKind.STATUS:
            self._on_written()
        return True

    def _report(self) -> None:
        self._on_count(len(self), self._problem)
