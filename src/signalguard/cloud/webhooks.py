"""The worker's side of webhook delivery: the driver's two ports over httpx and the worker's database.

The worker runs the shared :class:`~signalguard.webhooks.driver.WebhookDriver` (see
:mod:`signalguard.webhooks`) with:

- :class:`HttpxPoster`: each post with httpx, redirects not followed, the response's body not read
  (only its status matters, and a receiver's page may be large);
- :func:`rpc_port`: the webhook RPCs through :meth:`~signalguard.cloud.database.Database.webhook_rpc`
  (supabase-py, with the machine token), a :class:`~signalguard.cloud.database.DatabaseError` turned
  into the error line the port answers.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from signalguard.cloud.database import Database, DatabaseError
from signalguard.core.ports import CallRpc, JsonValue

__all__ = ["HttpxPoster", "rpc_port"]


class HttpxPoster:
    """:class:`~signalguard.core.ports.HttpPoster` over one httpx client (its connections are reused)."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        """Post with ``client``, or a client of its own (closed by :meth:`aclose`)."""
        self._own = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False)

    async def post(self, url: str, headers: Mapping[str, str], body: str, timeout: float) -> int | str:
        """See :class:`~signalguard.core.ports.HttpPoster`."""
        try:
            request = self._client.stream(
                "POST",
                url,
                content=body.encode("utf-8"),
                headers=dict(headers),
                timeout=timeout,
                follow_redirects=False,
            )
            async with request as response:
                return response.status_code
        except httpx.TimeoutException:
            return f"no answer within {timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            # InvalidURL, ValueError: a URL httpx cannot use (the database checks its shape, not every
            # detail). An outcome to record, never an exception for the driver.
            return f"{type(exc).__name__}: {exc}".rstrip(": ")

    async def aclose(self) -> None:
        """Close the client if it is this poster's own."""
        if self._own:
            await self._client.aclose()


def rpc_port(db: Database) -> CallRpc:
    """The driver's :data:`~signalguard.core.ports.CallRpc` over ``db``."""

    async def call(name: str, args: dict[str, JsonValue]) -> tuple[object, str | None]:
        try:
            return await db.webhook_rpc(name, args), None
        except DatabaseError as exc:
            return None, str(exc)

    return call
