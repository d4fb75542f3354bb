"""The tab's outbox (browser/sync.py SignalSync) on the browser's doubles: what it reads, stores and sends."""

from __future__ import annotations

import asyncio

import pytest

from signalguard.browser.ports import ApiError, ApiResult
from signalguard.browser.sync import (
    MAX_BATCH,
    PUMP_SECONDS,
    PUMP_TIMER,
    answer_of,
    is_verdict,
    store_key,
)
from signalguard.browser.testing import FakeStore, FakeTab, lost, ok, on_loop, refused
from signalguard.core.candles import INTERVALS
from signalguard.core.codes import GuardError
from signalguard.core.engine import (
    Signal,
    SignalCreated,
    SignalStatus,
    StatusChanged,
    TradeClosed,
    TradeOpened,
)
from signalguard.core.outbox import Entry, Outbox, OutboxFull
from signalguard.core.positions import Exit, ExitReason, Side, Trade
from signalguard.core.writes import Answered, Lost, Refused

USER = "A11CE000-0000-4000-8000-000000000001"
TRADER = "a11ce000-0000-4000-8000-0000000000a1"
MINUTE = INTERVALS["1m"]
START = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE


def key(n: int) -> str:
    return f"{USER.lower()}:{TRADER}:BTCUSDT:1m:{START + n * MINUTE}"


def created(n: int, epoch: int = 7) -> SignalCreated:
    open_time = START + n * MINUTE
    return SignalCreated(Signal(key(n), TRADER, "BTCUSDT", "1m", open_time, 100.0 + n, ("drop",), epoch))


def moved(n: int, new: SignalStatus = SignalStatus.ACTIVE, epoch: int = 7) -> StatusChanged:
    return StatusChanged(key(n), SignalStatus.NEW, new, epoch)


def trade(n: int, epoch: int = 7) -> Trade:
    entry = START + (n + 1) * MINUTE
    return Trade(key(n), TRADER, "BTCUSDT", "1m", Side.LONG, 1.0, 100.0, entry, None, 98.0, None, epoch)


class Rig(FakeTab):
    """A SignalSync on the doubles, and what it reported."""

    def __init__(self, store: FakeStore | None = None) -> None:
        super().__init__(USER, store=store)

    def stored(self) -> list[str]:
        """The keys of the entries in the stored outbox."""
        return [e.key for e in Outbox.from_json(self.store.data[store_key(USER)]).entries()]

    async def start(self) -> None:
        self.sync.set_active(True)
        await self.tasks.settle()

    async def tick(self, seconds: float = PUMP_SECONDS) -> None:
        self.timers.advance(seconds)
        await self.tasks.settle()


def stored_outbox(*entries: Entry, acknowledged: int = 0, rejected: int = 0) -> str:
    box = Outbox()
    for e in entries:
        box.add(e)
    box.acknowledged_total, box.rejected_total = acknowledged, rejected
    return box.to_json()


# -- the tab lock and the stored outbox ---------------------------------------------------------------


@on_loop
async def test_nothing_is_read_or_sent_until_the_tab_holds_the_tab_lock() -> None:
    rig = Rig()
    rig.backend.accept_writes()
    rig.sync.add(created(1))
    rig.sync.kick()
    await rig.tasks.settle()
    assert rig.tasks.tasks == [] and rig.store.gets == [] and rig.backend.calls == []
    assert PUMP_TIMER not in rig.timers.armed
    assert len(rig.sync) == 1 and rig.counts[-1] == (1, "")
    await rig.start()
    assert rig.store.gets == [store_key(USER)] and rig.backend.names() == ["write_signals"]
    assert len(rig.sync) == 0 and rig.counts[-1] == (0, "") and rig.written == 1
    assert rig.timers.armed[PUMP_TIMER][0] == PUMP_SECONDS


@on_loop
async def test_the_stored_outbox_is_read_back_with_its_counters_and_sent_first() -> None:
    old = created(1).signal.row(source="local")
    text = stored_outbox(Entry.signal(key(1), old, 50.0), acknowledged=4, rejected=2)
    rig = Rig(FakeStore({store_key(USER): text}))
    rig.backend.gate = asyncio.Event()
    rig.sync.add(created(2))  # made before the stored outbox was read: kept, and added after
    assert rig.sync.pending_keys() == [key(2)]
    rig.sync.set_active(True)
    await rig.tasks.until(lambda: bool(rig.backend.calls))
    assert rig.sync.pending_keys() == [key(1), key(2)]
    (sent,) = rig.backend.args_of("write_signals")
    assert sent == {"p_signals": [old, created(2).signal.row(source="local")]}
    assert rig.stored() == [key(1), key(2)]  # the early entry was stored before the call
    rig.backend.accept_writes()
    rig.backend.gate.set()
    await rig.tasks.settle()
    assert len(rig.sync) == 0 and rig.stored() == []
    assert (rig.sync.outbox.acknowledged_total, rig.sync.outbox.rejected_total) == (6, 2)
    assert rig.problems == []


@on_loop
async def test_entries_made_while_the_stored_outbox_is_being_read_are_kept() -> None:
    rig = Rig(FakeStore({store_key(USER): stored_outbox(Entry.status(key(1), "active", 3, 50.0))}))
    rig.store.gate = asyncio.Event()
    rig.sync.set_live_epoch(9)
    rig.sync.set_active(True)
    await rig.tasks.idle()
    assert rig.store.gets == [store_key(USER)] and rig.backend.calls == []
    rig.sync.add(created(2))
    rig.sync.add(created(3))
    assert rig.sync.pending_keys() == [key(2), key(3)] and len(rig.sync) == 2
    rig.backend.accept_writes()
    rig.store.gate.set()
    await rig.tasks.settle()
    assert rig.backend.names() == ["update_signal_statuses", "write_signals"]
    assert rig.backend.args_of("update_signal_statuses") == [
        {"p_changes": [{"signal_key": key(1), "status": "active", "updated_epoch": 9}]}
    ]
    assert [s["candle_open_time"] for s in rig.backend.args_of("write_signals")[0]["p_signals"]] == [
        START + 2 * MINUTE,
        START + 3 * MINUTE,
    ]
    assert len(rig.sync) == 0 and rig.stored() == []


@on_loop
async def test_an_unreadable_stored_outbox_is_ignored_with_a_problem() -> None:
    rig = Rig(FakeStore({store_key(USER): '{"version": 99}'}))
    rig.backend.accept_writes()
    rig.sync.add(created(1))
    await rig.start()
    assert len(rig.problems) == 1
    assert rig.problems[0].startswith("The stored outbox was unreadable and is ignored: ")
    assert "version 1" in rig.problems[0]
    assert rig.backend.names() == ["write_signals"] and rig.stored() == []


@on_loop
async def test_a_store_that_cannot_be_read_or_written_keeps_the_outbox_in_memory() -> None:
    store = FakeStore()
    store.fail_reads = True
    store.fail_writes = "QuotaExceededError"
    rig = Rig(store)
    rig.sync.add(created(1))
    await rig.start()
    assert rig.problems[0].startswith("The outbox cannot be read from this browser's storage (")
    assert "could not be stored (QuotaExceededError); writes are kept in memory only" in rig.problems[1]
    assert store.data == {} and rig.backend.names() == ["write_signals"]
    assert rig.sync.pending_keys() == [key(1)]  # lost in transit: kept, in memory
    rig.backend.accept_writes()
    await rig.tick()
    assert len(rig.sync) == 0 and rig.written == 1


@on_loop
async def test_an_empty_store_is_read_once() -> None:
    rig = Rig()
    rig.backend.accept_writes()
    await rig.start()
    rig.sync.add(created(1))
    await rig.tasks.settle()
    await rig.tick()
    assert rig.store.gets == [store_key(USER)] and rig.backend.names() == ["write_signals"]


# -- write-through and answers --------------------------------------------------------------------------


@on_loop
async def test_an_entry_is_stored_before_its_call_is_made() -> None:
    rig = Rig()
    await rig.start()
    rig.backend.gate = asyncio.Event()
    rig.sync.add(created(1))
    await rig.tasks.until(lambda: bool(rig.backend.calls))
    assert rig.stored() == [key(1)]
    rig.backend.accept_writes()
    rig.backend.gate.set()
    await rig.tasks.settle()
    assert rig.stored() == [] and rig.written == 1


@on_loop
async def test_an_entry_added_while_the_outbox_is_stored_is_stored_before_it_is_sent() -> None:
    rig = Rig()
    await rig.start()
    rig.store.gate = asyncio.Event()
    rig.backend.gate = asyncio.Event()
    rig.sync.add(created(1))
    await rig.tasks.idle()  # the first entry's save waits on the store
    rig.sync.add(created(2))
    rig.store.gate.set()
    await rig.tasks.until(lambda: bool(rig.backend.calls))
    sent = rig.backend.args_of("write_signals")[0]["p_signals"]
    assert len(sent) == 2
    assert rig.stored() == [key(1), key(2)]
    rig.backend.gate.set()
    await rig.tasks.settle()


@pytest.mark.parametrize("outcome", ["inserted", "duplicate"])
@on_loop
async def test_an_answered_batch_empties_the_outbox_and_says_it_was_written(outcome: str) -> None:
    rig = Rig()
    rig.backend.accept_writes(outcome)
    for n in range(3):
        rig.sync.add(created(n))
    await rig.start()
    assert rig.backend.names() == ["write_signals"]
    assert len(rig.backend.args_of("write_signals")[0]["p_signals"]) == 3
    assert len(rig.sync) == 0 and rig.stored() == [] and rig.written == 1
    assert rig.sync.outbox.acknowledged_total == 3 and rig.counts[-1] == (0, "")


@on_loop
async def test_batches_hold_at_most_max_batch_entries_of_one_kind() -> None:
    rig = Rig()
    rig.backend.accept_writes()
    rig.sync.set_live_epoch(7)
    for n in range(MAX_BATCH + 5):
        rig.sync.add(created(n))
    rig.sync.add(moved(0))
    rig.sync.add(TradeOpened(trade(0)))
    await rig.start()
    assert rig.backend.names() == [
        "write_signals",
        "write_signals",
        "update_signal_statuses",
        "write_trades",
    ]
    sizes = [len(args["p_signals"]) for args in rig.backend.args_of("write_signals")]
    assert sizes == [MAX_BATCH, 5]
    # Signals and trades are written; a batch of status changes alone does not say so.
    assert rig.written == 3 and len(rig.sync) == 0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lost(), "The database API is not reachable (fake) (NETWORK)"),
        (lost("Service Unavailable", status=503), "Service Unavailable"),
        (refused("PGRST301", status=401, message="JWT expired"), "JWT expired (PGRST301)"),
        (ok({"not": "a list"}), "unreadable answer to write_signals"),
    ],
)
@on_loop
async def test_a_lost_call_keeps_the_batch_and_is_retried_on_the_back_off(
    answer: ApiResult, reason: str
) -> None:
    rig = Rig()
    rig.backend.answer("write_signals", answer)
    rig.sync.add(created(1))
    await rig.start()
    detail = f"Not saved yet: {reason}. Retrying."
    assert rig.counts[-1] == (1, detail)
    assert rig.stored() == [key(1)] and rig.verdicts == [] and rig.problems == [] and rig.written == 0
    # The outbox's back-off (1, 2, 4, 5, 5 s) on the pump's 1 s timer: calls at 100, 101, 103, 107, 112.
    times = [rig.clock.now]
    for _ in range(14):
        before = len(rig.backend.calls)
        await rig.tick()
        if len(rig.backend.calls) > before:
            times.append(rig.clock.now)
    assert times == [100.0, 101.0, 103.0, 107.0, 112.0]
    assert rig.sync.pending_keys() == [key(1)] and rig.counts[-1] == (1, detail)
    rig.backend.accept_writes()  # the network is back
    await rig.tick(5.0)
    assert len(rig.sync) == 0 and rig.counts[-1] == (0, "") and rig.written == 1
    assert rig.sync.outbox.retries_total == 5


@on_loop
async def test_an_outage_of_the_whole_api_is_lost_in_transit() -> None:
    rig = Rig()
    rig.backend.accept_writes()
    rig.backend.down = True
    rig.sync.add(created(1))
    await rig.start()
    assert rig.counts[-1][0] == 1 and rig.counts[-1][1].startswith("Not saved yet: ")
    rig.backend.down = False
    await rig.tick()
    assert len(rig.sync) == 0 and rig.counts[-1] == (0, "")


@pytest.mark.parametrize(
    ("answer", "code", "verdict"),
    [
        (refused("SG001", message="lease_not_held"), "SG001", GuardError.LEASE_NOT_HELD),
        (refused("42501", status=403, message="permission denied"), "42501", None),
        (refused(None, status=403, message="Forbidden"), "HTTP403", None),
        (refused(None, status=400, message="Bad Request"), "HTTP400", None),
    ],
)
@on_loop
async def test_a_refused_call_drops_its_entries_with_a_problem(
    answer: ApiResult, code: str, verdict: GuardError | None
) -> None:
    rig = Rig()
    rig.backend.answer("write_signals", answer)
    rig.sync.add(created(1))
    rig.sync.add(created(2))
    await rig.start()
    message = answer.error.message if answer.error else ""
    assert rig.problems == [f"The database refused signal {key(1)}: {code} {message} (and 1 more)"]
    assert set(rig.verdicts) == ({verdict} if verdict else set())
    assert len(rig.sync) == 0 and rig.stored() == [] and rig.counts[-1] == (0, "")
    assert [r.code for r in rig.sync.outbox.rejected] == [code, code]
    await rig.tick()
    assert rig.backend.names() == ["write_signals"]  # never sent again


@on_loop
async def test_a_refused_signals_status_changes_are_answered_without_a_call() -> None:
    rig = Rig()
    rig.sync.set_live_epoch(7)
    outcomes = [
        {"index": 0, "outcome": "rejected", "code": "SG002", "message": "outside_lease_window"},
        {"index": 1, "outcome": "inserted"},
    ]
    rig.backend.accept_writes()
    rig.backend.answer("write_signals", ok(outcomes))
    rig.sync.add(created(1))
    rig.sync.add(created(2))
    await rig.start()
    assert rig.verdicts == [GuardError.OUTSIDE_LEASE_WINDOW]
    assert rig.problems == [f"The database refused signal {key(1)}: SG002 outside_lease_window"]
    rig.sync.add(moved(1))
    rig.sync.add(moved(2))
    await rig.tasks.settle()
    assert rig.backend.args_of("update_signal_statuses") == [
        {"p_changes": [{"signal_key": key(2), "status": "active", "updated_epoch": 7}]}
    ]
    assert len(rig.sync) == 0 and len(rig.problems) == 1


@on_loop
async def test_without_a_live_epoch_status_changes_and_trades_are_answered_here() -> None:
    rig = Rig()
    rig.backend.accept_writes()
    await rig.start()
    rig.sync.add(moved(1))
    await rig.tasks.settle()
    assert rig.backend.calls == [] and len(rig.sync) == 0
    assert [r.code for r in rig.sync.outbox.rejected] == ["not_executor"]
    exit_ = Exit(ExitReason.MANUAL, 101.0, START + 3 * MINUTE)
    rig.sync.add(TradeClosed(trade(1), exit_, 7))
    await rig.tasks.settle()
    assert rig.backend.calls == [] and len(rig.sync) == 0
    assert rig.problems == [] and rig.verdicts == [] and rig.counts[-1] == (0, "")
    # Under a live epoch the same writes are sent, stamped with it.
    rig.sync.set_live_epoch(9)
    rig.sync.add(moved(2))
    rig.sync.add(TradeClosed(trade(2), exit_, 7))
    await rig.tasks.settle()
    assert rig.backend.names() == ["update_signal_statuses", "write_trades"]
    (ops,) = rig.backend.args_of("write_trades")
    assert ops == {"p_ops": [exit_.close_op(key(2), 9)]}


@on_loop
async def test_pending_signals_are_those_not_yet_acknowledged_oldest_first() -> None:
    rig = Rig(FakeStore({store_key(USER): stored_outbox(Entry.signal(key(1), {"n": 1}, 50.0))}))
    rig.sync.add(created(2))
    rig.sync.add(moved(2))
    assert rig.sync.pending_keys() == [key(2)]
    assert rig.sync.pending_signals() == [created(2).signal.row(source="local")]
    await rig.start()  # nothing answers: everything stays
    assert rig.sync.pending_keys() == [key(1), key(2)]
    assert rig.sync.pending_signals()[0] == {"n": 1} and len(rig.sync) == 3


@on_loop
async def test_stop_stops_sending_and_keeps_what_is_stored() -> None:
    rig = Rig()
    rig.sync.add(created(1))
    await rig.start()
    rig.sync.set_active(True)  # already active: nothing new
    await rig.tasks.settle()
    assert rig.backend.names() == ["write_signals"] and len(rig.tasks.tasks) == 1
    rig.sync.stop()
    assert PUMP_TIMER not in rig.timers.armed
    rig.backend.accept_writes()
    await rig.tick(10.0)
    rig.sync.add(created(2))
    await rig.tasks.settle()
    assert rig.backend.names() == ["write_signals"] and rig.stored() == [key(1)]
    assert len(rig.sync) == 2
    rig.sync.set_active(True)  # the tab lock again: the rest is sent
    await rig.tasks.settle()
    assert len(rig.sync) == 0 and rig.stored() == []


@on_loop
async def test_losing_the_tab_lock_during_a_call_settles_it_and_sends_nothing_more() -> None:
    rig = Rig()
    await rig.start()
    rig.backend.gate = asyncio.Event()
    rig.backend.accept_writes()
    rig.sync.add(created(1))
    await rig.tasks.until(lambda: bool(rig.backend.calls))
    rig.sync.add(moved(1))
    rig.sync.set_active(False)
    rig.backend.gate.set()
    await rig.tasks.settle()
    assert rig.backend.names() == ["write_signals"]
    assert rig.sync.pending_keys() == [] and len(rig.sync) == 1
    assert [e.key for e in Outbox.from_json(rig.store.data[store_key(USER)]).entries()] == [
        f"{key(1)}#active"
    ]


@on_loop
async def test_the_tab_lock_regained_while_a_pass_ends_makes_another_pass() -> None:
    rig = Rig()
    await rig.start()
    rig.backend.accept_writes()
    rig.backend.gate = asyncio.Event()
    rig.sync.add(created(1))
    await rig.tasks.until(lambda: bool(rig.backend.calls))
    rig.sync.add(created(2))
    rig.sync.set_active(False)
    rig.store.gate = asyncio.Event()
    rig.backend.gate.set()
    await rig.tasks.idle()  # the pass stores what it has, and waits on the store
    assert rig.backend.names() == ["write_signals"]
    rig.sync.set_active(True)
    rig.store.gate.set()
    await rig.tasks.settle()
    # Sent by the same pass, without waiting for the pump's timer.
    assert rig.backend.names() == ["write_signals", "write_signals"] and len(rig.tasks.tasks) == 2
    assert len(rig.sync) == 0 and rig.stored() == []


# -- what is a verdict ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "verdict"),
    [
        (400, "SG001", True),
        (200, "SG006", True),  # a guard code is a verdict whatever the status
        (403, "42501", True),
        (0, "42501", True),
        (400, None, True),
        (403, None, True),
        (404, "PGRST202", True),
        (401, "PGRST301", False),  # supabase-js refreshes the session: retried, not dropped
        (401, None, False),
        (408, None, False),
        (429, None, False),
        (500, None, False),
        (503, "PGRST_UNAVAILABLE", False),
        (0, "NETWORK", False),
        (0, "SG0012", False),
    ],
)
def test_which_failed_calls_are_verdicts(status: int, code: str | None, verdict: bool) -> None:
    result = ApiResult(None, ApiError("failed", code), status)
    assert is_verdict(result) is verdict
    answer = answer_of(result)
    assert isinstance(answer, Refused if verdict else Lost)
    if isinstance(answer, Refused):
        assert answer.code == (code or f"HTTP{status}") and answer.message == "failed"


def test_a_result_without_an_error_is_answered() -> None:
    assert not is_verdict(ok([1]))
    assert answer_of(ok([1])) == Answered([1])
    assert answer_of(lost()) == Lost("The database API is not reachable (fake) (NETWORK)")


def test_the_store_key_is_the_users_in_lower_case() -> None:
    assert store_key(USER) == f"outbox:{USER.lower()}"


@on_loop
async def test_a_stored_outbox_and_early_writes_beyond_its_room_wait_in_order_and_lose_nothing() -> None:
    stored = [Entry.signal(key(n), created(n).signal.row(source="local"), 50.0) for n in (1, 2)]
    rig = Rig(FakeStore({store_key(USER): stored_outbox(*stored)}))
    rig.sync.outbox.max_entries = 2  # the tab was closed with its outbox full
    rig.sync.add(created(3))  # made while the stored outbox was being read
    rig.backend.gate = asyncio.Event()
    rig.sync.set_active(True)
    await rig.tasks.until(lambda: bool(rig.backend.calls))
    # Nothing failed: the third waits for room, counted and shown as pending.
    assert len(rig.sync) == 3 and rig.sync.pending_keys() == [key(1), key(2), key(3)]
    with pytest.raises(OutboxFull):
        rig.sync.add(created(4))  # a newer write waits behind it (the caller holds it and pauses)
    rig.backend.accept_writes()
    rig.backend.gate.set()
    await rig.tasks.settle()
    sent = [row for args in rig.backend.args_of("write_signals") for row in args["p_signals"]]
    assert sent == [created(n).signal.row(source="local") for n in (1, 2, 3)]
    assert len(rig.sync) == 0 and rig.problems == []
