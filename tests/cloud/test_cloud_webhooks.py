"""The worker delivers the user's webhooks: with the in-memory doubles, and against the real stack.

Offline, the worker runs over ``FakeDatabase`` (its webhook side follows the database's rules) with a
``RecordingPoster``. On the stack, ``python -m signalguard cloud`` posts to a receiver on 127.0.0.1 (a
thread of this test), and the database's delivery rows say what was recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from cloudkit import Market, WorkerProcess, make_cloud_user, signals, wait_until
from stackkit import Actors
from test_cloud_offline import FAST, Rig, config, reference_keys

from signalguard.cloud.testing import FakeDatabase
from signalguard.cloud.worker import CloudWorker
from signalguard.core.webhooks import IN_FLIGHT_SECONDS
from signalguard.devstack.stack import LocalStack
from signalguard.market.testing import eventually
from signalguard.webhooks.testing import RecordingPoster

URL = "https://hooks.example.test/in"
SECRET = "s3cret"
TAB_KEY = "u:t:BTCUSDT:1s:0"


def signed(body: str, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def with_webhooks(rig: Rig, poster: RecordingPoster, url: str = URL) -> Rig:
    """The rig's worker, made again with a poster, and the user's webhook set."""
    rig.db.set_webhook(url, SECRET)
    rig.worker = CloudWorker(config(), rig.db, rig.market, timings=FAST, wall=rig.clock, poster=poster)
    return rig


# -- offline -------------------------------------------------------------------------------------


async def test_the_worker_posts_each_signal_once_with_its_key_and_signature() -> None:
    poster = RecordingPoster()
    rig = await with_webhooks(Rig(), poster).start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    await rig.candles(40)
    expected = reference_keys(0, 40)
    await eventually(lambda: len(rig.db.signals) == len(expected), what="signals written")
    await eventually(
        lambda: (
            set(rig.db.webhooks.statuses().values()) == {"delivered"}
            and len(rig.db.webhooks.rows) == len(expected)
        ),
        what="every delivery recorded",
    )
    assert await rig.stop() == 0
    assert sorted(poster.idempotency_keys()) == sorted(expected)  # each once
    for post in poster.posts:
        assert post.url == URL and post.headers["X-Signalguard-Signature"] == signed(post.body)
        payload = json.loads(post.body)
        assert payload["signal_key"] == post.headers["Idempotency-Key"]
        assert payload["source"] == "cloud" and payload["trader_name"] == "close above SMA(2)"
    assert rig.worker.webhook_outcomes["delivered"] == len(expected)
    assert {r.claimed_epoch for r in rig.db.webhooks.rows.values()} == {1}


async def test_a_failed_post_is_retried_and_a_refused_one_failed() -> None:
    poster = RecordingPoster()
    poster.answer(URL, 503, 404)  # the first post: retried; the second: refused for good
    rig = await with_webhooks(Rig(), poster).start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    await rig.candles(20)
    await eventually(lambda: len(poster.posts) >= 2, what="two posts")
    first, second = (p.headers["Idempotency-Key"] for p in poster.posts[:2])
    await eventually(lambda: rig.db.webhooks.rows[first].last_error == "HTTP 503", what="the 503 recorded")
    # The retry comes due on the back-off schedule (the fake database's clock moves with the candles).
    rig.clock.t += 1
    await eventually(lambda: rig.db.webhooks.rows[first].status == "delivered", what="the retry delivered")
    assert rig.db.webhooks.rows[first].attempts == 2
    assert rig.db.webhooks.rows[second].status == "failed"
    assert (
        rig.db.webhooks.rows[second].last_error == "HTTP 404: the receiver refused the signal (not retried)"
    )
    assert await rig.stop() == 0
    assert rig.worker.webhook_outcomes["failed"] == 1


async def test_no_posts_without_the_lease_or_without_the_component() -> None:
    poster = RecordingPoster()
    # A browser holds the lease: the worker waits, writes nothing and posts nothing.
    rig = await with_webhooks(Rig(local_lease=True), poster).start()
    rig.db.webhooks.signal_stored(TAB_KEY, {"symbol": "BTCUSDT"})
    await asyncio.sleep(0.5)
    assert await rig.stop() == 0
    assert poster.posts == [] and "claim_webhook_deliveries" not in rig.db.calls
    # A database without the webhooks component is never asked.
    rig = Rig()
    rig.worker = CloudWorker(config(), rig.db, rig.market, timings=FAST, wall=rig.clock, poster=poster)
    await rig.start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    await rig.candles(10)
    await asyncio.sleep(0.3)
    assert await rig.stop() == 0
    assert "claim_webhook_deliveries" not in rig.db.calls and poster.posts == []


async def test_a_delivery_the_tab_left_in_flight_is_posted_after_its_window() -> None:
    poster = RecordingPoster()
    rig = Rig()
    db: FakeDatabase = rig.db
    db.set_webhook(URL, SECRET)
    # A tab held epoch 1, stored a signal and claimed its delivery, then died.
    db.local_lease()
    db.webhooks.holds = lambda epoch: epoch == 1
    db.webhooks.signal_stored(
        TAB_KEY,
        {
            "trader_id": "t",
            "trader_name": "n",
            "symbol": "BTCUSDT",
            "interval": "1s",
            "candle_open_time": "2025-10-03T06:12:00+00:00",
            "price": 1.5,
            "matched_conditions": [],
            "status": "new",
            "source": "local",
            "caught_up": False,
        },
    )
    assert len(db.webhooks.claim(1)["deliveries"]) == 1  # type: ignore[arg-type]
    db.expire_lease()
    db.webhooks.holds = db._cloud_holds
    rig.worker = CloudWorker(config(), db, rig.market, timings=FAST, wall=rig.clock, poster=poster)
    await rig.start()
    await eventually(lambda: rig.worker.manager.may_generate, what="generating")
    await asyncio.sleep(0.3)
    # Still in flight for the tab (the worker's own signals go out meanwhile).
    assert TAB_KEY not in poster.idempotency_keys()
    rig.clock.t += IN_FLIGHT_SECONDS
    await eventually(lambda: db.webhooks.rows[TAB_KEY].status == "delivered", what="delivered")
    assert await rig.stop() == 0
    assert poster.idempotency_keys().count(TAB_KEY) == 1
    # Claimed and recorded under a cloud epoch (moving the fake clock by the window renews the lease
    # under a new one).
    claimed = db.webhooks.rows[TAB_KEY].claimed_epoch
    assert claimed is not None and claimed > 1 and db.epochs[claimed].kind == "cloud"


# -- on the stack --------------------------------------------------------------------------------


@dataclass
class Receiver:
    """An HTTP receiver on 127.0.0.1 that records each post and answers 200."""

    posts: list[tuple[dict[str, str], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/signals"

    def keys(self) -> list[str]:
        with self.lock:
            return [h.get("Idempotency-Key", "") for h, _ in self.posts]


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            with rec.lock:
                rec.posts.append(({k: v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()
        thread.join(5)


def delivery_rows(db: psycopg.Connection[Any], user_id: str) -> dict[str, tuple[str, int]]:
    rows = db.execute(
        "select signal_key, status, attempts from webhook_deliveries where user_id = %s", (user_id,)
    ).fetchall()
    return {k: (s, a) for k, s, a in rows}


@pytest.mark.stack
def test_the_worker_posts_its_signals_webhooks_once_each(
    stack: LocalStack,
    market: Market,
    db: psycopg.Connection[Any],
    actors: Actors,
    receiver: Receiver,
    tmp_path: Any,
) -> None:
    user = make_cloud_user(actors, db)
    db.execute(
        "insert into public.webhooks (user_id, url, secret) values (%s, %s, %s)",
        (user.user_id, receiver.url, SECRET),
    )
    worker = WorkerProcess(stack, user, market.url, tmp_path / "worker.log").start()
    try:

        def three_delivered() -> bool:
            rows = delivery_rows(db, user.user_id)
            return sum(1 for s, _ in rows.values() if s == "delivered") >= 3

        wait_until(three_delivered, timeout=60, what="three delivered webhooks")
        worker.wait_for_log(r"webhooks: \d+ claimed \(delivered \d+", timeout=30)
        assert worker.terminate() == 0, worker.log()
    finally:
        worker.close()
    rows = delivery_rows(db, user.user_id)
    stored = {s["signal_key"] for s in signals(db, user.user_id)}
    delivered = {k for k, (s, _) in rows.items() if s == "delivered"}
    # Every stored signal has its delivery row; each delivered one was posted once, signed.
    assert set(rows) == stored
    keys = receiver.keys()
    assert len(keys) == len(set(keys)), "a signal was posted twice"
    assert delivered <= set(keys) <= stored
    with receiver.lock:
        for headers, body in receiver.posts:
            assert headers["Content-Type"] == "application/json"
            assert headers["X-Signalguard-Signature"] == signed(body)
            payload = json.loads(body)
            assert payload["signal_key"] == headers["Idempotency-Key"]
            assert payload["source"] == "cloud" and payload["trader_name"] in {t.name for t in user.traders}
    assert {a for k, (s, a) in rows.items() if s == "delivered"} == {1}
