"""The webhook core: the URL rule, the body and its signature, the claim's answer, HTTP outcomes."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.webhooks import (
    ERROR_MAX,
    IN_FLIGHT_SECONDS,
    MAX_ATTEMPTS,
    ClaimBatch,
    Delivery,
    Malformed,
    Result,
    WebhookProtocolError,
    body,
    claim_args,
    headers,
    outcome_of_error,
    outcome_of_status,
    parse_claim,
    parse_record,
    record_args,
    refused,
    signature,
    webhook_url_problem,
)

STACK = ["http://127.0.0.1:8000"]
KEY = "1b4e28ba-2fa1-11d2-883f-0016d3cca427:2c4e28ba-2fa1-11d2-883f-0016d3cca427:BTCUSDT:1m:1759471920000"


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "signal_key": KEY,
        "attempts": 1,
        "url": "https://hooks.example.test/in",
        "secret": "s3cret",
        "trader_id": "2c4e28ba-2fa1-11d2-883f-0016d3cca427",
        "trader_name": "RSI oversold",
        "symbol": "BTCUSDT",
        "interval": "1m",
        "candle_open_time": "2025-10-03T06:12:00+00:00",
        "price": 61234.5,
        "matched_conditions": ["RSI(14) < 30"],
        "status": "new",
        "source": "cloud",
        "caught_up": False,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def delivery(**changes: Any) -> Delivery:
    batch = parse_claim({"deliveries": [row(**changes)]})
    assert batch.malformed == ()
    return batch.deliveries[0]


# -- the URL -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.test/in",
        "http://example.test:8080/x?y=1#z",
        "HTTPS://Example.TEST",
        "http://127.0.0.1:9000/hook",  # a receiver on this machine, not the stack's port
        "http://[::1]:9000/",
    ],
)
def test_a_good_url_has_no_problem(url: str) -> None:
    assert webhook_url_problem(url, STACK) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.test/", "webhook url: must start with http:// or https://"),
        ("example.test", "webhook url: must start with http:// or https://"),
        ("", "webhook url: must start with http:// or https://"),
        ("https://example.test/" + "a" * 2048, "webhook url: at most 2048 characters"),
        ("https://example.test/a b", "webhook url: no spaces or control characters (percent-encode them)"),
        ("https://example.test/\x00", "webhook url: no spaces or control characters (percent-encode them)"),
        ("https://me:pw@example.test/", "webhook url: no user name or password in the URL (use the secret)"),
        ("https://", "webhook url: names no host"),
        ("http:///x", "webhook url: names no host"),
        ("http://example.test:99999/", "webhook url: the port must be a number from 1 to 65535"),
    ],
)
def test_a_bad_url_is_refused_in_the_databases_words(url: str, problem: str) -> None:
    assert webhook_url_problem(url, STACK) == problem


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/rest/v1/rpc/write_signals",
        "http://localhost:8000/",
        "https://127.0.0.1:8000",
        "http://[::1]:8000/x",
        "http://127.0.0.2:8000/x",
        "http://LOCALHOST.:8000/x",
    ],
)
def test_the_stack_itself_is_refused(url: str) -> None:
    problem = webhook_url_problem(url, STACK)
    assert problem is not None and "is this app's own server" in problem


def test_the_stack_is_compared_by_host_and_effective_port() -> None:
    hosted = ["https://abcd.supabase.co"]
    assert webhook_url_problem("https://abcd.supabase.co/functions/v1/x", hosted) is not None
    assert webhook_url_problem("https://ABCD.supabase.co:443/", hosted) is not None
    assert webhook_url_problem("https://abcd.supabase.co:8443/", hosted) is None
    assert webhook_url_problem("https://other.supabase.co/", hosted) is None
    # Unusable stack URLs are ignored rather than refusing everything.
    assert webhook_url_problem("https://example.test/", ["", "not a url"]) is None


# -- the claim's answer --------------------------------------------------------------------------


def test_the_claim_is_read_with_every_field() -> None:
    batch = parse_claim({"epoch": 3, "in_flight_seconds": 30, "max_attempts": 10, "deliveries": [row()]})
    assert batch == ClaimBatch(
        (
            Delivery(
                KEY,
                1,
                "https://hooks.example.test/in",
                "s3cret",
                "2c4e28ba-2fa1-11d2-883f-0016d3cca427",
                "RSI oversold",
                "BTCUSDT",
                "1m",
                1759471920000,
                61234.5,
                ("RSI(14) < 30",),
                "cloud",
                False,
            ),
        ),
        (),
        30.0,
        10,
    )
    # Defaults when the answer leaves out the numbers; no caught_up (an older database) is None.
    batch = parse_claim({"deliveries": [row(caught_up=..., secret=None)]})
    assert (batch.in_flight_seconds, batch.max_attempts) == (IN_FLIGHT_SECONDS, MAX_ATTEMPTS)
    assert batch.deliveries[0].caught_up is None and batch.deliveries[0].secret is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"attempts": 0}, "attempts must be a whole number >= 1"),
        ({"attempts": True}, "attempts must be a whole number >= 1"),
        ({"url": None}, "url must be a text"),
        ({"secret": 5}, "secret must be a text"),
        ({"candle_open_time": "yesterday"}, "candle_open_time must be an ISO 8601 time"),
        ({"price": 0}, "price must be a number > 0"),
        ({"price": float("nan")}, "price must be a number > 0"),
        ({"price": "1.5"}, "price must be a number > 0"),
        ({"matched_conditions": "RSI"}, "matched_conditions must be a list of texts"),
        ({"caught_up": "no"}, "caught_up must be true, false or absent"),
        ({"symbol": ""}, "symbol must be a text"),
    ],
)
def test_a_malformed_row_is_set_aside_with_its_key_and_reason(changes: dict[str, Any], reason: str) -> None:
    batch = parse_claim({"deliveries": [row(signal_key="other"), row(**changes)]})
    assert [d.signal_key for d in batch.deliveries] == ["other"]
    (bad,) = batch.malformed
    assert bad.signal_key == KEY and bad.reason.startswith("malformed delivery: " + reason)


def test_a_row_without_a_usable_key_is_set_aside_without_one() -> None:
    batch = parse_claim({"deliveries": ["x", row(signal_key=7), row(signal_key="k" * 201)]})
    assert batch.deliveries == ()
    assert [m.signal_key for m in batch.malformed] == [None, None, None]
    assert batch.malformed[0] == Malformed(None, "malformed delivery: a delivery must be an object")


@pytest.mark.parametrize("data", [None, [], {"deliveries": {}}, {"deliveries": None}, "oops"])
def test_an_answer_of_another_shape_is_a_protocol_error(data: object) -> None:
    with pytest.raises(WebhookProtocolError):
        parse_claim(data)


# -- the post ------------------------------------------------------------------------------------


def test_the_body_is_compact_stable_and_in_order() -> None:
    text = body(delivery())
    assert text == (
        '{"signal_key":"' + KEY + '","trader_id":"2c4e28ba-2fa1-11d2-883f-0016d3cca427",'
        '"trader_name":"RSI oversold","symbol":"BTCUSDT","interval":"1m",'
        '"candle_open_time":"2025-10-03T06:12:00.000Z","price":61234.5,"conditions":["RSI(14) < 30"],'
        '"source":"cloud","caught_up":false}'
    )
    assert body(delivery(attempts=4, status="active")) == text  # the same bytes on every attempt
    assert "caught_up" not in json.loads(body(delivery(caught_up=...)))
    # Non-ASCII names travel as UTF-8, not escapes.
    assert '"trader_name":"Über RSI ✓"' in body(delivery(trader_name="Über RSI ✓"))


def test_headers_carry_the_key_and_the_signature_of_the_exact_body() -> None:
    d = delivery(trader_name="Über")
    payload = body(d)
    h = headers(d, payload)
    expected = hmac.new(b"s3cret", payload.encode("utf-8"), hashlib.sha256).hexdigest()
    assert h == {
        "Content-Type": "application/json",
        "Idempotency-Key": KEY,
        "X-Signalguard-Signature": f"sha256={expected}",
    }
    assert signature("s3cret", payload) == f"sha256={expected}"
    assert "X-Signalguard-Signature" not in headers(delivery(secret=None), payload)


# -- outcomes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert outcome_of_status(delivery(), status) == Result(KEY, True, status)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_retry_on_the_backoff_schedule(status: int) -> None:
    for attempts in (1, 2, 3, 4, 9):
        r = outcome_of_status(delivery(attempts=attempts), status)
        assert (r.delivered, r.http_status, r.error) == (False, status, f"HTTP {status}")
        assert r.retry_in == BACKOFF.delay(attempts) and not r.final


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
def test_other_4xx_fail_at_once(status: int) -> None:
    r = outcome_of_status(delivery(), status)
    assert r.retry_in is None and r.final and not r.delivered
    assert r.error == f"HTTP {status}: the receiver refused the signal (not retried)"


def test_a_redirect_is_not_followed() -> None:
    r = outcome_of_status(delivery(), 301)
    assert r.final and not r.delivered and "set the final URL" in (r.error or "")


def test_a_network_error_retries_and_a_nonsense_status_too() -> None:
    fast = Backoff(0.01, 0.05)
    r = outcome_of_error(delivery(attempts=3), "ConnectError:\n  connection refused", fast)
    assert r == Result(KEY, False, None, "ConnectError: connection refused", fast.delay(3))
    assert outcome_of_error(delivery(), "").error == "no answer"
    assert outcome_of_error(delivery(), "x" * 2000).error == "x" * ERROR_MAX
    r = outcome_of_status(delivery(), 0)
    assert r.retry_in == BACKOFF.delay(1) and r.http_status is None


def test_results_become_the_record_rpcs_items() -> None:
    results = [
        Result("a", True, 200),
        Result("b", False, 503, "HTTP 503", 2.0),
        refused("c", "webhook url: names no host"),
        Result("d", False, None, "e" * 900),
    ]
    assert record_args(7, results) == {
        "p_epoch": 7,
        "p_results": [
            {"signal_key": "a", "delivered": True, "http_status": 200},
            {"signal_key": "b", "delivered": False, "http_status": 503, "error": "HTTP 503", "retry_in": 2.0},
            {"signal_key": "c", "delivered": False, "error": "webhook url: names no host"},
            {"signal_key": "d", "delivered": False, "error": "e" * ERROR_MAX},
        ],
    }
    assert claim_args(7) == {"p_epoch": 7, "p_limit": 20}


def test_the_record_answer_is_read_by_key() -> None:
    answer = [
        {"index": 0, "signal_key": "a", "outcome": "delivered"},
        {"index": 1, "signal_key": None, "outcome": "rejected", "code": "SG009"},
        {"index": 2, "signal_key": "b", "outcome": "retry", "next_attempt_at": "2025-10-03T06:12:02+00:00"},
    ]
    assert parse_record(answer) == {"a": "delivered", "b": "retry"}
    for bad in ({"a": 1}, [1], [{"signal_key": "a"}]):
        with pytest.raises(WebhookProtocolError):
            parse_record(bad)
