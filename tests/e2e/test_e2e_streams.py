"""A stream that fails, fails alone: one trader the market data does not serve among good ones.

The module's replay serves BTCUSDT and ETHUSDT on ``1s`` (conftest's ``fast_replay``); the user has
the fast trader on those and a second trader on ``NOSUCHUSDT``, which the replay refuses as Binance
does (HTTP 400, "Invalid symbol."). The good trader keeps generating, in the tab and on the cloud
machine; the bad one is named on its own row with a plain reason, the database holds the executor's
view of it, and switching it off clears it.
"""

from __future__ import annotations

import signal
from typing import Any

import psycopg
import pytest
from e2ekit import FAST_TRADER, Browsers, cloud_worker, fresh_user, signals_of, wait_until
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack

BAD_TRADER = {**FAST_TRADER, "symbols": ["NOSUCHUSDT"]}
#: The browser logs the refused REST request itself (Chromium's "Failed to load resource").
REFUSED_REQUEST = r"Failed to load resource: the server responded with a status of 400"


def user_with_a_bad_trader(stack: LocalStack, *, machine: bool = False) -> tuple[str, str, str, str]:
    """(email, user id, good trader id, bad trader id)."""
    email, uid = fresh_user(stack, machine=machine, definition=FAST_TRADER, name="Fast RSI")
    with stack.connect() as conn:
        bad = conn.execute(
            "insert into public.traders (user_id, name, definition) values (%s, 'Unknown symbol', %s) "
            "returning id",
            (uid, psycopg.types.json.Jsonb(BAD_TRADER)),
        ).fetchone()
        good = conn.execute(
            "select id from public.traders where user_id = %s and name = 'Fast RSI'", (uid,)
        ).fetchone()
    assert bad is not None and good is not None
    return email, uid, str(good[0]), str(bad[0])


def problems_of(stack: LocalStack, uid: str) -> dict[str, dict[str, Any]]:
    with stack.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "select trader_id, problem, source from public.trader_problems where user_id = %s", (uid,)
        )
        return {str(r["trader_id"]): r for r in cur.fetchall()}


def trader_ids_of_signals(stack: LocalStack, uid: str) -> set[str]:
    with stack.connect() as conn:
        rows = conn.execute("select distinct trader_id from public.signals where user_id = %s", (uid,))
        return {str(r[0]) for r in rows.fetchall()}


def test_one_bad_trader_fails_alone_in_the_tab(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    email, uid, good, bad = user_with_a_bad_trader(fast_stack)
    ctx, watch = fast_tabs.context()
    watch.allow(REFUSED_REQUEST)
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")

    # The good trader generates; the market data is live, not in error.
    wait_until("signals of the good trader", lambda: len(signals_of(fast_stack, uid)) >= 3)
    assert trader_ids_of_signals(fast_stack, uid) == {good}
    status = tab.page.get_by_test_id("market-status")
    expect(status).to_have_attribute("data-state", "live")
    expect(status).to_contain_text("NOSUCHUSDT 1s")

    # The bad one says why, on its own row, in one plain line (no JSON).
    bad_row = tab.page.locator(f"[data-testid='trader-row'][data-trader-id='{bad}']")
    problem = bad_row.get_by_test_id("trader-problem")
    expect(problem).to_contain_text("NOSUCHUSDT 1s: the market data does not serve this stream")
    expect(problem).to_contain_text("Invalid symbol.")
    assert "{" not in problem.inner_text()
    good_row = tab.page.locator(f"[data-testid='trader-row'][data-trader-id='{good}']")
    expect(good_row.get_by_test_id("trader-problem")).to_have_count(0)

    # The database holds the executor's view, for every other tab and device.
    stored = wait_until("the problem stored", lambda: problems_of(fast_stack, uid) or None, timeout=15)
    assert set(stored) == {bad}
    assert stored[bad]["source"] == "local"
    assert "NOSUCHUSDT" in stored[bad]["problem"]

    # Switched off, the trader has no problem any more, here and in the database.
    bad_row.get_by_test_id("trader-toggle").uncheck()
    expect(problem).to_have_count(0, timeout=10_000)
    wait_until("the problem cleared", lambda: not problems_of(fast_stack, uid), timeout=15)
    expect(status).not_to_contain_text("NOSUCHUSDT", timeout=10_000)
    # And the good trader went on all along.
    before = len(signals_of(fast_stack, uid))
    wait_until("more signals", lambda: len(signals_of(fast_stack, uid)) > before)
    watch.assert_clean()


def test_one_bad_trader_fails_alone_on_the_cloud_machine(
    fast_stack: LocalStack, fast_replay: ReplayServer, fast_tabs: Browsers
) -> None:
    email, uid, good, bad = user_with_a_bad_trader(fast_stack, machine=True)
    with cloud_worker(fast_stack, fast_replay.url, email) as (worker, log_path):
        stored = wait_until(
            "the cloud's problem stored", lambda: problems_of(fast_stack, uid) or None, timeout=40
        )
        assert set(stored) == {bad}
        assert stored[bad]["source"] == "cloud"
        assert "NOSUCHUSDT 1s: the market data does not serve this stream" in stored[bad]["problem"]
        wait_until(
            "cloud signals of the good trader",
            lambda: [r for r in signals_of(fast_stack, uid) if r["source"] == "cloud"] or None,
            timeout=40,
        )
        assert trader_ids_of_signals(fast_stack, uid) == {good}

        # A page opened meanwhile is read-only and shows the problem on the bad trader's row.
        ctx, watch = fast_tabs.context()
        watch.allow(REFUSED_REQUEST)
        tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
        expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=30_000)
        row = tab.page.locator(f"[data-testid='trader-row'][data-trader-id='{bad}']")
        expect(row.get_by_test_id("trader-problem")).to_contain_text("NOSUCHUSDT", timeout=15_000)

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log_path.read_text()
    log = log_path.read_text()
    assert "NOSUCHUSDT 1s: the market data does not serve this stream" in log
    watch.assert_clean()
