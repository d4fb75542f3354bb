"""The outbox: order, idempotency, acknowledgement, rejection, back-off, persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalguard.core.backoff import Backoff
from signalguard.core.codes import GuardError
from signalguard.core.outbox import (
    REJECTED_KEPT,
    Entry,
    EntryKind,
    Outbox,
    OutboxFormatError,
    OutboxFull,
)


def sig(n: int, t: float = 0.0) -> Entry:
    return Entry(f"u:t:BTCUSDT:1m:{n}", EntryKind.SIGNAL, {"n": n}, t)


def status(n: int, to: str = "active") -> Entry:
    return Entry(f"u:t:BTCUSDT:1m:{n}#{to}", EntryKind.STATUS, {"n": n, "status": to}, 0.0)


def ok(n: int, outcome: str = "inserted") -> list[dict[str, object]]:
    return [{"index": i, "outcome": outcome} for i in range(n)]


def test_batches_are_in_order_and_of_one_kind() -> None:
    box = Outbox()
    for e in [sig(1), sig(2), status(1), sig(3)]:
        assert box.add(e)
    b = box.take(0)
    assert b is not None and b.kind is EntryKind.SIGNAL and [e.payload["n"] for e in b.entries] == [1, 2]
    assert box.take(0) is None  # one batch in flight at a time
    box.settle(b, ok(2), 0)
    b = box.take(0)
    assert b is not None and b.kind is EntryKind.STATUS and len(b.entries) == 1
    box.settle(b, [{"outcome": "updated"}], 0)
    b = box.take(0)
    assert b is not None and b.payloads == [{"n": 3}]
    box.settle(b, ok(1, "duplicate"), 0)
    assert len(box) == 0 and box.acknowledged_total == 4


def test_entries_are_built_with_their_idempotency_keys() -> None:
    key = "u:t:BTCUSDT:1m:60000"
    row = {"trader_id": "t", "price": 1.5}
    assert Entry.signal(key, row, 1.0) == Entry(key, EntryKind.SIGNAL, row, 1.0)
    assert Entry.status(key, "active", 7, 2.0) == Entry(
        f"{key}#active", EntryKind.STATUS, {"signal_key": key, "status": "active", "updated_epoch": 7}, 2.0
    )
    opened = Entry.trade(key, {"op": "open", "signal_key": key, "epoch": 7}, 3.0)
    closed = Entry.trade(key, {"op": "close", "signal_key": key, "epoch": 8}, 4.0)
    assert (opened.key, opened.kind, closed.key) == (f"{key}#open", EntryKind.TRADE, f"{key}#close")
    # A status change and a close of one signal are different writes; the same one twice is one.
    box = Outbox()
    assert all(
        box.add(e) for e in (Entry.signal(key, row, 0), opened, Entry.status(key, "closed", 8, 0), closed)
    )
    assert not box.add(Entry.status(key, "closed", 8, 9.0))


def test_entries_are_read_in_order_by_kind_without_taking_them() -> None:
    box = Outbox()
    for e in [sig(1), status(1), sig(2), status(2)]:
        box.add(e)
    assert [e.key for e in box.entries()] == [e.key for e in [sig(1), status(1), sig(2), status(2)]]
    assert [e.payload["n"] for e in box.entries(EntryKind.SIGNAL)] == [1, 2]
    assert [e.payload["n"] for e in box.entries(EntryKind.STATUS)] == [1, 2]
    assert box.entries(EntryKind.TRADE) == []
    batch = box.take(0)
    assert batch is not None and len(box.entries()) == 4  # in flight is still pending
    box.settle(batch, ok(1), 0)
    assert [e.key for e in box.entries(EntryKind.SIGNAL)] == [sig(2).key]


def test_same_key_is_added_once() -> None:
    box = Outbox()
    assert box.add(sig(1)) is True
    assert box.add(sig(1, t=5.0)) is False
    assert len(box) == 1


def test_the_back_off_is_a_setting_of_the_outbox() -> None:
    box = Outbox(backoff=Backoff(0.5, 1.5))
    box.add(sig(1))
    now, waits = 0.0, []
    for _ in range(4):
        b = box.take(now)
        assert b is not None
        retry = box.fail(b, now)
        waits.append(retry - now)
        now = retry
    assert waits == [0.5, 1.0, 1.5, 1.5]


def test_failed_batch_stays_at_head_with_backoff() -> None:
    box = Outbox()
    box.add(sig(1))
    box.add(sig(2))
    retry_times = []
    now = 0.0
    for _ in range(9):
        b = box.take(now)
        assert b is not None and [e.payload["n"] for e in b.entries] == [1, 2]
        retry = box.fail(b, now)
        retry_times.append(retry - now)
        assert box.take(retry - 0.001) is None
        now = retry
    assert retry_times == [1, 2, 4, 5, 5, 5, 5, 5, 5]  # the one schedule: 1 s, doubling, at most 5 s
    b = box.take(now)
    assert b is not None
    box.settle(b, ok(2), now)
    assert len(box) == 0 and box.retries_total == 9
    box.add(sig(3))
    assert box.take(now) is not None  # success resets the back-off


def test_rejections_are_kept_not_retried() -> None:
    box = Outbox()
    for n in range(3):
        box.add(sig(n))
    b = box.take(0)
    assert b is not None
    new = box.settle(
        b,
        [
            {"index": 0, "outcome": "inserted"},
            {"index": 1, "outcome": "rejected", "code": "SG002", "message": "outside_lease_window: …"},
            {"index": 2, "outcome": "rejected", "code": "SG009", "message": "invalid_argument"},
        ],
        0,
    )
    assert [r.entry.payload["n"] for r in new] == [1, 2]
    assert len(box) == 0 and box.rejected_total == 2
    assert Outbox.guard_verdicts(new) == [GuardError.OUTSIDE_LEASE_WINDOW]


def test_partial_answer_keeps_the_rest() -> None:
    box = Outbox()
    for n in range(3):
        box.add(sig(n))
    b = box.take(0)
    assert b is not None
    box.settle(b, [{"index": 1, "outcome": "inserted"}], 10)
    assert len(box) == 2 and box.take(10) is None and box.take(11) is not None


def test_bound_refuses_instead_of_forgetting() -> None:
    box = Outbox(max_entries=2)
    box.add(sig(1))
    box.add(sig(2))
    with pytest.raises(OutboxFull):
        box.add(sig(3))
    assert len(box) == 2


def test_rejected_list_is_bounded() -> None:
    box = Outbox()
    for n in range(REJECTED_KEPT + 5):
        box.add(sig(n))
    while (b := box.take(0)) is not None:
        box.reject_all(b, "SG001", "lease_not_held", 0)
    assert len(box.rejected) == REJECTED_KEPT and box.rejected_total == REJECTED_KEPT + 5


def test_round_trip_through_json() -> None:
    box = Outbox()
    box.add(sig(1, 3.5))
    box.add(status(1))
    b = box.take(0)  # in flight when the tab reloads: it is resent after
    assert b is not None
    again = Outbox.from_json(box.to_json())
    assert len(again) == 2 and not again.in_flight
    b2 = again.take(0)
    assert b2 is not None and b2.entries == b.entries


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"version": 99, "entries": []}', "expected version 1"),
        ('{"version": 1, "entries": {}}', "entries must be a list"),
        ('{"version": 1, "entries": [1]}', r"entries\[0\] must be an object"),
        (
            '{"version": 1, "entries": [{"key": "", "kind": "signal", "payload": {}, "created_at": 0}]}',
            r"entries\[0\]\.key",
        ),
        (
            '{"version": 1, "entries": [{"key": "k", "kind": "order", "payload": {}, "created_at": 0}]}',
            "kind 'order' is unknown",
        ),
        (
            '{"version": 1, "entries": [{"key": "k", "kind": "signal", "payload": [], "created_at": 0}]}',
            "payload must be an object",
        ),
    ],
)
def test_bad_stored_outbox_is_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(OutboxFormatError, match=message):
        Outbox.from_json(text)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(0, 30)),
            st.tuples(st.just("ok"), st.integers(0, 5)),
            st.tuples(st.just("fail"), st.integers(0, 5)),
            st.tuples(st.just("reject"), st.integers(0, 5)),
            st.tuples(st.just("reload"), st.integers(0, 0)),
        ),
        max_size=80,
    )
)
def test_every_entry_is_answered_exactly_once_and_in_order(ops: list[tuple[str, int]]) -> None:
    """Whatever happens, each added key ends acknowledged or rejected once, in the order added."""
    box = Outbox()
    added: list[str] = []
    answered: list[str] = []
    now = 0.0
    for op, n in ops:
        now += 100  # past any back-off
        if op == "add":
            if box.add(sig(n)):
                added.append(sig(n).key)
        elif op == "reload":
            box = Outbox.from_json(box.to_json())
        else:
            b = box.take(now)
            if b is None:
                continue
            if op == "fail":
                box.fail(b, now)
            elif op == "ok":
                box.settle(b, ok(len(b.entries)), now)
                answered += [e.key for e in b.entries]
            else:
                box.reject_all(b, "SG002", "x", now)
                answered += [e.key for e in b.entries]
    now += 100
    while (b := box.take(now)) is not None:
        box.settle(b, ok(len(b.entries)), now)
        answered += [e.key for e in b.entries]
    assert answered == added
    json.loads(box.to_json())
