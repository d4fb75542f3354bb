"""The cloud machine's key from the real page: registered, made, shown once, used by a worker, revoked.

The user has no machine at first. In the page they register one and make a key; the key is shown once
and is gone from the page (and from its storage) once they say it is copied. A worker started with that
key alone (no token, no JWT secret: what runs on a hosted project) takes over, and the page says Cloud
Active and shows the key in use. Revoking it in the page stops the worker at its next request and ends
its lease; once the machine's heartbeat is older than the rules' 30 s (moved into the past here, not
waited for), the page generates again.
"""

from __future__ import annotations

import re

import pytest
from e2ekit import Browsers, backdate_machine, cloud_worker, fast_user, wait_until
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack

KEY = re.compile(r"sgm_[0-9a-f]{64}")


def test_a_key_made_in_the_page_runs_the_machine_until_it_is_revoked(
    fast_stack: LocalStack, fast_replay: ReplayServer, fast_tabs: Browsers
) -> None:
    email, uid = fast_user(fast_stack)
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    page = tab.page
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    panel = page.get_by_test_id("machine")
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("machine-line")).to_have_text("No cloud machine registered yet.")

    # A name Fly would refuse is refused here, before anything is sent.
    page.get_by_test_id("machine-name").fill("My Machine")
    page.get_by_test_id("machine-register-button").click()
    expect(page.get_by_test_id("machine-error")).to_contain_text("machine name is 3 to 63")
    name = f"sg-{uid[:8]}"
    page.get_by_test_id("machine-name").fill(name)
    page.get_by_test_id("machine-region").fill("fra")
    page.get_by_test_id("machine-register-button").click()
    expect(page.get_by_test_id("machine-line")).to_have_text(f"{name} · stopped")
    expect(page.get_by_test_id("machine-register")).to_be_hidden()

    page.get_by_test_id("machine-key-label").fill("fly fra")
    page.get_by_test_id("machine-key-make").click()
    shown = page.get_by_test_id("machine-new-key-value")
    expect(shown).to_have_value(KEY)
    key = shown.input_value()
    expect(page.get_by_test_id("machine-key")).to_contain_text(f"fly fra · {key[:10]}… · made")
    expect(page.get_by_test_id("machine-key")).to_contain_text("never used")
    page.get_by_test_id("machine-key-done").click()
    expect(page.get_by_test_id("machine-new-key")).to_be_hidden()
    # Once copied, the key is nowhere in the page or its storage.
    assert key not in page.content()
    stored = page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    assert key not in stored

    with cloud_worker(fast_stack, fast_replay.url, email, key=key) as (worker, log_path):
        expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=40_000)
        wait_until(
            "the key marked used",
            lambda: "last used" in (page.get_by_test_id("machine-key").text_content() or ""),
            timeout=45,
        )
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_test_id("machine-key-revoke").click()
        expect(page.get_by_test_id("machine-key")).to_contain_text("revoked")
        assert worker.wait(timeout=30) == 1
        log = log_path.read_text()
        assert "machine_key_refused: this key was revoked at" in log, log
    # Its lease ended with the key; the heartbeat's 30 s are moved into the past, not waited for.
    backdate_machine(fast_stack, uid, 40)
    expect(tab.badge).to_have_attribute("data-mode", "browser", timeout=20_000)
    watch.allow("machine_key_refused")
    watch.assert_clean()
