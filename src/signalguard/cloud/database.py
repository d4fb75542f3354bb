"""The worker's database: one small interface, and supabase-py behind it.

:class:`Database` is everything the worker asks of Supabase: the machine RPCs (heartbeat, claim and
release of the cloud lease), the owner's traders and open signals, and the two writes (new signals
through ``write_signals``, status changes as PATCHes on ``signals``). :class:`SupabaseDatabase`
implements it with supabase-py's async client; :class:`signalguard.cloud.testing.FakeDatabase` is the
in-memory double for tests.

Failures come in two kinds, and the worker treats them differently:

- :class:`DatabaseUnavailable`: the call may not have reached the database or its answer was lost
  (network, timeout, HTTP 5xx, the gateway's ``PGRST_UNAVAILABLE``, PostgREST unable to reach
  PostgreSQL). Retry later; every write is idempotent (signal keys, status targets), so a retry of a
  call that did land changes nothing.
- :class:`DatabaseRefused`: a verdict with a code (``SG001``…``SG010``, ``42501``, a rejected JWT).
  Retrying the same call gives the same answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import httpx
from postgrest.exceptions import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from signalguard.cloud.config import MACHINE_KEY_HEADER, WorkerConfig
from signalguard.core.candles import iso_from_ms, timestamp_us
from signalguard.core.codes import (
    GAPLESS_HANDOFF,
    MACHINE_KEYS,
    UNKNOWN_FUNCTION,
    Component,
    GuardError,
    has_component,
    missing_schema,
    no_schema,
)
from signalguard.core.engine import (
    DEFAULT_MAX_TRACKED,
    OPEN_STATUSES,
    SIGNAL_COLUMNS,
    LeaseWindow,
    Signal,
    TraderRecord,
    open_signals,
    signal_from_row,
)
from signalguard.core.guard import LeaseAnswer, ProtocolError
from signalguard.core.ports import JsonValue
from signalguard.core.positions import TRADE_COLUMNS, TradeBook, trade_book

__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseRefused",
    "DatabaseUnavailable",
    "LeaseAnswer",
    "SupabaseDatabase",
    "classify_api_error",
    "lease_windows",
    "signal_from_row",
    "timestamp_us",
]


# Codes that are verdicts: the guard's, permission denied, and PostgREST's JWT errors (PGRST3xx).
_VERDICT = re.compile(r"SG\d{3}|42501|PGRST3\d\d")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class DatabaseError(Exception):
    """A database call failed; see the two subclasses."""


class DatabaseUnavailable(DatabaseError):
    """The call may not have been answered: retry later."""


class DatabaseRefused(DatabaseError):
    """The database refused the call with a verdict ``code``; retrying gives the same answer."""

    def __init__(self, code: str, message: str) -> None:
        """Record the database's ``code`` and ``message``."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def guard_error(self) -> GuardError | None:
        """The code as a :class:`GuardError`, if it is one."""
        try:
            return GuardError(self.code)
        except ValueError:
            return None


def classify_api_error(exc: APIError) -> DatabaseError:
    """Turn supabase-py's :class:`APIError` into a verdict or a transient failure."""
    code = exc.code or ""
    message = exc.message or str(exc)
    if _VERDICT.fullmatch(code):
        # The hint says what to do about a verdict (a revoked machine key: make a new one).
        hint = exc.hint if isinstance(exc.hint, str) else ""
        return DatabaseRefused(code, f"{message} ({hint})" if hint.strip() else message)
    if not code and message.lower().startswith("invalid api key"):
        # Supabase's gateway (and the local one) refuse a wrong anon key with this, and no code.
        return DatabaseRefused("invalid_api_key", f"{message} (check SIGNALGUARD_SUPABASE_ANON_KEY)")
    return DatabaseUnavailable(f"{code or 'error'}: {message}")


def _lease_answer(data: object) -> LeaseAnswer:
    """A lease RPC's answer; one of another shape is the database being unusable, to be retried."""
    try:
        return LeaseAnswer.from_json(data)
    except ProtocolError as exc:
        raise DatabaseUnavailable(f"unexpected lease answer: {exc}") from exc


#: How many of the machine's earlier windows a new lease looks back on (the engine's catch-up reaches
#: 60 candles back; a machine granted more often than that in an hour has bigger problems).
EARLIER_WINDOWS: Final = 8


def lease_windows(rows: object, *, before: int) -> list[LeaseWindow]:
    """Read the closed windows of epochs below ``before`` from ``lease_epochs`` rows.

    Rows carry ``epoch``, ``started_at`` and ``valid_until``; a row that does not parse is skipped (a
    window not known is a window not filled, never a window guessed).
    """
    out: list[LeaseWindow] = []
    for row in rows if isinstance(rows, list) else ():
        if not isinstance(row, Mapping):
            continue
        epoch = row.get("epoch")
        start = timestamp_us(row.get("started_at"))
        end = timestamp_us(row.get("valid_until"))
        if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch < before and start and end:
            out.append(LeaseWindow(epoch, start, end))
    return out


class Database(Protocol):
    """Everything the worker asks of the database. Methods raise :class:`DatabaseError` subclasses."""

    async def schema_problems(self) -> list[str]:
        """What the database lacks for this worker (``schema_version()``), one sentence each."""
        ...

    async def heartbeat(self, status: str | None = None, error_message: str | None = None) -> None:
        """``machine_heartbeat``: mark the machine alive, optionally with a new status."""
        ...

    async def claim_lease(self) -> LeaseAnswer:
        """``claim_cloud_lease``: claim or renew the cloud lease."""
        ...

    async def release_lease(self, evaluated_until_ms: int | None = None) -> LeaseAnswer:
        """``release_cloud_lease``: end the machine's lease now.

        ``evaluated_until_ms``: where the machine's evaluation stopped (``FeedPlanner.evaluated_until``);
        a database with migration ``gapless_handoff`` ends the window there when it is earlier, so that
        the candles after it are the next holder's to sign.
        """
        ...

    async def earlier_windows(self, epoch: int) -> list[LeaseWindow]:
        """The machine's own windows of epochs before ``epoch`` (the newest :data:`EARLIER_WINDOWS`)."""
        ...

    async def load_traders(self) -> list[TraderRecord]:
        """The owner's enabled traders."""
        ...

    async def load_open_signals(self) -> list[Signal]:
        """The owner's signals that are still ``new`` or ``active`` (to adopt at a new lease)."""
        ...

    async def load_trades(self) -> TradeBook:
        """The owner's open trades, and which open signals have a trade at all (to adopt them)."""
        ...

    async def write_signals(self, rows: Sequence[Mapping[str, JsonValue]]) -> list[Mapping[str, object]]:
        """``write_signals``: one outcome per row (``inserted``/``duplicate``/``rejected``)."""
        ...

    async def write_trades(self, ops: Sequence[Mapping[str, JsonValue]]) -> list[Mapping[str, object]]:
        """``write_trades``: opens and closes, one outcome each (``opened``/``closed``/…/``rejected``)."""
        ...

    async def update_statuses(self, changes: Sequence[Mapping[str, JsonValue]]) -> list[Mapping[str, object]]:
        """Apply status changes (``signal_key``, ``status``, ``updated_epoch``); one outcome each.

        Outcomes: ``updated``, or ``rejected`` with the guard's code (``not_found`` when no such row).
        """
        ...

    async def report_trader_problems(self, epoch: int, problems: Mapping[str, str | None]) -> None:
        """``report_trader_problems``: set (a line) or clear (None) why traders do not generate."""
        ...

    def has_component(self, component: Component) -> bool:
        """Whether ``schema_version()`` reported ``component`` (at its version or later) at start."""
        ...

    async def webhook_rpc(self, name: str, args: Mapping[str, JsonValue]) -> object:
        """Call the webhook RPC ``name`` (``claim_webhook_deliveries``, ``record_webhook_deliveries``).

        The decoded answer; raises :class:`DatabaseError` like every call.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class SupabaseDatabase:
    """:class:`Database` over supabase-py's async client, authenticated with the machine token."""

    def __init__(
        self, client: AsyncClient, *, owner_id: str, machine_id: str = "", timeout: float = 8.0
    ) -> None:
        """Wrap an async client whose headers carry the API key and the machine token."""
        self._client = client
        self._owner_id = owner_id
        self._machine_id = machine_id
        # A bound on each call as a whole: httpx's timeouts are per phase, and a call that outlives the
        # lease would stall the heartbeat behind it.
        self._deadline = timeout * 1.5
        # What schema_version() last reported (the release's argument depends on it).
        self._components: Mapping[str, object] = {}

    @classmethod
    async def connect(cls, config: WorkerConfig, *, timeout: float = 8.0) -> SupabaseDatabase:
        """Create the client: the anon key as ``apikey``, and the machine's token or key.

        A token is the bearer; a key goes in its header, with the anon key as the bearer, as the database
        requires.
        """
        credential = (
            {MACHINE_KEY_HEADER: config.machine_key}
            if config.machine_key
            else {"Authorization": f"Bearer {config.machine_token}"}
        )
        options = AsyncClientOptions(
            headers=credential,
            # A machine token is not a Supabase Auth session: nothing to refresh or persist.
            auto_refresh_token=False,
            persist_session=False,
            postgrest_client_timeout=timeout,
            # The worker's loops retry on their own schedule; hidden retries would hold up a heartbeat.
            postgrest_client_retry=False,
        )
        client = await acreate_client(config.supabase_url, config.anon_key, options=options)
        return cls(client, owner_id=config.owner_id, machine_id=config.machine_id, timeout=timeout)

    async def _run(self, call: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._deadline):
                response = await call
        except APIError as exc:
            raise classify_api_error(exc) from None
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        except ValueError as exc:  # an answer that is not what PostgREST sends (a proxy's page)
            raise DatabaseUnavailable(f"unreadable answer: {exc}") from None
        return response.data

    async def schema_problems(self) -> list[str]:
        """See :meth:`Database.schema_problems`."""
        try:
            data = await self._run(self._client.rpc("schema_version", {}).execute())
        except DatabaseUnavailable as exc:
            if str(exc).startswith(f"{UNKNOWN_FUNCTION}:"):
                # Nothing pushed yet (or a stale API cache): the migrations to apply, not a retry loop.
                self._components = {}
                return no_schema()
            raise
        components = data.get("components") if isinstance(data, Mapping) else None
        self._components = components if isinstance(components, Mapping) else {}
        return missing_schema(self._components)

    async def identify(self) -> tuple[str, str]:
        """Ask the database whose machine this is (``machine_identity()``); ``(owner id, machine id)``.

        A worker started with a machine key knows neither until it asks; from here on the reads name the
        owner. A refused key (SG012) or an API that did not take it is a :class:`DatabaseRefused` whose
        message says what to do.
        """
        try:
            data = await self._run(self._client.rpc("machine_identity", {}).execute())
        except DatabaseUnavailable as exc:
            if str(exc).startswith(f"{UNKNOWN_FUNCTION}:"):
                raise DatabaseRefused(
                    UNKNOWN_FUNCTION,
                    f"the database has no machine keys: push {MACHINE_KEYS.migration}, or run the machine "
                    "with SIGNALGUARD_MACHINE_TOKEN",
                ) from None
            raise
        except DatabaseRefused as exc:
            if exc.code == "42501":
                # The anon key's own refusal: the API passed the key over, so the request stayed anon.
                raise DatabaseRefused(
                    exc.code,
                    "the API did not take the machine key (the request stayed anonymous): PostgREST's "
                    f"pre-request setting from {MACHINE_KEYS.migration} is missing (docs/deploy.md)",
                ) from None
            raise
        owner = data.get("user_id") if isinstance(data, Mapping) else None
        machine = data.get("machine") if isinstance(data, Mapping) else None
        machine_id = machine.get("id") if isinstance(machine, Mapping) else None
        try:
            self._owner_id, self._machine_id = str(uuid.UUID(str(owner))), str(uuid.UUID(str(machine_id)))
        except ValueError:
            raise DatabaseUnavailable(f"machine_identity() answered {str(data)[:200]!r}") from None
        return self._owner_id, self._machine_id

    async def heartbeat(self, status: str | None = None, error_message: str | None = None) -> None:
        """See :meth:`Database.heartbeat`."""
        params: dict[str, Any] = {}
        if status is not None:
            params["p_status"] = status
        if error_message is not None:
            params["p_error_message"] = error_message[:2000]
        await self._run(self._client.rpc("machine_heartbeat", params).execute())

    async def claim_lease(self) -> LeaseAnswer:
        """See :meth:`Database.claim_lease`."""
        return _lease_answer(await self._run(self._client.rpc("claim_cloud_lease", {}).execute()))

    async def release_lease(self, evaluated_until_ms: int | None = None) -> LeaseAnswer:
        """See :meth:`Database.release_lease`."""
        params: dict[str, Any] = {}
        if evaluated_until_ms is not None and has_component(self._components, GAPLESS_HANDOFF):
            # An older database does not know the argument (PostgREST would find no such function).
            params["p_evaluated_until"] = iso_from_ms(evaluated_until_ms)
        answer = _lease_answer(await self._run(self._client.rpc("release_cloud_lease", params).execute()))
        # A release is "granted" once the machine no longer holds the lease (it had none, or gave it up).
        return dataclasses.replace(answer, granted=not answer.you_hold, reason=None)

    async def earlier_windows(self, epoch: int) -> list[LeaseWindow]:
        """See :meth:`Database.earlier_windows`."""
        if not self._machine_id:
            return []
        query = (
            self._client.table("lease_epochs")
            .select("epoch,started_at,valid_until")
            .eq("user_id", self._owner_id)
            .eq("holder_kind", "cloud")
            .eq("machine_id", self._machine_id)
            .lt("epoch", epoch)
            .order("epoch", desc=True)
            .limit(EARLIER_WINDOWS)
        )
        return lease_windows(await self._run(query.execute()), before=epoch)

    async def load_traders(self) -> list[TraderRecord]:
        """See :meth:`Database.load_traders`."""
        query = (
            self._client.table("traders")
            .select("id,name,definition,enabled")
            .eq("user_id", self._owner_id)
            .eq("enabled", True)
            .order("created_at")
        )
        rows = await self._run(query.execute())
        return [
            TraderRecord(str(r["id"]), str(r.get("name") or ""), r.get("definition"), bool(r.get("enabled")))
            for r in rows or ()
            if isinstance(r, Mapping) and "id" in r
        ]

    async def load_open_signals(self) -> list[Signal]:
        """See :meth:`Database.load_open_signals`."""
        query = (
            self._client.table("signals")
            .select(SIGNAL_COLUMNS)
            .eq("user_id", self._owner_id)
            .in_("status", list(OPEN_STATUSES))
            .order("candle_open_time", desc=True)
            .limit(DEFAULT_MAX_TRACKED)
        )
        rows = await self._run(query.execute())
        return open_signals(rows)

    async def load_trades(self) -> TradeBook:
        """See :meth:`Database.load_trades`."""
        open_query = (
            self._client.table("trades")
            .select(TRADE_COLUMNS)
            .eq("user_id", self._owner_id)
            .eq("status", "open")
            .order("entry_time")
            .limit(DEFAULT_MAX_TRACKED)
        )
        traded_query = (
            self._client.table("signals")
            .select("signal_key,trades!inner(status)")
            .eq("user_id", self._owner_id)
            .in_("status", list(OPEN_STATUSES))
            .limit(DEFAULT_MAX_TRACKED)
        )
        open_rows = await self._run(open_query.execute())
        traded_rows = await self._run(traded_query.execute())
        return trade_book(open_rows, traded_rows)

    async def write_trades(self, ops: Sequence[Mapping[str, JsonValue]]) -> list[Mapping[str, object]]:
        """See :meth:`Database.write_trades`."""
        data = await self._run(self._client.rpc("write_trades", {"p_ops": [dict(o) for o in ops]}).execute())
        if not isinstance(data, list):
            raise DatabaseUnavailable(f"write_trades answered {type(data).__name__}, not a list")
        return [o for o in data if isinstance(o, Mapping)]

    async def write_signals(self, rows: Sequence[Mapping[str, JsonValue]]) -> list[Mapping[str, object]]:
        """See :meth:`Database.write_signals`."""
        data = await self._run(
            self._client.rpc("write_signals", {"p_signals": [dict(r) for r in rows]}).execute()
        )
        if not isinstance(data, list):
            raise DatabaseUnavailable(f"write_signals answered {type(data).__name__}, not a list")
        return [o for o in data if isinstance(o, Mapping)]

    async def update_statuses(self, changes: Sequence[Mapping[str, JsonValue]]) -> list[Mapping[str, object]]:
        """See :meth:`Database.update_statuses`: ``update_signal_statuses``, one outcome per change."""
        data = await self._run(
            self._client.rpc("update_signal_statuses", {"p_changes": [dict(c) for c in changes]}).execute()
        )
        if not isinstance(data, list):
            raise DatabaseUnavailable(f"update_signal_statuses answered {type(data).__name__}, not a list")
        return [o for o in data if isinstance(o, Mapping)]

    async def report_trader_problems(self, epoch: int, problems: Mapping[str, str | None]) -> None:
        """See :meth:`Database.report_trader_problems`."""
        params = {"p_epoch": epoch, "p_problems": dict(problems)}
        await self._run(self._client.rpc("report_trader_problems", params).execute())

    def has_component(self, component: Component) -> bool:
        """See :meth:`Database.has_component`."""
        return has_component(self._components, component)

    async def webhook_rpc(self, name: str, args: Mapping[str, JsonValue]) -> object:
        """See :meth:`Database.webhook_rpc`."""
        return await self._run(self._client.rpc(name, dict(args)).execute())

    async def aclose(self) -> None:
        """See :meth:`Database.aclose`."""
        await self._client.postgrest.aclose()
