"""The WebhookDriver: claim the due deliveries, post them, record the outcomes, on either host.

The executor (the generating tab or the cloud machine) calls :meth:`WebhookDriver.deliver_due` with
its live lease epoch after writing its signals, and again when a retry comes due. One call::

    claim_webhook_deliveries(epoch, limit)    the due rows, each now in flight for 30 s
      └▶ post each (at most ``concurrency`` at once, each within ``timeout``)
           └▶ record_webhook_deliveries(epoch, results)   delivered / retry / failed
    (again while a claim comes back full, at most ``rounds`` claims)

It never raises for what the outside world does: a malformed row is recorded as failed with the
reason, a network error or a 5xx is an outcome to retry, and a refused or lost claim or record ends the
call with :attr:`DeliverySummary.error`. What went wrong goes to ``on_problem`` (the host's log or
page). If the record is lost (the lease moved, the network failed), the rows stay in flight until
their window ends and are posted again by whoever holds the lease then: receivers drop the repeat by
its ``Idempotency-Key``. See :mod:`signalguard.core.webhooks` for why that is the best there is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.ports import CallRpc, HttpPoster, JsonValue
from signalguard.core.webhooks import (
    CLAIM_LIMIT,
    POST_TIMEOUT,
    Delivery,
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
    webhook_url_problem,
)

__all__ = ["DeliveryProblem", "DeliverySummary", "ProblemCallback", "WebhookDriver"]

log = logging.getLogger("signalguard.webhooks")

CLAIM_RPC = "claim_webhook_deliveries"
RECORD_RPC = "record_webhook_deliveries"


@dataclass(frozen=True, slots=True)
class DeliveryProblem:
    """Something that went wrong, for the host to show or log."""

    #: ``delivery`` (one signal's post failed), ``claim`` or ``record`` (the RPC failed or was refused).
    kind: str
    #: The signal's key for a delivery problem (None when the claim's row had no readable key).
    signal_key: str | None
    #: One line: the HTTP status or error, or the RPC's error.
    message: str
    #: Whether the delivery is failed for good (the page shows it until the user retries it); false
    #: for one that will be tried again, or whose outcome was not recorded.
    final: bool = False


#: ``on_problem(problem)``.
ProblemCallback = Callable[[DeliveryProblem], None]


@dataclass(slots=True)
class DeliverySummary:
    """What one :meth:`WebhookDriver.deliver_due` did."""

    #: Deliveries claimed (posted, or refused without a post).
    claimed: int = 0
    #: Claimed rows that could not be read (recorded as failed when they had a key).
    malformed: int = 0
    #: The database's outcome for each recorded result (``delivered``, ``retry``, ``failed``,
    #: ``not_claimed``, …), counted.
    recorded: Counter[str] = field(default_factory=Counter)
    #: Seconds until the soonest retry this call scheduled (None: none).
    next_retry_in: float | None = None
    #: Whether the last claim came back full: more may be due at once.
    more: bool = False
    #: Why the call stopped short: the claim or the record refused (``SG001: lease_not_held: …``) or
    #: failed. None when everything claimed was recorded.
    error: str | None = None

    @property
    def delivered(self) -> int:
        """Deliveries recorded as delivered."""
        return self.recorded["delivered"]

    @property
    def retrying(self) -> int:
        """Deliveries recorded to be tried again."""
        return self.recorded["retry"]

    @property
    def failed(self) -> int:
        """Deliveries recorded as failed for good."""
        return self.recorded["failed"]


def _noop(_: DeliveryProblem) -> None:
    """No host listens."""


class WebhookDriver:
    """Delivers the user's due webhooks for the holder of the lease; see the module documentation."""

    def __init__(
        self,
        call: CallRpc,
        poster: HttpPoster,
        *,
        stack_urls: Sequence[str],
        on_problem: ProblemCallback = _noop,
        limit: int = CLAIM_LIMIT,
        concurrency: int = 4,
        timeout: float = POST_TIMEOUT,
        backoff: Backoff = BACKOFF,
        rounds: int = 3,
    ) -> None:
        """Deliver through ``call`` (the database's RPCs) and ``poster``.

        ``stack_urls``: the URLs of the stack this client talks to (the Supabase URL); a webhook that
        points there is refused, not posted. ``limit`` deliveries a claim, ``concurrency`` posts at
        once, each within ``timeout`` seconds (keep it well inside the in-flight window), retries
        after ``backoff``, at most ``rounds`` claims a call.
        """
        self._call = call
        self._poster = poster
        self._stack_urls = tuple(stack_urls)
        self._on_problem = on_problem
        self._limit = limit
        self._concurrency = max(1, concurrency)
        self._timeout = timeout
        self._backoff = backoff
        self._rounds = max(1, rounds)

    def _problem(self, problem: DeliveryProblem) -> None:
        try:
            self._on_problem(problem)
        except Exception:  # the host's callback must not stop the deliveries
            log.exception("the webhook problem callback failed")

    async def _rpc(self, name: str, args: dict[str, JsonValue]) -> tuple[object, str | None]:
        try:
            return await self._call(name, args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the port should answer, not raise; a broken one must not stop the loop
            return None, f"{type(exc).__name__}: {exc}"

    async def deliver_due(self, epoch: int) -> DeliverySummary:
        """Claim, post and record the deliveries due now under ``epoch``.

        Never raises for bad rows, network errors or refused calls (see :attr:`DeliverySummary.error`).
        """
        summary = DeliverySummary()
        for _ in range(self._rounds):
            if not await self._round(epoch, summary) or not summary.more:
                break
        return summary

    async def _round(self, epoch: int, summary: DeliverySummary) -> bool:
        """One claim, its posts and its record; False if the call must stop here."""
        summary.more = False
        data, error = await self._rpc(CLAIM_RPC, claim_args(epoch, self._limit))
        if error is None:
            try:
                batch = parse_claim(data)
            except WebhookProtocolError as exc:
                error = str(exc)
        if error is not None:
            summary.error = f"claiming webhook deliveries: {error}"
            self._problem(DeliveryProblem("claim", None, summary.error))
            return False
        claimed = len(batch.deliveries) + len(batch.malformed)
        summary.claimed += claimed
        summary.malformed += len(batch.malformed)
        summary.more = claimed >= self._limit
        if not claimed:
            return True

        results: list[Result] = []
        for bad in batch.malformed:
            if bad.signal_key is None:
                # Nothing to record it under: it comes due again when its window ends.
                self._problem(DeliveryProblem("delivery", None, bad.reason))
            else:
                results.append(refused(bad.signal_key, bad.reason))
        gate = asyncio.Semaphore(self._concurrency)
        results += await asyncio.gather(*(self._attempt(d, gate) for d in batch.deliveries))

        data, error = await self._rpc(RECORD_RPC, record_args(epoch, results))
        outcomes: dict[str, str] = {}
        if error is None:
            try:
                outcomes = parse_record(data)
            except WebhookProtocolError as exc:
                error = str(exc)
        if error is not None:
            summary.error = f"recording webhook deliveries: {error}"
            self._problem(DeliveryProblem("record", None, summary.error))
        for result in results:
            outcome = outcomes.get(result.signal_key, "not_recorded")
            summary.recorded[outcome] += 1
            if outcome == "retry" and result.retry_in is not None:
                soonest = summary.next_retry_in
                summary.next_retry_in = result.retry_in if soonest is None else min(soonest, result.retry_in)
            if not result.delivered:
                final = outcome == "failed"
                self._problem(DeliveryProblem("delivery", result.signal_key, result.error or outcome, final))
        return error is None

    async def _attempt(self, delivery: Delivery, gate: asyncio.Semaphore) -> Result:
        """Post one delivery; its outcome whatever happens."""
        problem = webhook_url_problem(delivery.url, self._stack_urls)
        if problem is not None:
            return refused(delivery.signal_key, problem)
        payload = body(delivery)
        async with gate:
            try:
                # The poster's own limit, and this one in case a poster does not keep it.
                answer = await asyncio.wait_for(
                    self._poster.post(delivery.url, headers(delivery, payload), payload, self._timeout),
                    self._timeout + 1.0,
                )
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                return outcome_of_error(delivery, f"no answer within {self._timeout:g} s", self._backoff)
            except Exception as exc:
                return outcome_of_error(delivery, f"{type(exc).__name__}: {exc}", self._backoff)
        if isinstance(answer, int) and not isinstance(answer, bool):
            return outcome_of_status(delivery, answer, self._backoff)
        return outcome_of_error(delivery, str(answer), self._backoff)
