"""The page's webhook: settings checked before they are sent, delivery only while this tab generates."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from signalguard.browser.formats import Formats
from signalguard.browser.ports import ApiResult
from signalguard.browser.testing import FakeBackend, FakeTasks, FakeTimers, ok, on_loop, refused
from signalguard.browser.webhooks import (
    DELIVER_TIMER,
    RETRY_TIMER,
    WebhookPanel,
    WebhookView,
    delivery_lines,
)
from signalguard.core.codes import GuardError
from signalguard.webhooks.testing import FakeWebhookStore, RecordingPoster

STACK = "http://127.0.0.1:54321"
HOOK = "https://hooks.example.com/signals"
KEY = "u:t:BTCUSDT:1m:1764979200000"
SIGNAL = {
    "trader_id": "t",
    "trader_name": "Dip",
    "symbol": "BTCUSDT",
    "interval": "1m",
    "candle_open_time": "2025-12-06T00:00:00+00:00",
    "price": 91000.5,
    "matched_conditions": ["RSI(14) < 30"],
    "status": "new",
    "source": "local",
    "caught_up": False,
}


class Page:
    def __init__(self, *, available: bool = True) -> None:
        #: The guard verdicts the panel handed on (what the app feeds its guard as WriteRefused).
        self.verdicts: list[GuardError] = []
        self.backend = FakeBackend()
        self.timers = FakeTimers()
        self.tasks = FakeTasks()
        self.poster = RecordingPoster()
        self.store = FakeWebhookStore(holds=lambda epoch: epoch == 5)
        self.views: list[WebhookView] = []
        for name, method in (("claim_webhook_deliveries", "claim"), ("record_webhook_deliveries", "record")):
            self.backend.handlers[name] = self._rpc(method)
        self.panel = WebhookPanel(
            "u",
            self.backend,
            self.timers,
            self.tasks.spawn,
            poster=self.poster,
            stack_urls=(STACK,),
            show=self.views.append,
            formats=Formats,
            available=lambda: available,
            on_verdict=self.verdicts.append,
        )

    async def hook(self, url: str = HOOK, secret: str | None = None) -> None:
        """The user has set a webhook (in the database, and as the panel last read it)."""
        self.store.set_webhook(url, secret)
        self.backend.tables["webhooks"] = [{"user_id": "u", "url": url, "secret": secret, "enabled": True}]
        await self.panel.load()

    def _rpc(self, method: str) -> Callable[[Mapping[str, object]], ApiResult]:
        def answer(args: Mapping[str, object]) -> ApiResult:
            epoch, results = args.get("p_epoch"), args.get("p_results")
            assert isinstance(epoch, int)
            try:
                if method == "claim":
                    return ok(self.store.claim(epoch))
                assert isinstance(results, list)
                return ok(self.store.record(epoch, results))
            except PermissionError as exc:
                return refused("SG001", message=str(exc))

        return answer


@on_loop
async def test_a_bad_url_is_refused_in_the_page_and_never_sent() -> None:
    page = Page()
    for url, why in (
        ("ftp://example.com/x", "must start with http:// or https://"),
        (STACK + "/rest/v1/rpc/x", "this app's own server"),
        ("http://localhost:54321/x", "this app's own server"),
    ):
        page.panel.save(url, "", True)
        assert why in page.views[-1].error
    await page.tasks.settle()
    assert page.backend.updates == [] and page.backend.inserts == []


@on_loop
async def test_saving_inserts_the_first_time_then_updates_and_an_empty_secret_keeps_the_old_one() -> None:
    page = Page()
    page.backend.tables["webhooks"] = []
    page.panel.save(" " + HOOK + " ", "s3cret", True)
    await page.tasks.settle()
    assert page.backend.inserts == [("webhooks", {"url": HOOK, "enabled": True, "secret": "s3cret"})]
    page.backend.tables["webhooks"] = [{"user_id": "u", "url": HOOK, "secret": "s3cret", "enabled": True}]
    page.panel.save(HOOK, "", False)
    await page.tasks.settle()
    assert page.backend.updates[-1] == ("webhooks", {"url": HOOK, "enabled": False}, {"user_id": "u"})
    assert page.views[-1].error == ""


@on_loop
async def test_the_databases_refusal_is_shown_as_it_says_it() -> None:
    page = Page()
    page.backend.refusals["webhooks"] = refused(
        "SG009", message="invalid_argument: webhook secret: at most 200"
    )
    page.panel.save(HOOK, "x" * 300, True)
    await page.tasks.settle()
    assert page.views[-1].error == "Not saved: webhook secret: at most 200"


@on_loop
async def test_nothing_is_posted_unless_this_tab_generates() -> None:
    page = Page()
    await page.hook(HOOK, "k")
    page.store.signal_stored(KEY, SIGNAL)
    page.panel.kick()
    await page.tasks.settle()
    assert page.poster.posts == [] and "claim_webhook_deliveries" not in page.backend.names()
    page.panel.set_epoch(5)  # the guard lets this tab generate under epoch 5
    await page.tasks.settle()
    assert page.poster.idempotency_keys() == [KEY]
    assert page.store.statuses() == {KEY: "delivered"}
    assert page.timers.due_at(DELIVER_TIMER) is not None
    page.panel.set_epoch(None)
    assert page.timers.due_at(DELIVER_TIMER) is None


@on_loop
async def test_a_failed_post_is_retried_when_its_time_comes() -> None:
    page = Page()
    await page.hook()
    page.store.signal_stored(KEY, SIGNAL)
    page.poster.answer(HOOK, 503)
    page.panel.set_epoch(5)
    await page.tasks.settle()
    assert page.store.statuses() == {KEY: "pending"}
    assert page.timers.due_at(RETRY_TIMER) is not None


@on_loop
async def test_a_lost_lease_stops_the_call_and_says_so() -> None:
    page = Page()
    await page.hook()
    page.store.signal_stored(KEY, SIGNAL)
    page.panel.set_epoch(4)  # not the live epoch any more
    await page.tasks.settle()
    assert page.poster.posts == []
    assert any("Webhook delivery stopped" in v.note and "SG001" in v.note for v in page.views)
    # The guard hears it at once (the tab stops generating), not at its next poll.
    assert page.verdicts == [GuardError.LEASE_NOT_HELD]


@on_loop
async def test_a_refusal_that_is_not_about_the_lease_moves_no_guard() -> None:
    page = Page()
    await page.hook()
    page.backend.answer("claim_webhook_deliveries", refused("SG009", message="invalid_argument: limit"))
    page.panel.set_epoch(5)
    await page.tasks.settle()
    assert "claim_webhook_deliveries" in page.backend.names()
    assert any("SG009" in v.note for v in page.views) and page.verdicts == []


@on_loop
async def test_a_database_without_webhooks_hides_the_panel_and_posts_nothing() -> None:
    page = Page(available=False)
    await page.panel.load()
    assert page.views[-1].available is False
    page.panel.set_epoch(5)
    await page.tasks.settle()
    assert "claim_webhook_deliveries" not in page.backend.names()


def test_the_state_line_counts_waiting_and_lists_failures_with_their_signal() -> None:
    rows = [
        {"signal_key": KEY, "status": "failed", "attempts": 10, "last_http_status": 500},
        {
            "signal_key": "u:t:ETHUSDT:1s:1764979201000",
            "status": "failed",
            "attempts": 1,
            "last_error": "CORS",
        },
        {"signal_key": "k3", "status": "pending"},
        {"signal_key": "k4", "status": "delivered", "delivered_at": "2025-12-06T00:01:00+00:00"},
        {"status": "failed"},
        "junk",
    ]
    note, failures = delivery_lines(rows, Formats())
    assert note == (
        "Last delivered 2025-12-06 00:01. 1 waiting to be posted. "
        "2 failed: retry below once the receiver is fixed."
    )
    assert [(f.signal, f.reason) for f in failures] == [
        ("BTCUSDT 1m · 2025-12-06 00:00", "HTTP 500 after 10 attempts"),
        ("ETHUSDT 1s · 2025-12-06 00:00:01", "CORS after 1 attempt"),
    ]
    assert delivery_lines([], Formats())[0] == "No signal posted yet."


@on_loop
async def test_without_a_webhook_nothing_is_claimed_and_setting_one_posts_what_is_due() -> None:
    page = Page()
    page.backend.tables["webhooks"] = []
    await page.panel.load()
    page.panel.set_epoch(5)
    page.panel.kick()
    await page.tasks.settle()
    assert "claim_webhook_deliveries" not in page.backend.names()
    # Set on another device: the next read of the panel finds it and delivers at once.
    await page.hook()
    page.store.signal_stored(KEY, SIGNAL)
    page.panel.refresh()
    await page.tasks.settle()
    assert page.poster.idempotency_keys() == [KEY]
