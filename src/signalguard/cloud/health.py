"""``GET /health``: whether the worker is doing its job, for the platform's check (fly.toml ``[checks]``).

The answer is JSON, ``{status, healthy, lease: {held, epoch, expires_in_s}, market, last_write_age_s,
problems}``, with HTTP 200 while the worker is healthy and 503 when it is not:

* healthy: starting (the database answered, or has had less than a lease's length to); holding the lease
  and renewing it; standing by while the user's browser holds the lease (``local_lease_live``: the
  browser yields on seeing 'starting', or its lease runs out);
* not healthy: the database has not answered for longer than the lease (30 s: by then the lease is
  gone); a claim refused for another reason (the machine is not active, its heartbeat is stale: a
  restart will not fix what the database says); a fatal error; stopping or stopped.

A small responder on :func:`asyncio.start_server` rather than a web framework: the worker's ``cloud``
extra has no HTTP server, and one path with one answer needs none. It reads the request line and the
headers (bounded in size and time), answers and closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from signalguard.core.codes import ClaimRefusal

if TYPE_CHECKING:
    from signalguard.cloud.worker import CloudWorker

__all__ = ["HealthReport", "HealthServer", "assess"]

log = logging.getLogger("signalguard.cloud.health")

#: Refusals that mean "waiting my turn", not "broken".
_STANDBY: Final = frozenset({ClaimRefusal.LOCAL_LEASE_LIVE.value})
#: A request's head (line and headers) must arrive within this and fit in this many bytes.
_READ_TIMEOUT: Final = 5.0
_MAX_HEAD: Final = 8192
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The verdict and the JSON body of one ``GET /health``."""

    healthy: bool
    body: dict[str, object]

    @property
    def code(self) -> int:
        """200 when healthy, 503 when not."""
        return 200 if self.healthy else 503


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(max(0.0, now - then), 1)


def assess(worker: CloudWorker) -> HealthReport:
    """What ``GET /health`` answers about ``worker`` now (see the module documentation)."""
    now = worker.now()
    keeper = worker.keeper
    held = keeper.may_generate(now)
    deadline = keeper.deadline
    problems: list[str] = []
    lease_length = worker.timings.lease
    if worker.status in ("stopping", "stopped"):
        problems.append(f"the worker is {worker.status}")
    elif worker.status == "error":
        problems.append("the worker stopped on an error (see its log and the machine's error_message)")
    else:
        silent = now - (worker.db_answered_at if worker.db_answered_at is not None else worker.started_at)
        if silent > lease_length:
            what = "has not answered" if worker.db_answered_at is not None else "has not answered since start"
            problems.append(
                f"the database {what} for {silent:.0f} s (longer than the {lease_length:.0f} s lease)"
            )
        refusal = worker.lease_refusal
        if not held and refusal is not None and refusal not in _STANDBY:
            problems.append(f"the lease is refused: {refusal}")
    failing = worker.stream_problems
    body: dict[str, object] = {
        "status": "standby" if worker.lease_refusal in _STANDBY and not problems else worker.status,
        "healthy": not problems,
        "lease": {
            "held": held,
            "epoch": keeper.epoch if held else None,
            "expires_in_s": round(deadline - now, 1) if held and deadline is not None else None,
        },
        "market": {
            "streams": len(worker.manager.streams()),
            "failing": len(failing),
            "candles": worker.feed.candles,
        },
        "last_write_age_s": _age(now, worker.last_write_at),
        "problems": problems + [f"market {s}: {why}" for s, why in sorted(failing.items(), key=str)][:10],
    }
    return HealthReport(not problems, body)


class HealthServer:
    """Serves ``GET /health`` about one worker on ``host:port`` until closed."""

    def __init__(self, worker: CloudWorker, host: str, port: int) -> None:
        """Prepare the server; :meth:`start` listens."""
        self.worker = worker
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen (``OSError`` if the address is taken or not this machine's)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sockets = self._server.sockets
        if sockets and self.port == 0:  # an ephemeral port (tests): say which
            self.port = int(sockets[0].getsockname()[1])
        log.info("health check on http://%s:%d/health", self.host, self.port)

    async def close(self) -> None:
        """Stop listening and end open connections."""
        if self._server is not None:
            self._server.close()
            # Python 3.11 has no close_clients(); a check's connection is short, and the exit must stay
            # well inside the platform's kill timeout: wait for open ones only briefly.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            code, body = await self._answer(reader)
            payload = json.dumps(body, separators=(",", ":")).encode()
            head = (
                f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or sent too much too slowly: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
        async with asyncio.timeout(_READ_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return 400, {"error": "request head too large"}
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3:
            return 400, {"error": "not an HTTP request"}
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != b"/health":
            return 404, {"error": "only /health is served"}
        if method != b"GET":
            return 405, {"error": "only GET"}
        report = assess(self.worker)
        return report.code, report.body
