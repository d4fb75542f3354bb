"""One outbox batch as one database call, and the call's answer as the batch's outcomes.

Both hosts send their outbox the same way; only the transport differs (supabase-js in the page,
supabase-py in the worker). This module decides, without I/O, what a batch becomes:

- **signals** go to ``write_signals`` as they were made: each carries the epoch it was generated under,
  and the database keeps a signal whose candle closed inside that epoch's window even if it arrives
  after the lease moved on;
- **status changes** go to ``update_signal_statuses`` and **trade opens and closes** to ``write_trades``
  under the *live* epoch (``updated_epoch``, ``epoch``): they need the live lease when they are written,
  so after an outage that outlived the lease and a new grant the queued ones still apply. A writer that
  holds no lease now answers them itself, ``not_executor``, instead of sending what the database must
  refuse: moving statuses and managing trades is the new executor's job;
- a status change or trade operation of a signal the database **refused** can never apply (there is no
  row): it is answered here, ``signal_not_written``, so that one refusal does not come back as a second.

The answer of the call, one outcome per entry sent, is re-addressed to the batch's indexes and joined
with the outcomes answered here, ready for :meth:`~signalguard.core.outbox.Outbox.settle`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from signalguard.core.outbox import Batch, EntryKind, JsonValue, Rejection

__all__ = [
    "LOCAL_CODES",
    "NOT_EXECUTOR",
    "SIGNAL_NOT_WRITTEN",
    "Call",
    "RefusedSignals",
    "plan",
]

#: Answered here: the writer holds no live lease for a write that needs one.
NOT_EXECUTOR: Final = "not_executor"
#: Answered here: the signal this change or trade operation is about was refused by the database.
SIGNAL_NOT_WRITTEN: Final = "signal_not_written"
#: The codes of outcomes answered here (no verdict of the database; not shown as refusals).
LOCAL_CODES: Final = frozenset({NOT_EXECUTOR, SIGNAL_NOT_WRITTEN})

#: The RPC and its argument name for each kind of entry.
_RPC: Final[Mapping[EntryKind, tuple[str, str]]] = {
    EntryKind.SIGNAL: ("write_signals", "p_signals"),
    EntryKind.STATUS: ("update_signal_statuses", "p_changes"),
    EntryKind.TRADE: ("write_trades", "p_ops"),
}
#: The field a write under the live lease carries its epoch in.
_EPOCH_FIELD: Final[Mapping[EntryKind, str]] = {EntryKind.STATUS: "updated_epoch", EntryKind.TRADE: "epoch"}
_MESSAGES: Final[Mapping[str, str]] = {
    NOT_EXECUTOR: "this writer holds no live lease: the executor moves statuses and manages trades",
    SIGNAL_NOT_WRITTEN: "its signal was refused",
}


@dataclass(frozen=True, slots=True)
class Call:
    """What a batch becomes: at most one RPC, and the outcomes answered without the database."""

    batch: Batch
    #: The RPC to call, or None when every entry is answered here.
    rpc: str | None
    #: Its one argument's name (``p_signals``, ``p_changes``, ``p_ops``).
    arg: str
    #: What is sent: one object per entry sent.
    payloads: tuple[Mapping[str, JsonValue], ...]
    #: The batch's indexes of the entries sent, in the order sent.
    sent: tuple[int, ...]
    #: Outcomes of the entries not sent (``index`` is the batch's).
    local: tuple[Mapping[str, object], ...]

    @property
    def args(self) -> dict[str, JsonValue]:
        """The RPC's arguments: ``{"p_signals": [...]}`` and so on."""
        return {self.arg: [dict(p) for p in self.payloads]}

    def outcomes(self, answer: object) -> list[Mapping[str, object]] | None:
        """The call's ``answer`` re-addressed to the batch, with the local outcomes; None if unreadable.

        An answer that is not a list of outcomes is no answer at all: the caller treats the call as
        failed in transit and the batch stays at the head.
        """
        if self.rpc is None:
            return list(self.local)
        if not isinstance(answer, list):
            return None
        out: list[Mapping[str, object]] = []
        for position, outcome in enumerate(answer):
            if not isinstance(outcome, Mapping):
                continue
            index = outcome.get("index", position)
            known = isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(self.sent)
            # An index that is not of an entry sent addresses nothing: the outbox ignores it.
            out.append({**outcome, "index": self.sent[index] if known else -1})
        return out + list(self.local)


class RefusedSignals:
    """The keys of the signals the database refused lately (bounded; the oldest are forgotten first)."""

    def __init__(self, kept: int = 10_000) -> None:
        """Remember at most ``kept`` keys (the engine tracks at most 5,000 signals)."""
        self._kept = kept
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        """Whether the signal with this key was refused."""
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def note(self, batch: Batch, rejections: Iterable[Rejection]) -> None:
        """Remember the signals of ``batch`` the database refused (other kinds of batch: nothing)."""
        if batch.kind is not EntryKind.SIGNAL:
            return
        for r in rejections:
            if r.code not in LOCAL_CODES:
                self._keys[r.entry.key] = None
        while len(self._keys) > self._kept:
            self._keys.popitem(last=False)

    def forget(self, key: str) -> None:
        """The signal's lifecycle has ended: nothing more will be asked about it."""
        self._keys.pop(key, None)


def plan(batch: Batch, *, live_epoch: int | None, refused: RefusedSignals) -> Call:
    """The call that sends ``batch`` (see the module documentation).

    ``live_epoch`` is the epoch of the lease the writer holds now (None: none).
    """
    rpc, arg = _RPC[batch.kind]
    epoch_field = _EPOCH_FIELD.get(batch.kind)
    sent: list[int] = []
    payloads: list[Mapping[str, JsonValue]] = []
    local: list[Mapping[str, object]] = []
    for i, entry in enumerate(batch.entries):
        code: str | None = None
        if epoch_field is not None:
            if entry.payload.get("signal_key") in refused:
                code = SIGNAL_NOT_WRITTEN
            elif live_epoch is None:
                code = NOT_EXECUTOR
        if code is not None:
            local.append({"index": i, "outcome": "rejected", "code": code, "message": _MESSAGES[code]})
            continue
        sent.append(i)
        payload = dict(entry.payload)
        if epoch_field is not None:
            payload[epoch_field] = live_epoch
        payloads.append(payload)
    return Call(batch, rpc if sent else None, arg, tuple(payloads), tuple(sent), tuple(local))
