"""One outbox batch as one database call: what is sent, under which epoch, and what is answered here."""

from __future__ import annotations

from typing import Any

from signalguard.core.codes import GuardError
from signalguard.core.engine import Signal, SignalCreated, SignalStatus, StatusChanged
from signalguard.core.outbox import Entry, EntryKind, Outbox
from signalguard.core.writes import (
    NOT_EXECUTOR,
    SIGNAL_NOT_WRITTEN,
    Answered,
    Lost,
    Refused,
    RefusedSignals,
    entry_for,
    plan,
    settle,
)

KEY = "u:t:BTCUSDT:1m:"


def key(n: int) -> str:
    return f"{KEY}{n * 60_000}"


def batch_of(*entries: Entry) -> Any:
    box = Outbox()
    for e in entries:
        box.add(e)
    b = box.take(0.0)
    assert b is not None
    return box, b


def test_signals_go_as_made_with_their_own_epoch() -> None:
    rows = [{"trader_id": "t", "epoch": 3, "n": n} for n in range(3)]
    _, b = batch_of(*(Entry.signal(key(n), rows[n], 0.0) for n in range(3)))
    call = plan(b, live_epoch=9, refused=RefusedSignals())
    assert call.rpc == "write_signals" and call.args == {"p_signals": rows}
    assert call.sent == (0, 1, 2) and call.local == ()


def test_status_changes_and_trades_go_under_the_live_epoch() -> None:
    _, statuses = batch_of(Entry.status(key(1), "active", 3, 0.0), Entry.status(key(2), "closed", 4, 0.0))
    call = plan(statuses, live_epoch=9, refused=RefusedSignals())
    assert call.rpc == "update_signal_statuses"
    assert call.args == {
        "p_changes": [
            {"signal_key": key(1), "status": "active", "updated_epoch": 9},
            {"signal_key": key(2), "status": "closed", "updated_epoch": 9},
        ]
    }
    op = {"op": "open", "signal_key": key(1), "side": "long", "size": 1.0, "epoch": 3}
    _, trades = batch_of(Entry.trade(key(1), op, 0.0))
    call = plan(trades, live_epoch=9, refused=RefusedSignals())
    assert call.rpc == "write_trades" and call.args == {"p_ops": [op | {"epoch": 9}]}


def test_without_a_live_lease_nothing_that_needs_one_is_sent() -> None:
    _, b = batch_of(Entry.status(key(1), "active", 3, 0.0), Entry.status(key(2), "active", 3, 0.0))
    call = plan(b, live_epoch=None, refused=RefusedSignals())
    assert call.rpc is None and call.sent == ()
    outcomes = call.outcomes(None)
    assert outcomes is not None and [(o["index"], o["code"]) for o in outcomes] == [
        (0, NOT_EXECUTOR),
        (1, NOT_EXECUTOR),
    ]
    # Signals need no live lease: they carry their own epoch.
    _, signals = batch_of(Entry.signal(key(1), {"epoch": 3}, 0.0))
    assert plan(signals, live_epoch=None, refused=RefusedSignals()).rpc == "write_signals"


def test_a_refused_signals_changes_are_answered_here_and_the_rest_sent() -> None:
    box, signals = batch_of(Entry.signal(key(1), {"epoch": 3}, 0.0), Entry.signal(key(2), {"epoch": 3}, 0.0))
    refused = RefusedSignals()
    call = plan(signals, live_epoch=3, refused=refused)
    rejections = box.settle(
        signals,
        call.outcomes([{"index": 0, "outcome": "rejected", "code": "SG002", "message": "outside"},
                       {"index": 1, "outcome": "inserted"}]) or [],
        0.0,
    )  # fmt: skip
    refused.note(signals, rejections)
    assert key(1) in refused and key(2) not in refused
    op = {"op": "open", "signal_key": key(1), "side": "long", "size": 1.0, "epoch": 3}
    _, mixed = batch_of(Entry.status(key(1), "active", 3, 0.0), Entry.status(key(2), "active", 3, 0.0))
    call = plan(mixed, live_epoch=3, refused=refused)
    assert call.sent == (1,) and [(o["index"], o["code"]) for o in call.local] == [(0, SIGNAL_NOT_WRITTEN)]
    _, trade = batch_of(Entry.trade(key(1), op, 0.0))
    assert plan(trade, live_epoch=3, refused=refused).rpc is None
    refused.forget(key(1))
    assert plan(trade, live_epoch=3, refused=refused).rpc == "write_trades"


def test_answers_are_addressed_to_the_batch_and_a_non_list_is_no_answer() -> None:
    box, b = batch_of(*(Entry.status(key(n), "active", 3, 0.0) for n in range(4)))
    refused = RefusedSignals()
    refused._keys[key(1)] = None  # the second entry's signal was refused earlier
    call = plan(b, live_epoch=3, refused=refused)
    assert call.sent == (0, 2, 3)
    assert call.outcomes({"error": "x"}) is None and call.outcomes("nonsense") is None
    answer = [
        {"index": 2, "outcome": "updated"},  # the third sent: the batch's fourth
        {"outcome": "updated"},  # no index: its position, the batch's third
        {"index": 0, "outcome": "updated"},
        {"index": 7, "outcome": "updated"},  # addresses nothing
        "garbage",
    ]
    outcomes = call.outcomes(answer)
    assert outcomes is not None
    assert sorted((o["index"], o["outcome"]) for o in outcomes) == [
        (-1, "updated"),
        (0, "updated"),
        (1, "rejected"),
        (2, "updated"),
        (3, "updated"),
    ]
    assert box.settle(b, outcomes, 0.0) and len(box) == 0


def test_refused_signals_are_remembered_boundedly_and_only_from_signal_batches() -> None:
    refused = RefusedSignals(kept=3)
    for n in range(5):
        box, b = batch_of(Entry.signal(key(n), {}, 0.0))
        rejections = box.settle(
            b, [{"index": 0, "outcome": "rejected", "code": "SG001", "message": "x"}], 0.0
        )
        refused.note(b, rejections)
    assert len(refused) == 3 and key(0) not in refused and key(4) in refused
    box, statuses = batch_of(Entry.status(key(9), "active", 3, 0.0))
    rejections = box.settle(
        statuses, [{"index": 0, "outcome": "rejected", "code": "SG001", "message": "x"}], 0.0
    )
    refused.note(statuses, rejections)
    assert key(9) not in refused


# -- what came back, applied the same way on both hosts ---------------------------------------------


def test_an_answered_call_settles_its_batch_and_reports_only_the_databases_refusals() -> None:
    box, b = batch_of(Entry.signal(key(1), {"epoch": 3}, 0.0), Entry.signal(key(2), {"epoch": 3}, 0.0))
    refused = RefusedSignals()
    call = plan(b, live_epoch=9, refused=refused)
    answer = [
        {"index": 0, "outcome": "inserted"},
        {"index": 1, "outcome": "rejected", "code": "SG002", "message": "outside_lease_window"},
    ]
    done = settle(box, refused, call, Answered(answer), 1.0)
    assert done.lost is None and done.outcomes == ("inserted", "rejected")
    assert [r.entry.key for r in done.refused] == [key(2)]
    assert done.verdicts == (GuardError.OUTSIDE_LEASE_WINDOW,)
    assert key(2) in refused and key(1) not in refused
    assert len(box) == 0


def test_outcomes_answered_here_are_rejections_but_no_refusal_and_no_call() -> None:
    box, b = batch_of(Entry.status(key(1), "active", 3, 0.0))
    call = plan(b, live_epoch=None, refused=RefusedSignals())
    done = settle(box, RefusedSignals(), call, None, 1.0)
    assert [r.code for r in done.rejections] == [NOT_EXECUTOR]
    assert done.refused == () and done.verdicts == () and done.outcomes == ()
    assert len(box) == 0


def test_a_refused_call_rejects_every_entry_with_its_verdict() -> None:
    box, b = batch_of(Entry.signal(key(1), {"epoch": 3}, 0.0), Entry.signal(key(2), {"epoch": 3}, 0.0))
    refused = RefusedSignals()
    call = plan(b, live_epoch=9, refused=refused)
    done = settle(box, refused, call, Refused("SG001", "lease_not_held"), 1.0)
    assert [r.code for r in done.refused] == ["SG001", "SG001"]
    assert done.verdicts == (GuardError.LEASE_NOT_HELD, GuardError.LEASE_NOT_HELD)
    assert done.outcomes == ("rejected", "rejected")
    assert key(1) in refused and key(2) in refused and len(box) == 0


def test_a_lost_call_or_an_unreadable_answer_keeps_the_batch_at_the_head() -> None:
    for answer in (Lost("HTTP 503"), Answered({"not": "a list"})):
        box, b = batch_of(Entry.signal(key(1), {"epoch": 3}, 0.0))
        call = plan(b, live_epoch=9, refused=RefusedSignals())
        done = settle(box, RefusedSignals(), call, answer, 10.0)
        assert done.lost is not None and done.rejections == ()
        assert done.retry_at is not None and done.retry_at > 10.0
        assert len(box) == 1
        assert box.take(10.0) is None  # backing off
        again = box.take(done.retry_at)
        assert again is not None and [e.key for e in again.entries] == [key(1)]
    assert isinstance(answer, Answered)
    assert "unreadable answer to write_signals" in (done.lost or "")


def test_each_write_of_the_engine_becomes_its_entry() -> None:
    signal = Signal(key(1), "t", "BTCUSDT", "1m", 60_000, 100.0, ("RSI(14) < 30",), 3)
    created = entry_for(SignalCreated(signal), 5.0, source="cloud", machine_id="m-1")
    assert created.kind is EntryKind.SIGNAL and created.key == key(1)
    assert created.payload["source"] == "cloud" and created.payload["machine_id"] == "m-1"
    local = entry_for(SignalCreated(signal), 5.0, source="local")
    assert local.payload["source"] == "local" and local.payload["machine_id"] is None
    change = entry_for(StatusChanged(key(1), SignalStatus.NEW, SignalStatus.ACTIVE, 4), 5.0, source="local")
    assert change.kind is EntryKind.STATUS
    assert change.payload == {"signal_key": key(1), "status": "active", "updated_epoch": 4}
