"""Paper trades end to end: the page opens, shows and closes them; a handoff mid-position moves their
management to the new executor, which closes each exactly once; the database records who did what.

The trader fires on about half of the 1 s candles and holds each trade for 12 candles (expiry only), so a
trade's exit is fully determined: it closes at ``entry_time + 12 s`` whoever manages it.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from typing import Any

import psycopg
from e2ekit import FAST_TRADER, Browsers, cloud_worker, end_cloud_grace, fresh_user, wait_until
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

HOLD = 12
TRADING = {**FAST_TRADER, "trade": {"side": "long", "notional": 100, "max_hold_candles": HOLD}}


def trades_of(stack: LocalStack, uid: str) -> list[dict[str, Any]]:
    """Every stored trade of the user with its opener's and closer's epochs' holders."""
    with stack.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "select t.signal_key, t.status, t.source, t.close_source, t.epoch, t.close_epoch, t.exit_reason,"
            " t.entry_time, t.exit_time, t.entry_price, t.exit_price, t.profit_loss, t.size, t.side,"
            " s.status as signal_status, s.source as signal_source,"
            " (select holder_kind from public.lease_epochs e where e.user_id = t.user_id"
            "   and e.epoch = t.close_epoch) as close_holder,"
            " (select holder_kind from public.lease_epochs e where e.user_id = t.user_id"
            "   and e.epoch = t.epoch) as open_holder"
            " from public.trades t join public.signals s on s.id = t.signal_id"
            " where t.user_id = %s order by t.entry_time",
            (uid,),
        )
        return list(cur.fetchall())


def check_trade_rows(rows: list[dict[str, Any]]) -> None:
    """What holds for every stored trade, whoever opened or closed it."""
    assert len({r["signal_key"] for r in rows}) == len(rows)  # one trade per signal
    for r in rows:
        assert r["open_holder"] == r["source"], r  # opened under its writer's own lease
        if r["status"] == "closed":
            assert r["close_holder"] == r["close_source"], r
            if r["exit_reason"] == "expiry":
                # Decided by the rule, not by who held the lease: one close, at the expiry.
                assert r["exit_time"] - r["entry_time"] == timedelta(seconds=HOLD), r
            expected = r["size"] * (r["exit_price"] - r["entry_price"])
            assert abs(r["profit_loss"] - expected) < 1e-9


def test_the_page_opens_shows_and_closes_paper_trades(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    # BTCUSDT trades are held for 10 minutes (to be closed by hand), ETHUSDT ones for 12 s (expiry).
    held = {**TRADING, "symbols": ["BTCUSDT"], "trade": {**TRADING["trade"], "max_hold_candles": 600}}
    email, uid = fresh_user(fast_stack, definition=held, name="Fast RSI, held")
    with fast_stack.connect() as conn:
        conn.execute(
            "insert into public.traders (user_id, name, definition) values (%s, %s, %s)",
            (uid, "Fast RSI, expiring", psycopg.types.json.Jsonb({**TRADING, "symbols": ["ETHUSDT"]})),
        )
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    page = tab.page
    page.on("dialog", lambda d: d.accept())
    rows = page.locator("[data-testid='trade-row'][data-status='open'][data-source='local']")
    open_row = rows.filter(has_text="BTCUSDT").first
    expect(open_row).to_be_visible(timeout=20_000)
    key = str(open_row.get_attribute("data-signal-key"))
    # By its key: the list is re-drawn as trades open and close, so ".first" may be another row
    # by the time of the click.
    trade_row = page.locator(f"[data-testid='trade-row'][data-signal-key='{key}']")
    trade_row.get_by_test_id("close-trade").click()
    manual = wait_until(
        "the manual close stored",
        lambda: next(
            (r for r in trades_of(fast_stack, uid) if r["signal_key"] == key and r["status"] == "closed"),
            None,
        ),
    )
    assert (manual["exit_reason"], manual["close_source"]) == ("manual", "local")
    expect(trade_row).to_have_attribute("data-status", "closed", timeout=15_000)
    wait_until(
        "a trade closed at its expiry",
        lambda: any(r["exit_reason"] == "expiry" for r in trades_of(fast_stack, uid)),
        timeout=40,
    )
    expect(page.locator("[data-testid='profit-row'][data-source='local']")).to_be_visible(timeout=15_000)
    rows = trades_of(fast_stack, uid)
    check_trade_rows(rows)
    assert {r["source"] for r in rows} == {"local"}
    watch.assert_clean()


def test_a_handoff_mid_position_moves_each_trade_to_the_new_executor_which_closes_it_once(
    fast_stack: LocalStack, fast_replay: ReplayServer, fast_tabs: Browsers
) -> None:
    """Browser Mode opens trades; the real worker starts, takes the lease and closes the browser's open
    trades at their expiry; the worker stops, and after the grace (backdated) the page takes back the
    positions the cloud opened and closes them. No trade is closed twice or left without a manager."""
    email, uid = fresh_user(fast_stack, machine=True, definition=TRADING, name="Fast RSI, traded")
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    wait_until("local open trades", lambda: any(r["status"] == "open" for r in trades_of(fast_stack, uid)))

    with cloud_worker(fast_stack, fast_replay.url, email) as (worker, log_path):
        expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=30_000)
        # The page is read-only: no Close button while the cloud manages the trades.
        expect(tab.page.get_by_test_id("close-trade")).to_have_count(0, timeout=15_000)
        handed = wait_until(
            "a browser-opened trade closed by the cloud",
            lambda: [
                r
                for r in trades_of(fast_stack, uid)
                if r["source"] == "local" and r["close_source"] == "cloud"
            ],
            timeout=40,
        )
        wait_until(
            "cloud-opened trades still open",
            lambda: any(r["source"] == "cloud" and r["status"] == "open" for r in trades_of(fast_stack, uid)),
            timeout=20,
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log_path.read_text()
    stopped_at = time.monotonic()
    end_cloud_grace(fast_stack, uid)
    expect(tab.badge).to_have_attribute("data-mode", "browser", timeout=15_000)
    taken_back = wait_until(
        "a cloud-opened trade closed by the browser",
        lambda: [
            r for r in trades_of(fast_stack, uid) if r["source"] == "cloud" and r["close_source"] == "local"
        ],
        timeout=30,
    )
    print(f"\nhandoff mid-position, as stored ({time.monotonic() - stopped_at:.1f} s after the stop):")
    for r in (handed[0], taken_back[0]):
        print(
            f"  {r['signal_key'].split(':', 2)[2]}: opened by {r['source']} (epoch {r['epoch']}) at "
            f"{r['entry_time']:%H:%M:%S} @ {r['entry_price']}, closed by {r['close_source']} (epoch "
            f"{r['close_epoch']}) at {r['exit_time']:%H:%M:%S} @ {r['exit_price']} ({r['exit_reason']}), "
            f"P&L {r['profit_loss']:+.4f}"
        )
    rows = trades_of(fast_stack, uid)
    check_trade_rows(rows)
    # Nothing left open without a manager: every open trade is younger than its holding time (+ slack).
    with fast_stack.connect() as conn:
        stale = conn.execute(
            "select count(*) from public.trades where user_id = %s and status = 'open' "
            "and entry_time < clock_timestamp() - make_interval(secs => %s)",
            (uid, HOLD + 10),
        ).fetchone()
    assert stale is not None and stale[0] == 0, rows
    watch.assert_clean()
