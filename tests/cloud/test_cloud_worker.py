"""``python -m signalguard cloud`` against the real local stack and the replay server (1s candles).

Each test runs the worker as a subprocess for its own user and reads the outcome from the database:
the signals, ``lease_epochs`` and the machine row. Time rules are exercised by backdating with the
superuser connection, never by sleeping 30 s. The worker runs with the product's timings (heartbeat and
batch flush every 10 s, a new signal written within 0.2 s), so a test that needs a periodic flush waits
for one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cloudkit import (
    CloudUser,
    Market,
    WorkerProcess,
    close_ms,
    epochs,
    lease,
    machine,
    make_cloud_user,
    ms,
    signals,
    wait_until,
)
from stackkit import Actors, Api, backdate_lease, backdate_machine, db_now

from signalguard.core.codes import ClaimRefusal
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack


def claim_local(api: Api, user: CloudUser, holder: str | None = None) -> dict[str, Any]:
    r = api.rpc("claim_local_lease", {"p_holder_id": holder or user.actor.holder}, user.actor.token)
    assert r.status == 200, r.body
    body: dict[str, Any] = r.body
    return body


def cloud_epoch(db: psycopg.Connection[Any], user: CloudUser) -> dict[str, Any] | None:
    rows = [e for e in epochs(db, user.user_id) if e["holder_kind"] == "cloud"]
    return rows[-1] if rows else None


def assert_signals_are_the_reference(
    market: Market, user: CloudUser, rows: list[dict[str, Any]], window: dict[str, Any], stop_sent_at: float
) -> int:
    """The worker's signals are exactly the reference run's on the candles that closed while it held the
    lease or in the gap before it (``signs_from``: since the previous epoch ended, at most 60 candles):
    each stored signal is a reference signal (same key, price and labels) whose candle closed there,
    marked ``caught_up`` exactly when it closed before the window; and every reference signal there is
    stored — except within 1 s of the edges, where the claim's answer and the SIGTERM race the candles
    in flight. Returns how many signals were compared."""
    start, end = ms(window["signs_from"]), ms(window["valid_until"])
    reference = {s["key"]: s for s in market.reference(user.user_id, user.traders, end + 1000)}
    in_window = {k: s for k, s in reference.items() if start <= s["open_time"] + 1000 < end}
    stored = {r["signal_key"]: r for r in rows}
    for key, row in stored.items():
        assert key in in_window, f"{key} is not a reference signal of the lease window"
        ref = in_window[key]
        assert (
            row["price"] == Decimal(repr(ref["price"]))
            and row["matched_conditions"] == ref["matched_conditions"]
        )
        assert row["caught_up"] is (close_ms(row) < ms(window["started_at"])), key
    sure_until = min(end, int(stop_sent_at * 1000)) - 1000
    expected = {k for k, s in in_window.items() if start + 1000 <= s["open_time"] + 1000 < sure_until}
    missing = expected - set(stored)
    assert not missing, (
        f"{len(missing)} of {len(expected)} reference signals were not written: {sorted(missing)[:3]}"
    )
    return len(stored)


# -- one plain run: start, generate, SIGTERM ------------------------------------------------------


@dataclass
class PlainRun:
    user: CloudUser
    worker: WorkerProcess
    exit_code: int
    signals: list[dict[str, Any]]
    epochs: list[dict[str, Any]]
    machine: dict[str, Any]
    spawned_db_ms: int
    rows_before_last_signal: int


@pytest.fixture(scope="module")
def plain_run(
    stack: LocalStack, market: Market, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlainRun]:
    with stack.connect() as db:
        user = make_cloud_user(Actors(stack), db)
        spawned = ms(db_now(db))
        worker = WorkerProcess(
            stack, user, market.url, tmp_path_factory.mktemp("plain") / "worker.log"
        ).start()
        try:
            # Signals are written within 0.2 s of their candle, so the run lasts until five are stored
            # (how soon depends on the replay's candles, not on a flush period), then one more signal
            # closes before the SIGTERM.
            worker.wait_for_log(r"flush: [1-9]\d* batch", timeout=30)
            wait_until(
                lambda: len(signals(db, user.user_id)) >= 5, timeout=60, what="five stored cloud signals"
            )
            flushed_at = time.time()
            counted = len(signals(db, user.user_id))
            close = market.wait_for_signal_after(user, int((flushed_at + 0.5) * 1000))
            assert close < (flushed_at + 7) * 1000, "the replay has no signal soon enough after the flush"
            code = worker.terminate()
        finally:
            worker.close()
        yield PlainRun(
            user,
            worker,
            code,
            signals(db, user.user_id),
            epochs(db, user.user_id),
            machine(db, user.actor.machine_uuid or ""),
            spawned,
            counted,
        )


def test_worker_writes_cloud_signals_with_source_machine_and_epoch(plain_run: PlainRun) -> None:
    run = plain_run
    assert run.exit_code == 0, run.worker.log()
    assert len(run.signals) >= 5, run.worker.log()
    [window] = run.epochs
    assert window["holder_kind"] == "cloud" and window["machine_id"] == run.user.actor.machine_uuid
    assert {(r["source"], r["machine_id"], r["epoch"]) for r in run.signals} == {
        ("cloud", run.user.actor.machine_uuid, window["epoch"])
    }
    # new -> active on the next candle, written under the live lease (PATCH with updated_epoch).
    assert "active" in {r["status"] for r in run.signals}
    assert {r["updated_epoch"] for r in run.signals} == {window["epoch"]}
    assert all(ms(window["signs_from"]) <= close_ms(r) < ms(window["valid_until"]) for r in run.signals)
    # The first epoch signs the minute before it too (60 candles of 1s: nobody executed then).
    assert ms(window["started_at"]) - ms(window["signs_from"]) == 60_000
    assert {r["caught_up"] for r in run.signals} == {True, False}
    # Handoff timing: the process was spawned with no browser holding the lease.
    lease_after = ms(window["started_at"]) - run.spawned_db_ms
    print(f"\nstart -> lease: {lease_after} ms (interpreter start, imports, schema check, heartbeat, claim)")
    assert lease_after < 5000


def test_worker_signals_equal_the_reference_within_the_lease_window(
    plain_run: PlainRun, market: Market
) -> None:
    run = plain_run
    assert run.worker.stop_sent_at is not None
    compared = assert_signals_are_the_reference(
        market, run.user, run.signals, run.epochs[0], run.worker.stop_sent_at
    )
    print(f"\n{compared} signals equal the reference run's")


def test_sigterm_flushes_releases_and_reports_stopped(plain_run: PlainRun, api: Api, db: Any) -> None:
    run = plain_run
    assert run.exit_code == 0
    counters = run.worker.final_counters()
    # Everything created was written, the signal that closed after the count included (a prompt write or
    # the stop's flush, whichever came first).
    assert counters["signals_created"] == len(run.signals) > run.rows_before_last_signal
    assert counters["unsent"] == 0 and counters["rejected"] == 0
    [window] = run.epochs
    assert window["ended_reason"] == "released"
    assert run.worker.stop_sent_at is not None
    stop_ms = int(run.worker.stop_sent_at * 1000)
    assert stop_ms <= ms(window["valid_until"]) < stop_ms + 3000
    m = run.machine
    assert m["status"] == "stopped" and m["stopped_at"] is not None and m["error_message"] is None
    assert ms(m["stopped_at"]) >= ms(window["valid_until"])  # released before 'stopped'
    log = run.worker.log()
    assert "stopping (SIGTERM)" in log and "lease released" in log
    released, stopped = ms(window["valid_until"]) - stop_ms, ms(m["stopped_at"]) - stop_ms
    print(f"\nSIGTERM -> lease released: {released} ms, -> 'stopped': {stopped} ms")


def test_browser_may_claim_30s_after_the_stop(plain_run: PlainRun, api: Api, db: Any) -> None:
    run = plain_run
    refused = claim_local(api, run.user)
    assert refused["granted"] is False and refused["reason"] == ClaimRefusal.CLOUD_GRACE
    stopped_for = refused["cloud_last_seen_seconds"]
    assert (
        0 < refused["retry_in_seconds"] <= 30 and abs(stopped_for + refused["retry_in_seconds"] - 30) < 0.01
    )
    print(
        f"\nstop -> browser allowed: 30 s after 'stopped' (refused {stopped_for:.1f} s after it, cloud_grace)"
    )
    backdate_machine(db, run.user.actor.machine_uuid or "", 30)
    granted = claim_local(api, run.user)
    assert granted["granted"] is True and granted["lease"]["epoch"] == run.epochs[0]["epoch"] + 1


# -- start-up while a browser holds the lease ----------------------------------------------------


def _start_behind_browser(
    stack: LocalStack, market: Market, api: Api, actors: Actors, db: Any, tmp_path: Path
) -> tuple[CloudUser, WorkerProcess, int, int]:
    """A browser holds the lease; the worker starts, says 'starting', and waits. Once a reference signal
    has closed while the worker waited (its engine matched it, silently), returns the user, the worker,
    the local epoch and when the worker was seen streaming (ms)."""
    user = make_cloud_user(actors, db)
    local = claim_local(api, user)
    assert local["granted"] is True
    worker = WorkerProcess(stack, user, market.url, tmp_path / "worker.log").start()
    worker.wait_for_log(r"waiting for the lease: local_lease_live", timeout=15)
    worker.wait_for_log(r"streaming \d+ kline streams", timeout=10)
    streaming_ms = int(time.time() * 1000)
    assert machine(db, user.actor.machine_uuid or "")["status"] == "starting"
    market.wait_for_signal_after(user, streaming_ms)
    assert (lease(db, user.user_id) or {})["holder_kind"] == "local"
    return user, worker, local["lease"]["epoch"], streaming_ms


def _finish_after_handoff(
    db: Any, market: Market, user: CloudUser, worker: WorkerProcess, local_epoch: int, streaming_ms: int
) -> list[dict[str, Any]]:
    window = cloud_epoch(db, user)
    assert window is not None and window["epoch"] == local_epoch + 1
    market.wait_for_signal_after(user, ms(window["started_at"]) + 1000)  # one under the cloud's lease
    assert worker.terminate() == 0, worker.log()
    rows = signals(db, user.user_id)
    window = cloud_epoch(db, user)
    assert window is not None and worker.stop_sent_at is not None
    # No cloud write before the lease moved: every row is the cloud epoch's, for a candle that closed
    # inside its window or in the gap after the browser's epoch ended, and the worker never sent
    # anything the database refused.
    assert rows and {(r["source"], r["epoch"]) for r in rows} == {("cloud", window["epoch"])}
    [local] = [e for e in epochs(db, user.user_id) if e["epoch"] == local_epoch]
    assert ms(window["signs_from"]) == ms(local["valid_until"])
    assert all(close_ms(r) >= ms(local["valid_until"]) for r in rows)
    assert worker.final_counters()["rejected"] == 0
    assert_signals_are_the_reference(market, user, rows, window, worker.stop_sent_at)
    # ... while the engine did match signals before the handoff: those of the browser's window are not
    # the cloud's (not written); those of the gap between the browser's end and the cloud's grant are,
    # caught up. At least the one _start_behind_browser waited for, closed after the worker was seen
    # streaming, is one or the other (the other: a browser lease that expired, its window backdated).
    matched = [
        s
        for s in market.reference(user.user_id, user.traders, ms(window["started_at"]))
        if s["open_time"] + 1000 > streaming_ms
    ]
    browsers = [s for s in matched if s["open_time"] + 1000 < ms(local["valid_until"])]
    gap = [
        s
        for s in matched
        if ms(local["valid_until"]) + 1000 <= s["open_time"] + 1000 < ms(window["started_at"])
    ]
    assert browsers or gap
    stored = {r["signal_key"]: r for r in rows}
    assert not {s["key"] for s in browsers} & set(stored)
    assert all(stored[s["key"]]["caught_up"] for s in gap), [s["key"] for s in gap if s["key"] not in stored]
    return rows


def test_startup_waits_for_the_browser_to_yield(
    stack: LocalStack, market: Market, api: Api, actors: Actors, db: Any, tmp_path: Path
) -> None:
    user, worker, local_epoch, streaming_ms = _start_behind_browser(stack, market, api, actors, db, tmp_path)
    try:
        # The browser's 5 s poll sees 'starting' and its renewal gives the lease up.
        renewal = claim_local(api, user)
        assert renewal["granted"] is False and renewal["yielded"] is True
        assert renewal["reason"] == ClaimRefusal.CLOUD_STARTING
        yielded_at = time.time()
        wait_until(
            lambda: (lease(db, user.user_id) or {}).get("holder_kind") == "cloud", 5, "the cloud's lease"
        )
        window = cloud_epoch(db, user)
        assert window is not None
        took = ms(window["started_at"]) - int(yielded_at * 1000)
        print(f"\nbrowser yielded -> cloud lease: {took} ms (claims are 2 s apart)")
        assert took <= 2500
        [local] = [e for e in epochs(db, user.user_id) if e["holder_kind"] == "local"]
        assert local["ended_reason"] == "yielded_to_cloud"
        _finish_after_handoff(db, market, user, worker, local_epoch, streaming_ms)
        assert "waited: local_lease_live" in worker.log()
    finally:
        worker.close()


def test_startup_waits_for_the_browser_lease_to_expire(
    stack: LocalStack, market: Market, api: Api, actors: Actors, db: Any, tmp_path: Path
) -> None:
    user, worker, local_epoch, streaming_ms = _start_behind_browser(stack, market, api, actors, db, tmp_path)
    try:
        # A browser that never polls again (a closed laptop): its lease runs out 30 s after its last
        # renewal. Backdated instead of waited for.
        backdate_lease(db, user.user_id, 30)
        expired_at = time.time()
        wait_until(
            lambda: (lease(db, user.user_id) or {}).get("holder_kind") == "cloud", 5, "the cloud's lease"
        )
        window = cloud_epoch(db, user)
        assert window is not None
        print(
            f"\nbrowser lease expired -> cloud lease: {ms(window['started_at']) - int(expired_at * 1000)} ms"
        )
        _finish_after_handoff(db, market, user, worker, local_epoch, streaming_ms)
    finally:
        worker.close()


# -- SIGKILL ---------------------------------------------------------------------------------------


def test_sigkill_heartbeat_goes_stale_and_the_browser_claims_after_30s(
    stack: LocalStack, market: Market, api: Api, actors: Actors, db: Any, tmp_path: Path
) -> None:
    user = make_cloud_user(actors, db)
    worker = WorkerProcess(stack, user, market.url, tmp_path / "worker.log").start()
    try:
        wait_until(
            lambda: (lease(db, user.user_id) or {}).get("holder_kind") == "cloud", 15, "the cloud's lease"
        )
        worker.wait_for_log(r"lease granted", timeout=5)
        # 'running' follows the grant by one heartbeat: kill after it, so the row says what a crashed
        # running machine leaves behind.
        wait_until(
            lambda: machine(db, user.actor.machine_uuid or "")["status"] == "running", 10, "status 'running'"
        )
        worker.kill()
    finally:
        worker.close()
    m = machine(db, user.actor.machine_uuid or "")
    assert m["status"] == "running" and m["stopped_at"] is None  # no goodbye
    heartbeat = m["last_health_check"]
    time.sleep(1)
    assert machine(db, user.actor.machine_uuid or "")["last_health_check"] == heartbeat  # nobody beats
    first = claim_local(api, user)
    assert first["granted"] is False and first["reason"] in (
        ClaimRefusal.HELD_BY_CLOUD,
        ClaimRefusal.CLOUD_HEALTHY,
    )
    # 25 s later: the lease has run out, but the heartbeat is younger than 30 s.
    backdate_lease(db, user.user_id, 25)
    backdate_machine(db, user.actor.machine_uuid or "", 25)
    assert claim_local(api, user)["granted"] is False
    # 31 s after the last heartbeat: stale, the grace is over, the browser takes a new epoch.
    backdate_lease(db, user.user_id, 6)
    backdate_machine(db, user.actor.machine_uuid or "", 6)
    granted = claim_local(api, user)
    assert granted["granted"] is True
    cloud = cloud_epoch(db, user)
    assert cloud is not None and granted["lease"]["epoch"] == cloud["epoch"] + 1


# -- the database unreachable for a while ----------------------------------------------------------


def test_postgrest_outage_requeues_batches_then_they_land_once(
    stack: LocalStack, market: Market, actors: Actors, db: Any, tmp_path: Path
) -> None:
    """PostgREST stopped for 12 s: shorter than the lease, so the worker keeps generating through the
    outage and only its writes wait (the full 30 s, through the lease's lapse, is the next test)."""
    user = make_cloud_user(actors, db)
    worker = WorkerProcess(stack, user, market.url, tmp_path / "worker.log").start()
    inserted = r"flush: [1-9]\d* batch[^\n]*inserted"
    try:
        before = len(re.findall(inserted, worker.wait_for_log(inserted, timeout=20)))  # a flush went through
        stack.postgrest.stop()
        down_at = time.monotonic()
        try:
            worker.wait_for_log(r"writing \d+ \w+ entr\w+ failed", timeout=15)  # the next flush: re-queued
            time.sleep(max(0.0, down_at + 12 - time.monotonic()))
        finally:
            stack.postgrest.start()
        worker.wait_for_log(r"the database answers again", timeout=15)
        log = worker.wait_for_log(inserted, timeout=15, count=before + 1)
        assert "not generating" not in log  # the lease outlived the outage
        code = worker.terminate()
    finally:
        worker.close()
        if not stack.postgrest.running:
            stack.postgrest.start()
    assert code == 0, worker.log()
    counters = worker.final_counters()
    rows = signals(db, user.user_id)
    assert counters["retries"] >= 1 and counters["rejected"] == 0 and counters["unsent"] == 0
    # Nothing lost: every signal created is stored; nothing doubled: one row each (the key is unique,
    # and the outbox retried the same entries, answered 'inserted' once).
    assert counters["signals_created"] == len(rows) == len({r["signal_key"] for r in rows})
    window = cloud_epoch(db, user)
    assert window is not None and worker.stop_sent_at is not None
    assert_signals_are_the_reference(market, user, rows, window, worker.stop_sent_at)


def test_postgrest_down_for_30s_lease_lapses_then_everything_created_lands_once(
    stack: LocalStack, market: Market, actors: Actors, db: Any, tmp_path: Path
) -> None:
    """PostgREST stopped for the full 30 s. The heartbeat fails for as long as the lease lasts, so the
    worker stops generating when its lease runs out (it cannot know that nobody else took over); when
    the database answers again it claims the lease anew and resumes. Every signal it created before the
    lapse was queued and lands once, under the epoch it was created in; no signal is created while it
    holds no lease; each epoch's signals are the reference run's for that epoch's window."""
    user = make_cloud_user(actors, db)
    worker = WorkerProcess(stack, user, market.url, tmp_path / "worker.log").start()
    inserted = r"flush: [1-9]\d* batch[^\n]*inserted"
    try:
        before = len(re.findall(inserted, worker.wait_for_log(inserted, timeout=20)))
        stack.postgrest.stop()
        down_at = time.monotonic()
        try:
            worker.wait_for_log(r"writing \d+ \w+ entr\w+ failed", timeout=15)
            worker.wait_for_log(r"not generating", timeout=35)  # the lease ran out unrenewed
            time.sleep(max(0.0, down_at + 30 - time.monotonic()))
        finally:
            stack.postgrest.start()
        up_at = time.monotonic()
        worker.wait_for_log(r"the database answers again", timeout=15)
        worker.wait_for_log(r"holding the lease again", timeout=15)
        print(f"\nPostgREST back -> lease held again: {time.monotonic() - up_at:.2f} s")
        worker.wait_for_log(inserted, timeout=20, count=before + 1)
        # One more signal under the new lease, so that both windows have some.
        window = cloud_epoch(db, user)
        assert window is not None
        market.wait_for_signal_after(user, ms(window["started_at"]) + 1000)
        code = worker.terminate()
    finally:
        worker.close()
        if not stack.postgrest.running:
            stack.postgrest.start()
    assert code == 0, worker.log()
    counters = worker.final_counters()
    rows = signals(db, user.user_id)
    assert counters["retries"] >= 1 and counters["rejected"] == 0 and counters["unsent"] == 0
    assert counters["signals_created"] == len(rows) == len({r["signal_key"] for r in rows})
    windows = [e for e in epochs(db, user.user_id) if e["holder_kind"] == "cloud"]
    assert len(windows) == 2 and windows[1]["epoch"] > windows[0]["epoch"], windows
    assert worker.stop_sent_at is not None
    for w in windows:
        mine = [r for r in rows if r["epoch"] == w["epoch"]]
        assert mine, f"no signal under epoch {w['epoch']}"
        assert_signals_are_the_reference(market, user, mine, w, worker.stop_sent_at)
    assert {r["epoch"] for r in rows} == {w["epoch"] for w in windows}
