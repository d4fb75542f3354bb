"""The candlestick chart with signal markers by source, and the "by source" summary, on the real page.

A fresh user with a cloud machine and one trader (BTCUSDT and ETHUSDT on 1m); signals of both sources
are put in the database on candles the replay server serves, and the page must chart them: candles from
the market data, markers counted by source, the summary's rows by source and by machine.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from e2ekit import Browsers, fresh_user
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack

#: The chart and the summary come after readiness; on a busy machine that can take a while.
EXTRA_MS = 20_000


def put_signals(stack: LocalStack, user_id: str, rows: list[tuple[str, int, str]]) -> None:
    """(symbol, open ms, source) rows, written as the table's owner (the write guard is tested elsewhere)."""
    with stack.connect() as conn:
        found = conn.execute(
            "select t.id, m.id, m.machine_id from public.traders t "
            "join public.cloud_machines m on m.user_id = t.user_id where t.user_id = %s",
            (user_id,),
        ).fetchone()
        assert found is not None
        trader_id, machine_uuid, _ = found
        for symbol, open_ms, source in rows:
            conn.execute(
                "insert into public.signals (trader_id, user_id, symbol, interval, candle_open_time, price, "
                "matched_conditions, source, machine_id, epoch) values (%s, %s, %s, '1m', %s, 100, "
                "array['RSI(14) < 30'], %s, %s, 1)",
                (
                    trader_id,
                    user_id,
                    symbol,
                    datetime.fromtimestamp(open_ms / 1000, UTC),
                    source,
                    machine_uuid if source == "cloud" else None,
                ),
            )


def cloud_ran_until_now(stack: LocalStack, user_id: str) -> None:
    """The machine held epoch 1 for the last hour and released it now.

    So the page's own epoch (2) has no gap to sign: every signal it could add to the chart is one of a
    candle that closes while the test runs, and the counts below are the ones put here.
    """
    with stack.connect() as conn:
        conn.execute(
            "insert into public.lease_epochs (user_id, epoch, holder_kind, holder_id, machine_id, "
            "started_at, valid_until, ended_reason) select m.user_id, 1, 'cloud', m.id::text, m.id, "
            "now() - interval '1 hour', now(), 'released' from public.cloud_machines m where m.user_id = %s",
            (user_id,),
        )
        conn.execute(
            "insert into public.execution_leases (user_id, epoch) values (%s, 1) "
            "on conflict (user_id) do update set epoch = 1",
            (user_id,),
        )


def open_times(market: ReplayServer, symbol: str, n: int) -> list[int]:
    rows: list[list[Any]] = httpx.get(
        f"{market.url}/api/v3/klines", params={"symbol": symbol, "interval": "1m", "limit": n}, timeout=10
    ).json()
    return [int(r[0]) for r in rows]


def test_chart_marks_signals_by_source_and_the_summary_counts_them(
    browsers: Browsers, stack: LocalStack, demo_market: ReplayServer
) -> None:
    email, uid = fresh_user(stack, machine=True)
    times = open_times(demo_market, "BTCUSDT", 20)
    put_signals(
        stack,
        uid,
        [
            ("BTCUSDT", times[2], "local"),
            ("BTCUSDT", times[5], "cloud"),
            ("BTCUSDT", times[9], "cloud"),
            ("ETHUSDT", times[5], "local"),
        ],
    )
    cloud_ran_until_now(stack, uid)
    ctx, watch = browsers.context()
    tab = browsers.tab(ctx, watch).open().sign_in(email)
    page = tab.page

    chart = page.get_by_test_id("chart")
    select = page.get_by_test_id("chart-symbol")
    # Drawn after the page is ready (market data and the chart library are not on the start path).
    expect(select.locator("option")).to_have_text(["BTCUSDT · 1m", "ETHUSDT · 1m"], timeout=EXTRA_MS)
    expect(chart).to_have_attribute("data-symbol", "BTCUSDT")
    expect(chart).to_have_attribute("data-markers-local", "1")
    expect(chart).to_have_attribute("data-markers-cloud", "2")
    assert int(chart.get_attribute("data-candles") or 0) >= 20
    # The library drew into the element (its canvases), and nothing says it could not.
    expect(chart.locator("canvas").first).to_be_attached(timeout=EXTRA_MS)
    expect(page.get_by_test_id("chart-note")).to_be_hidden()

    # Another symbol: its own markers.
    select.select_option("ETHUSDT|1m")
    expect(chart).to_have_attribute("data-symbol", "ETHUSDT")
    expect(chart).to_have_attribute("data-markers-local", "1")
    expect(chart).to_have_attribute("data-markers-cloud", "0")

    # The summary: the seed's queries as the database answers them for this user.
    rows = page.get_by_test_id("summary-row")
    expect(rows).to_have_count(3, timeout=EXTRA_MS)
    for source in ("cloud", "local"):
        row = page.locator(f"[data-testid=summary-row][data-source={source}]")
        expect(row).to_have_attribute("data-signals", "2")
    machine = page.locator(f"[data-testid=summary-row][data-machine='vyx-{uid[:8]}']")
    expect(machine).to_have_attribute("data-signals", "2")
    expect(machine).to_contain_text("ams")
    expect(page.get_by_test_id("summary-note")).to_have_text("Last 7 days, by the database clock.")
    with stack.connect() as conn:
        counts = dict(
            conn.execute(
                "select source, count(*) from public.signals where user_id = %s group by source", (uid,)
            ).fetchall()
        )
    assert counts == {"local": 2, "cloud": 2}


def test_the_chart_opens_on_the_newest_signal_and_follows_clicks_and_rows_read_in_the_users_zone(
    browsers: Browsers, stack: LocalStack, demo_market: ReplayServer
) -> None:
    email, uid = fresh_user(stack, machine=True)
    times = open_times(demo_market, "BTCUSDT", 20)
    put_signals(stack, uid, [("BTCUSDT", times[3], "local"), ("ETHUSDT", times[8], "cloud")])
    with stack.connect() as conn:
        conn.execute(
            "update public.signals set caught_up = true where user_id = %s and symbol = 'ETHUSDT'", (uid,)
        )
    cloud_ran_until_now(stack, uid)
    ctx, watch = browsers.context(timezone_id="Asia/Tokyo")
    tab = browsers.tab(ctx, watch).open().sign_in(email)
    page = tab.page
    chart = page.get_by_test_id("chart")

    # The newest signal is ETHUSDT's (a caught-up one, told apart from the live markers).
    expect(chart).to_have_attribute("data-symbol", "ETHUSDT", timeout=EXTRA_MS)
    expect(chart).to_have_attribute("data-markers-cloud", "1")
    expect(chart).to_have_attribute("data-markers-caught-up", "1")

    # A row names its trader and conditions, its time in the browser's zone (Tokyo: UTC+9).
    btc = page.locator("[data-testid=signal-row][data-chart='BTCUSDT|1m']")
    local_text = datetime.fromtimestamp(times[3] / 1000 + 9 * 3600, UTC).strftime("%Y-%m-%d %H:%M")
    utc_text = datetime.fromtimestamp(times[3] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    expect(btc).to_contain_text(local_text)
    expect(btc).to_contain_text("RSI(14) < 30")
    expect(btc.locator("td").nth(1)).not_to_have_text("")
    expect(page.locator("#history-time")).to_have_text("Candle (Asia/Tokyo)")
    zone = page.get_by_test_id("zone-switch")
    expect(zone.locator("option").first).to_have_text("Local time (Asia/Tokyo)")
    zone.select_option("utc")
    expect(page.locator("#history-time")).to_have_text("Candle (UTC)")
    expect(btc).to_contain_text(utc_text)
    # The choice is the browser's: kept across a reload.
    page.reload()
    tab.wait_ready()
    expect(page.locator("#history-time")).to_have_text("Candle (UTC)")

    # A click on a signal's row charts its stream; a click on the trader's name, its first stream.
    expect(chart).to_have_attribute("data-symbol", "ETHUSDT", timeout=EXTRA_MS)
    btc.click()
    expect(chart).to_have_attribute("data-symbol", "BTCUSDT")
    expect(chart).to_have_attribute("data-markers-local", "1")
    page.get_by_test_id("chart-symbol").select_option("ETHUSDT|1m")
    expect(chart).to_have_attribute("data-symbol", "ETHUSDT")
    page.get_by_test_id("trader-name").first.click()
    expect(chart).to_have_attribute("data-symbol", "BTCUSDT")
    watch.assert_clean()
