"""The worker's logic with the in-memory doubles (signalguard.cloud.testing): fast, no stack, no sockets.

Timings are shortened (a 1 s lease, flushes every 0.1 s); candle and database times follow a fake clock
that the tests move as candles close.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import pytest

from signalguard.cloud.config import WorkerConfig
from signalguard.cloud.database import DatabaseUnavailable
from signalguard.cloud.market import fetch_history
from signalguard.cloud.sync import StateSynchronizer
from signalguard.cloud.testing import FakeDatabase, FakeMarketData, fast_timings
from signalguard.cloud.worker import CloudWorker
from signalguard.core.backoff import Backoff
from signalguard.core.candles import Candle
from signalguard.core.engine import (
    Signal,
    SignalCreated,
    SignalManager,
    SignalStatus,
    StatusChanged,
    TradeClosed,
    TradeOpened,
    TraderRecord,
)
from signalguard.core.guard import LeaseAnswer
from signalguard.market.feed import MarketFeed
from signalguard.market.testing import eventually
from signalguard.replay.reference import candles_of, run_reference
from signalguard.replay.synthetic import generate

OWNER = str(uuid.uuid4())
MACHINE = str(uuid.uuid4())
TRADER = TraderRecord(
    str(uuid.uuid4()),
    "close above SMA(2)",
    {
        "version": 1,
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "interval": "1s",
        "conditions": [{"indicator": "close_vs_sma", "period": 2, "op": ">"}],
    },
)
FAST = fast_timings()
HISTORY = 300
# Whole seconds, a while ago: the history is closed by the fake clock's start.
BASE_MS = (int(time.time()) - 3600) * 1000
SERIES = generate(["BTCUSDT", "ETHUSDT"], interval="1s", candles=HISTORY + 200, seed=5).series
CANDLES = candles_of(SERIES, BASE_MS)  # both symbols, interleaved by open time
HISTORY_CANDLES = [c for c in CANDLES if c.open_time < BASE_MS + HISTORY * 1000]
LIVE = [c for c in CANDLES if c.open_time >= BASE_MS + HISTORY * 1000]


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def config() -> WorkerConfig:
    return WorkerConfig("http://127.0.0.1:1", "anon", "a.b.c", OWNER, MACHINE, "http://127.0.0.1:2", "ws://x")


class Rig:
    """A worker over the fakes, running in a task."""

    def __init__(
        self, *, local_lease: bool = False, traders: list[TraderRecord] | None = None, gapless: bool = False
    ) -> None:
        self.clock = FakeClock(BASE_MS / 1000 + HISTORY)
        self.db = FakeDatabase(OWNER, MACHINE, traders=traders or [TRADER], clock=self.clock, gapless=gapless)
        if local_lease:
            self.db.local_lease()
        self.market = FakeMarketData(HISTORY_CANDLES)
        self.worker = CloudWorker(config(), self.db, self.market, timings=FAST, wall=self.clock)
        self.task: asyncio.Task[int] | None = None
        self.sent = 0

    async def start(self) -> Rig:
        self.task = asyncio.create_task(self.worker.run(handle_signals=False))
        await eventually(
            lambda: self.market.connected.is_set() and not self.worker.feed.pending_warmups, what="warm-up"
        )
        return self

    async def candles(self, n: int) -> list[Candle]:
        """Close the next ``n`` live candles (both symbols), moving the clock to each close."""
        out = LIVE[self.sent : self.sent + n]
        for c in out:
            self.clock.t = (c.open_time + 1000) / 1000
            self.market.send(c)
        self.sent += n
        await eventually(lambda: self.worker.feed.candles >= self.sent, what="candles fed")
        return out

    async def stop(self) -> int:
        assert self.task is not None
        self.worker.request_stop("test")
        return await asyncio.wait_for(self.task, 10)


def reference_keys(emit_from: int, fed_to: int) -> list[str]:
    """Keys the reference run signals on the candles fed up to live candle ``fed_to`` that closed at or
    after live candle ``emit_from`` opened: the lease's window when the grant came at that time (the
    rig's clock stands at the close of the last candle fed). A candle closing exactly at the grant is
    the window's (the database's rule), so the worker catches it up."""
    ref = run_reference(OWNER, [TRADER], HISTORY_CANDLES + LIVE[:fed_to])
    window = LIVE[emit_from].open_time
    return [s["key"] for s in ref if s["open_time"] + 1000 >= window]


# -- the synchronizer ----------------------------------------------------------------------------


def _signal(i: int, epoch: int = 1) -> Signal:
    c = LIVE[2 * i]
    key = f"{OWNER}:{TRADER.id}:{c.symbol}:1s:{c.open_time}"
    return Signal(key, TRADER.id, c.symbol, "1s", c.open_time, c.close, ("Close > SMA(2)",), epoch)


async def _granted_db() -> tuple[FakeDatabase, FakeClock]:
    clock = FakeClock(LIVE[0].open_time / 1000)
    db = FakeDatabase(OWNER, MACHINE, clock=clock, lease_seconds=3600)
    await db.heartbeat("starting")
    assert (await db.claim_lease()).granted
    clock.t = LIVE[-1].open_time / 1000
    return db, clock


async def test_sync_batches_signals_before_status_changes_and_coalesces() -> None:
    db, _ = await _granted_db()
    sync = StateSynchronizer(db, MACHINE, live_epoch=lambda: 1)
    a, b = _signal(1), _signal(2)
    sync.add(SignalCreated(a))
    sync.add(StatusChanged(a.key, SignalStatus.NEW, SignalStatus.ACTIVE, 1))
    sync.add(SignalCreated(b))
    sync.add(StatusChanged(a.key, SignalStatus.ACTIVE, SignalStatus.EXPIRED, 1))
    report = await sync.flush()
    # One write_signals call for both signals, then one status batch: a's final status only.
    assert db.calls == ["heartbeat:starting", "claim", "write_signals", "update_statuses"]
    assert db.write_calls == [2, 1]
    assert report.outcomes == {"inserted": 2, "updated": 1}
    assert db.signals[a.key]["status"] == "expired" and db.signals[b.key]["status"] == "new"
    assert sync.counters.signals_created == 2 and sync.counters.status_changes == 1
    assert len(sync) == 0


async def test_sync_failed_batch_stays_at_the_head_then_lands_once_in_order() -> None:
    db, _ = await _granted_db()
    sync = StateSynchronizer(db, MACHINE, live_epoch=lambda: 1)
    first = [_signal(i) for i in range(3)]
    for s in first:
        sync.add(SignalCreated(s))
    db.fail_writes = 2
    report = await sync.flush()
    assert report.failed and report.batches == 0 and len(sync) == 3
    assert sync.outbox.next_attempt_at() > time.monotonic()  # backing off
    assert (await sync.flush()).batches == 0  # not due yet: nothing sent
    assert db.calls.count("write_signals") == 1
    later = [_signal(i) for i in range(3, 5)]
    for s in later:
        sync.add(SignalCreated(s))
    assert (await sync.flush(force=True)).failed  # second failure
    report = await sync.flush(force=True)
    assert report.outcomes == {"inserted": 5} and len(sync) == 0
    # The failed head went out first, in one call with what came after, each row exactly once.
    assert db.write_calls == [5]
    assert list(db.signals) == [s.key for s in first + later]
    assert sync.counters.retries == 2 and sync.counters.rejected == 0
    await sync.flush(force=True)
    assert db.write_calls == [5]


async def test_sync_reports_guard_verdicts_at_once() -> None:
    db, clock = await _granted_db()
    heard: list[Any] = []
    sync = StateSynchronizer(
        db, MACHINE, live_epoch=lambda: 1, on_verdict=lambda verdicts, rejections: heard.append(verdicts)
    )
    now = clock.t
    clock.t = LIVE[0].open_time / 1000 + 50
    db.expire_lease()  # the lease ended 50 s in: later candles are outside its window
    clock.t = now
    sync.add(SignalCreated(_signal(90)))
    report = await sync.flush()
    assert report.outcomes == {"rejected": 1}
    assert [v.value for v in heard[0]] == ["SG002"]
    assert sync.outbox.rejected[0].code == "SG002" and len(sync) == 0


async def test_sync_writes_status_changes_under_the_live_epoch() -> None:
    db, _ = await _granted_db()
    live: list[int | None] = [1]
    sync = StateSynchronizer(db, MACHINE, live_epoch=lambda: live[0])
    a = _signal(1)
    sync.add(SignalCreated(a))
    await sync.flush()
    # The lease ran out during an outage and was granted again: epoch 2. The change made under 1 is
    # written under the lease held now.
    db.expire_lease()
    await db.heartbeat()
    assert (await db.claim_lease()).epoch == 2
    live[0] = 2
    sync.add(StatusChanged(a.key, SignalStatus.NEW, SignalStatus.ACTIVE, 1))
    assert (await sync.flush()).outcomes == {"updated": 1}
    assert db.signals[a.key]["status"] == "active" and db.signals[a.key]["updated_epoch"] == 2
    # Holding no lease any more, the worker answers a change itself instead of sending it.
    live[0] = None
    sync.add(StatusChanged(a.key, SignalStatus.ACTIVE, SignalStatus.CLOSED, 2))
    report = await sync.flush()
    assert report.batches == 0 and db.signals[a.key]["status"] == "active"
    assert sync.counters.dropped_statuses == 1 and sync.counters.rejected == 0 and len(sync) == 0


# -- market data ---------------------------------------------------------------------------------


async def test_history_pages_past_1000_rows_and_drops_the_open_row() -> None:
    series = generate(["BTCUSDT"], interval="1s", candles=2600, seed=9).series
    candles = candles_of(series, BASE_MS)
    market = FakeMarketData(candles)
    now_ms = candles[-1].open_time + 500  # the last candle is still forming
    got = await fetch_history(market, "BTCUSDT", "1s", 2100, now_ms)
    assert [c.open_time for c in got] == [c.open_time for c in candles[-2101:-1]]
    assert all(c.closed for c in got)
    assert [r["limit"] for r in market.requests] == [1000, 1000, 101]
    assert market.requests[1]["end"] == candles[-1000].open_time - 1
    # Fewer candles than asked for: all of them.
    assert len(await fetch_history(FakeMarketData(candles[:50]), "BTCUSDT", "1s", 2100, now_ms)) == 50


async def test_feed_fills_the_gap_a_reconnect_left_and_counts_malformed_messages() -> None:
    manager = SignalManager(OWNER)
    market = FakeMarketData(HISTORY_CANDLES)
    feed = MarketFeed(market, manager, lambda: None, backoff=Backoff(0.05, 0.4))
    feed.need(manager.set_traders([TRADER]))
    task = asyncio.create_task(feed.run())
    await eventually(lambda: market.connected.is_set() and not feed.pending_warmups, what="warm-up")
    for c in LIVE[:4]:
        market.send(c)
    market.send("not json")
    market.send({"stream": "btcusdt@kline_1s", "data": {"e": "trade"}})
    await eventually(lambda: feed.candles == 4, what="4 candles")
    market.drop()
    for c in LIVE[4:10]:  # closed while disconnected: only REST has them
        market.add(c)
    await eventually(lambda: len(market.subscriptions) == 2 and market.connected.is_set(), what="a reconnect")
    await eventually(lambda: feed.gap_candles == 6, what="the gap filled")
    market.send(LIVE[10])
    market.send(LIVE[9])  # an overlap: ignored
    await eventually(lambda: feed.candles == 11, what="11 candles")
    await asyncio.sleep(0.05)
    assert feed.candles == 11
    assert feed.parser.rejected == 2
    assert {c.value for c in feed.parser.rejected_by_code} == {"not_json", "not_kline"}
    assert market.subscriptions[0] == market.subscriptions[1] == ["btcusdt@kline_1s", "ethusdt@kline_1s"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- the worker ----------------------------------------------------------------------------------


async def test_worker_writes_the_reference_signals_under_the_returned_epoch() -> None:
    rig = await Rig().start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    await rig.candles(40)
    await eventually(lambda: len(rig.db.signals) == len(reference_keys(0, 40)), what="signals written")
    assert await rig.stop() == 0
    assert list(rig.db.signals) == reference_keys(0, 40)
    assert {(r["source"], r["machine_id"], r["epoch"]) for r in rig.db.signals.values()} == {
        ("cloud", MACHINE, 1)
    }
    # new -> active on the next candle of the symbol, written under the live lease.
    assert {r["status"] for r in rig.db.signals.values()} <= {"new", "active"}
    assert "active" in {r["status"] for r in rig.db.signals.values()}
    calls = rig.db.calls
    assert calls[:3] == ["schema_problems", "heartbeat:starting", "load_traders"]
    # The stop: 'stopping', what is still queued, the release, 'stopped'.
    tail = calls[calls.index("heartbeat:stopping") :]
    assert tail[-2:] == ["release", "heartbeat:stopped"]
    assert set(tail[1:-2]) <= {"write_signals", "update_statuses"}
    assert rig.db.statuses[-2:] == ["stopping", "stopped"] and rig.db.holder is None


async def test_with_the_gap_rule_the_worker_also_signs_the_candles_before_its_lease() -> None:
    # The database has gapless_handoff: the first epoch signs the 60 candles (1s) before its grant,
    # which nobody executed; those signals are marked caught up, the window's are not.
    rig = await Rig(gapless=True).start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    start_ms = rig.db.epochs[1].start_ms
    await rig.candles(40)
    ref = run_reference(OWNER, [TRADER], HISTORY_CANDLES + LIVE[:40])
    expected = [s["key"] for s in ref if s["open_time"] + 1000 >= start_ms - 60_000]
    assert [s for s in ref if s["open_time"] + 1000 < start_ms - 60_000]  # older ones: not the gap's
    await eventually(lambda: len(rig.db.signals) == len(expected), what="signals written")
    assert await rig.stop() == 0
    assert sorted(rig.db.signals) == sorted(expected)
    late = {k for k, r in rig.db.signals.items() if r["caught_up"]}
    assert late and late == {s["key"] for s in ref if start_ms - 60_000 <= s["open_time"] + 1000 < start_ms}
    assert {r["epoch"] for r in rig.db.signals.values()} == {1}


async def test_the_release_ends_the_window_where_the_workers_evaluation_stopped() -> None:
    # Candles close that the worker never gets (its stream lags as it stops): its release says where its
    # evaluation stands, the close of the first candle it did not evaluate, and the window ends there,
    # so the next holder's gap starts with that candle.
    rig = await Rig(gapless=True).start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    fed = await rig.candles(20)
    rig.clock.t += 5  # five more 1s candles closed, not delivered
    assert await rig.stop() == 0
    next_close = fed[-1].open_time + 2 * 1000
    assert rig.db.released_until == [next_close]
    assert rig.db.epochs[1].end_ms == next_close < rig.clock.t * 1000
    # Without the gap rule the database does not take it: the window ends at the release.
    plain = await Rig().start()
    await eventually(lambda: plain.worker.manager.may_generate, what="generating")
    await plain.candles(4)
    plain.clock.t += 5
    assert await plain.stop() == 0
    assert plain.db.epochs[1].end_ms == plain.clock.t * 1000


async def test_worker_waits_while_a_browser_holds_the_lease_and_writes_nothing() -> None:
    rig = await Rig(local_lease=True).start()
    await rig.candles(20)  # the engine runs (and matches) while the browser holds the lease
    assert rig.worker.manager.matches > 0
    assert not rig.worker.manager.may_generate and rig.db.machine_status == "starting"
    await eventually(lambda: rig.db.calls.count("claim") >= 3, what="claims retried")
    assert "write_signals" not in rig.db.calls and not rig.worker.manager.may_generate
    rig.db.expire_lease()  # the browser saw 'starting' and let go (or its lease ran out)
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    assert rig.db.epoch == 2 and rig.db.epochs[2].kind == "cloud" and rig.db.machine_status == "running"
    assert rig.worker.stats.waited_for == ("local_lease_live",)
    await rig.candles(20)
    await eventually(lambda: len(rig.db.signals) == len(reference_keys(20, 40)), what="signals written")
    assert await rig.stop() == 0
    assert list(rig.db.signals) == reference_keys(20, 40)
    assert {r["epoch"] for r in rig.db.signals.values()} == {2}


async def test_worker_stops_generating_when_renewals_fail_for_the_lease_length() -> None:
    rig = await Rig().start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    rig.db.down = True
    t0 = time.monotonic()
    await eventually(lambda: not rig.worker.manager.may_generate, timeout=3, what="generation to stop")
    assert 0.6 <= time.monotonic() - t0 <= FAST.lease + 0.2  # lease - margin after the last renewal's send
    created = rig.worker.sync.counters.signals_created
    await rig.candles(20)
    assert rig.worker.sync.counters.signals_created == created  # nothing generated without the lease
    rig.db.expire_lease()  # meanwhile the database's lease ran out too: the next grant is a new epoch
    rig.db.down = False
    await eventually(lambda: rig.worker.manager.may_generate, what="generating again")
    assert rig.db.epoch == 2
    await rig.candles(20)
    # The candles of the outage closed inside epoch 1's window (the database held it for this machine
    # until it ran out): at epoch 2's grant they are signalled under epoch 1, then epoch 2's own.
    first = reference_keys(0, 20)
    expected = first + reference_keys(20, 40)
    assert len(first) > len(reference_keys(0, 0)), "the outage's candles have signals"
    await eventually(lambda: len(rig.db.signals) == len(expected), what="signals written")
    assert list(rig.db.signals) == expected
    assert [r["epoch"] for r in rig.db.signals.values()] == [1] * len(first) + [2] * len(
        reference_keys(20, 40)
    )
    assert rig.worker.manager.caught_up_earlier == len(first) - len(reference_keys(0, 0))
    assert await rig.stop() == 0


async def test_a_killed_worker_back_after_its_lease_ran_out_fills_its_windows_tail() -> None:
    """The soak's seed-1 finding: a worker SIGKILLed under epoch 1 came back only after the lease had
    expired, was granted epoch 2, and the candles that closed in epoch 1's tail were nobody's. The new
    process reads its machine's earlier windows and signals them under epoch 1."""
    rig = await Rig().start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    for c in await rig.candles(10):
        rig.market.add(c)
    await eventually(lambda: len(rig.db.signals) == len(reference_keys(0, 10)), what="signals written")
    # The kill: the process goes away without a word to the database (every call of its fails).
    rig.db.down = True
    assert rig.task is not None
    rig.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await rig.task
    rig.db.down = False
    for c in LIVE[10:50]:  # the market goes on; the lease is still epoch 1's
        rig.clock.t = (c.open_time + 1000) / 1000
        rig.market.add(c)
    rig.db.expire_lease()  # ... until it runs out, now: epoch 1's window is [grant, now)
    restarted = CloudWorker(config(), rig.db, rig.market, timings=FAST, wall=rig.clock)
    task = asyncio.create_task(restarted.run(handle_signals=False))
    await eventually(lambda: restarted.manager.may_generate, what="generating again")
    assert rig.db.epoch == 2 and "earlier_windows" in rig.db.calls
    expected = reference_keys(0, 50)
    await eventually(lambda: len(rig.db.signals) == len(expected), what="the tail written")
    assert sorted(rig.db.signals) == sorted(expected)
    # Epoch 1's up to its end; a candle closing as epoch 2 was granted is epoch 2's (the window's rule).
    end_ms = rig.db.epochs[1].end_ms
    epochs = {k: r["epoch"] for k, r in rig.db.signals.items()}
    tail = [k for k, r in rig.db.signals.items() if r["candle_open_time"] + 1000 < end_ms]
    assert len(tail) > len(reference_keys(0, 10)), "the tail has signals"
    assert epochs == {k: 1 if k in tail else 2 for k in epochs}
    assert restarted.manager.caught_up_earlier == len(tail) - len(reference_keys(0, 10))
    restarted.request_stop("test")
    assert await asyncio.wait_for(task, 10) == 0


async def test_worker_stops_at_once_on_a_guard_verdict_and_reclaims() -> None:
    rig = await Rig().start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    # A browser took over, and the worker's renewals fail in transit, so only its writes can tell it.
    rig.db.expire_lease()
    rig.db.local_lease()
    real_claim = rig.db.claim_lease

    async def unreachable() -> LeaseAnswer:
        raise DatabaseUnavailable("HTTP 503")

    rig.db.claim_lease = unreachable  # type: ignore[method-assign]
    renewed_at = rig.worker.keeper.renewed_sent_at
    await rig.candles(20)
    await eventually(lambda: rig.worker.sync.counters.rejected > 0, what="a refused write")
    assert not rig.worker.manager.may_generate and rig.worker.keeper.epoch is None
    assert renewed_at is not None and time.monotonic() < renewed_at + FAST.lease - FAST.lease_margin
    # The signals' own status changes were never sent (there is no row): one verdict, not two.
    assert {r.code for r in rig.worker.sync.outbox.rejected} <= {"SG002", "signal_not_written"}
    assert "update_statuses" not in rig.db.calls
    rig.db.claim_lease = real_claim  # type: ignore[method-assign]
    await eventually(lambda: rig.db.calls[-1] == "claim", what="a re-claim")
    await asyncio.sleep(0.2)
    assert not rig.worker.manager.may_generate  # the browser's lease is live: still not generating
    assert await rig.stop() == 0
    assert not rig.db.signals


async def test_worker_reports_an_unexpected_error_and_exits_1() -> None:
    rig = await Rig().start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    await rig.candles(10)

    async def broken() -> list[TraderRecord]:
        raise ValueError("the traders table exploded")

    rig.db.load_traders = broken  # type: ignore[method-assign]
    assert rig.task is not None
    assert await asyncio.wait_for(rig.task, 5) == 1
    assert rig.db.machine_status == "error"
    assert rig.db.error_message == "ValueError: the traders table exploded"
    assert rig.db.holder is None  # 'error' ends the lease
    assert len(rig.db.signals) == len(reference_keys(0, 10))  # what was queued was written first


async def test_worker_with_an_outdated_schema_exits_1_naming_the_migration() -> None:
    rig = Rig()
    rig.db.schema_missing = [
        "The database lacks the 'execution_lease' schema: apply supabase/migrations/x.sql."
    ]
    assert await asyncio.wait_for(rig.worker.run(handle_signals=False), 5) == 1
    assert rig.db.machine_status == "error" and "execution_lease" in (rig.db.error_message or "")


async def test_worker_adopts_open_signals_at_a_new_lease() -> None:
    rig = Rig()
    old = _signal(0)
    rig.db.signals[old.key] = {
        "key": old.key,
        "trader_id": old.trader_id,
        "symbol": old.symbol,
        "interval": "1s",
        "candle_open_time": old.open_time,
        "price": old.price,
        "matched_conditions": list(old.matched_conditions),
        "epoch": 0,
        "status": "active",
    }
    await rig.start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    assert rig.worker.stats.adopted == 1
    # With it, the window's own signal: the last warm-up candle closed as the lease was granted.
    assert {s.key for s, _ in rig.worker.manager.tracked()} == {old.key, *reference_keys(0, 0)}
    assert await rig.stop() == 0


async def test_worker_follows_trader_changes() -> None:
    rig = await Rig().start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    below = TraderRecord(
        str(uuid.uuid4()),
        "close below SMA(3)",
        {
            "version": 1,
            "symbols": ["ETHUSDT"],
            "interval": "1s",
            "conditions": [{"indicator": "close_vs_sma", "period": 3, "op": "<"}],
        },
    )
    rig.db.traders = [TRADER, below]
    # The next poll: the new trader's stream is warmed up again by REST and re-subscribed.
    await eventually(
        lambda: len(rig.market.subscriptions) == 2 and rig.market.connected.is_set(), what="resubscribed"
    )
    await eventually(lambda: not rig.worker.feed.pending_warmups, what="warm-up")
    await rig.candles(20)
    await eventually(
        lambda: below.id in {r["trader_id"] for r in rig.db.signals.values()}, what="the new trader"
    )
    rig.db.traders = [below]  # the first one is deleted (or disabled)
    await eventually(lambda: len(rig.market.subscriptions) == 3, what="resubscribed")
    assert rig.market.subscriptions[-1] == ["ethusdt@kline_1s"]
    assert await rig.stop() == 0


TRADING = TraderRecord(
    TRADER.id,
    "close above SMA(2), traded",
    {
        **TRADER.definition,  # type: ignore[dict-item]
        "trade": {
            "side": "long",
            "notional": 100,
            "take_profit_pct": 0.05,
            "stop_loss_pct": 0.05,
            "max_hold_candles": 3,
        },
    },
)


def reference_trades(fed_to: int) -> tuple[set[str], dict[str, tuple[str, float, int]]]:
    """Keys of the trades an executor holding the lease from the rig's first grant opens, and the exits
    it makes: the reference run over every candle, keeping the trades of signals whose candle closed
    inside the window (from the first live candle's open, where the rig's clock stands at the grant)."""
    m = SignalManager(OWNER)
    m.set_traders([TRADING])
    m.authorize(True, 1)
    window = LIVE[0].open_time
    opened: set[str] = set()
    exits: dict[str, tuple[str, float, int]] = {}
    for c in HISTORY_CANDLES + LIVE[:fed_to]:
        m.feed(c)
        for e in m.drain():
            if isinstance(e, TradeOpened) and e.trade.entry_time >= window:
                opened.add(e.trade.key)
            elif isinstance(e, TradeClosed) and e.trade.key in opened:
                exits[e.trade.key] = (str(e.exit.reason), e.exit.price, e.exit.time)
    return opened, exits


async def test_worker_opens_and_closes_the_reference_trades_once_each() -> None:
    rig = await Rig(traders=[TRADING]).start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    for _ in range(6):  # in steps, so that the lease is renewed as the fake clock moves
        await rig.candles(10)
        await asyncio.sleep(0.3)
    opened, exits = reference_trades(60)
    assert opened and exits
    await eventually(
        lambda: sum(t["status"] == "closed" for t in rig.db.trades.values()) == len(exits),
        what="trades closed",
    )
    assert await rig.stop() == 0
    assert set(rig.db.trades) == opened <= set(rig.db.signals)
    for key, (reason, price, _time) in exits.items():
        t = rig.db.trades[key]
        assert (t["status"], t["exit_reason"], t["exit_price"], t["closes"]) == ("closed", reason, price, 1)
        assert rig.db.signals[key]["status"] == "closed"  # the trade's close closes its signal
    assert "write_trades" in rig.db.calls


async def test_worker_adopts_an_open_trade_the_browser_opened_and_closes_it_once() -> None:
    rig = Rig(traders=[TRADING])
    opened, exits = reference_trades(60)
    key = next(k for k in sorted(exits) if k in opened)
    signal = next(s for s in run_reference(OWNER, [TRADING], HISTORY_CANDLES + LIVE[:60]) if s["key"] == key)
    rig.db.signals[key] = {
        "key": key,
        "trader_id": TRADING.id,
        "symbol": signal["symbol"],
        "interval": "1s",
        "candle_open_time": signal["open_time"],
        "price": signal["price"],
        "matched_conditions": [],
        "epoch": 0,
        "status": "new",
    }
    price = float(signal["price"])
    rig.db.trades[key] = {
        "side": "long", "size": 100 / price, "take_profit_price": price * 1.0005,
        "stop_loss_price": price * 0.9995, "expires_at": signal["open_time"] + 4000, "epoch": 0,
        "status": "open", "close_epoch": None, "exit_reason": None, "exit_price": None, "closes": 0,
    }  # fmt: skip
    await rig.start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    assert rig.worker.stats.trades_adopted == 1
    for _ in range(6):
        await rig.candles(10)
        await asyncio.sleep(0.3)
    await eventually(lambda: rig.db.trades[key]["status"] == "closed", what="the adopted trade closed")
    assert await rig.stop() == 0
    t = rig.db.trades[key]
    assert (t["exit_reason"], t["exit_price"], t["closes"], t["epoch"], t["close_epoch"]) == (
        exits[key][0], exits[key][1], 1, 0, 1,
    )  # fmt: skip


async def test_an_adopted_trade_older_than_the_warm_up_waits_for_its_candles() -> None:
    """A trade opened long before the worker started (nobody managed it since) exits where its rule
    says on the candles it missed, fetched by REST, not at the first candle the worker has."""
    m = SignalManager(OWNER)
    m.set_traders([TRADING])
    m.authorize(True, 1)
    exits: dict[str, TradeClosed] = {}
    opened: dict[str, TradeOpened] = {}
    for c in HISTORY_CANDLES:
        m.feed(c)
        for e in m.drain():
            if isinstance(e, TradeOpened):
                opened[e.trade.key] = e
            elif isinstance(e, TradeClosed):
                exits[e.trade.key] = e
    # Within the first minute of a 300 s history: far older than the worker's warm-up (62 candles).
    key = next(k for k, e in opened.items() if k in exits and e.trade.entry_time < BASE_MS + 60_000)
    trade = opened[key].trade
    rig = Rig(traders=[TRADING])
    rig.db.signals[key] = {
        "key": key, "trader_id": TRADING.id, "symbol": trade.symbol, "interval": "1s",
        "candle_open_time": trade.entry_time - 1000, "price": trade.entry_price, "matched_conditions": [],
        "epoch": 0, "status": "new",
    }  # fmt: skip
    rig.db.trades[key] = {
        "side": "long", "size": trade.size, "take_profit_price": trade.take_profit_price,
        "stop_loss_price": trade.stop_loss_price, "expires_at": trade.expires_at, "epoch": 0,
        "status": "open", "close_epoch": None, "exit_reason": None, "exit_price": None, "closes": 0,
    }  # fmt: skip
    await rig.start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    await eventually(lambda: rig.db.trades[key]["status"] == "closed", what="the adopted trade closed")
    assert await rig.stop() == 0
    t, want = rig.db.trades[key], exits[key].exit
    assert (t["exit_reason"], t["exit_price"], t["exit_time"], t["closes"], t["close_epoch"]) == (
        str(want.reason), want.price, want.time, 1, 1,
    )  # fmt: skip
    # It was decided on candles fetched for it: a range request from its entry.
    assert any(r["start"] == trade.entry_time for r in rig.market.requests)
