"""Password sign-in: fields judged at the edge, failures throttled, equal cost for known and unknown e-mails.

The throttle's arithmetic is tested on its own with a hand-driven clock. Against the stack, each test runs
a gateway of its own over the session's database (its own throttle, its own limits, the same clock), so
failures spent here never reach the session's gateway or another test. Client addresses other than
127.0.0.1 are other loopback addresses (127.0.0.0/8 is all loopback on Linux).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from stackkit import password_account, serving

from signalguard.devstack.config import StackConfig, free_port
from signalguard.devstack.gateway import (
    BCRYPT_COST,
    DUMMY_BCRYPT,
    PASSWORD_MAX_BYTES,
    FailureBuckets,
    Gateway,
    SignInThrottle,
)
from signalguard.devstack.stack import DEMO_USERS, LocalStack

pytestmark = pytest.mark.stack

PASSWORD = "correct horse battery"
THROTTLED = {"code": 429, "error_code": "over_request_rate_limit", "msg": "Request rate limit reached"}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the throttle on its own ---------------------------------------------------------------------


def test_a_bucket_allows_its_failures_then_one_per_refill_step() -> None:
    clock = Clock()
    buckets = FailureBuckets(5, 300.0, clock)
    for _ in range(5):
        assert buckets.wait("a") == 0
        buckets.spend("a")
    assert buckets.wait("a") == pytest.approx(60.0)
    clock.now += 59
    assert buckets.wait("a") == pytest.approx(1.0)
    clock.now += 1
    assert buckets.wait("a") == 0
    buckets.spend("a")
    assert buckets.wait("a") == pytest.approx(60.0)
    # Other keys are untouched; after a whole window the key is full again and forgotten.
    assert buckets.wait("b") == 0
    clock.now += 300
    assert buckets.level("a") == 5
    buckets.spend("a")
    buckets.refund("a")
    assert len(buckets) == 0


def test_a_refund_gives_back_what_an_attempt_took() -> None:
    clock = Clock()
    buckets = FailureBuckets(2, 60.0, clock)
    for _ in range(100):
        buckets.spend("ok")
        buckets.refund("ok")
    assert buckets.wait("ok") == 0 and len(buckets) == 0


def test_the_table_forgets_keys_that_refilled() -> None:
    clock = Clock()
    buckets = FailureBuckets(5, 300.0, clock)
    for n in range(5000):
        buckets.spend(f"key{n}")
        clock.now += 0.1
    # Keys idle for a whole window are swept as new ones arrive: never more than about a window's worth.
    assert len(buckets) < 4000


def test_the_throttle_needs_both_the_account_and_the_address() -> None:
    clock = Clock()
    config = StackConfig(signin_account_failures=3, signin_address_failures=5, signin_window_seconds=60.0)
    throttle = SignInThrottle(config, clock)
    for _ in range(3):
        assert throttle.retry_after("a@x", "10.0.0.1") == 0
        throttle.spend("a@x", "10.0.0.1")
    assert throttle.retry_after("a@x", "10.0.0.1") == 20  # 3 per 60 s: one every 20 s
    assert throttle.retry_after("a@x", "10.0.0.2") == 20  # the account, from anywhere
    assert throttle.retry_after("b@x", "10.0.0.1") == 0
    for _ in range(2):
        throttle.spend("b@x", "10.0.0.1")
    assert throttle.retry_after("c@x", "10.0.0.1") == 12  # the address, for any account: 5 per 60 s
    assert throttle.retry_after("c@x", "10.0.0.2") == 0
    clock.now += 12
    assert throttle.retry_after("c@x", "10.0.0.1") == 0
    assert throttle.retry_after("a@x", "10.0.0.1") == 8


# -- against the stack ---------------------------------------------------------------------------


@contextmanager
def own_gateway(stack: LocalStack, clock: Clock | None = None, **settings: Any) -> Iterator[str]:
    """A gateway of the test's own over the session's database; its URL."""
    config = dataclasses.replace(stack.config, gateway_port=free_port(), **settings)
    with serving(Gateway(config, clock=clock or time.monotonic)):
        yield config.gateway_url


def user_with_password(stack: LocalStack, password: str = PASSWORD) -> tuple[str, str]:
    """A new account with ``password``, hashed as the seed hashes the demo users'; its e-mail and id."""
    return password_account(stack, password, prefix="signin", cost=BCRYPT_COST)


def client(source: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address=source))


def sign_in(
    http: httpx.Client, base: str, anon: str, email: str, password: str, **headers: str
) -> httpx.Response:
    return http.post(
        f"{base}/auth/v1/token?grant_type=password",
        headers={"apikey": anon, **headers},
        json={"email": email, "password": password},
    )


def last_sign_in(stack: LocalStack, uid: str) -> Any:
    with stack.connect() as conn:
        row = conn.execute("select last_sign_in_at from auth.users where id = %s", (uid,)).fetchone()
    assert row is not None
    return row[0]


def is_throttled(r: httpx.Response) -> bool:
    return r.status_code == 429 and r.json() == THROTTLED and int(r.headers["retry-after"]) > 0


def test_an_account_is_throttled_after_five_failures_before_its_password_is_checked(
    stack: LocalStack,
) -> None:
    clock = Clock()
    anon = stack.config.anon_key()
    email, uid = user_with_password(stack)
    with own_gateway(stack, clock) as base, client() as http:
        answers = [sign_in(http, base, anon, email, "wrong").status_code for _ in range(40)]
        assert answers[:5] == [400] * 5 and answers[5:] == [429] * 35
        r = sign_in(http, base, anon, email, "wrong")
        assert is_throttled(r) and r.headers["retry-after"] == "60"
        # The right password gets the same answer while the account waits: the throttle is no oracle,
        # and nothing was checked (no sign-in recorded).
        right = sign_in(http, base, anon, email.upper(), PASSWORD)
        assert is_throttled(right) and right.json() == r.json()
        assert last_sign_in(stack, uid) is None
        # Another account from the same address is not held up by this one.
        other, _ = user_with_password(stack)
        assert sign_in(http, base, anon, other, PASSWORD).status_code == 200
        # One more attempt after a refill step (5 failures per 5 minutes): the right password works.
        clock.now += 59
        assert is_throttled(sign_in(http, base, anon, email, PASSWORD))
        clock.now += 1
        assert sign_in(http, base, anon, email, PASSWORD).status_code == 200
        assert last_sign_in(stack, uid) is not None


def test_an_unknown_email_is_throttled_exactly_like_a_known_one(stack: LocalStack) -> None:
    clock = Clock()
    anon = stack.config.anon_key()
    known, _ = user_with_password(stack)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@signalguard.test"
    with own_gateway(stack, clock) as base, client() as http:
        seen = {}
        for email in (known, unknown):
            answers = [sign_in(http, base, anon, email, "wrong") for _ in range(7)]
            seen[email] = [(r.status_code, r.json(), r.headers.get("retry-after")) for r in answers]
        assert seen[known] == seen[unknown]
        assert [status for status, _, _ in seen[known]] == [400] * 5 + [429] * 2


def test_an_address_is_throttled_after_thirty_failures_whatever_it_claims(stack: LocalStack) -> None:
    anon = stack.config.anon_key()
    email, _ = user_with_password(stack)
    with own_gateway(stack, Clock()) as base, client("127.0.0.2") as noisy, client("127.0.0.3") as quiet:
        # Thirty different accounts, each under its own limit: the address's allowance is spent.
        for n in range(30):
            r = sign_in(noisy, base, anon, f"guess{n}@signalguard.test", "wrong")
            assert r.status_code == 400, (n, r.text)
        # Now even a right password from that address waits, whatever forwarding header it sends (the
        # gateway is the edge: the peer address is the client).
        assert is_throttled(sign_in(noisy, base, anon, email, PASSWORD))
        assert is_throttled(sign_in(noisy, base, anon, email, PASSWORD, **{"X-Forwarded-For": "10.9.8.7"}))
        assert is_throttled(sign_in(noisy, base, anon, email, PASSWORD, **{"X-Real-IP": "10.9.8.7"}))
        # Another address signs the same account in.
        assert sign_in(quiet, base, anon, email, PASSWORD).status_code == 200


def test_successful_sign_ins_are_not_counted(stack: LocalStack) -> None:
    # The default limits, as the end-to-end tests meet them: many sign-ins from one address.
    anon = stack.config.anon_key()
    email, _ = user_with_password(stack)
    with own_gateway(stack, Clock()) as base, client() as http:
        for _ in range(60):
            assert sign_in(http, base, anon, email, PASSWORD).status_code == 200
        # Four failures in between leave the account its last attempt.
        for _ in range(4):
            assert sign_in(http, base, anon, email, "wrong").status_code == 400
        assert sign_in(http, base, anon, email, PASSWORD).status_code == 200


def test_the_limits_are_settings(stack: LocalStack) -> None:
    anon = stack.config.anon_key()
    email, _ = user_with_password(stack)
    with (
        own_gateway(stack, Clock(), signin_account_failures=2, signin_window_seconds=10.0) as base,
        client() as http,
    ):
        answers = [sign_in(http, base, anon, email, "wrong") for _ in range(3)]
        assert [r.status_code for r in answers] == [400, 400, 429]
        assert answers[2].headers["retry-after"] == "5"


# -- fields judged at the edge -------------------------------------------------------------------


def test_a_password_longer_than_bcrypt_reads_is_refused_not_truncated(stack: LocalStack) -> None:
    # bcrypt reads 72 bytes: without the bound, the right 72 bytes and anything after them signed in.
    password = "p" * PASSWORD_MAX_BYTES
    email, uid = user_with_password(stack, password)
    anon = stack.config.anon_key()
    with own_gateway(stack, Clock()) as base, client() as http:
        r = sign_in(http, base, anon, email, password + "anything")
        assert r.status_code == 400 and r.json()["error_code"] == "validation_failed", r.text
        assert "72" in r.json()["msg"]
        assert last_sign_in(stack, uid) is None
        r = sign_in(http, base, anon, email, "é" * 37)  # 74 bytes in 37 characters
        assert r.status_code == 400 and r.json()["error_code"] == "validation_failed"
        assert sign_in(http, base, anon, email, password).status_code == 200


@pytest.mark.parametrize(
    "fields",
    [
        {"email": "a" * 250 + "@x.test", "password": "p"},
        {"email": "tab\t@x.test", "password": "p"},
        {"email": "del\x7f@x.test", "password": "p"},
        {"email": "c1\x85@x.test", "password": "p"},
        {"email": "x@x.test", "password": ""},
        {"email": "", "password": "p"},
        {"email": ["x@x.test"], "password": "p"},
        {"email": "x@x.test", "password": 12345},
    ],
)
def test_unusable_fields_are_refused_and_not_counted(stack: LocalStack, fields: dict[str, Any]) -> None:
    anon = stack.config.anon_key()
    with (
        own_gateway(stack, Clock(), signin_account_failures=1, signin_address_failures=1) as base,
        client() as http,
    ):
        for _ in range(3):
            r = http.post(f"{base}/auth/v1/token?grant_type=password", headers={"apikey": anon}, json=fields)
            assert r.status_code == 400 and r.json()["error_code"] == "validation_failed", r.text
        # A refusal at the edge spends nothing: one failure is still allowed, then the throttle.
        assert sign_in(http, base, anon, "x@x.test", "wrong").status_code == 400
        assert sign_in(http, base, anon, "x@x.test", "wrong").status_code == 429


# -- timing --------------------------------------------------------------------------------------


def test_the_dummy_hash_costs_what_the_accounts_hashes_cost(stack: LocalStack) -> None:
    with stack.connect() as conn:
        rows = conn.execute(
            "select distinct substr(encrypted_password, 1, 7) from auth.users where email = any(%s)",
            ([email for email, _ in DEMO_USERS],),
        ).fetchall()
    assert {r[0] for r in rows} == {f"$2a${BCRYPT_COST:02d}$"} == {DUMMY_BCRYPT[:7]}


def test_a_wrong_password_costs_the_same_for_a_known_and_an_unknown_email(stack: LocalStack) -> None:
    anon = stack.config.anon_key()
    known, _ = user_with_password(stack)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@signalguard.test"

    def took(http: httpx.Client, base: str, email: str) -> float:
        started = time.perf_counter()
        r = sign_in(http, base, anon, email, "wrong password")
        elapsed = time.perf_counter() - started
        assert r.status_code == 400 and r.json()["error_code"] == "invalid_credentials"
        return elapsed

    with (
        own_gateway(stack, signin_account_failures=10**6, signin_address_failures=10**6) as base,
        client() as http,
    ):
        for _ in range(5):  # warm the connection and the database's caches
            took(http, base, known)
            took(http, base, unknown)
        samples: dict[str, list[float]] = {known: [], unknown: []}
        for n in range(60):
            # Interleaved, alternating which goes first, so drift affects both alike.
            order = (known, unknown) if n % 2 else (unknown, known)
            for email in order:
                samples[email].append(took(http, base, email))
    ratio = statistics.median(samples[known]) / statistics.median(samples[unknown])
    assert 0.75 <= ratio <= 1.33, (
        f"known {statistics.median(samples[known]) * 1000:.1f} ms, "
        f"unknown {statistics.median(samples[unknown]) * 1000:.1f} ms"
    )
