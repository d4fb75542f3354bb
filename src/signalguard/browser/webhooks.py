"""The webhook in the page: its settings, its deliveries' state, and delivery while this tab generates.

Delivery is the shared :class:`~signalguard.webhooks.driver.WebhookDriver`, the same as the cloud
worker's; this module only runs it at the page's moments and shows what it and the database say:

- **when**: while this tab is the executor (the guard lets it generate, under its epoch) and the
  database has the ``webhooks`` component: after each acknowledged write (its signals' delivery rows
  were made with them), when a retry falls due, and every :data:`DELIVER_SECONDS` (a delivery another
  holder left in flight comes due without a write here). One call at a time.
- **settings**: one URL, an optional secret, on or off. The URL is checked before it is sent with the
  rule the database applies plus the one it cannot (not this app's own server); the database's
  refusal, if any, is shown as it says it.
- **state**: the newest deliveries as the database holds them, whoever posted them (the cloud
  machine's too): how many wait, when the last one arrived, and the failed ones, each with a retry.

From a browser, a receiver must allow this page's origin (CORS): the post carries headers of its own
(``Idempotency-Key``, the signature), so the browser asks first. A receiver that does not answer is
retried and then failed, and the page says why; the cloud machine has no such limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from signalguard.browser.formats import Formats
from signalguard.browser.ports import ApiResult, Backend, Spawn, Timers
from signalguard.core.candles import timestamp_us
from signalguard.core.codes import GuardError
from signalguard.core.guard import Effects
from signalguard.core.ports import CallRpc, HttpPoster, JsonValue
from signalguard.core.webhooks import webhook_url_problem
from signalguard.webhooks.driver import DeliveryProblem, DeliverySummary, WebhookDriver

__all__ = [
    "DELIVER_SECONDS",
    "WebhookFailure",
    "WebhookPanel",
    "WebhookView",
    "delivery_lines",
    "rpc_port",
]

#: Deliveries are looked at at least this often while this tab generates (the cloud worker's period).
DELIVER_SECONDS: Final = 10.0
DELIVER_TIMER: Final = "webhooks"
RETRY_TIMER: Final = "webhooks-retry"
#: The deliveries the panel reads (the newest), and the failed ones it lists at most.
STATE_ROWS: Final = 50
FAILURES_SHOWN: Final = 10
DELIVERY_COLUMNS: Final = "signal_key,status,attempts,last_error,last_http_status,delivered_at,updated_at"


@dataclass(frozen=True, slots=True)
class WebhookFailure:
    """A delivery that failed for good: which signal, and why."""

    key: str
    #: ``BTCUSDT 1m · 2025-12-06 10:15``.
    signal: str
    #: ``HTTP 500 after 10 attempts``.
    reason: str


@dataclass(frozen=True, slots=True)
class WebhookView:
    """The webhook panel as drawn."""

    #: Whether the database has webhooks at all (otherwise the panel says which migration adds them).
    available: bool
    url: str = ""
    has_secret: bool = False
    enabled: bool = True
    #: One line on the deliveries (or on why there are none).
    note: str = ""
    #: Why the last save was refused ("" if it was not).
    error: str = ""
    failures: tuple[WebhookFailure, ...] = ()
    #: Whether a save or a removal is under way (its buttons wait).
    busy: bool = False


def rpc_port(backend: Backend, on_verdict: Callable[[GuardError], None] | None = None) -> CallRpc:
    """The driver's :data:`~signalguard.core.ports.CallRpc` over the page's database API.

    A claim or record refused with a guard verdict that moves the guard (SG001: the lease moved on) is
    also handed to ``on_verdict``, as the outbox's are: the tab stops generating at once instead of at
    its next poll.
    """

    async def call(name: str, args: dict[str, JsonValue]) -> tuple[object, str | None]:
        result = await backend.rpc(name, args)
        if result.error is None:
            return result.data, None
        code = result.error.code
        if on_verdict is not None and code in _VERDICTS and GuardError(code).moves_guard:
            on_verdict(GuardError(code))
        return None, str(result.error)

    return call


_VERDICTS: Final = frozenset(c.value for c in GuardError)


def _signal_text(key: str, fmt: Formats) -> str:
    # <user>:<trader>:<symbol>:<interval>:<candle open ms> (private.signal_key).
    parts = key.split(":")
    if len(parts) != 5 or not parts[4].isdigit():
        return key
    return f"{parts[2]} {parts[3]} · {fmt.time(int(parts[4]), seconds=parts[3].endswith('s'))}"


def delivery_lines(rows: object, fmt: Formats) -> tuple[str, tuple[WebhookFailure, ...]]:
    """The deliveries' state in a line, and the failed ones (newest first); malformed rows are skipped."""
    pending = delivered = 0
    last_ms: int | None = None
    failures: list[WebhookFailure] = []
    for row in rows if isinstance(rows, list) else ():
        if not isinstance(row, Mapping) or not isinstance(row.get("signal_key"), str):
            continue
        status = row.get("status")
        if status == "pending":
            pending += 1
        elif status == "delivered":
            delivered += 1
            us = timestamp_us(row.get("delivered_at"))
            if us is not None and (last_ms is None or us // 1000 > last_ms):
                last_ms = us // 1000
        elif status == "failed" and len(failures) < FAILURES_SHOWN:
            http = row.get("last_http_status")
            attempts = row.get("attempts")
            why = f"HTTP {http}" if isinstance(http, int) else str(row.get("last_error") or "failed")
            tries = (
                f" after {attempts} attempt{'s' if attempts != 1 else ''}"
                if isinstance(attempts, int)
                else ""
            )
            key = str(row["signal_key"])
            failures.append(WebhookFailure(key, _signal_text(key, fmt), why + tries))
    parts = []
    if delivered:
        parts.append(f"Last delivered {fmt.time(last_ms)}." if last_ms is not None else "Delivered.")
    if pending:
        parts.append(f"{pending} waiting to be posted.")
    if failures:
        parts.append(f"{len(failures)} failed: retry below once the receiver is fixed.")
    return (" ".join(parts) or "No signal posted yet."), tuple(failures)


class WebhookPanel:
    """The page's webhook: settings, state and delivery (see the module documentation)."""

    def __init__(
        self,
        user_id: str,
        backend: Backend,
        timers: Timers,
        spawn: Spawn,
        *,
        poster: HttpPoster | None,
        stack_urls: tuple[str, ...],
        show: Callable[[WebhookView], None],
        formats: Callable[[], Formats],
        available: Callable[[], bool],
        on_verdict: Callable[[GuardError], None] | None = None,
    ) -> None:
        """Work for ``user_id``; ``poster`` posts (None: this page cannot post, it only shows).

        ``stack_urls`` are this app's own servers (refused as webhooks), ``show`` draws the panel,
        ``formats`` writes times, ``available`` says whether the database has the webhooks component,
        ``on_verdict`` hears a claim or record refused because this tab no longer holds the lease.
        """
        self._user_id = user_id
        self._backend = backend
        self._timers = timers
        self._spawn = spawn
        self._stack_urls = stack_urls
        self._show = show
        self._formats = formats
        self._available = available
        self._driver = (
            WebhookDriver(
                rpc_port(backend, on_verdict), poster, stack_urls=stack_urls, on_problem=self._problem
            )
            if poster is not None
            else None
        )
        self._epoch: int | None = None
        self._delivering = False
        self._again = False
        self._view = WebhookView(available=False)
        self._stopped = False
        #: The user has an enabled webhook (as last read): without one there is nothing to claim, and
        #: no claim is sent (every claim is a request, and one sent as the lease moves is refused).
        self._hook = False

    # -- state ----------------------------------------------------------------------------------

    def _draw(self, **changes: Any) -> None:
        self._view = replace(self._view, **changes)
        if not self._stopped:
            self._show(self._view)

    async def load(self) -> None:
        """Read the webhook and its deliveries, and draw them."""
        if not self._available():
            self._draw(available=False, note="")
            return
        hook, deliveries = (
            await self._backend.select("webhooks", "url,secret,enabled", limit=1),
            await self._backend.select(
                "webhook_deliveries", DELIVERY_COLUMNS, order="updated_at", descending=True, limit=STATE_ROWS
            ),
        )
        if self._stopped:
            return
        if hook.error is not None:
            self._draw(available=True, note=f"Could not read the webhook: {hook.error}")
            return
        rows = hook.data if isinstance(hook.data, list) else []
        row = rows[0] if rows and isinstance(rows[0], dict) else None
        if row is None:
            self._draw(available=True, url="", has_secret=False, enabled=True, note="", failures=())
            self._hook = False
            return
        note, failures = (
            delivery_lines(deliveries.data, self._formats())
            if deliveries.error is None
            else (f"Could not read the deliveries: {deliveries.error}", ())
        )
        enabled = row.get("enabled") is not False
        self._draw(
            available=True,
            url=str(row.get("url") or ""),
            has_secret=bool(row.get("secret")),
            enabled=enabled,
            note=note,
            failures=failures,
        )
        had, self._hook = self._hook, enabled
        if enabled and not had:
            self.kick()  # set here or on another device meanwhile: post what is due now

    def refresh(self) -> None:
        """Read and draw again (in the background)."""
        self._spawn(self.load())

    # -- settings -------------------------------------------------------------------------------

    def save(self, url: str, secret: str, enabled: bool) -> None:
        """Store the webhook (a new secret replaces the old one; an empty field keeps it)."""
        url = url.strip()
        problem = webhook_url_problem(url, self._stack_urls)
        if problem is not None:
            self._draw(error=f"Not saved: {problem}.")
            return
        values: dict[str, object] = {"url": url, "enabled": enabled}
        if secret:
            values["secret"] = secret
        self._draw(busy=True, error="")
        self._spawn(self._save(values))

    async def _save(self, values: dict[str, object]) -> None:
        result = await self._backend.update(
            "webhooks", values, match={"user_id": self._user_id}, returning="user_id"
        )
        if result.error is None and isinstance(result.data, list) and not result.data:
            result = await self._backend.insert("webhooks", values, returning="user_id")
        self._draw(busy=False, error=self._refusal(result))
        await self.load()

    @staticmethod
    def _refusal(result: ApiResult) -> str:
        if result.error is None:
            return ""
        # The database's line ("invalid_argument: webhook url: ..."), as it says it.
        return f"Not saved: {result.error.message.removeprefix('invalid_argument: ')}"

    def remove(self) -> None:
        """Delete the webhook: no signal is posted from now on (the deliveries' record stays)."""
        self._draw(busy=True, error="")
        self._spawn(self._remove())

    async def _remove(self) -> None:
        result = await self._backend.delete("webhooks", match={"user_id": self._user_id})
        self._draw(busy=False, error=self._refusal(result).replace("Not saved", "Not removed"))
        await self.load()

    def retry(self, key: str) -> None:
        """Put a failed delivery back in line (the executor posts it next)."""
        self._spawn(self._retry(key))

    async def _retry(self, key: str) -> None:
        result = await self._backend.rpc("retry_webhook_delivery", {"p_signal_key": key})
        if result.error is not None:
            self._draw(error=f"Could not retry: {result.error}")
        self.kick()
        await self.load()

    # -- delivery ---------------------------------------------------------------------------------

    def on_effects(self, effects: Effects) -> None:
        """The guard decided: deliver under its epoch while this tab may generate."""
        self.set_epoch(effects.epoch if effects.may_generate else None)

    def set_epoch(self, epoch: int | None) -> None:
        """The live epoch while this tab may generate (None: it may not; nothing is posted)."""
        was, self._epoch = self._epoch, epoch
        if epoch is None:
            self._timers.clear(DELIVER_TIMER)
            self._timers.clear(RETRY_TIMER)
        elif was is None and self._driver is not None:
            self._timers.every(DELIVER_TIMER, DELIVER_SECONDS, self.kick)
            self.kick()

    def kick(self) -> None:
        """Deliver what is due now (one call at a time; one more if asked meanwhile)."""
        if self._epoch is None or self._driver is None or self._stopped or not self._hook:
            return
        if self._delivering:
            self._again = True
            return
        self._delivering = True
        self._spawn(self._deliver())

    async def _deliver(self) -> None:
        try:
            while True:
                self._again = False
                epoch = self._epoch
                if epoch is None or self._driver is None or not self._available():
                    return
                summary = await self._driver.deliver_due(epoch)
                self._after(summary)
                if not (self._again or summary.more):
                    return
        finally:
            self._delivering = False

    def _after(self, summary: DeliverySummary) -> None:
        if summary.claimed or summary.error:
            self.refresh()
        if summary.next_retry_in is not None:
            self._timers.set(RETRY_TIMER, summary.next_retry_in, self.kick)

    def _problem(self, problem: DeliveryProblem) -> None:
        # Shown through the panel's state (the database's record), not as a notice a minute: a
        # receiver that is down would otherwise bury the page in them.
        if problem.kind != "delivery":
            self._draw(note=f"Webhook delivery stopped: {problem.message}")

    def stop(self) -> None:
        """Signed out: post nothing more, draw nothing more."""
        self.set_epoch(None)
        self._stopped = True
