"""The user's webhook from the real page: set up, posted by the tab, failures shown and retried, a handoff.

A receiver on 127.0.0.1 (a thread of this test) records every post and answers the browser's CORS
preflight, as a receiver must for a page to post to it. The fast stack (1s candles) makes signals
within seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from e2ekit import Browsers, cloud_worker, fast_user, signals_of, wait_until
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack

SECRET = "e2e-webhook-secret"


@dataclass
class Receiver:
    """What the receiver got, and what it answers (a status per post, then 200)."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def idempotency_keys(self) -> list[str]:
        with self.lock:
            return [h.get("idempotency-key", "") for h, _ in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def _cors(self) -> None:
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "POST")
            self.send_header(
                "Access-Control-Allow-Headers", "content-type, idempotency-key, x-signalguard-signature"
            )

        def do_OPTIONS(self) -> None:  # the browser's preflight
            self.send_response(204)
            self._cors()
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with got.lock:
                got.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = got.answers.pop(0) if got.answers else 200
            self.send_response(status)
            self._cors()
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    got.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/signals"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


def deliveries(stack: LocalStack, uid: str) -> dict[str, tuple[str, int]]:
    """Each delivery's status and attempts, by signal key."""
    with stack.connect() as conn:
        rows = conn.execute(
            "select signal_key, status, attempts from public.webhook_deliveries where user_id = %s", (uid,)
        ).fetchall()
    return {k: (s, a) for k, s, a in rows}


def set_webhook(tab: Any, url: str, secret: str = "") -> None:
    page = tab.page
    page.get_by_test_id("webhook-url").fill(url)
    page.get_by_test_id("webhook-secret").fill(secret)
    page.get_by_test_id("webhook-save").click()


def test_the_tab_posts_each_signal_once_signed_and_the_cloud_goes_on_after_a_handoff(
    fast_stack: LocalStack, fast_tabs: Browsers, fast_replay: ReplayServer, receiver: Receiver
) -> None:
    email, uid = fast_user(fast_stack, machine=True)
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    set_webhook(tab, receiver.url, SECRET)
    expect(tab.page.get_by_test_id("webhook-remove")).to_be_visible()
    expect(tab.page.get_by_test_id("webhook-secret")).to_have_attribute("placeholder", "set: type to replace")

    wait_until("posts from the tab", lambda: len(receiver.idempotency_keys()) >= 2 or None, timeout=40)
    stored = {r["signal_key"]: r for r in signals_of(fast_stack, uid)}
    with receiver.lock:
        posts = list(receiver.posts)
    for headers, body in posts:
        key = headers["idempotency-key"]
        assert stored[key]["source"] == "local"
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-signalguard-signature"] == f"sha256={expected}"
        sent = json.loads(body)
        assert (
            sent["signal_key"] == key and sent["symbol"] == stored[key]["symbol"]
            if "symbol" in stored[key]
            else True
        )
    expect(tab.page.get_by_test_id("webhook-note")).to_contain_text("Last delivered", timeout=20_000)

    # The cloud machine starts and takes over: it posts its own signals; nothing is posted twice
    # except a delivery whose outcome its first poster could not record (attempts show it).
    with cloud_worker(fast_stack, fast_replay.url, email):
        expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=60_000)

        def cloud_post() -> bool | None:
            now = {r["signal_key"]: r["source"] for r in signals_of(fast_stack, uid)}
            return any(now.get(k) == "cloud" for k in receiver.idempotency_keys()) or None

        wait_until("a post of a cloud signal", cloud_post, timeout=60)
    counts = Counter(receiver.idempotency_keys())
    states = deliveries(fast_stack, uid)
    twice = [k for k, n in counts.items() if n > 1 and states[k][1] < n]
    assert not twice, f"posted more often than claimed: {twice}"
    # A claim or a record the tab made under its epoch as the machine took the lease is refused
    # (SG001, the database's fence), and the browser logs the 400.
    watch.allow(r"rpc/(claim|record)_webhook_deliveries")
    watch.assert_clean()


def test_a_bad_url_is_refused_and_a_failed_delivery_is_shown_and_retried(
    fast_stack: LocalStack, fast_tabs: Browsers, receiver: Receiver
) -> None:
    email, uid = fast_user(fast_stack)
    ctx, watch = fast_tabs.context()
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    page = tab.page
    error = page.get_by_test_id("webhook-error")
    set_webhook(tab, "ftp://example.com/hook")
    expect(error).to_contain_text("must start with http:// or https://")
    set_webhook(tab, f"{fast_stack.url}/rest/v1/rpc/write_signals")
    expect(error).to_contain_text("this app's own server")
    with fast_stack.connect() as conn:
        assert conn.execute("select count(*) from public.webhooks where user_id = %s", (uid,)).fetchone() == (
            0,
        )

    # The receiver refuses for good (410): the first delivery fails at once and the page lists it.
    receiver.answers.extend([410])
    set_webhook(tab, receiver.url)
    expect(error).to_be_hidden()
    failure = page.get_by_test_id("webhook-failure").first
    expect(failure).to_contain_text("HTTP 410 after 1 attempt", timeout=30_000)
    key = str(failure.get_attribute("data-signal-key"))
    assert deliveries(fast_stack, uid)[key][0] == "failed"
    failure.get_by_test_id("webhook-retry").click()
    wait_until(
        "the retried delivery", lambda: deliveries(fast_stack, uid)[key][0] == "delivered" or None, timeout=30
    )
    expect(page.locator(f"[data-testid=webhook-failure][data-signal-key='{key}']")).to_have_count(
        0, timeout=15_000
    )
    assert receiver.idempotency_keys().count(key) == 2
    watch.allow(r"hooks/signals")  # the browser logs the refused post (410) in the console
    watch.assert_clean()
