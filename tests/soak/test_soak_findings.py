"""What the handoff soak found, one regression test each: the real cloud worker on the real stack.

Each test stages the one situation the soak's history showed (no browser: the worker alone holds the
lease), reads the rows and judges them with the soak's checker. Each failed before its fix:

- a SIGKILL lost every signal generated since the worker's last 10 s flush (new signals are now
  written a fraction of a second after their candle: ``Timings.signal_write``);
- a worker restarted under its machine's still-running lease renewed the dead worker's epoch but
  generated only from its first live candle, so the candles that closed in between were never
  generated (the engine's warm-up now evaluates its newest candles, and the grant catches up those
  that closed inside the window: ``SignalManager.authorize``, "Catching up with a window");
- an adopted trade whose exit candle closed before the new executor's first candle was closed at that
  candle instead (it now waits for the candles since its entry: ``SignalManager.trade_history_needs``);
- a worker SIGKILLed under a lease that then ran out, and restarted after that, was granted a new
  epoch; the candles that closed in the old window's tail (up to 30 s) were nobody's to signal, since
  the database accepts a signal only under an epoch its writer held with its candle in that epoch's
  window (the new epoch now reads its machine's earlier windows and signals their tails under them:
  ``Database.earlier_windows``, "Earlier windows of the same holder").

First seen with ``python -m bench.soak --events 40 --seed 2`` (the first two lost-signal findings),
``--events 50 --seed 3`` (the late exit of an adopted trade) and ``--events 200 --seed 1`` (the tail).
"""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from checker import Downtime, NemesisEvent, Verdict, check
from e2ekit import FAST_SYMBOLS, FAST_TRADER, fresh_user, lease_of, make_stack, wait_until
from soakdb import expected_signals, read_traders, served_candles
from soakkit import TRADED_TRADER, Worker, now_us, read_history, worker_generating_times

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer, running_replay
from signalguard.replay.synthetic import generate

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def market() -> Iterator[ReplayServer]:
    series = generate(FAST_SYMBOLS, interval="1s", candles=600, seed=11, warmup=100, spacing=60).series
    with running_replay(series, history=300, loop=True) as server:
        yield server


@pytest.fixture(scope="module")
def stack(market: ReplayServer) -> Iterator[LocalStack]:
    s = make_stack(market.url)
    yield s
    s.reset()


@pytest.fixture()
def worker_log() -> Path:
    return Path(tempfile.mkdtemp(prefix="signalguard-soak-finding-")) / "worker.log"


def holding(stack: LocalStack, uid: str) -> int | None:
    """The cloud's epoch if it holds a live lease."""
    lease = lease_of(stack, uid)
    return lease.epoch if lease is not None and lease.live and lease.holder_kind == "cloud" else None


def flushes(log: Path) -> int:
    return log.read_text(errors="replace").count("signalguard.cloud: flush:") if log.exists() else 0


def wait_for_a_flush(log: Path) -> None:
    """Return just after the worker's next flush (it writes what it queued every 10 s)."""
    before = flushes(log)
    wait_until("the worker's next flush", lambda: flushes(log) > before, timeout=25, every=0.1)


def certain_between(stack: LocalStack, market: ReplayServer, uid: str, lo: int, hi: int) -> int:
    """How many signals the reference engine certainly triggers on candles closing in ``[lo, hi)`` (µs)."""
    with stack.connect() as conn:
        traders = read_traders(conn, uid)
    candles = served_candles(market, time.time() * 1000)
    return sum(1 for x in expected_signals(uid, traders, candles) if x.certain and lo <= x.close_time < hi)


def trades(stack: LocalStack, uid: str, status: str | None = None) -> int:
    """The user's trades (of ``status``, if given)."""
    with stack.connect() as conn:
        row = conn.execute(
            "select count(*) from public.trades where user_id = %s and status = coalesce(%s, status)",
            (uid, status),
        ).fetchone()
    return int(row[0]) if row else 0


def show(verdict: Verdict) -> None:
    print("\n" + verdict.report())


def test_signals_a_worker_generated_survive_its_sigkill(
    stack: LocalStack, market: ReplayServer, worker_log: Path
) -> None:
    email, uid = fresh_user(stack, machine=True, definition=FAST_TRADER, name="Fast RSI")
    worker = Worker(stack, market.url, email, worker_log)
    worker.start()
    try:
        wait_until("the cloud lease", lambda: holding(stack, uid), timeout=40)
        time.sleep(10)  # a whole former flush period of signals to judge
        # Kill between two flushes once the engine has certainly generated a few signals since the last
        # (the former 10 s flush lost those; they are written within a second now).
        for _ in range(5):
            wait_for_a_flush(worker_log)
            flushed = now_us()
            while now_us() < flushed + 8_000_000:
                if certain_between(stack, market, uid, flushed + 500_000, now_us() - 500_000) >= 3:
                    break
                time.sleep(0.25)
            else:
                continue
            break
        killed = now_us()
        worker.send(signal.SIGKILL)
        worker.wait(10)
    finally:
        worker.stop()
    # What a SIGKILL can still take: the batch of the last candle, written ``signal_write`` (0.2 s)
    # after it closed, if that write was in flight. Candles closing in the last second are not judged.
    history = read_history(
        stack,
        market,
        uid,
        horizon=killed - 1_000_000,
        events=[NemesisEvent(1, "worker_sigkill", killed, killed, "between two flushes")],
    )
    verdict = check(history)
    show(verdict)
    assert verdict.figures["signals_checked"] >= 5
    assert verdict.count("lost_signal") == 0, verdict.report()


def test_a_restarted_worker_generates_for_its_renewed_window(
    stack: LocalStack, market: ReplayServer, worker_log: Path
) -> None:
    email, uid = fresh_user(stack, machine=True, definition=FAST_TRADER, name="Fast RSI")
    worker = Worker(stack, market.url, email, worker_log)
    worker.start()
    try:
        epoch = wait_until("the cloud lease", lambda: holding(stack, uid), timeout=40)
        wait_for_a_flush(worker_log)
        killed = now_us()
        worker.send(signal.SIGKILL)
        worker.wait(10)
        # The machine is being restarted; its lease runs until 30 s after its last renewal (at least 20 s
        # from now). Restart once a few candles that trigger have closed meanwhile (at most 10 s).
        wait_until(
            "candles that trigger while no worker runs",
            lambda: (
                certain_between(stack, market, uid, killed + 500_000, now_us()) >= 3
                or now_us() > killed + 10_000_000
            ),
            timeout=15,
        )
        worker.start()
        wait_until(
            "the restarted worker generating",
            lambda: [t for t in worker_generating_times(worker_log) if t > killed],
            timeout=30,
        )
        assert holding(stack, uid) == epoch, "the restarted worker did not renew the same epoch"
        wait_for_a_flush(worker_log)
        wait_for_a_flush(worker_log)
    finally:
        worker.stop()
    back = next(t for t in worker_generating_times(worker_log) if t > killed)
    history = read_history(
        stack,
        market,
        uid,
        events=[
            NemesisEvent(1, "worker_sigkill", killed, killed),
            NemesisEvent(2, "worker_start", back, back),
        ],
        downtime=[Downtime("cloud", killed, back, "killed")],
    )
    verdict = check(history)
    show(verdict)
    assert [e.epoch for e in history.epochs] == [epoch]
    assert verdict.count("lost_signal") == 0, verdict.report()


def test_a_worker_back_after_its_lease_ran_out_signals_its_windows_tail(
    stack: LocalStack, market: ReplayServer, worker_log: Path
) -> None:
    email, uid = fresh_user(stack, machine=True, definition=FAST_TRADER, name="Fast RSI")
    worker = Worker(stack, market.url, email, worker_log)
    worker.start()
    try:
        epoch = wait_until("the cloud lease", lambda: holding(stack, uid), timeout=40)
        wait_for_a_flush(worker_log)
        killed = now_us()
        worker.send(signal.SIGKILL)
        worker.wait(10)
        # Nobody renews: the lease runs out (30 s after the last renewal, at most 10 s before the kill).
        wait_until("the dead worker's lease to run out", lambda: holding(stack, uid) is None, timeout=40)
        expired = now_us()
        assert certain_between(stack, market, uid, killed + 500_000, expired) >= 3, "a tail to judge"
        worker.start()
        wait_until("the next lease", lambda: holding(stack, uid), timeout=40)
        wait_for_a_flush(worker_log)
    finally:
        worker.stop()
    back = next(t for t in worker_generating_times(worker_log) if t > killed)
    history = read_history(
        stack,
        market,
        uid,
        events=[
            NemesisEvent(1, "worker_sigkill", killed, killed),
            NemesisEvent(2, "worker_start", back, back),
        ],
        downtime=[Downtime("cloud", killed, back, "killed")],
    )
    verdict = check(history)
    show(verdict)
    assert [e.epoch for e in history.epochs] == [epoch, epoch + 1]
    tail = [s for s in history.signals if s.epoch == epoch and s.close_time > killed + 1_000_000]
    assert len(tail) >= 3, "the tail was signalled under the dead worker's epoch"
    assert verdict.count("lost_signal") == 0, verdict.report()


def test_an_adopted_trade_exits_by_its_rule_after_a_gap(
    stack: LocalStack, market: ReplayServer, worker_log: Path
) -> None:
    email, uid = fresh_user(stack, machine=True, definition=TRADED_TRADER, name="Fast RSI, traded")
    worker = Worker(stack, market.url, email, worker_log)
    worker.start()
    try:
        wait_until("the cloud lease", lambda: holding(stack, uid), timeout=40)
        wait_until(
            "five trades, two of them open",
            lambda: trades(stack, uid) >= 5 and trades(stack, uid, "open") >= 2,
            timeout=90,
            every=0.2,
        )
        worker.send(signal.SIGTERM)  # releases the lease; its open trades stay open
        assert worker.wait(30) == 0
        stopped = time.monotonic()
        # Past every open trade's expiry (12 s): nobody manages them meanwhile. (The next worker's
        # warm-up reaches back 83 candles, so it has their candles; a trade older than those waits for
        # them, see test_cloud_offline's test_an_adopted_trade_older_than_the_warm_up_waits_for_its_candles.)
        time.sleep(max(0.0, 33 - (time.monotonic() - stopped)))
        worker.start()
        wait_until("the next lease", lambda: holding(stack, uid), timeout=40)
        wait_for_a_flush(worker_log)
        wait_for_a_flush(worker_log)
    finally:
        worker.stop()
    verdict = check(read_history(stack, market, uid))
    show(verdict)
    assert verdict.figures["epochs"] == 2
    assert verdict.figures["trades_closed"] >= 5
    assert verdict.count("trade_exit_not_by_rule") == 0, verdict.report()
