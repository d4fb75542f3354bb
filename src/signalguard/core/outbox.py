"""The outbox: every write the engine wants done, kept until the database has answered it.

Pure and serialisable: the browser keeps it in IndexedDB (it survives a reload or an outage), the cloud
worker in memory. Nothing is ever dropped silently and nothing is reordered:

- entries leave in the order they were added, in batches of one kind (a batch is the longest run of
  due entries of the same kind at the head), so a signal's status change never overtakes its insert;
- an entry is removed only when the database has answered it: *inserted* or *duplicate* (acknowledged:
  the row exists, whoever wrote it), or *rejected* with a guard error code (a verdict: retrying gives
  the same answer, so it moves to :attr:`Outbox.rejected`, where the app shows it);
- a batch that failed in transit (network, HTTP 5xx) stays at the head and is retried after the one
  back-off schedule (:mod:`signalguard.core.backoff`);
- adding an entry whose idempotency key is already pending changes nothing, so replaying the same
  signal (a second tab's mirror, a restart) cannot double it here either;
- the outbox has a bound; past it :meth:`Outbox.add` raises :class:`OutboxFull` rather than forget.
"""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.codes import GuardError
from signalguard.core.ports import JsonValue

#: Format of :meth:`Outbox.to_json`; a stored outbox of another version is refused, not guessed at.
FORMAT_VERSION: Final = 1
#: Outcomes that say the row is as the entry wanted it (whoever wrote it): the entry is done.
ACKNOWLEDGED: Final = frozenset(
    {"inserted", "duplicate", "updated", "opened", "closed", "already_closed", "cancelled"}
)
#: Rejected entries kept for display; older ones are summarised by :attr:`Outbox.rejected_total`.
REJECTED_KEPT: Final = 200


class EntryKind(enum.Enum):
    """What an outbox entry asks the database to do."""

    #: Insert a new signal (``write_signals``; upsert on the signal key, ignore duplicates).
    SIGNAL = "signal"
    #: Change a signal's status (needs the live lease when it is written).
    STATUS = "status"
    #: Open or close a paper trade (``write_trades``; needs the live lease when it is written).
    TRADE = "trade"


class OutboxFull(RuntimeError):
    """The outbox holds its maximum of pending entries; the caller must stop producing."""


class OutboxFormatError(ValueError):
    """A stored outbox could not be read back; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One pending write."""

    #: Idempotency key: the signal key for a signal, ``<signal key>#<status>`` for a status change,
    #: ``<signal key>#open`` / ``<signal key>#close`` for a trade's open and close.
    key: str
    kind: EntryKind
    #: The JSON object sent to the database.
    payload: Mapping[str, JsonValue]
    #: When it was added (seconds, the caller's clock).
    created_at: float

    @classmethod
    def signal(cls, key: str, row: Mapping[str, JsonValue], now: float) -> Entry:
        """A new signal's insert: ``row`` is what ``write_signals`` takes, keyed by the signal key."""
        return cls(key, EntryKind.SIGNAL, row, now)

    @classmethod
    def status(cls, key: str, status: str, epoch: int, now: float) -> Entry:
        """Signal ``key``'s move to ``status`` under the live ``epoch`` (``update_signal_statuses``)."""
        payload: dict[str, JsonValue] = {"signal_key": key, "status": status, "updated_epoch": epoch}
        return cls(f"{key}#{status}", EntryKind.STATUS, payload, now)

    @classmethod
    def trade(cls, key: str, op: Mapping[str, JsonValue], now: float) -> Entry:
        """A ``write_trades`` operation on the trade of signal ``key``, keyed by its ``op`` (open, close)."""
        return cls(f"{key}#{op['op']}", EntryKind.TRADE, op, now)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An entry the database refused, and why."""

    entry: Entry
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Batch:
    """Entries sent together; answer it with :meth:`Outbox.settle` or :meth:`Outbox.fail`."""

    kind: EntryKind
    entries: tuple[Entry, ...]

    @property
    def payloads(self) -> list[Mapping[str, JsonValue]]:
        """The entries' payloads, in order."""
        return [e.payload for e in self.entries]


@dataclass(slots=True)
class Outbox:
    """Pending writes in order, keyed for idempotency."""

    max_entries: int = 10_000
    #: How long the head waits after a failed batch (the one schedule; tests scale it).
    backoff: Backoff = BACKOFF
    _pending: OrderedDict[str, Entry] = field(default_factory=OrderedDict)
    _in_flight: bool = False
    _failures: int = 0
    _not_before: float = 0.0
    rejected: list[Rejection] = field(default_factory=list)
    rejected_total: int = 0
    acknowledged_total: int = 0
    retries_total: int = 0

    def __len__(self) -> int:
        """Entries not yet answered (including those in flight)."""
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        """Whether an entry with this idempotency key is pending."""
        return key in self._pending

    def entries(self, kind: EntryKind | None = None) -> list[Entry]:
        """The entries not yet answered (of ``kind``, if given), oldest first."""
        return [e for e in self._pending.values() if kind is None or e.kind is kind]

    @property
    def in_flight(self) -> bool:
        """Whether a batch has been taken and not yet settled or failed."""
        return self._in_flight

    def add(self, entry: Entry) -> bool:
        """Queue ``entry``; False if its key is already pending (nothing changes)."""
        if entry.key in self._pending:
            return False
        if len(self._pending) >= self.max_entries:
            raise OutboxFull(f"the outbox holds {self.max_entries} unsent writes; stop and reconnect")
        self._pending[entry.key] = entry
        return True

    def due(self, now: float) -> bool:
        """Whether a batch may be taken at ``now``."""
        return bool(self._pending) and not self._in_flight and now >= self._not_before

    def next_attempt_at(self) -> float:
        """When the head may next be sent (the back-off after a failure)."""
        return self._not_before

    def take(self, now: float, max_size: int = 200) -> Batch | None:
        """The head's longest run of one kind (at most ``max_size``), or None if nothing is due."""
        if not self.due(now):
            return None
        entries: list[Entry] = []
        for entry in self._pending.values():
            if entries and (entry.kind is not entries[0].kind or len(entries) >= max_size):
                break
            entries.append(entry)
        self._in_flight = True
        return Batch(entries[0].kind, tuple(entries))

    def settle(self, batch: Batch, outcomes: Sequence[Mapping[str, object]], now: float) -> list[Rejection]:
        """Apply the database's per-entry answers to ``batch``; return the new rejections.

        ``outcomes[i]`` answers ``batch.entries[i]`` (``write_signals`` returns them with an ``index``):
        ``{"outcome": "inserted" | "duplicate" | "updated"}`` acknowledges (and, from
        ``write_trades``, ``"opened" | "closed" | "already_closed" | "cancelled"``), ``{"outcome": "rejected",
        "code": ..., "message": ...}`` rejects. Entries the answer leaves out stay at the head, and
        the outbox backs off as after a failed batch.
        """
        self._in_flight = False
        by_index: dict[int, Mapping[str, object]] = {}
        for i, outcome in enumerate(outcomes):
            idx = outcome.get("index", i)
            if isinstance(idx, int) and 0 <= idx < len(batch.entries):
                by_index[idx] = outcome
        new: list[Rejection] = []
        unanswered = False
        for i, entry in enumerate(batch.entries):
            out = by_index.get(i)
            verdict = out.get("outcome") if out is not None else None
            if verdict in ACKNOWLEDGED:
                self._pending.pop(entry.key, None)
                self.acknowledged_total += 1
            elif verdict == "rejected" and out is not None:
                self._pending.pop(entry.key, None)
                new.append(Rejection(entry, str(out.get("code", "")), str(out.get("message", ""))))
            else:
                unanswered = True
        self._record_rejections(new)
        if unanswered:
            self._back_off(now)
        else:
            self._failures = 0
            self._not_before = 0.0
        return new

    def reject_all(self, batch: Batch, code: str, message: str, now: float) -> list[Rejection]:
        """The database refused the whole batch with one verdict (e.g. a single-row write)."""
        outcomes = [
            {"index": i, "outcome": "rejected", "code": code, "message": message}
            for i in range(len(batch.entries))
        ]
        return self.settle(batch, outcomes, now)

    def fail(self, batch: Batch, now: float) -> float:
        """The batch was not answered (network, 5xx): keep it at the head; return when to retry."""
        self._in_flight = False
        self._back_off(now)
        return self._not_before

    def _back_off(self, now: float) -> None:
        self._failures += 1
        self.retries_total += 1
        self._not_before = now + self.backoff.delay(self._failures)

    def _record_rejections(self, new: Iterable[Rejection]) -> None:
        for r in new:
            self.rejected_total += 1
            self.rejected.append(r)
        del self.rejected[:-REJECTED_KEPT]

    @staticmethod
    def guard_verdicts(rejections: Iterable[Rejection]) -> list[GuardError]:
        """The rejections' codes that say the writer is not (or no longer) the executor."""
        codes = {c.value: c for c in GuardError}
        return [codes[r.code] for r in rejections if r.code in codes and codes[r.code].moves_guard]

    # -- persistence --------------------------------------------------------------------------------

    def to_json(self) -> str:
        """Serialise the pending entries and counters (not the in-flight mark: a reload resends)."""
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "entries": [
                    {"key": e.key, "kind": e.kind.value, "payload": e.payload, "created_at": e.created_at}
                    for e in self._pending.values()
                ],
                "rejected_total": self.rejected_total,
                "acknowledged_total": self.acknowledged_total,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, *, max_entries: int = 10_000) -> Outbox:
        """Read back :meth:`to_json`'s output; :class:`OutboxFormatError` says what is wrong."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise OutboxFormatError(f"stored outbox is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise OutboxFormatError(f"stored outbox: expected version {FORMAT_VERSION}")
        raw = data.get("entries")
        if not isinstance(raw, list):
            raise OutboxFormatError("stored outbox: entries must be a list")
        box = cls(max_entries=max(max_entries, len(raw)))
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise OutboxFormatError(f"stored outbox: entries[{i}] must be an object")
            key, kind, payload, created = (item.get(k) for k in ("key", "kind", "payload", "created_at"))
            if not isinstance(key, str) or not key:
                raise OutboxFormatError(f"stored outbox: entries[{i}].key must be a non-empty string")
            try:
                entry_kind = EntryKind(kind)
            except ValueError:
                raise OutboxFormatError(f"stored outbox: entries[{i}].kind {kind!r} is unknown") from None
            if not isinstance(payload, dict):
                raise OutboxFormatError(f"stored outbox: entries[{i}].payload must be an object")
            if not isinstance(created, int | float) or isinstance(created, bool):
                raise OutboxFormatError(f"stored outbox: entries[{i}].created_at must be a number")
            box.add(Entry(key, entry_kind, payload, float(created)))
        for counter in ("rejected_total", "acknowledged_total"):
            value = data.get(counter, 0)
            if isinstance(value, int) and value >= 0:
                setattr(box, counter, value)
        return box
