"""Sessions and tabs: reload, sign-out, one generating tab per browser, takeover after a cloud error."""

from __future__ import annotations

import time

import pytest
from e2ekit import Browsers, fresh_user, lease_of, machine_in_error
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack


def test_session_survives_reload_and_sign_out_releases_the_lease(
    stack: LocalStack, browsers: Browsers
) -> None:
    email, uid = fresh_user(stack)
    ctx, watch = browsers.context()
    tab = browsers.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    holder = tab.holder_id()

    # Reload: the stored session signs the tab straight in, with the same holder id.
    tab.page.reload()
    tab.wait_ready()
    print(f"\nreload to data-ready (stored session): {tab.ready_ms()} ms")
    expect(tab.page.get_by_test_id("sign-in")).to_be_hidden()
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    assert tab.holder_id() == holder
    lease = lease_of(stack, uid)
    assert lease is not None and lease.live and lease.holder_id == holder

    # Sign out: the lease is released at once, and the session is gone after a reload too.
    tab.page.get_by_test_id("sign-out").click()
    expect(tab.page.get_by_test_id("sign-in")).to_be_visible()
    expect(tab.page.locator("body")).not_to_have_attribute("data-ready", "1")
    deadline = time.monotonic() + 5
    while (lease := lease_of(stack, uid)) is not None and lease.live and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lease is not None and not lease.live
    tab.page.reload()
    expect(tab.page.get_by_test_id("sign-in")).to_be_visible(timeout=30_000)
    watch.assert_clean()


def test_one_generating_tab_and_takeover_when_it_closes(stack: LocalStack, browsers: Browsers) -> None:
    email, uid = fresh_user(stack)
    ctx, watch = browsers.context()
    first = browsers.tab(ctx, watch).open().sign_in(email)
    expect(first.badge).to_have_attribute("data-mode", "browser")

    second = browsers.tab(ctx, watch).open().wait_ready()
    expect(second.badge).to_have_attribute("data-mode", "standby")
    expect(second.badge).to_have_text("Another tab is generating")
    second.snapshot("standby")
    for toggle in second.toggles().all():
        expect(toggle).to_be_disabled()
    assert second.holder_id() != first.holder_id()
    lease = lease_of(stack, uid)
    assert lease is not None and lease.live and lease.holder_id == first.holder_id()
    # The waiting tab polls, but never claims while the other tab has the tab lock.
    second.page.wait_for_timeout(5_500)
    by_second = [a for a in watch.rpc_calls("claim_local_lease") if a["p_holder_id"] == second.holder_id()]
    assert by_second == []
    assert [a for a in watch.rpc_calls("execution_status") if a["p_holder_id"] == second.holder_id()]

    # Closing the generating tab releases its lease and its tab lock: the other tab takes over.
    closed = time.monotonic()
    first.page.close(run_before_unload=True)
    expect(second.badge).to_have_attribute("data-mode", "browser", timeout=10_000)
    print(f"\nfirst tab closed to second tab generating: {time.monotonic() - closed:.2f} s")
    lease = lease_of(stack, uid)
    assert lease is not None and lease.live and lease.holder_id == second.holder_id()
    watch.assert_clean()


def test_takeover_after_two_minutes_of_cloud_error(stack: LocalStack, browsers: Browsers) -> None:
    email, uid = fresh_user(stack, machine=True)
    machine_in_error(stack, uid, "disk full", minutes=3)
    ctx, watch = browsers.context()
    tab = browsers.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "error")
    expect(tab.page.get_by_test_id("guard-detail")).to_contain_text("disk full")
    button = tab.page.get_by_test_id("takeover-button")
    expect(button).to_be_visible()
    tab.snapshot("error")
    lease = lease_of(stack, uid)
    assert lease is None or not lease.live

    # Cancelling changes nothing; confirming takes over and clears the machine's error.
    button.click()
    tab.page.get_by_test_id("takeover-cancel").click()
    tab.page.wait_for_timeout(500)
    expect(tab.badge).to_have_attribute("data-mode", "error")
    button.click()
    tab.page.get_by_test_id("takeover-confirm").click()
    expect(tab.badge).to_have_attribute("data-mode", "browser", timeout=5_000)
    expect(button).to_be_hidden()
    lease = lease_of(stack, uid)
    assert lease is not None and lease.live and lease.holder_id == tab.holder_id()
    with stack.connect() as conn:
        row = conn.execute(
            "select status, error_message from public.cloud_machines where user_id = %s", (uid,)
        ).fetchone()
    assert row == ("stopped", None)
    watch.assert_clean()
