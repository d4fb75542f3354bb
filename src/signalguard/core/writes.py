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

The host makes the call and says what came back, as an :data:`Answer` (:class:`Answered`, the whole
call :class:`Refused` with one verdict, or :class:`Lost` in transit); :func:`settle` applies it to the
outbox, the same way on both hosts, and says what the host must report (:class:`Settled`). Which
effect of the engine becomes which entry is :func:`entry_for`'s decision.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, cast

from signalguard.core.codes import GuardError
from signalguard.core.engine import SignalCreated, TradeClosed, TradeOpened, Write
from signalguard.core.outbox import Batch, Entry, EntryKind, Outbox, Rejection
from signalguard.core.ports import JsonValue

__all__ = [
    "LOCAL_CODES",
    "NOT_EXECUTOR",
    "SIGNAL_NOT_WRITTEN",
    "Answer",
    "Answered",
    "Call",
    "Lost",
    "Refused",
    "RefusedSignals",
    "Settled",
    "Write",
    "entry_for",
    "plan",
    "settle",
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


def entry_for(effect: Write, now: float, *, source: str, machine_id: str | None = None) -> Entry:
    """The outbox entry of one of the engine's writes, made by ``source`` (``local`` or ``cloud``)."""
    if isinstance(effect, SignalCreated):
        row = effect.signal.row(source=source, machine_id=machine_id)
        return Entry.signal(effect.signal.key, cast("dict[str, JsonValue]", row), now)
    if isinstance(effect, TradeOpened):
        return Entry.trade(effect.trade.key, cast("dict[str, JsonValue]", effect.trade.open_op()), now)
    if isinstance(effect, TradeClosed):
        op = effect.exit.close_op(effect.trade.key, effect.epoch)
        return Entry.trade(effect.trade.key, cast("dict[str, JsonValue]", op), now)
    return Entry.status(effect.key, effect.new.value, effect.epoch, now)


@dataclass(frozen=True, slots=True)
class Answered:
    """The call was answered: ``data`` should be one outcome per entry sent."""

    data: object


@dataclass(frozen=True, slots=True)
class Refused:
    """The whole call was refused with one verdict (a permission error, a guard code)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Lost:
    """No answer (network, 5xx, an expired session): the batch stays at the head, retried later."""

    reason: str


#: What came back from a call.
Answer = Answered | Refused | Lost


@dataclass(frozen=True, slots=True)
class Settled:
    """What sending one batch came to, for the host to report."""

    #: Every entry rejected, including those answered here (:data:`LOCAL_CODES`).
    rejections: tuple[Rejection, ...] = ()
    #: The database's refusals only (to show and to log).
    refused: tuple[Rejection, ...] = ()
    #: Refusals that say the writer is not (or no longer) the executor: stop generating, re-poll.
    verdicts: tuple[GuardError, ...] = ()
    #: Why the call failed in transit (the batch is kept at the head), or None.
    lost: str | None = None
    #: When a lost batch is tried again (the outbox's back-off).
    retry_at: float | None = None
    #: The outcomes the database answered (``inserted``, ``duplicate``, ``updated``, ``rejected``…).
    outcomes: tuple[str, ...] = ()


def settle(outbox: Outbox, refused: RefusedSignals, call: Call, answer: Answer | None, now: float) -> Settled:
    """Apply ``answer`` (None: no call was made, every entry was answered here) to the call's batch."""
    batch = call.batch
    if isinstance(answer, Lost):
        return Settled(lost=answer.reason, retry_at=outbox.fail(batch, now))
    if isinstance(answer, Refused):
        rejections = outbox.reject_all(batch, answer.code, answer.message, now)
        answered = ("rejected",) * len(call.sent)
    else:
        outcomes = call.outcomes(answer.data if answer is not None else None)
        if outcomes is None:  # not a list of outcomes: as if lost in transit
            return Settled(lost=f"unreadable answer to {call.rpc}", retry_at=outbox.fail(batch, now))
        rejections = outbox.settle(batch, outcomes, now)
        answered = tuple(str(o.get("outcome")) for o in outcomes if o.get("code") not in LOCAL_CODES)
    refused.note(batch, rejections)
    theirs = tuple(r for r in rejections if r.code not in LOCAL_CODES)
    return Settled(tuple(rejections), theirs, tuple(Outbox.guard_verdicts(theirs)), outcomes=answered)
