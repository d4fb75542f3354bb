"""Signals generated in the tab, persisted through the IndexedDB outbox: against the real stack and replay.

The module's own replay server serves a synthetic series on the ``1s`` interval (a candle closes every
second, looping), and a stack of its own points the page at it (conftest's ``fast_replay`` and
``fast_stack``). Each test makes its own user with one trader on ``1s`` candles that fires often
(``e2ekit.FAST_TRADER``: ``RSI(2) < 50``, no cooldown), so signals come within seconds of the tab warming
up. Every test checks the database as well as the page.
"""

from __future__ import annotations

import itertools
import signal
import time
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from e2ekit import (
    FAST_TRADER,
    Browsers,
    cloud_worker,
    end_cloud_grace,
    fast_user,
    lease_of,
    machine_in_error,
    signals_of,
    wait_until,
)
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack


CAROL = "carol@signalguard.test"
SIGNAL_TIMEOUT_MS = 30_000


# -- helpers --------------------------------------------------------------------------------------


def page_keys(tab: Any) -> list[str]:
    """The signal keys of the table's rows, in order."""
    return [
        str(k)
        for k in tab.page.eval_on_selector_all(
            "[data-testid='signal-row']", "rows => rows.map(r => r.getAttribute('data-signal-key'))"
        )
    ]


def pending(tab: Any) -> int:
    return int(tab.page.get_by_test_id("pending-count").get_attribute("data-count") or "0")


def machine_call(stack: LocalStack, email: str, rpc: str, args: dict[str, Any]) -> Any:
    r = httpx.post(
        f"{stack.url}/rest/v1/rpc/{rpc}",
        json=args,
        headers={"apikey": stack.config.anon_key(), "Authorization": f"Bearer {stack.machine_token(email)}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()


# -- tests ----------------------------------------------------------------------------------------


def test_browser_mode_generates_and_persists_local_signals(
    fast_stack: LocalStack, fast_tabs: Browsers
) -> None:
    email, uid = fast_user(fast_stack)
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    t0 = time.monotonic()
    rows = tab.page.locator("[data-testid='signal-row'][data-source='local']")
    expect(rows.first).to_be_attached(timeout=SIGNAL_TIMEOUT_MS)
    print(f"\nsigned in to first signal row: {time.monotonic() - t0:.2f} s")
    expect(tab.page.get_by_test_id("market-status")).to_have_attribute("data-state", "live")

    stored = wait_until(
        "three stored signals", lambda: (s := signals_of(fast_stack, uid)) and len(s) >= 3 and s
    )
    lease = lease_of(fast_stack, uid)
    assert lease is not None and lease.live and lease.holder_kind == "local"
    for row in stored:
        assert row["source"] == "local" and row["machine_id"] is None
        assert row["epoch"] == lease.epoch
    # Stored rows reach the table (re-read after each acknowledged batch), newest candle first.
    key = stored[-1]["signal_key"]
    expect(tab.page.locator(f"[data-testid='signal-row'][data-signal-key='{key}']")).to_have_attribute(
        "data-source", "local", timeout=10_000
    )
    keys = page_keys(tab)
    assert len(keys) == len(set(keys))
    # The "by source" summary follows the stored signals within seconds, not at its 30 s period.
    expect(tab.page.locator("[data-testid='summary-row'][data-source='local']")).not_to_have_attribute(
        "data-signals", "0", timeout=8_000
    )
    # Status changes go through the same outbox: a signal becomes active on its symbol's next candle.
    wait_until(
        "a signal moved to active",
        lambda: any(r["status"] == "active" for r in signals_of(fast_stack, uid)),
        timeout=10,
    )

    # The source filter: cloud shows none of them, local all.
    tab.page.get_by_test_id("source-filter").select_option("cloud")
    expect(tab.page.get_by_test_id("signal-row")).to_have_count(0)
    tab.page.get_by_test_id("source-filter").select_option("local")
    expect(rows.first).to_be_attached()
    expect(tab.page.locator("[data-testid='signal-row'][data-source='cloud']")).to_have_count(0)
    watch.assert_clean()


def test_reload_keeps_history_and_empties_the_outbox(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    email, uid = fast_user(fast_stack)
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    wait_until("stored signals", lambda: len(signals_of(fast_stack, uid)) >= 3)
    before = {r["signal_key"] for r in signals_of(fast_stack, uid)}

    tab.page.reload()
    tab.wait_ready()
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    # History from the database is there at once; generation resumes after the warm-up.
    shown = set(page_keys(tab))
    assert shown & before, "the stored signals are not shown after the reload"
    wait_until(
        "new signals after the reload",
        lambda: len({r["signal_key"] for r in signals_of(fast_stack, uid)} - before) >= 2,
    )
    wait_until("the outbox to empty", lambda: pending(tab) == 0, timeout=15)
    stored = signals_of(fast_stack, uid)
    keys = [r["signal_key"] for r in stored]
    assert len(keys) == len(set(keys))
    assert {r["source"] for r in stored} == {"local"}
    page = page_keys(tab)
    assert len(page) == len(set(page))
    # The stored outbox (IndexedDB) empties too, not just the count on the page. Polled: signals keep
    # coming (1s candles), and one may be stored between two reads.
    wait_until(
        "the stored outbox to empty",
        lambda: '"entries":[]' in str(tab.page.evaluate(f"signalguard.storeGet('outbox:{uid}')")),
        timeout=15,
    )
    watch.assert_clean()


def test_two_tabs_one_generates_no_duplicates(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    email, uid = fast_user(fast_stack)
    ctx, watch = fast_tabs.context()
    first = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(first.badge).to_have_attribute("data-mode", "browser")
    second = fast_tabs.tab(ctx, watch).open().wait_ready()
    expect(second.badge).to_have_attribute("data-mode", "standby")

    wait_until("stored signals", lambda: len(signals_of(fast_stack, uid)) >= 6)
    lease = lease_of(fast_stack, uid)
    assert lease is not None and lease.holder_id == first.holder_id()
    # The standby tab shows what the generating one stored (it polls the table) but sends nothing.
    key = signals_of(fast_stack, uid)[-1]["signal_key"]
    expect(second.page.locator(f"[data-signal-key='{key}']")).to_be_attached(timeout=10_000)
    stored = signals_of(fast_stack, uid)
    assert len({r["signal_key"] for r in stored}) == len(stored)
    assert {r["epoch"] for r in stored} == {lease.epoch}
    # Both tabs share one origin's IndexedDB; only the tab holding the tab lock sends its outbox.
    assert watch.rpc_calls("write_signals")
    assert pending(second) == 0
    with fast_stack.connect() as conn:
        dupes = conn.execute(
            "select count(*) - count(distinct signal_key) from public.signals where user_id = %s", (uid,)
        ).fetchone()
    assert dupes == (0,)
    watch.assert_clean()


def test_outage_of_the_api_is_buffered_then_drained(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    email, uid = fast_user(fast_stack)
    ctx, watch = fast_tabs.context()
    # The browser logs every 503 the gateway answers while PostgREST is down.
    watch.allow(r"status of 503")
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    wait_until("stored signals", lambda: len(signals_of(fast_stack, uid)) >= 2)

    made: set[str] = set()
    fast_stack.postgrest.stop()
    down = time.monotonic()
    try:
        peak = 0
        while time.monotonic() - down < 20:
            made |= set(
                tab.page.eval_on_selector_all(
                    "[data-testid='signal-row'][data-status='pending']",
                    "rows => rows.map(r => r.getAttribute('data-signal-key'))",
                )
            )
            peak = max(peak, pending(tab))
            time.sleep(0.5)
        assert peak >= 3, f"the pending count did not rise during the outage (peak {peak})"
        assert made, "no signal was shown as pending during the outage"
        tab.snapshot("outage")
    finally:
        fast_stack.postgrest.start()
    up = time.monotonic()
    wait_until("the outbox to drain", lambda: pending(tab) == 0, timeout=30)
    print(f"\noutage 20 s, peak pending {peak}; drained {time.monotonic() - up:.1f} s after the API was back")

    stored = signals_of(fast_stack, uid)
    keys = {r["signal_key"] for r in stored}
    assert made <= keys, f"lost: {sorted(made - keys)}"
    assert len(keys) == len(stored)
    assert all(r["source"] == "local" and r["machine_id"] is None for r in stored)
    expect(tab.badge).to_have_attribute("data-mode", "browser", timeout=15_000)
    watch.assert_clean()


def test_carol_browser_only_persists_signals(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    carol = fast_stack.user_id(CAROL)
    with fast_stack.connect() as conn:
        # Carol's demo traders watch 1m candles, which this replay does not serve: run the fast one.
        conn.execute("update public.traders set enabled = false where user_id = %s", (carol,))
        conn.execute(
            "insert into public.traders (user_id, name, definition) values (%s, 'Fast RSI', %s)",
            (carol, psycopg.types.json.Jsonb(FAST_TRADER)),
        )
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(CAROL)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    expect(tab.badge).to_have_text("Browser Mode")
    stored = wait_until(
        "carol's stored signals", lambda: (s := signals_of(fast_stack, carol)) and len(s) >= 3 and s
    )
    lease = lease_of(fast_stack, carol)
    assert lease is not None and lease.holder_kind == "local" and lease.holder_id == tab.holder_id()
    assert all(
        r["source"] == "local" and r["machine_id"] is None and r["epoch"] == lease.epoch for r in stored
    )
    expect(tab.page.locator("[data-testid='signal-row'][data-source='local']").first).to_be_attached()
    watch.assert_clean()


def test_no_local_signal_after_the_cloud_takes_the_lease(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    email, uid = fast_user(fast_stack, machine=True)
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    wait_until("local signals", lambda: len(signals_of(fast_stack, uid)) >= 2)

    # The machine starts: the browser yields on its next poll, then the machine takes the lease.
    machine_call(fast_stack, email, "machine_heartbeat", {"p_status": "starting"})
    claim = wait_until(
        "the cloud lease",
        lambda: (c := machine_call(fast_stack, email, "claim_cloud_lease", {})) and c.get("granted") and c,
        timeout=15,
        every=0.5,
    )
    machine_call(fast_stack, email, "machine_heartbeat", {"p_status": "running"})
    expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=10_000)
    with fast_stack.connect() as conn:
        moved = conn.execute(
            "select started_at from public.lease_epochs where user_id = %s and holder_kind = 'cloud' "
            "order by epoch desc limit 1",
            (uid,),
        ).fetchone()
    assert moved is not None, claim
    # Candles keep closing; the tab must not write any of them (nor anything still queued for them).
    time.sleep(4)
    wait_until("the outbox to settle", lambda: pending(tab) == 0, timeout=10)
    stored = signals_of(fast_stack, uid)
    local = [r for r in stored if r["source"] == "local"]
    assert local, "no local signal before the handoff"
    late = [r for r in local if r["candle_close"] > moved[0]]
    assert not late, f"local signals for candles that closed after the lease moved: {late}"
    # ... and the tab did not even try: the database would refuse such a write without an HTTP error,
    # so the page's own requests are the evidence that it stopped generating.
    moved_ms = int(moved[0].timestamp() * 1000)
    sent = [p for args in watch.rpc_calls("write_signals") for p in (args or {}).get("p_signals", [])]
    assert sent, "the tab never wrote a signal"
    tried = [p for p in sent if p["candle_open_time"] + 1000 > moved_ms]
    assert not tried, f"the tab sent signals for candles that closed after the lease moved: {tried[:3]}"
    watch.assert_clean()


def test_open_signals_of_the_cloud_are_adopted_and_their_lifecycle_goes_on(
    fast_stack: LocalStack, fast_tabs: Browsers
) -> None:
    email, uid = fast_user(fast_stack, machine=True)
    # The cloud machine left an active signal behind, five minutes (300 candles of 1 s) old: far past
    # the 60 candles after which a signal expires. Whoever executes next must expire it.
    with fast_stack.connect() as conn:
        row = conn.execute(
            "select t.id, m.id from public.traders t join public.cloud_machines m using (user_id) "
            "where t.user_id = %s",
            (uid,),
        ).fetchone()
        assert row is not None
        trader_id, machine_uuid = row
        key_row = conn.execute(
            "insert into public.signals (trader_id, user_id, symbol, interval, candle_open_time, price, "
            "matched_conditions, status, source, machine_id, epoch) values (%s, %s, 'BTCUSDT', '1s', "
            "date_trunc('second', now()) - interval '300 seconds', 100, array['RSI(2) < 50'], 'active', "
            "'cloud', %s, 1) returning signal_key",
            (trader_id, uid, machine_uuid),
        ).fetchone()
        assert key_row is not None
    key = key_row[0]
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")

    def expired() -> dict[str, Any] | None:
        with fast_stack.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute("select status, updated_epoch from public.signals where signal_key = %s", (key,))
            found = cur.fetchone()
        return found if found and found["status"] == "expired" else None

    done = wait_until("the adopted signal expired", expired, timeout=30)
    lease = lease_of(fast_stack, uid)
    assert lease is not None and lease.holder_kind == "local"
    assert done["updated_epoch"] == lease.epoch  # moved by this tab, under its own lease
    expect(tab.page.locator(f"[data-testid='signal-row'][data-signal-key='{key}']")).to_have_attribute(
        "data-status", "expired", timeout=10_000
    )
    watch.assert_clean()


def test_the_real_cloud_worker_takes_over_and_hands_back(
    fast_stack: LocalStack, fast_replay: ReplayServer, fast_tabs: Browsers
) -> None:
    """The page and ``signalguard cloud`` for the same user: Browser Mode, the worker starts and the page
    steps aside (Cloud Active, toggles off), cloud signals appear, the worker stops on SIGTERM and the
    page resumes after the grace (backdated). The database shows one executor at a time."""
    email, uid = fast_user(fast_stack, machine=True)
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    wait_until("a local signal", lambda: any(r["source"] == "local" for r in signals_of(fast_stack, uid)))
    tab.snapshot("browser")

    with cloud_worker(fast_stack, fast_replay.url, email) as (worker, log_path):
        started = time.monotonic()
        expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=30_000)
        print(f"\nworker started -> page Cloud Active: {time.monotonic() - started:.2f} s")
        expect(tab.badge).to_have_text("Cloud Active")
        toast = tab.page.get_by_test_id("toast").filter(has_text="switching to monitoring mode")
        expect(toast).to_be_attached()
        for toggle in tab.toggles().all():
            expect(toggle).to_be_disabled()
        tab.snapshot("cloud")
        cloud_rows = wait_until(
            "stored cloud signals",
            lambda: [r for r in signals_of(fast_stack, uid) if r["source"] == "cloud"],
            timeout=40,
        )
        key = cloud_rows[0]["signal_key"]
        expect(tab.page.locator(f"[data-testid='signal-row'][data-signal-key='{key}']")).to_have_attribute(
            "data-source", "cloud", timeout=15_000
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log_path.read_text()

    expect(tab.badge).to_have_attribute("data-mode", "grace", timeout=10_000)
    expect(tab.badge).to_contain_text("Resuming in")
    tab.snapshot("grace")
    end_cloud_grace(fast_stack, uid)
    expect(tab.badge).to_have_attribute("data-mode", "browser", timeout=15_000)
    with fast_stack.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "select epoch, holder_kind, started_at, valid_until from public.lease_epochs "
            "where user_id = %s order by epoch",
            (uid,),
        )
        epochs = cur.fetchall()
    assert [e["holder_kind"] for e in epochs] == ["local", "cloud", "local"], epochs
    # One executor at a time, by the database clock: each window ends before the next begins.
    for a, b in itertools.pairwise(epochs):
        assert a["valid_until"] is not None and a["valid_until"] <= b["started_at"]
    with fast_stack.connect() as conn:
        machine = conn.execute(
            "select id, status from public.cloud_machines where user_id = %s", (uid,)
        ).fetchone()
    assert machine is not None and machine[1] == "stopped"
    wait_until(
        "a local signal under the new epoch",
        lambda: any(r["epoch"] == epochs[2]["epoch"] for r in signals_of(fast_stack, uid)),
    )
    by_epoch = {e["epoch"]: e for e in epochs}
    for row in signals_of(fast_stack, uid):
        window = by_epoch[row["epoch"]]
        expected_source = "cloud" if window["holder_kind"] == "cloud" else "local"
        assert row["source"] == expected_source
        assert (row["machine_id"] == machine[0]) if expected_source == "cloud" else row["machine_id"] is None
        # Every signal's candle closed inside its writer's window, or in the gap before it after the
        # previous epoch ended (then it is marked caught up).
        # (The first epoch's gap is the 60 candles before it: 60 s of 1s candles.)
        previous = by_epoch.get(row["epoch"] - 1)
        if row["caught_up"]:
            after = previous["valid_until"] if previous else window["started_at"] - timedelta(seconds=60)
            assert after <= row["candle_close"] < window["started_at"]
        else:
            assert window["started_at"] <= row["candle_close"]
        assert window["valid_until"] is None or row["candle_close"] <= window["valid_until"]
    watch.assert_clean()


def test_after_a_confirmed_takeover_the_browser_generates(
    fast_stack: LocalStack, fast_tabs: Browsers
) -> None:
    """The cloud machine has been in error for 3 minutes (backdated): the takeover is offered; once
    confirmed, this tab holds the lease and writes local signals under it."""
    email, uid = fast_user(fast_stack, machine=True)
    machine_in_error(fast_stack, uid, "out of memory", minutes=3)
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "error")
    tab.page.wait_for_timeout(3_000)
    assert signals_of(fast_stack, uid) == [] and watch.rpc_calls("write_signals") == []
    tab.page.get_by_test_id("takeover-button").click()
    tab.page.get_by_test_id("takeover-confirm").click()
    expect(tab.badge).to_have_attribute("data-mode", "browser", timeout=10_000)
    lease = lease_of(fast_stack, uid)
    assert lease is not None and lease.live and lease.holder_kind == "local"
    rows = wait_until("local signals after the takeover", lambda: signals_of(fast_stack, uid))
    assert all(r["source"] == "local" and r["machine_id"] is None and r["epoch"] == lease.epoch for r in rows)
    expect(tab.page.locator("[data-testid='signal-row'][data-source='local']").first).to_be_attached(
        timeout=15_000
    )
    watch.assert_clean()
