"""Webhook delivery shared by the browser tab and the cloud worker (no platform imports).

- :mod:`~signalguard.webhooks.driver`: :class:`~signalguard.webhooks.driver.WebhookDriver`, the one
  loop both executors run after their writes: claim the due deliveries under the lease epoch, post
  them (bounded concurrency), record the outcomes. It reaches the database and the receivers through
  two ports of :mod:`signalguard.core.ports`: :data:`~signalguard.core.ports.CallRpc` (supabase-js
  or supabase-py) and :class:`~signalguard.core.ports.HttpPoster` (``fetch`` or httpx).
- :mod:`~signalguard.webhooks.testing`: doubles of both ports for tests of either host: an in-memory
  database with the RPCs' rules (:class:`~signalguard.webhooks.testing.FakeWebhookStore`) and a
  receiver that records what it was posted (:class:`~signalguard.webhooks.testing.RecordingPoster`).

What is posted and what an outcome becomes is :mod:`signalguard.core.webhooks`; the guarantees (at
least once, with the signal key as ``Idempotency-Key`` for receivers to drop repeats) are the
database's, ``supabase/schemas/80_webhooks.sql``.
"""

from signalguard.webhooks.driver import DeliveryProblem, DeliverySummary, WebhookDriver

__all__ = ["DeliveryProblem", "DeliverySummary", "WebhookDriver"]
