"""No phantom waits: a device that closes its tab hands over at once, and badges name the real executor.

Two browser profiles are two devices of one user. The generating one's tab closes (``pagehide``):
it releases its lease with a request that outlives the page, so the other device claims on its next
poll (5 s), not after the lease's 30 s. Until then the other device says "Another device is
generating" only while that device holds a live lease. A second tab while the cloud machine generates
says "Cloud Active", not "Another tab is generating".
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import pytest
from e2ekit import Browsers, cloud_worker, fast_user, lease_of
from playwright.sync_api import WebSocketRoute, expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack


def db_clock(stack: LocalStack) -> datetime:
    with stack.connect() as conn:
        found = conn.execute("select clock_timestamp()").fetchone()
    assert found is not None
    moment: datetime = found[0]
    return moment


def test_a_closed_device_hands_over_at_once(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    email, uid = fast_user(fast_stack)
    first_ctx, first_watch = fast_tabs.context()
    second_ctx, second_watch = fast_tabs.context()
    # The first device's market data can be held back, so that its evaluation lags as it closes.
    held_back = False

    def market_stream(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        server.on_message(lambda message: None if held_back else ws.send(message))

    first_ctx.route_web_socket(re.compile(".*"), market_stream)
    first = fast_tabs.tab(first_ctx, first_watch).open().sign_in(email)
    expect(first.badge).to_have_attribute("data-mode", "browser")
    second = fast_tabs.tab(second_ctx, second_watch).open().sign_in(email)
    expect(second.badge).to_have_attribute("data-mode", "standby")
    expect(second.badge).to_have_text("Another device is generating")
    lease = lease_of(fast_stack, uid)
    assert lease is not None and lease.live and lease.holder_id == first.holder_id()

    # The candles that close from now on never reach the first device before it closes.
    held_back = True
    first.page.wait_for_timeout(2_500)
    closed = time.monotonic()
    closed_db = db_clock(fast_stack)
    first.page.close(run_before_unload=True)
    expect(second.badge).to_have_attribute("data-mode", "browser", timeout=12_000)
    waited = time.monotonic() - closed
    print(f"\nfirst device closed to the second generating: {waited:.2f} s")
    assert waited < 12  # one poll and a claim, not the lease's 30 s
    lease = lease_of(fast_stack, uid)
    assert lease is not None and lease.live and lease.holder_id == second.holder_id()
    # The release said where the first device's evaluation stood: its window ends at the close of the
    # first candle it did not evaluate (a whole second, for 1s candles), seconds before the release,
    # and the second device's gap starts there.
    with fast_stack.connect() as conn:
        found = conn.execute(
            "select e.started_at, e.valid_until, e.ended_reason, l.epoch from public.lease_epochs e"
            " join public.execution_leases l using (user_id) where e.user_id = %s and e.epoch = 1",
            (uid,),
        ).fetchone()
    assert found is not None
    started, ended, reason, epoch = found
    assert reason == "released" and started < ended and ended.microsecond == 0, found
    assert ended < closed_db - timedelta(seconds=1), (ended, closed_db)
    assert epoch == 2
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
