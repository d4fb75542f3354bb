"""No phantom waits: a device that closes its tab hands over at once, and badges name the real executor.

Two browser profiles are two devices of one user. The generating one's tab closes (``pagehide``):
it releases its lease with a request that outlives the page, so the other device claims on its next
poll (5 s), not after the lease's 30 s. Until then the other device says "Another device is
generating" only while that device holds a live lease. A second tab while the cloud machine generates
says "Cloud Active", not "Another tab is generating".
"""

from __future__ import annotations

import time

import pytest
from e2ekit import Browsers, cloud_worker, fast_user, lease_of
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack


def test_a_closed_device_hands_over_at_once(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    email, uid = fast_user(fast_stack)
    first_ctx, first_watch = fast_tabs.context()
    second_ctx, second_watch = fast_tabs.context()
    first = fast_tabs.tab(first_ctx, first_watch).open().sign_in(email)
    expect(first.badge).to_have_attribute("data-mode", "browser")
    second = fast_tabs.tab(second_ctx, second_watch).open().sign_in(email)
    expect(second.badge).to_have_attribute("data-mode", "standby")
    expect(second.badge).to_have_text("Another device is generating")
    lease = lease_of(fast_stack, uid)
    assert lease is not None and lease.live and lease.holder_id == first.holder_id()

    closed = time.monotonic()
    first.page.close(run_before_unload=True)
    expect(second.badge).to_have_attribute("data-mode", "browser", timeout=12_000)
    waited = time.monotonic() - closed
    print(f"\nfirst device closed to the second generating: {waited:.2f} s")
    assert waited < 12  # one poll and a claim, not the lease's 30 s
    lease = lease_of(fast_stack, uid)
    assert lease is not None and lease.live and lease.holder_id == second.holder_id()
    first_watch.assert_clean()
    second_watch.assert_clean()


def test_a_second_tab_while_the_cloud_generates_says_cloud_active(
    fast_stack: LocalStack, fast_replay: ReplayServer, fast_tabs: Browsers
) -> None:
    email, _ = fast_user(fast_stack, machine=True)
    with cloud_worker(fast_stack, fast_replay.url, email):
        ctx, watch = fast_tabs.context()
        first = fast_tabs.tab(ctx, watch).open().sign_in(email)
        expect(first.badge).to_have_attribute("data-mode", "cloud", timeout=40_000)
        second = fast_tabs.tab(ctx, watch)
        seen: list[str] = []

        def report(text: str) -> None:
            seen.append(text)

        second.page.expose_function("reportBadge", report)
        # Every text the badge ever shows in the second tab, from its first draw.
        second.page.add_init_script(
            """
            new MutationObserver(() => {
              const b = document.querySelector("[data-testid=mode-badge]");
              if (b && !b.hidden) window.reportBadge(b.textContent);
            }).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
            """
        )
        second.open().wait_ready()
        expect(second.badge).to_have_attribute("data-mode", "cloud")
        expect(second.badge).to_have_text("Cloud Active")
        assert not [text for text in seen if "Another tab" in text], seen
        watch.assert_clean()
