"""The cloud machine stops: the tab waits out the grace ("Resuming in N s"), then generates again.

The user's cloud machine is simulated with its machine token through the machine RPCs, in the order the
worker (``signalguard cloud``) uses them: heartbeat ``starting``, ``claim_cloud_lease``, heartbeat
``running`` and a renewal every few seconds; on SIGTERM heartbeat ``stopping``, ``release_cloud_lease``,
heartbeat ``stopped`` (which stamps ``stopped_at``). Instead of sleeping through the 30 s grace, the test
moves the machine's last signs of life (``last_health_check``, ``stopped_at``) into the past, as the other
tests backdate: the database judges the grace by its own clock.

One replay server for the module serves a synthetic series on the ``1s`` interval, and one stack of its
own points the page at it, so the user's fast trader (``RSI(2) < 50`` on 1s candles, no cooldown)
matches within seconds once the tab may generate. Every step is checked on the page and in the database.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest
from e2ekit import Browsers, backdate_machine, fast_user, lease_of, machine_rpc, signals_of, wait_until
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

#: The grace after the cloud's last sign of life (``private.cloud_grace()``).
GRACE_S = 30
#: The tab polls every 5 s; a change must show within one poll plus a round trip (generous: 2 cores
#: shared with other work).
WITHIN_ONE_POLL_MS = 8_000
#: The simulated machine renews more often than the worker's 10 s, so a slow sign-in cannot let its
#: heartbeat or lease (both 30 s) run out.
RENEW_S = 5.0
GRACE_BADGE = re.compile(r"^Resuming in (\d+) s$")
GRACE_TOAST = re.compile(r"Cloud machine stopped — resuming in \d+ s")


# -- helpers --------------------------------------------------------------------------------------


class SimulatedCloud:
    """The user's cloud machine, calling the machine RPCs in the order and rhythm of its worker."""

    def __init__(self, stack: LocalStack, email: str) -> None:
        self.stack = stack
        self.email = email
        self.epoch = 0
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def call(self, rpc: str, args: dict[str, Any] | None = None) -> Any:
        return machine_rpc(self.stack, self.email, rpc, args)

    def start(self) -> int:
        """Start, take the lease, report running; keep heartbeat and lease alive. The cloud's epoch."""
        self.call("machine_heartbeat", {"p_status": "starting"})
        claim = self.call("claim_cloud_lease")
        assert claim["granted"] is True, claim
        self.epoch = int(claim["lease"]["epoch"])
        self.call("machine_heartbeat", {"p_status": "running"})
        self._thread = threading.Thread(target=self._renew, name="simulated-cloud", daemon=True)
        self._thread.start()
        return self.epoch

    def _renew(self) -> None:
        while not self._halt.wait(RENEW_S):
            try:
                self.call("machine_heartbeat", {"p_status": "running"})
                claim = self.call("claim_cloud_lease")
                if claim.get("granted") is not True or claim["lease"]["epoch"] != self.epoch:
                    self.errors.append(f"renewal not granted under epoch {self.epoch}: {claim}")
            except Exception as exc:  # reported by stop(); the thread must not die silently
                self.errors.append(f"renewal failed: {exc!r}")

    def halt(self) -> None:
        """Stop the background renewals (and wait for one in flight)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "the simulated machine's renewal is stuck"

    def stop(self) -> None:
        """Stop as the worker does on SIGTERM: 'stopping', release the lease, 'stopped'."""
        self.halt()
        assert not self.errors, self.errors
        self.call("machine_heartbeat", {"p_status": "stopping"})
        released = self.call("release_cloud_lease")
        assert released["released"] is True, released
        self.call("machine_heartbeat", {"p_status": "stopped"})


def machine_row(stack: LocalStack, uid: str) -> dict[str, Any]:
    with stack.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "select id, status, stopped_at, last_health_check, "
            "extract(epoch from greatest(last_health_check, stopped_at) + make_interval(secs => %s) "
            "  - clock_timestamp())::float8 as grace_left "
            "from public.cloud_machines where user_id = %s",
            (GRACE_S, uid),
        )
        row = cur.fetchone()
    assert row is not None
    return dict(row)


def epoch_window(stack: LocalStack, uid: str, epoch: int) -> dict[str, Any]:
    with stack.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "select epoch, holder_kind, holder_id, machine_id, started_at, valid_until, ended_reason "
            "from public.lease_epochs where user_id = %s and epoch = %s",
            (uid, epoch),
        )
        row = cur.fetchone()
    assert row is not None, f"no lease_epochs row for epoch {epoch}"
    return dict(row)


def toast(tab: Any, text: str | re.Pattern[str]) -> Any:
    return tab.page.get_by_test_id("toast").filter(has_text=text)


def grace_seconds(tab: Any) -> int:
    """The N of the badge's "Resuming in N s" (the badge must be in grace)."""
    expect(tab.badge).to_have_attribute("data-mode", "grace")
    text = (tab.badge.text_content() or "").strip()
    m = GRACE_BADGE.match(text)
    assert m, f"grace badge reads {text!r}"
    return int(m.group(1))


# -- the test -------------------------------------------------------------------------------------


def test_cloud_stop_grace_countdown_then_browser_mode(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    stack = fast_stack
    email, uid = fast_user(stack, machine=True)
    cloud = SimulatedCloud(stack, email)
    try:
        cloud_epoch = cloud.start()
        ctx, watch = fast_tabs.context()
        # Writes to the signals table other than write_signals (status changes go as PATCH).
        table_writes: list[str] = []
        ctx.on(
            "request",
            lambda r: (
                table_writes.append(f"{r.method} {r.url}")
                if r.method != "GET" and "/rest/v1/signals" in r.url
                else None
            ),
        )
        tab = fast_tabs.tab(ctx, watch).open().sign_in(email)

        # The cloud is healthy and holds the lease: the tab monitors.
        expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=WITHIN_ONE_POLL_MS)
        expect(tab.badge).to_have_text("Cloud Active")
        expect(tab.toggles()).to_have_count(1)
        for toggle in tab.toggles().all():
            expect(toggle).to_be_disabled()
        lease = lease_of(stack, uid)
        assert lease is not None and lease.live and lease.holder_kind == "cloud", lease
        assert lease.epoch == cloud_epoch
        assert machine_row(stack, uid)["status"] == "running"
        # Candles close and the trader matches while the cloud executes: the tab must write none of them.
        expect(tab.page.get_by_test_id("market-status")).to_have_attribute("data-state", "live")
        tab.page.wait_for_timeout(4_000)
        expect(tab.badge).to_have_attribute("data-mode", "cloud")

        # The cloud stops the way its worker does.
        cloud.stop()
        stopped = time.monotonic()
        machine = machine_row(stack, uid)
        assert machine["status"] == "stopped" and machine["stopped_at"] is not None, machine
        cloud_window = epoch_window(stack, uid, cloud_epoch)
        assert cloud_window["holder_kind"] == "cloud" and cloud_window["ended_reason"] == "released"
        assert cloud_window["machine_id"] == machine["id"]
        lease = lease_of(stack, uid)
        assert lease is not None and not lease.live and lease.epoch == cloud_epoch, lease

        # Within one poll: the grace, counting down, with a toast.
        expect(tab.badge).to_have_attribute("data-mode", "grace", timeout=WITHIN_ONE_POLL_MS)
        print(f"\ncloud stopped to grace badge: {time.monotonic() - stopped:.2f} s")
        expect(toast(tab, GRACE_TOAST)).to_be_visible()
        first = grace_seconds(tab)
        db_left = machine_row(stack, uid)["grace_left"]
        assert 0 <= first <= GRACE_S, first
        # The countdown is the database's grace, not a clock of the tab's own.
        assert abs(first - db_left) <= 3, f"badge says {first} s left, the database {db_left:.1f} s"
        for toggle in tab.toggles().all():
            expect(toggle).to_be_disabled()
        tab.page.wait_for_timeout(2_200)
        second = grace_seconds(tab)
        assert 0 <= second < first, f"the countdown did not go down: {first} then {second}"
        # Nobody holds the lease during the grace, and the tab has sent nothing since it signed in.
        lease = lease_of(stack, uid)
        assert lease is not None and not lease.live and lease.epoch == cloud_epoch, lease
        assert watch.rpc_calls("write_signals") == [] and table_writes == []

        # Instead of waiting out the grace, move the machine's last signs of life 60 s back. Enough of
        # the real grace must be left that reaching Browser Mode in time proves the backdate was read.
        left = machine_row(stack, uid)["grace_left"]
        assert left > WITHIN_ONE_POLL_MS / 1000 + 2, f"only {left:.1f} s of grace left: too late to tell"
        backdate_machine(stack, uid, 60, "last_health_check", "stopped_at")
        assert machine_row(stack, uid)["grace_left"] < 0
        backdated = time.monotonic()
        expect(tab.badge).to_have_attribute("data-mode", "browser", timeout=WITHIN_ONE_POLL_MS)
        print(f"grace backdated to Browser Mode: {time.monotonic() - backdated:.2f} s")
        expect(tab.badge).to_have_text("Browser Mode")
        expect(toast(tab, "This browser is generating signals")).to_be_visible()
        for toggle in tab.toggles().all():
            expect(toggle).to_be_enabled()

        # The database: a local holder (this tab) with a new epoch, begun after the cloud's window.
        lease = lease_of(stack, uid)
        assert lease is not None and lease.live and lease.holder_kind == "local", lease
        assert lease.holder_id == tab.holder_id()
        assert lease.epoch > cloud_epoch, (lease.epoch, cloud_epoch)
        local_window = epoch_window(stack, uid, lease.epoch)
        assert local_window["holder_kind"] == "local" and local_window["machine_id"] is None
        assert local_window["started_at"] >= cloud_window["valid_until"]
        assert machine_row(stack, uid)["status"] == "stopped"

        # Local signals follow, under the new epoch and outside the cloud's window: those of the candles
        # that closed between the cloud's release and this tab's grant too (nobody executed then: the
        # tab evaluated them during the grace and signs them now, marked caught up).
        stored = wait_until(
            "local signals after the switch",
            lambda: (s := signals_of(stack, uid)) and [r for r in s if not r["caught_up"]] and s,
            timeout=30,
        )
        cloud_start: datetime = cloud_window["started_at"]
        cloud_end: datetime = cloud_window["valid_until"]
        for row in stored:
            assert row["source"] == "local" and row["machine_id"] is None, row
            assert row["epoch"] == lease.epoch, row
            assert not (cloud_start <= row["created_at"] < cloud_end), row
            assert row["candle_close"] >= cloud_end, row
            assert row["caught_up"] is (row["candle_close"] < local_window["started_at"]), row
        late = [r for r in stored if r["caught_up"]]
        assert late, "no signal of the gap between the cloud's release and the tab's grant"
        late_row = tab.page.locator(f"[data-testid='signal-row'][data-signal-key='{late[-1]['signal_key']}']")
        expect(late_row).to_have_attribute("data-caught-up", "1", timeout=10_000)
        expect(late_row).to_contain_text("caught up")
        with stack.connect() as conn:
            inside = conn.execute(
                "select count(*) from public.signals where user_id = %s and source = 'local' "
                "and created_at >= %s and created_at < %s",
                (uid, cloud_start, cloud_end),
            ).fetchone()
        assert inside == (0,)
        key = stored[-1]["signal_key"]
        expect(tab.page.locator(f"[data-testid='signal-row'][data-signal-key='{key}']")).to_have_attribute(
            "data-source", "local", timeout=10_000
        )
        watch.assert_clean()
    finally:
        cloud.halt()
