"""Webhook deliveries of signals: what is posted, how, and what its outcome becomes (no I/O).

A user may set one webhook (``public.webhooks``: a URL and an optional secret). Each signal stored
while it is enabled gets a delivery row in the same transaction (``public.webhook_deliveries``), and
the executor, the side holding the lease, posts it: it claims the due rows under its lease epoch
(``claim_webhook_deliveries``), posts each, and records the outcomes under the same epoch
(``record_webhook_deliveries``). The driver that does this on both hosts is
:mod:`signalguard.webhooks`; this module is the part with no I/O: the URL rule, the body, the headers
and signature, the reading of the claim's answer, and what an HTTP outcome becomes.

Exactly once is impossible, at least once is what the database guarantees
    A post may reach the receiver and its answer be lost (the tab closes, the machine is killed, the
    network drops the reply), and then the post is made again. What the database does guarantee:
    nothing is dropped (the delivery row is made with the signal), a claimed row is left to its
    claimer for :data:`IN_FLIGHT_SECONDS` (so a concurrent caller or the next holder does not post it
    while the first attempt may still run: each post's own time limit, :data:`POST_TIMEOUT`, is well
    inside that window), and only the holder of the live lease under the claiming epoch records an
    outcome (a holder that lost the lease records nothing; the new holder posts the row again once its
    window has ended). Receivers make it exactly once by dropping an ``Idempotency-Key`` (the signal
    key) they have already seen.

What an HTTP outcome becomes (:func:`outcome_of_status`, :func:`outcome_of_error`)
    - 2xx: delivered.
    - 408, 425, 429, 5xx, and any network error or time-out: the receiver may take it later, so the
      delivery is retried after ``BACKOFF.delay(attempts)`` (the one back-off schedule of both hosts:
      1, 2, 4, 5, 5 … seconds), up to :data:`MAX_ATTEMPTS` attempts, then it is failed.
    - Any other 4xx (400, 401, 403, 404, 410 …): the receiver refused this request, and the same
      request will be refused again (a wrong URL, a secret it does not accept, an endpoint that is
      gone), so it is failed at once; the page shows it with the status, and the user retries it once
      the receiver is fixed.
    - 3xx: not followed (a redirect would re-send the signed body to wherever the receiver points):
      failed, with a line saying to set the final URL.
    A URL that is not http(s), or points at the stack itself (:func:`webhook_url_problem`), is not
    posted at all: failed with the reason.

The numbers :data:`MAX_ATTEMPTS` and :data:`IN_FLIGHT_SECONDS` are the database's
(``private.webhook_max_attempts()``, ``private.webhook_in_flight()``); a test keeps them in step.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.candles import iso_from_ms, timestamp_us
from signalguard.core.ports import JsonValue

__all__ = [
    "CLAIM_LIMIT",
    "ERROR_MAX",
    "IN_FLIGHT_SECONDS",
    "MAX_ATTEMPTS",
    "POST_TIMEOUT",
    "SECRET_MAX",
    "URL_MAX",
    "ClaimBatch",
    "Delivery",
    "Malformed",
    "Result",
    "WebhookProtocolError",
    "body",
    "claim_args",
    "headers",
    "outcome_of_error",
    "outcome_of_status",
    "parse_claim",
    "parse_record",
    "record_args",
    "refused",
    "signature",
    "webhook_url_problem",
]

#: Attempts before a delivery that keeps failing on a transient error is failed (the database's
#: ``private.webhook_max_attempts()``).
MAX_ATTEMPTS: Final = 10
#: How long a claimed delivery is left to its claimer before anyone may post it again (the database's
#: ``private.webhook_in_flight()``).
IN_FLIGHT_SECONDS: Final = 30.0
#: A post's own time limit, on both hosts: well inside the in-flight window, so that an attempt has
#: ended before the row can be claimed again.
POST_TIMEOUT: Final = 10.0
#: Deliveries claimed per call (the RPC takes 1 to 100).
CLAIM_LIMIT: Final = 20
#: The longest URL the database stores.
URL_MAX: Final = 2048
#: The longest secret the database stores.
SECRET_MAX: Final = 200
#: The longest error text the database keeps.
ERROR_MAX: Final = 500

#: The header that carries the signal key: receivers drop a key they have seen.
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
#: The header with ``sha256=<hex HMAC-SHA256 of the body, keyed with the secret>``, when one is set.
SIGNATURE_HEADER: Final = "X-Signalguard-Signature"

_SCHEME: Final = re.compile(r"^https?://", re.IGNORECASE)
_SPACE_OR_CONTROL: Final = re.compile(r"[\s\x00-\x1f\x7f]")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


# -- the URL -------------------------------------------------------------------------------------


def _host_port(parts: SplitResult) -> tuple[str, int] | None:
    """The host (lower-case, every loopback name as one) and port a URL reaches; None if unreadable."""
    host = (parts.hostname or "").rstrip(".").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not host or port is None:
        return None
    if host == "localhost":
        return "loopback", port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host, port
    return ("loopback" if address.is_loopback or address.is_unspecified else address.compressed), port


def webhook_url_problem(url: str, stack_urls: Sequence[str]) -> str | None:
    """Why ``url`` cannot be the user's webhook, in one line; None if it can.

    The rules of the database's input check (an http(s) URL of at most 2048 characters, no spaces or
    control characters, no user name or password, a host), in the same words, and one it cannot check:
    the URL must not reach the stack itself, any of ``stack_urls`` (the Supabase URL the client talks
    to). Compared by host and port whatever the scheme (one server listens on a port), with
    ``localhost`` and every loopback address as one host: a webhook there would post signals to the
    app's own API.
    """
    if not _SCHEME.match(url):
        return "webhook url: must start with http:// or https://"
    if len(url) > URL_MAX:
        return f"webhook url: at most {URL_MAX} characters"
    if _SPACE_OR_CONTROL.search(url):
        return "webhook url: no spaces or control characters (percent-encode them)"
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return "webhook url: no user name or password in the URL (use the secret)"
    if not parts.hostname:
        return "webhook url: names no host"
    target = _host_port(parts)
    if target is None:
        return "webhook url: the port must be a number from 1 to 65535"
    for stack in stack_urls:
        if stack and _SCHEME.match(stack) and _host_port(urlsplit(stack)) == target:
            origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
            return f"webhook url: {origin} is this app's own server; a webhook posts to another service"
    return None


# -- the claim's answer --------------------------------------------------------------------------


class WebhookProtocolError(ValueError):
    """The claim's (or the record's) answer is not of the RPC's shape at all."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One claimed delivery: the signal to post, where to, and the how-many-th attempt this is."""

    signal_key: str
    #: Attempts so far, this one included.
    attempts: int
    url: str
    secret: str | None
    trader_id: str
    trader_name: str
    symbol: str
    interval: str
    candle_open_ms: int
    price: float
    conditions: tuple[str, ...]
    #: ``local`` (a browser wrote the signal) or ``cloud``.
    source: str
    #: Whether the signal was found late (the gapless handoff); None when the answer does not say.
    caught_up: bool | None = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """A row of the claim that could not be read: recorded as failed with ``reason`` if it has a key."""

    signal_key: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    """What a claim handed over."""

    deliveries: tuple[Delivery, ...]
    malformed: tuple[Malformed, ...] = ()
    in_flight_seconds: float = IN_FLIGHT_SECONDS
    max_attempts: int = MAX_ATTEMPTS


class _Bad(ValueError):
    """One field of a row is not what the RPC sends."""


def _text(row: Mapping[str, object], field: str, *, optional: bool = False, limit: int = 10_000) -> str:
    value = row.get(field)
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    if optional and value is None:
        return ""
    raise _Bad(f"{field} must be a text of 1 to {limit} characters")


def _delivery(row: object) -> Delivery:
    if not isinstance(row, Mapping):
        raise _Bad("a delivery must be an object")
    key = _text(row, "signal_key", limit=200)
    attempts = row.get("attempts")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise _Bad("attempts must be a whole number >= 1")
    url = _text(row, "url", limit=URL_MAX)
    secret = row.get("secret")
    if secret is not None and not (isinstance(secret, str) and len(secret) <= SECRET_MAX):
        raise _Bad(f"secret must be a text of at most {SECRET_MAX} characters, or null")
    open_us = timestamp_us(row.get("candle_open_time"))
    if open_us is None:
        raise _Bad("candle_open_time must be an ISO 8601 time")
    price = row.get("price")
    if (
        not isinstance(price, int | float)
        or isinstance(price, bool)
        or not math.isfinite(price)
        or price <= 0
    ):
        raise _Bad("price must be a number > 0")
    labels = row.get("matched_conditions", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _Bad("matched_conditions must be a list of texts")
    caught_up = row.get("caught_up")
    if caught_up is not None and not isinstance(caught_up, bool):
        raise _Bad("caught_up must be true, false or absent")
    return Delivery(
        signal_key=key,
        attempts=attempts,
        url=url,
        secret=secret or None,
        trader_id=_text(row, "trader_id", limit=64),
        trader_name=_text(row, "trader_name", optional=True, limit=200),
        symbol=_text(row, "symbol", limit=20),
        interval=_text(row, "interval", limit=4),
        candle_open_ms=open_us // 1000,
        price=float(price),
        conditions=tuple(str(x) for x in labels),
        source=_text(row, "source", limit=10),
        caught_up=caught_up,
    )


def parse_claim(data: object) -> ClaimBatch:
    """Read ``claim_webhook_deliveries``'s answer.

    A row that does not read is kept aside as :class:`Malformed` (with its key when it has one, so
    that it is recorded as failed with the reason) and never stops the others. Raises
    :class:`WebhookProtocolError` only when the answer as a whole is not the RPC's.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("deliveries"), list):
        raise WebhookProtocolError("the claim's answer is not an object with a deliveries list")
    rows: list[object] = data["deliveries"]
    good: list[Delivery] = []
    bad: list[Malformed] = []
    for row in rows:
        try:
            good.append(_delivery(row))
        except _Bad as exc:
            key = row.get("signal_key") if isinstance(row, Mapping) else None
            usable = key if isinstance(key, str) and 0 < len(key) <= 200 else None
            bad.append(Malformed(usable, f"malformed delivery: {exc}"))
    window = data.get("in_flight_seconds")
    limit = data.get("max_attempts")
    return ClaimBatch(
        tuple(good),
        tuple(bad),
        float(window)
        if isinstance(window, int | float) and not isinstance(window, bool)
        else IN_FLIGHT_SECONDS,
        limit if isinstance(limit, int) and not isinstance(limit, bool) else MAX_ATTEMPTS,
    )


def claim_args(epoch: int, limit: int = CLAIM_LIMIT) -> dict[str, JsonValue]:
    """``claim_webhook_deliveries``'s arguments."""
    return {"p_epoch": epoch, "p_limit": limit}


# -- the post ------------------------------------------------------------------------------------


def _iso_z(ms: int) -> str:
    return iso_from_ms(ms).replace("+00:00", "Z")


def body(delivery: Delivery) -> str:
    """The JSON body of a delivery: compact, its fields always in this order.

    ``signal_key``, ``trader_id``, ``trader_name``, ``symbol``, ``interval``, ``candle_open_time``
    (ISO 8601 UTC), ``price``, ``conditions`` (the matched conditions' labels), ``source`` (``local``:
    a browser tab, ``cloud``: the user's machine), and ``caught_up`` when the database said. The same
    delivery gives the same bytes on every attempt and either host, so its signature is the same too.
    """
    fields: dict[str, JsonValue] = {
        "signal_key": delivery.signal_key,
        "trader_id": delivery.trader_id,
        "trader_name": delivery.trader_name,
        "symbol": delivery.symbol,
        "interval": delivery.interval,
        "candle_open_time": _iso_z(delivery.candle_open_ms),
        "price": delivery.price,
        "conditions": list(delivery.conditions),
        "source": delivery.source,
    }
    if delivery.caught_up is not None:
        fields["caught_up"] = delivery.caught_up
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def signature(secret: str, payload: str) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``payload`` (UTF-8), keyed with ``secret`` (UTF-8)."""
    digest = hmac.new(secret.encode("utf-8"), payload.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def headers(delivery: Delivery, payload: str) -> dict[str, str]:
    """The post's headers: the content type, the signal key as idempotency key, the signature if any."""
    out = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: delivery.signal_key}
    if delivery.secret:
        out[SIGNATURE_HEADER] = signature(delivery.secret, payload)
    return out


# -- outcomes ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """An attempt's outcome, as ``record_webhook_deliveries`` takes it.

    Not delivered with ``retry_in``: try again in that many seconds (the database fails it after
    :data:`MAX_ATTEMPTS`); without: failed now.
    """

    signal_key: str
    delivered: bool
    http_status: int | None = None
    error: str | None = None
    retry_in: float | None = None

    @property
    def final(self) -> bool:
        """Whether the delivery is settled by this outcome (delivered, or failed without a retry)."""
        return self.delivered or self.retry_in is None

    def to_json(self) -> dict[str, JsonValue]:
        """One item of ``p_results``."""
        out: dict[str, JsonValue] = {"signal_key": self.signal_key, "delivered": self.delivered}
        if self.http_status is not None:
            out["http_status"] = self.http_status
        if self.error is not None:
            out["error"] = self.error[:ERROR_MAX]
        if self.retry_in is not None:
            out["retry_in"] = self.retry_in
        return out


def _retryable(status: int) -> bool:
    return status in (408, 425, 429) or 500 <= status <= 599


def outcome_of_status(delivery: Delivery, status: int, backoff: Backoff = BACKOFF) -> Result:
    """What the receiver's HTTP ``status`` makes of this attempt (see the module documentation)."""
    key = delivery.signal_key
    if not 100 <= status <= 599:
        # Not an HTTP status: the poster's fault, or a proxy's; the receiver may answer properly later.
        return Result(key, False, None, f"not an HTTP status: {status}", backoff.delay(delivery.attempts))
    if 200 <= status <= 299:
        return Result(key, True, status)
    if _retryable(status):
        return Result(key, False, status, f"HTTP {status}", backoff.delay(delivery.attempts))
    if 300 <= status <= 399:
        return Result(
            key, False, status, f"HTTP {status}: the receiver redirects; set the final URL as the webhook"
        )
    return Result(key, False, status, f"HTTP {status}: the receiver refused the signal (not retried)")


def outcome_of_error(delivery: Delivery, error: str, backoff: Backoff = BACKOFF) -> Result:
    """A post that got no HTTP answer (network error, time-out): tried again on the back-off schedule."""
    line = " ".join(error.split()) or "no answer"
    return Result(delivery.signal_key, False, None, line[:ERROR_MAX], backoff.delay(delivery.attempts))


def refused(signal_key: str, reason: str) -> Result:
    """A delivery that is not posted at all (a URL the client refuses, a malformed row): failed now."""
    return Result(signal_key, False, None, reason[:ERROR_MAX])


def record_args(epoch: int, results: Sequence[Result]) -> dict[str, JsonValue]:
    """``record_webhook_deliveries``'s arguments."""
    return {"p_epoch": epoch, "p_results": [r.to_json() for r in results]}


def parse_record(data: object) -> dict[str, str]:
    """``record_webhook_deliveries``'s answer: each signal key's outcome (``delivered``, ``retry``, …).

    Raises :class:`WebhookProtocolError` if it is not a list of outcomes.
    """
    if not isinstance(data, list):
        raise WebhookProtocolError("the record's answer is not a list")
    out: dict[str, str] = {}
    for item in data:
        if not isinstance(item, Mapping) or not isinstance(item.get("outcome"), str):
            raise WebhookProtocolError("an outcome of the record's answer is not an object with an outcome")
        key = item.get("signal_key")
        if isinstance(key, str):
            out[key] = str(item["outcome"])
    return out
