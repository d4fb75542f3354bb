"""Doubles of the webhook driver's two ports, for tests of either host without a stack or sockets.

- :class:`FakeWebhookStore`: the database's side in memory, with the rules the driver depends on: the
  user's webhook, a delivery row made when a signal is stored while an enabled webhook is set, the
  claim (live epoch only, due pending rows, each then in flight), the record (live epoch only, only
  rows claimed under it; retry, or failed at the maximum of attempts or without a retry time), the
  user's retry, and outages (:attr:`FakeWebhookStore.down`). Its :meth:`~FakeWebhookStore.call` is a
  :data:`~signalguard.core.ports.CallRpc`.
- :class:`RecordingPoster`: an :class:`~signalguard.core.ports.HttpPoster` that records every post and
  answers from a script (statuses, or error lines for a network error).

Times are the store's clock (epoch seconds, ``time.time`` by default); tests move a fake one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from signalguard.core.ports import JsonValue
from signalguard.core.webhooks import ERROR_MAX, IN_FLIGHT_SECONDS, MAX_ATTEMPTS

__all__ = ["FakeWebhookStore", "Post", "RecordingPoster", "StoredDelivery"]


@dataclass
class StoredDelivery:
    """One delivery row of the fake store."""

    signal_key: str
    #: The signal's fields as the claim hands them out (symbol, price, trader_name, …).
    signal: dict[str, JsonValue]
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    claimed_epoch: int | None = None
    last_error: str | None = None
    last_http_status: int | None = None
    delivered_at: float | None = None


class FakeWebhookStore:
    """See the module documentation."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        holds: Callable[[int], bool] = lambda epoch: True,
        in_flight: float = IN_FLIGHT_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        """A store whose claims and records need ``holds(epoch)`` (the live lease under that epoch)."""
        self.clock = clock
        self.holds = holds
        self.in_flight = in_flight
        self.max_attempts = max_attempts
        self.url: str | None = None
        self.secret: str | None = None
        self.enabled = False
        self.rows: dict[str, StoredDelivery] = {}
        #: The RPCs called, by name, in order.
        self.calls: list[str] = []
        #: While true, every call answers a network error.
        self.down = False

    # -- the user's side --------------------------------------------------------------------------

    def set_webhook(self, url: str | None, secret: str | None = None, *, enabled: bool = True) -> None:
        """Set (or with None remove) the user's webhook."""
        self.url, self.secret, self.enabled = url, secret or None, url is not None and enabled

    def signal_stored(self, signal_key: str, signal: Mapping[str, JsonValue]) -> None:
        """What the signals' trigger does: a delivery row if an enabled webhook is set now."""
        if self.enabled and signal_key not in self.rows:
            self.rows[signal_key] = StoredDelivery(signal_key, dict(signal), next_attempt_at=self.clock())

    def retry(self, signal_key: str) -> dict[str, JsonValue]:
        """``retry_webhook_delivery``: a failed delivery back to pending, due now."""
        row = self.rows.get(signal_key)
        if row is None or row.status != "failed":
            return {"signal_key": signal_key, "retried": False, "status": row.status if row else None}
        row.status, row.attempts, row.claimed_epoch = "pending", 0, None
        row.next_attempt_at = self.clock()
        return {"signal_key": signal_key, "retried": True, "status": "pending"}

    def statuses(self) -> dict[str, str]:
        """Each delivery's status, by signal key."""
        return {k: r.status for k, r in self.rows.items()}

    # -- the executor's RPCs ----------------------------------------------------------------------

    def claim(self, epoch: int, limit: int = 20) -> dict[str, JsonValue]:
        """``claim_webhook_deliveries``; raises :class:`PermissionError` (``SG001``) without the lease."""
        if not self.holds(epoch):
            raise PermissionError(f"SG001: lease_not_held: epoch {epoch} is not it")
        now = self.clock()
        due = sorted(
            (r for r in self.rows.values() if r.status == "pending" and r.next_attempt_at <= now),
            key=lambda r: (r.next_attempt_at, r.signal_key),
        )
        out: list[JsonValue] = []
        if not (self.enabled and self.url):
            due = []
        for row in due[:limit]:
            row.attempts += 1
            row.next_attempt_at = now + self.in_flight
            row.claimed_epoch = epoch
            out.append(
                {
                    "signal_key": row.signal_key,
                    "attempts": row.attempts,
                    "url": self.url,
                    "secret": self.secret,
                    **row.signal,
                }
            )
        return {
            "epoch": epoch,
            "in_flight_seconds": self.in_flight,
            "max_attempts": self.max_attempts,
            "deliveries": out,
        }

    def record(self, epoch: int, results: Sequence[Mapping[str, Any]]) -> list[JsonValue]:
        """``record_webhook_deliveries``; raises :class:`PermissionError` (``SG001``) without the lease."""
        if not self.holds(epoch):
            raise PermissionError(f"SG001: lease_not_held: epoch {epoch} is not it")
        now = self.clock()
        out: list[JsonValue] = []
        for i, item in enumerate(results):
            key = item.get("signal_key")
            row = self.rows.get(key) if isinstance(key, str) else None
            answer: dict[str, JsonValue] = {"index": i, "signal_key": key}
            if not isinstance(key, str) or not isinstance(item.get("delivered"), bool):
                answer.update(outcome="rejected", code="SG009", message="invalid_argument")
            elif row is None:
                answer["outcome"] = "not_found"
            elif row.status == "delivered":
                answer["outcome"] = "already_delivered"
            elif row.status != "pending" or row.claimed_epoch != epoch:
                answer["outcome"] = "not_claimed"
            elif item["delivered"]:
                row.status, row.delivered_at = "delivered", now
                row.last_http_status, row.last_error = item.get("http_status"), None
                answer["outcome"] = "delivered"
            else:
                status = item.get("http_status")
                row.last_http_status = status
                row.last_error = str(item.get("error") or (f"HTTP {status}" if status else "not delivered"))[
                    :ERROR_MAX
                ]
                retry_in = item.get("retry_in")
                if retry_in is None or row.attempts >= self.max_attempts:
                    row.status = "failed"
                    answer.update(outcome="failed", attempts=row.attempts)
                else:
                    row.next_attempt_at = now + float(retry_in)
                    answer["outcome"] = "retry"
            out.append(answer)
        return out

    async def call(self, name: str, args: dict[str, JsonValue]) -> tuple[object, str | None]:
        """The :data:`~signalguard.core.ports.CallRpc` port over this store."""
        self.calls.append(name)
        await asyncio.sleep(0)
        if self.down:
            return None, "ConnectError: the fake database is down"
        epoch = args.get("p_epoch")
        try:
            assert isinstance(epoch, int)
            if name == "claim_webhook_deliveries":
                limit = args.get("p_limit", 20)
                return self.claim(epoch, limit if isinstance(limit, int) else 20), None
            if name == "record_webhook_deliveries":
                results = args.get("p_results")
                assert isinstance(results, list)
                return self.record(epoch, [r for r in results if isinstance(r, Mapping)]), None
        except PermissionError as exc:
            return None, str(exc)
        return None, f"PGRST202: no function {name}"


@dataclass(frozen=True, slots=True)
class Post:
    """One post a :class:`RecordingPoster` received."""

    url: str
    headers: dict[str, str]
    body: str
    timeout: float


@dataclass
class RecordingPoster:
    """Records every post; answers each URL from its script, then ``default``.

    An answer is a status code, or a text: the error line of a post that got no answer. ``delay``
    seconds pass before each answer (``asyncio.sleep``); a post whose delay exceeds its timeout answers
    a time-out, as a real poster would.
    """

    default: int | str = 200
    delay: float = 0.0
    posts: list[Post] = field(default_factory=list)
    scripts: dict[str, deque[int | str]] = field(default_factory=dict)
    #: Posts running right now, and the most ever at once.
    running: int = 0
    most_at_once: int = 0

    def answer(self, url: str, *answers: int | str) -> None:
        """Answer the next posts to ``url`` with ``answers``, in order."""
        self.scripts.setdefault(url, deque()).extend(answers)

    def idempotency_keys(self) -> list[str]:
        """The ``Idempotency-Key`` of every post, in order."""
        return [p.headers.get("Idempotency-Key", "") for p in self.posts]

    async def post(self, url: str, headers: Mapping[str, str], body: str, timeout: float) -> int | str:
        """See :class:`~signalguard.core.ports.HttpPoster`."""
        self.posts.append(Post(url, dict(headers), body, timeout))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            script = self.scripts.get(url)
            answer = script.popleft() if script else self.default
            if self.delay > timeout:
                await asyncio.sleep(timeout)
                return f"ReadTimeout: no answer within {timeout:g} s"
            await asyncio.sleep(self.delay)
            return answer
        finally:
            self.running -= 1
