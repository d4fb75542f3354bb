"""What the database says back: guard error codes, lease refusal reasons, required schema.

These mirror ``supabase/migrations`` (the SQL raises the codes and returns the reasons) and
``supabase/ERROR_CODES.md``; a test keeps the three in step. Clients use them to decide what to do with
a write the database refused and to explain a refused claim to the user.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


class GuardError(enum.StrEnum):
    """SQLSTATE codes the database raises (PostgREST returns them as ``code``).

    Each is a verdict, not a transient failure: retrying the same write gives the same answer, so an
    outbox drops (and reports) the entry instead of retrying it.
    """

    #: The writer never held the lease under the epoch it presented (unknown epoch, an epoch of the
    #: other side or another machine), or changes a signal without holding the live lease.
    LEASE_NOT_HELD = "SG001"
    #: The writer held that epoch, but the signal's candle closed after the epoch's window, or before
    #: it inside another epoch's window (the message names that epoch: its executor signs the candle).
    OUTSIDE_LEASE_WINDOW = "SG002"
    #: The signal's candle closes in the future by the database clock.
    CANDLE_NOT_CLOSED = "SG003"
    #: The row's source or machine_id is not the token's (a browser writing 'cloud', and so on).
    SOURCE_MISMATCH = "SG004"
    #: An update tried to change a field other than the status.
    IMMUTABLE_FIELD = "SG005"
    #: A status change the signal lifecycle does not allow (or a signal created with a status other
    #: than new).
    INVALID_TRANSITION = "SG006"
    #: A machine-only call without a machine token for one of the caller's machines.
    NOT_A_MACHINE = "SG007"
    #: A browser-only call made with a machine token.
    NOT_A_BROWSER = "SG008"
    #: A malformed argument (holder id, status, payload shape or size), or a value out of bounds: a
    #: price or quantity, a matched-condition label, a trade's exit time after the database clock.
    INVALID_ARGUMENT = "SG009"
    #: The call needs a signed-in user.
    NOT_AUTHENTICATED = "SG010"
    #: The signal's candle closed before its epoch's gap (the candles a new holder signs after the
    #: previous epoch's end, back to the catch-up horizon; ``signs_from`` in the lease answer): before
    #: the previous epoch's window ended, or beyond the horizon of 2 hours (and 60 candles) before the
    #: epoch began. Nobody may sign that candle any more; unlike SG002 it says nothing of the writer's
    #: lease, so the writer drops the signal (with the reason) and goes on generating.
    BEFORE_CATCH_UP = "SG011"
    #: A request carrying a machine key that the database does not accept: malformed, unknown, revoked,
    #: or sent with a signed-in session or another key instead of the anon key alone. Nothing the
    #: machine sends with that key will be accepted until it is given a new one.
    MACHINE_KEY_REFUSED = "SG012"

    @property
    def moves_guard(self) -> bool:
        """Whether the error means the writer is not (or no longer) the executor."""
        return self in (
            GuardError.LEASE_NOT_HELD,
            GuardError.OUTSIDE_LEASE_WINDOW,
            GuardError.SOURCE_MISMATCH,
            # A revoked key: revoking ends the machine's lease too, so it stops generating at once
            # instead of piling up writes nobody will take.
            GuardError.MACHINE_KEY_REFUSED,
        )


class ClaimRefusal(enum.StrEnum):
    """Why the database refused a lease claim (the ``reason`` of a claim or status result)."""

    #: The cloud machine holds a live lease.
    HELD_BY_CLOUD = "held_by_cloud"
    #: The cloud machine is running with a heartbeat younger than 30 s.
    CLOUD_HEALTHY = "cloud_healthy"
    #: The cloud machine is starting or provisioning, and did so (or beat) less than 30 s ago.
    CLOUD_STARTING = "cloud_starting"
    #: The cloud machine is in error, for less than 2 minutes.
    CLOUD_ERROR_WAIT = "cloud_error_wait"
    #: The cloud machine has been in error for 2 minutes: the user may take over, with confirmation.
    TAKEOVER_NEEDS_CONFIRMATION = "takeover_needs_confirmation"
    #: The cloud's last sign of life (heartbeat or stop) is less than 30 s old.
    CLOUD_GRACE = "cloud_grace"
    #: Another browser holder (tab or device) has a live lease.
    HELD_BY_OTHER_LOCAL = "held_by_other_local"
    #: (Cloud claims) the machine is not starting or running.
    MACHINE_NOT_ACTIVE = "machine_not_active"
    #: (Cloud claims) the machine has not sent a heartbeat in the last 30 s.
    HEARTBEAT_STALE = "heartbeat_stale"
    #: (Cloud claims) a browser still holds a live lease; it releases on seeing 'starting', or expires.
    LOCAL_LEASE_LIVE = "local_lease_live"


@dataclass(frozen=True, slots=True)
class Component:
    """A schema component a client needs, and the migration that provides it."""

    name: str
    version: int
    migration: str


#: What this version of the clients needs from the database, in migration order.
REQUIRED_SCHEMA: tuple[Component, ...] = (
    Component("core", 1, "20251003060000_core_tables.sql"),
    Component("source_tracking", 1, "20251003060100_add_source_to_signals.sql"),
    Component("signal_key", 1, "20251003060200_signal_key.sql"),
    Component("execution_lease", 1, "20251003060300_execution_lease.sql"),
    Component("status_updates", 1, "20251003060500_update_signal_statuses.sql"),
    Component("trades", 1, "20251003060600_trades.sql"),
    Component("write_hardening", 1, "20251003060800_write_hardening.sql"),
    Component("trader_streams", 1, "20251003060900_trader_streams.sql"),
)
#: What the app runs without: a view that needs one names its migration when it is missing.
OPTIONAL_SCHEMA: tuple[Component, ...] = (
    Component("signal_summary", 1, "20251003060400_signal_summary.sql"),
    # The database's check of trader definitions: the page validates a definition before saving it
    # and the engine refuses an invalid one whatever is stored, so a database without it works as
    # before; with it, a refused save names the field (see core.traders.rules.database_message).
    Component("trader_definitions", 1, "20251003061100_trader_definitions.sql"),
    # A new holder also signs the candles of the gap before its epoch (from the lease answer's
    # ``signs_from``), marked ``caught_up``; without it an executor signs from its own window's start
    # (``acquired_at``), as the database then refuses the gap's candles.
    Component("gapless_handoff", 1, "20251003061200_gapless_handoff.sql"),
    # Webhooks: the user's webhook, a delivery row per stored signal, and the executor's claim and
    # record RPCs (see core.webhooks). Without it the executor delivers no webhooks, and generates as
    # before.
    Component("webhooks", 1, "20251003061300_webhooks.sql"),
    # Machine keys: the user registers their cloud machine and makes and revokes its keys in the page;
    # a worker may run with a key instead of a machine token. Without it the page shows no machine
    # panel, and a worker runs with a token only.
    Component("machine_keys", 1, "20251003061400_machine_keys.sql"),
)


#: The gapless handoff: lease answers give ``signs_from``, signals have ``caught_up``, and a release
#: (or the renewal that yields) takes ``p_evaluated_until``. Clients check for it before using any.
GAPLESS_HANDOFF: Final = next(c for c in OPTIONAL_SCHEMA if c.name == "gapless_handoff")
#: Webhooks: ``claim_webhook_deliveries`` and ``record_webhook_deliveries`` exist; an executor delivers
#: webhooks only when the database reports it.
WEBHOOKS: Final = next(c for c in OPTIONAL_SCHEMA if c.name == "webhooks")
#: Machine keys: ``create_cloud_machine``, ``create_machine_key``, ``revoke_machine_key`` and
#: ``machine_identity`` exist, and PostgREST honours the ``x-signalguard-machine-key`` header.
MACHINE_KEYS: Final = next(c for c in OPTIONAL_SCHEMA if c.name == "machine_keys")


def has_component(reported: Mapping[str, object], component: Component) -> bool:
    """Whether ``schema_version()``'s ``components`` include ``component`` at its version or later."""
    entry = reported.get(component.name)
    have = entry.get("version") if isinstance(entry, Mapping) else None
    return isinstance(have, int) and have >= component.version


#: PostgREST's code for a function it does not know: ``schema_version()`` itself on a project where
#: nothing is pushed yet (or whose API's schema cache predates the migrations).
UNKNOWN_FUNCTION: Final = "PGRST202"


def no_schema() -> list[str]:
    """What to do when the API does not know ``schema_version()``: every required migration, named.

    A blank project answers so; so does an API whose schema cache was loaded before the migrations.
    Both clients then say this instead of retrying as if the database were offline.
    """
    return [
        "The database API does not know schema_version(): no migration is applied yet (push "
        "supabase/migrations), or the API's schema cache predates them (reload it).",
        *missing_schema({}),
    ]


def missing_schema(reported: Mapping[str, object]) -> list[str]:
    """Compare ``schema_version()``'s ``components`` with :data:`REQUIRED_SCHEMA`.

    Returns one sentence per missing or outdated component, naming the migration to apply; an empty
    list means the database has everything this client needs.
    """
    problems: list[str] = []
    for comp in REQUIRED_SCHEMA:
        entry = reported.get(comp.name)
        have = entry.get("version") if isinstance(entry, Mapping) else None
        if not isinstance(have, int):
            problems.append(
                f"The database lacks the '{comp.name}' schema: apply supabase/migrations/{comp.migration}."
            )
        elif have < comp.version:
            problems.append(
                f"The database has '{comp.name}' version {have}, this app needs {comp.version}: "
                f"apply supabase/migrations/{comp.migration}."
            )
    return problems
