"""The page drives the execution guard against the real database: Browser Mode, Cloud Active."""

from __future__ import annotations

import time

import httpx
import pytest
from e2ekit import Browsers, lease_of
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack

CAROL = "carol@signalguard.test"
ALICE = "alice@signalguard.test"

pytestmark = pytest.mark.stack


def test_carol_without_cloud_machine_generates_in_browser(stack: LocalStack, browsers: Browsers) -> None:
    ctx, watch = browsers.context()
    tab = browsers.tab(ctx, watch).open()
    t0 = time.monotonic()
    tab.page.get_by_test_id("sign-in").wait_for(state="visible")
    t1 = time.monotonic()
    tab.sign_in(CAROL)
    t2 = time.monotonic()
    print(
        f"\nnavigation to sign-in form: {t1 - t0:.2f} s; sign-in to data-ready: {t2 - t1:.2f} s; "
        f"navigation to data-ready: {tab.ready_ms()} ms"
    )

    expect(tab.badge).to_have_attribute("data-mode", "browser")
    expect(tab.badge).to_have_text("Browser Mode")
    expect(tab.page.get_by_test_id("trader-row")).to_have_count(2)
    expect(tab.page.get_by_test_id("traders")).to_contain_text("Oversold bounce")
    for toggle in tab.toggles().all():
        expect(toggle).to_be_enabled()

    lease = lease_of(stack, stack.user_id(CAROL))
    assert lease is not None and lease.live
    assert lease.holder_kind == "local" and lease.holder_id == tab.holder_id()
    # The poll's timers run in a worker, so a hidden tab keeps renewing on time.
    assert any(u.endswith("/web/timer-worker.js") for u in watch.requests)

    # While generating, a trader can be switched off (and on again) here; the database follows.
    row = tab.page.get_by_test_id("trader-row").filter(has_text="Volume spike")
    for enabled in (False, True):
        row.get_by_test_id("trader-toggle").click()
        expect(row.get_by_test_id("trader-toggle")).to_be_checked(checked=enabled)
        expect(row.get_by_test_id("trader-toggle")).to_be_enabled()
        with stack.connect() as conn:
            stored = conn.execute(
                "select enabled from public.traders where user_id = %s and name = 'Volume spike'",
                (stack.user_id(CAROL),),
            ).fetchone()
        assert stored == (enabled,)
    watch.assert_clean()


def test_alice_browser_steps_aside_when_cloud_becomes_healthy(stack: LocalStack, browsers: Browsers) -> None:
    ctx, watch = browsers.context()
    tab = browsers.tab(ctx, watch).open().sign_in(ALICE)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    for toggle in tab.toggles().all():
        expect(toggle).to_be_enabled()
    alice = stack.user_id(ALICE)
    before = lease_of(stack, alice)
    assert before is not None and before.live and before.holder_kind == "local"

    # The cloud machine starts and reports itself healthy, as its worker does.
    r = httpx.post(
        f"{stack.url}/rest/v1/rpc/machine_heartbeat",
        json={"p_status": "running"},
        headers={"apikey": stack.config.anon_key(), "Authorization": f"Bearer {stack.machine_token(ALICE)}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    beat = time.monotonic()

    # The next renewal (at most 5 s away) is refused and gives the lease up.
    expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=8_000)
    print(f"\nheartbeat to Cloud Active: {time.monotonic() - beat:.2f} s")
    expect(tab.badge).to_have_text("Cloud Active")
    expect(tab.page.get_by_test_id("toast").filter(has_text="switching to monitoring mode")).to_be_visible()
    for toggle in tab.toggles().all():
        expect(toggle).to_be_disabled()

    after = lease_of(stack, alice)
    assert after is not None and not (after.holder_kind == "local" and after.live)
    with stack.connect() as conn:
        row = conn.execute("select status from public.cloud_machines where user_id = %s", (alice,)).fetchone()
    assert row == ("running",)
    # Still monitoring: the poll goes on, and never claims again while the cloud is healthy.
    claims = len(watch.rpc_calls("claim_local_lease"))
    tab.page.wait_for_timeout(5_500)
    assert len(watch.rpc_calls("claim_local_lease")) == claims
    assert lease_of(stack, alice) == after
    watch.assert_clean()
