"""The WebhookDriver over its doubles (signalguard.webhooks.testing): no stack, no sockets.

The fake store follows the database's rules (claim and record under the live epoch, in flight after
a claim, retry or failed at the maximum), and the clock is moved by hand, never slept on. ``async
def`` scenarios run with asyncio.run, each bounded in time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.webhooks import IN_FLIGHT_SECONDS, MAX_ATTEMPTS
from signalguard.webhooks import DeliveryProblem, WebhookDriver
from signalguard.webhooks.testing import FakeWebhookStore, RecordingPoster

URL = "https://hooks.example.test/in"
STACK = ("http://127.0.0.1:8000",)


def bounded(scenario: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    def test() -> None:
        asyncio.run(asyncio.wait_for(scenario(), 10))

    test.__doc__ = scenario.__doc__
    return test


class Clock:
    def __init__(self) -> None:
        self.t = 1_759_471_920.0

    def __call__(self) -> float:
        return self.t


def fields(i: int) -> dict[str, Any]:
    return {
        "trader_id": "2c4e28ba-2fa1-11d2-883f-0016d3cca427",
        "trader_name": "RSI oversold",
        "symbol": f"S{i:02d}USDT",
        "interval": "1m",
        "candle_open_time": "2025-10-03T06:12:00+00:00",
        "price": 100.5 + i,
        "matched_conditions": ["RSI(14) < 30"],
        "status": "new",
        "source": "local",
        "caught_up": False,
    }


class Rig:
    def __init__(self, *, epoch: int = 1, secret: str | None = "s3cret", **driver: Any) -> None:
        self.clock = Clock()
        self.live = epoch
        self.store = FakeWebhookStore(clock=self.clock, holds=lambda e: e == self.live)
        self.store.set_webhook(URL, secret)
        self.poster = RecordingPoster()
        self.problems: list[DeliveryProblem] = []
        self.driver = WebhookDriver(
            self.store.call,
            self.poster,
            stack_urls=STACK,
            on_problem=self.problems.append,
            backoff=driver.pop("backoff", BACKOFF),
            **driver,
        )

    def signals(self, n: int, start: int = 0) -> list[str]:
        keys = []
        for i in range(start, start + n):
            key = f"u:t:S{i:02d}USDT:1m:{i}"
            self.store.signal_stored(key, fields(i))
            keys.append(key)
        return keys

    def later(self, seconds: float) -> None:
        self.clock.t += seconds


@bounded
async def test_each_due_delivery_is_posted_once_with_its_key_and_signature() -> None:
    rig = Rig()
    keys = rig.signals(3)
    summary = await rig.driver.deliver_due(1)
    assert (summary.claimed, summary.delivered, summary.error) == (3, 3, None)
    assert sorted(rig.poster.idempotency_keys()) == sorted(keys)
    for post in rig.poster.posts:
        assert post.url == URL and post.headers["Content-Type"] == "application/json"
        expected = hmac.new(b"s3cret", post.body.encode(), hashlib.sha256).hexdigest()
        assert post.headers["X-Signalguard-Signature"] == f"sha256={expected}"
        assert json.loads(post.body)["signal_key"] == post.headers["Idempotency-Key"]
    assert set(rig.store.statuses().values()) == {"delivered"}
    # Nothing is posted twice, however often it is asked.
    rig.later(3600)
    again = await rig.driver.deliver_due(1)
    assert again.claimed == 0 and len(rig.poster.posts) == 3
    assert rig.problems == []


@bounded
async def test_without_a_secret_the_post_is_unsigned() -> None:
    rig = Rig(secret=None)
    rig.signals(1)
    await rig.driver.deliver_due(1)
    assert "X-Signalguard-Signature" not in rig.poster.posts[0].headers


@bounded
async def test_a_transient_failure_is_retried_on_the_backoff_then_failed_at_the_maximum() -> None:
    rig = Rig()
    (key,) = rig.signals(1)
    rig.poster.answer(URL, 503, "ConnectError: refused")
    first = await rig.driver.deliver_due(1)
    assert (first.retrying, first.next_retry_in) == (1, BACKOFF.delay(1))
    assert rig.problems[-1] == DeliveryProblem("delivery", key, "HTTP 503", False)
    # Not due before its retry time.
    assert (await rig.driver.deliver_due(1)).claimed == 0
    rig.later(BACKOFF.delay(1))
    second = await rig.driver.deliver_due(1)
    assert (second.retrying, second.next_retry_in) == (1, BACKOFF.delay(2))
    assert rig.problems[-1].message == "ConnectError: refused"
    rig.later(BACKOFF.delay(2))
    assert (await rig.driver.deliver_due(1)).delivered == 1
    assert rig.store.rows[key].attempts == 3 and rig.poster.idempotency_keys() == [key] * 3
    # One that never recovers is failed after MAX_ATTEMPTS attempts, and said so.
    (stuck,) = rig.signals(1, start=5)
    rig.poster.default = 500
    for attempt in range(1, MAX_ATTEMPTS + 1):
        summary = await rig.driver.deliver_due(1)
        assert summary.claimed == 1, attempt
        rig.later(5)
    assert summary.failed == 1 and rig.store.rows[stuck].status == "failed"
    assert rig.problems[-1] == DeliveryProblem("delivery", stuck, "HTTP 500", True)
    rig.later(3600)
    assert (await rig.driver.deliver_due(1)).claimed == 0


@bounded
async def test_a_refusal_fails_at_once_and_the_user_retries_it() -> None:
    rig = Rig()
    (key,) = rig.signals(1)
    rig.poster.answer(URL, 410)
    summary = await rig.driver.deliver_due(1)
    assert summary.failed == 1 and summary.next_retry_in is None
    assert rig.problems == [
        DeliveryProblem("delivery", key, "HTTP 410: the receiver refused the signal (not retried)", True)
    ]
    assert rig.store.retry(key)["retried"] is True
    assert (await rig.driver.deliver_due(1)).delivered == 1
    assert rig.poster.idempotency_keys() == [key, key]


@bounded
async def test_a_webhook_pointing_at_the_stack_is_not_posted() -> None:
    rig = Rig()
    rig.store.set_webhook("http://localhost:8000/rest/v1/rpc/write_signals")
    (key,) = rig.signals(1)
    summary = await rig.driver.deliver_due(1)
    assert summary.failed == 1 and rig.poster.posts == []
    assert rig.store.rows[key].last_error is not None
    assert "is this app's own server" in rig.store.rows[key].last_error


@bounded
async def test_a_malformed_row_is_recorded_as_failed_and_the_others_go_out() -> None:
    rig = Rig()
    good, bad = rig.signals(2)
    rig.store.rows[bad].signal["price"] = "lots"
    summary = await rig.driver.deliver_due(1)
    assert (summary.claimed, summary.malformed, summary.delivered, summary.failed) == (2, 1, 1, 1)
    assert rig.poster.idempotency_keys() == [good]
    assert rig.store.rows[bad].status == "failed"
    assert rig.store.rows[bad].last_error == "malformed delivery: price must be a number > 0"


@bounded
async def test_without_the_lease_nothing_is_claimed_or_recorded() -> None:
    rig = Rig()
    (key,) = rig.signals(1)
    summary = await rig.driver.deliver_due(2)
    assert summary.claimed == 0 and summary.error is not None and "SG001" in summary.error
    assert rig.problems[-1].kind == "claim" and rig.poster.posts == []
    # Claimed, then the lease moves before the record: nothing recorded, the row stays in flight, and
    # the next holder posts it again once the window has ended (the receiver drops the repeat).
    rig.poster.delay = 0.05

    async def move_lease() -> None:
        await asyncio.sleep(0.02)
        rig.live = 2

    summary, _ = await asyncio.gather(rig.driver.deliver_due(1), move_lease())
    assert summary.recorded == {"not_recorded": 1} and "SG001" in (summary.error or "")
    assert rig.problems[-1].kind == "record"
    assert rig.store.rows[key].status == "pending"
    assert (await rig.driver.deliver_due(2)).claimed == 0  # still in flight
    rig.later(IN_FLIGHT_SECONDS)
    assert (await rig.driver.deliver_due(2)).delivered == 1
    assert rig.poster.idempotency_keys() == [key, key]


@bounded
async def test_an_outage_and_a_broken_port_never_raise() -> None:
    rig = Rig()
    rig.signals(1)
    rig.store.down = True
    summary = await rig.driver.deliver_due(1)
    assert summary.error == "claiming webhook deliveries: ConnectError: the fake database is down"

    async def broken(name: str, args: dict[str, Any]) -> tuple[object, str | None]:
        raise RuntimeError("boom")

    driver = WebhookDriver(broken, rig.poster, stack_urls=STACK)
    assert (await driver.deliver_due(1)).error == "claiming webhook deliveries: RuntimeError: boom"

    async def nonsense(name: str, args: dict[str, Any]) -> tuple[object, str | None]:
        return ["not", "a", "claim"], None

    driver = WebhookDriver(nonsense, rig.poster, stack_urls=STACK)
    assert "not an object" in ((await driver.deliver_due(1)).error or "")

    # A poster that raises, or hangs past its time limit, is a network error to retry.
    class Raising:
        async def post(self, url: str, headers: Any, body: str, timeout: float) -> int | str:
            raise OSError("unreachable")

    rig.store.down = False
    driver = WebhookDriver(rig.store.call, Raising(), stack_urls=STACK)
    summary = await driver.deliver_due(1)
    assert summary.retrying == 1
    (key,) = rig.store.rows
    assert rig.store.rows[key].last_error == "OSError: unreachable"

    class Hanging:
        async def post(self, url: str, headers: Any, body: str, timeout: float) -> int | str:
            await asyncio.sleep(60)
            return 200

    rig.later(10)
    driver = WebhookDriver(rig.store.call, Hanging(), stack_urls=STACK, timeout=0.05)
    summary = await driver.deliver_due(1)
    assert summary.retrying == 1 and rig.store.rows[key].last_error == "no answer within 0.05 s"


@bounded
async def test_posts_run_concurrently_but_bounded_and_full_claims_go_on() -> None:
    rig = Rig(limit=5, concurrency=3, rounds=2, backoff=Backoff(0.01, 0.05))
    rig.poster.delay = 0.01
    keys = rig.signals(12)
    summary = await rig.driver.deliver_due(1)
    # Two full claims of 5 this call; the rest next time.
    assert (summary.claimed, summary.delivered, summary.more) == (10, 10, True)
    assert rig.poster.most_at_once == 3
    assert (await rig.driver.deliver_due(1)).delivered == 2
    assert sorted(rig.poster.idempotency_keys()) == sorted(keys)


@bounded
async def test_a_failing_problem_callback_does_not_stop_the_deliveries() -> None:
    rig = Rig()

    def angry(problem: DeliveryProblem) -> None:
        raise ValueError("host bug")

    driver = WebhookDriver(rig.store.call, rig.poster, stack_urls=STACK, on_problem=angry)
    rig.signals(2)
    rig.poster.answer(URL, 404)
    summary = await driver.deliver_due(1)
    assert (summary.failed, summary.delivered) == (1, 1)
