"""A database without the lease migration: one clear message, and the tab never generates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2ekit import Browsers, lease_of, make_stack
from playwright.sync_api import Browser, expect

from signalguard.devstack.config import REPO_ROOT
from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

MIGRATIONS = REPO_ROOT / "supabase" / "migrations"
LEASE_MIGRATION = "20251003060300_execution_lease.sql"
STATUS_MIGRATION = "20251003060500_update_signal_statuses.sql"
TRADES_MIGRATION = "20251003060600_trades.sql"
HARDENING_MIGRATION = "20251003060800_write_hardening.sql"
STREAMS_MIGRATION = "20251003060900_trader_streams.sql"

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def old_stack(assets: None, demo_market: ReplayServer) -> Iterator[LocalStack]:
    s = make_stack(demo_market.url, migrate_upto="20251003060200")
    yield s
    s.reset()


def test_missing_lease_migration_is_named_and_nothing_is_generated(
    old_stack: LocalStack, chromium: Browser
) -> None:
    browsers = Browsers(chromium, old_stack)
    try:
        ctx, watch = browsers.context()
        tab = browsers.tab(ctx, watch).open().sign_in("carol@signalguard.test")

        expect(tab.badge).to_have_attribute("data-mode", "offline")
        expect(tab.badge).to_have_attribute("data-guard-mode", "incompatible")
        expect(tab.badge).to_contain_text("not generating")
        message = tab.page.get_by_test_id("schema-message")
        expect(message).to_be_visible()
        expect(message).to_contain_text(LEASE_MIGRATION)
        expect(message).to_contain_text(STATUS_MIGRATION)
        expect(message).to_contain_text(TRADES_MIGRATION)
        expect(message).to_contain_text(HARDENING_MIGRATION)
        expect(message).to_contain_text(STREAMS_MIGRATION)
        # One message, naming the missing migrations and nothing else.
        assert message.inner_text().count("supabase/migrations/") == 5
        # The summary's function is missing too: it says which migration brings it, without calling it.
        expect(tab.page.get_by_test_id("summary-note")).to_contain_text(
            "20251003060400_signal_summary.sql", timeout=20_000
        )
        expect(tab.page.get_by_test_id("trades-note")).to_contain_text(TRADES_MIGRATION)
        tab.snapshot("incompatible")
        expect(tab.page.get_by_test_id("trader-row")).to_have_count(2)
        for toggle in tab.toggles().all():
            expect(toggle).to_be_disabled()

        # Wait past a whole poll period: the tab never asks for the lease, and nothing is written.
        tab.page.wait_for_timeout(6_000)
        for rpc in (
            "execution_status", "claim_local_lease", "release_local_lease", "write_signals", "signal_summary",
            "trade_summary", "write_trades",
        ):  # fmt: skip
            assert watch.rpc_calls(rpc) == [], rpc
        assert len(watch.rpc_calls("schema_version")) == 1
        with old_stack.connect() as conn:
            assert conn.execute("select to_regclass('public.execution_leases')").fetchone() == (None,)
            assert conn.execute("select count(*) from public.signals").fetchone() == (0,)
    finally:
        browsers.close()


@pytest.fixture(scope="module")
def stale_stack(assets: None, demo_market: ReplayServer) -> Iterator[LocalStack]:
    """The guard's migrations applied behind PostgREST's back: the database has them, its API does not."""
    s = make_stack(demo_market.url, migrate_upto="20251003060200")
    with s.connect() as conn:
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name[:14] > "20251003060200":
                conn.execute(path.read_text())  # no NOTIFY pgrst: the schema cache stays as it was
    yield s
    s.reset()


def test_stale_schema_cache_is_named_and_nothing_is_generated_until_it_is_reloaded(
    stale_stack: LocalStack, chromium: Browser
) -> None:
    browsers = Browsers(chromium, stale_stack)
    try:
        ctx, watch = browsers.context()
        # PostgREST answers 404 (PGRST202) for the functions it does not know: the browser logs those.
        watch.allow(r"status of 404")
        tab = browsers.tab(ctx, watch).open().sign_in("carol@signalguard.test")
        expect(tab.badge).to_have_attribute("data-guard-mode", "incompatible")
        message = tab.page.get_by_test_id("schema-message")
        expect(message).to_contain_text("schema cache is stale")
        expect(message).to_contain_text("NOTIFY pgrst")
        assert watch.rpc_calls("claim_local_lease") == [] and watch.rpc_calls("write_signals") == []
        with stale_stack.connect() as conn:
            assert conn.execute("select count(*) from public.execution_leases").fetchone() == (0,)
            conn.execute("notify pgrst, 'reload schema'")
        # The guard checks again every 30 s; then the tab claims and generates as usual.
        expect(tab.badge).to_have_attribute("data-mode", "browser", timeout=45_000)
        lease = lease_of(stale_stack, stale_stack.user_id("carol@signalguard.test"))
        assert lease is not None and lease.live and lease.holder_kind == "local"
    finally:
        browsers.close()
