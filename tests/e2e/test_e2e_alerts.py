"""Alerts on the real page: a notification and a chime once per signal across tabs, a title count.

Against the fast stack (1s candles, a trader that fires every few seconds), with the notification
permission Playwright grants. The page records what it showed (``signalguardAlerts.shown``, the
notifications it made, and ``chimes``), and each notification's tag names its signal: the tests read
both and compare them with the database.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from e2ekit import Browsers, cloud_worker, fast_user, signals_of, wait_until
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack

GRANTED = {"permissions": ["notifications"]}


def shown(tab: Any) -> list[dict[str, str]]:
    """The notifications the tab made, in order."""
    return list(tab.page.evaluate("() => signalguardAlerts.shown.map(n => ({...n}))"))


def chimes(tab: Any) -> int:
    return int(tab.page.evaluate("() => signalguardAlerts.chimes"))


def keys(notes: list[dict[str, str]]) -> list[str]:
    """The signal keys the notifications are tagged with."""
    return [n["tag"].removeprefix("signalguard:") for n in notes]


def switch(tab: Any, channel: str) -> Any:
    return tab.page.get_by_test_id(f"trader-alert-{channel}").first


def test_a_notification_and_a_chime_once_per_signal_across_tabs(
    fast_stack: LocalStack, fast_tabs: Browsers
) -> None:
    email, uid = fast_user(fast_stack)
    ctx, watch = fast_tabs.context(**GRANTED)
    first = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(first.badge).to_have_attribute("data-mode", "browser")
    # The count is on by default; notifications and sound are chosen per trader, here from a click.
    expect(switch(first, "count")).to_be_checked()
    expect(switch(first, "notify")).not_to_be_checked()
    switch(first, "notify").check()
    switch(first, "sound").check()
    expect(switch(first, "notify")).to_be_checked()
    expect(first.page.get_by_test_id("alerts-note")).to_be_hidden()

    notes = wait_until("a notification", lambda: shown(first) or None, timeout=30)
    assert chimes(first) >= 1
    stored = {r["signal_key"]: r for r in signals_of(fast_stack, uid)}
    assert set(keys(notes)) <= set(stored), "a notification for a signal the database does not hold"
    assert notes[0]["title"].endswith(("New signal", "new signals"))
    assert "Fast RSI" in notes[0]["body"] or "new signals" in notes[0]["title"]

    # A second tab of the browser reads the same signals, and alerts none while the first one alerts.
    second = fast_tabs.tab(ctx, watch).open().wait_ready()
    expect(switch(second, "notify")).to_be_checked()  # the choice is the browser's, not the tab's
    time.sleep(8)
    assert shown(second) == [] and chimes(second) == 0
    before_close = keys(shown(first))
    first.page.close()

    # The second tab takes over the tab lock, and with it the alerts: new signals only, never twice.
    later = wait_until("a notification from the second tab", lambda: shown(second) or None, timeout=30)
    both = before_close + keys(later)
    assert not [k for k, n in Counter(both).items() if n > 1], f"alerted twice: {both}"
    watch.assert_clean()


def ledger(tab: Any) -> list[str]:
    """The keys the browser's tabs have alerted (or passed over as unwanted): the shared ledger."""
    return list(tab.page.evaluate("() => JSON.parse(localStorage.getItem('signalguard:alerted') || '[]')"))


def test_signals_loaded_as_history_never_alert_and_the_title_counts_unseen_ones(
    fast_stack: LocalStack, fast_tabs: Browsers
) -> None:
    email, uid = fast_user(fast_stack)
    ctx, watch = fast_tabs.context(**GRANTED)
    earlier = fast_tabs.tab(ctx, watch).open().sign_in(email)
    wait_until("stored signals", lambda: len(signals_of(fast_stack, uid)) >= 3, timeout=30)
    earlier.page.close()

    # Another browser opens the page: what is stored is history to it, and is never alerted.
    opened_at = datetime.now().astimezone()
    ctx, watch = fast_tabs.context(**GRANTED)
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    switch(tab, "notify").check()
    notes = wait_until("a notification in the other browser", lambda: shown(tab) or None, timeout=30)
    stored = {r["signal_key"]: r for r in signals_of(fast_stack, uid)}
    claimed = ledger(tab)
    assert set(keys(notes)) <= set(claimed)
    old = [k for k in claimed if stored[k]["created_at"] < opened_at]
    assert not old, f"signals stored before the page opened were alerted: {old}"

    # Nobody looks at the tab: the title counts the signals that arrive, and looking clears it.
    base = tab.page.title()
    tab.page.evaluate("() => { document.hasFocus = () => false; }")
    expect(tab.page).to_have_title(re.compile(r"^\(\d+\) signalguard$"), timeout=30_000)
    tab.page.evaluate("() => { document.hasFocus = () => true; window.dispatchEvent(new Event('focus')); }")
    expect(tab.page).to_have_title(base)
    watch.assert_clean()


def test_the_clouds_signals_alert_in_a_read_only_tab(
    fast_stack: LocalStack, fast_tabs: Browsers, fast_replay: ReplayServer
) -> None:
    email, uid = fast_user(fast_stack, machine=True)
    ctx, watch = fast_tabs.context(**GRANTED)
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    switch(tab, "notify").check()
    with cloud_worker(fast_stack, fast_replay.url, email):
        expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=60_000)

        # Alerts from the tab's own epoch may come first; wait for one about a cloud signal.
        def cloud_note() -> list[str] | None:
            stored = {r["signal_key"]: r for r in signals_of(fast_stack, uid)}
            found = [k for k in keys(shown(tab)) if k in stored and stored[k]["source"] == "cloud"]
            return found or None

        wait_until("a notification of a cloud signal", cloud_note, timeout=60)
    watch.assert_clean()
