"""The execution guard: whether this tab may generate signals and manage trades right now.

A sans-I/O state machine in the manner of h11. The browser adapter feeds it what happened (a status
poll's answer, a claim's answer, a refused write, a network failure, a timer tick, the user's takeover
confirmation, the tab lock) together with the current time, and acts on what it returns: whether to
generate, under which epoch, the badge and a toast, and which call to make next and when. The guard
itself reads no clock and performs no I/O.

The database decides (see ``supabase/migrations/*_execution_lease.sql``); the guard only mirrors the
decision, with one rule of its own that holds whatever else happens: **it stops generating when its
lease's expiry passes without a renewal**. Expiry is the server's ``expires_in_seconds`` counted from
the moment the request was *sent*, so the whole round trip is on the safe side of the deadline.

The transitions sit in :data:`TRANSITIONS` below: one row per (mode, observation), read top to bottom.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from signalguard.core.backoff import BACKOFF
from signalguard.core.candles import timestamp_us
from signalguard.core.codes import ClaimRefusal, GuardError

#: Seconds between polls (the product's rhythm: every 5 s, renewing the lease while holding it).
POLL_SECONDS: Final = 5.0
#: Renew at the latest this long before the lease's deadline, whatever the poll rhythm.
RENEW_MARGIN_SECONDS: Final = 10.0
#: While the database lacks a migration, check again this often (someone may be applying it).
SCHEMA_RECHECK_SECONDS: Final = 30.0


class Mode(enum.Enum):
    """What the tab is doing; the badge's ``data-mode``."""

    #: Nothing known yet (start-up, or just after the database refused a write): not generating.
    UNKNOWN = "unknown"
    #: This tab holds the lease: it generates signals and manages trades.
    BROWSER = "browser"
    #: The cloud machine is healthy or holds the lease: this tab monitors only.
    CLOUD = "cloud"
    #: The cloud machine is starting or provisioning: this tab has stepped aside.
    STARTING = "starting"
    #: The cloud went quiet less than 30 s ago: waiting out the grace before resuming.
    GRACE = "grace"
    #: The cloud machine reports an error; after 2 minutes the user may take over.
    ERROR = "error"
    #: Another tab of this browser, or another device, generates: this tab mirrors.
    STANDBY = "standby"
    #: The database cannot be reached, or the lease lapsed unrenewed: not generating.
    OFFLINE = "offline"
    #: The database lacks a migration this app needs: not generating until it is applied.
    INCOMPATIBLE = "incompatible"


class Observation(enum.Enum):
    """What an event means for the guard, once classified."""

    #: The database says this holder has the live lease (granted, renewed, or polled).
    HOLDING = "holding"
    #: Nobody may be refusing this holder: a claim would be granted now.
    FREE = "free"
    #: The cloud is healthy or holds the lease.
    CLOUD_ACTIVE = "cloud_active"
    #: The cloud is starting or provisioning.
    CLOUD_STARTING = "cloud_starting"
    #: The cloud's last sign of life is younger than the grace.
    CLOUD_QUIET = "cloud_quiet"
    #: The cloud is in error, not yet for 2 minutes.
    CLOUD_ERROR = "cloud_error"
    #: The cloud has been in error for 2 minutes: the user may take over.
    CLOUD_ERROR_TAKEOVER = "cloud_error_takeover"
    #: Another browser holder (another device, or a tab of another profile) has the lease.
    OTHER_DEVICE = "other_device"
    #: Another tab of this browser holds the tab lock.
    OTHER_TAB = "other_tab"
    #: The database refused one of this tab's writes as not (or no longer) the executor's.
    WRITE_REFUSED = "write_refused"
    #: A call failed (network, 5xx, malformed answer).
    NETWORK_DOWN = "network_down"
    #: A tick found the lease's deadline passed without a renewal.
    LEASE_LAPSED = "lease_lapsed"
    #: A tick with nothing to report.
    QUIET_TICK = "quiet_tick"
    #: The user confirmed the takeover.
    TAKEOVER_CONFIRMED = "takeover_confirmed"
    #: The database lacks a required migration.
    SCHEMA_MISSING = "schema_missing"
    #: The database has every required migration.
    SCHEMA_OK = "schema_ok"
    #: The tab is closing.
    SHUTDOWN = "shutdown"


class Call(enum.Enum):
    """The next request the adapter makes."""

    #: Nothing new: keep whatever call is already scheduled.
    KEEP = "keep"
    #: No call at all (incompatible database, or shut down).
    NONE = "none"
    #: ``execution_status(p_holder_id)``.
    STATUS = "status"
    #: ``claim_local_lease(p_holder_id)``: a claim, or the renewal of a held lease.
    CLAIM = "claim"
    #: ``claim_local_lease(p_holder_id, p_confirm_takeover => true)``.
    CLAIM_CONFIRMED = "claim_confirmed"
    #: ``release_local_lease(p_holder_id)``.
    RELEASE = "release"
    #: ``schema_version()``, then a :class:`SchemaChecked` event.
    SCHEMA = "schema"


#: Stay in the current mode.
STAY: Final = None
#: Any mode.
ANY: Final = None

#: The transition table: (mode or ANY, observation) -> next mode (STAY keeps the current one).
#: Looked up first with the current mode, then with ANY; a pair in neither stays.
TRANSITIONS: Final[Mapping[tuple[Mode | None, Observation], Mode | None]] = {
    # A database without the guard's schema is never guessed about: only a schema check that finds
    # everything in place leaves this mode.
    (Mode.INCOMPATIBLE, Observation.SCHEMA_OK): Mode.UNKNOWN,
    **{(Mode.INCOMPATIBLE, o): STAY for o in Observation if o is not Observation.SCHEMA_OK},
    # The database's answers, whatever the tab was doing.
    (ANY, Observation.HOLDING): Mode.BROWSER,
    (ANY, Observation.CLOUD_ACTIVE): Mode.CLOUD,
    (ANY, Observation.CLOUD_STARTING): Mode.STARTING,
    (ANY, Observation.CLOUD_QUIET): Mode.GRACE,
    (ANY, Observation.CLOUD_ERROR): Mode.ERROR,
    (ANY, Observation.CLOUD_ERROR_TAKEOVER): Mode.ERROR,
    (ANY, Observation.OTHER_DEVICE): Mode.STANDBY,
    (ANY, Observation.OTHER_TAB): Mode.STANDBY,
    (ANY, Observation.SCHEMA_MISSING): Mode.INCOMPATIBLE,
    # A free lease means a claim is due; until it is answered the tab keeps its mode, except that a
    # tab that thought it held the lease has just learnt otherwise.
    (Mode.BROWSER, Observation.FREE): Mode.UNKNOWN,
    (Mode.OFFLINE, Observation.FREE): Mode.UNKNOWN,
    (ANY, Observation.FREE): STAY,
    # Losing the network does not by itself end a held lease; its deadline does (LEASE_LAPSED).
    (Mode.BROWSER, Observation.NETWORK_DOWN): STAY,
    (ANY, Observation.NETWORK_DOWN): Mode.OFFLINE,
    (Mode.BROWSER, Observation.LEASE_LAPSED): Mode.OFFLINE,
    # A refused write moves the guard at once, without waiting for the next poll.
    (ANY, Observation.WRITE_REFUSED): Mode.UNKNOWN,
    (ANY, Observation.TAKEOVER_CONFIRMED): STAY,
    (ANY, Observation.QUIET_TICK): STAY,
    (ANY, Observation.SCHEMA_OK): STAY,
    (ANY, Observation.SHUTDOWN): Mode.UNKNOWN,
}

BADGES: Final[Mapping[Mode, str]] = {
    Mode.UNKNOWN: "Checking…",
    Mode.BROWSER: "Browser Mode",
    Mode.CLOUD: "Cloud Active",
    Mode.STARTING: "Cloud starting…",
    Mode.GRACE: "Resuming in {seconds} s",
    Mode.ERROR: "Cloud error",
    Mode.STANDBY: "Another tab is generating",
    Mode.OFFLINE: "Offline — not generating",
    Mode.INCOMPATIBLE: "Database needs an update — not generating",
}

#: A toast on each change of mode, by the mode entered.
TOASTS: Final[Mapping[Mode, str]] = {
    Mode.UNKNOWN: "Checking who may generate — paused",
    Mode.BROWSER: "This browser is generating signals",
    Mode.CLOUD: "Cloud machine started — switching to monitoring mode",
    Mode.STARTING: "Cloud machine starting — this browser stops generating",
    Mode.GRACE: "Cloud machine stopped — resuming in {seconds} s",
    Mode.ERROR: "Cloud machine error: {message}",
    Mode.STANDBY: "Another tab is generating — this tab is monitoring",
    Mode.OFFLINE: "Connection lost — not generating",
    Mode.INCOMPATIBLE: "The database needs an update: {message}",
}

_REASONS: Final[Mapping[str, Observation]] = {
    ClaimRefusal.HELD_BY_CLOUD.value: Observation.CLOUD_ACTIVE,
    ClaimRefusal.CLOUD_HEALTHY.value: Observation.CLOUD_ACTIVE,
    ClaimRefusal.CLOUD_STARTING.value: Observation.CLOUD_STARTING,
    ClaimRefusal.CLOUD_GRACE.value: Observation.CLOUD_QUIET,
    ClaimRefusal.CLOUD_ERROR_WAIT.value: Observation.CLOUD_ERROR,
    ClaimRefusal.TAKEOVER_NEEDS_CONFIRMATION.value: Observation.CLOUD_ERROR_TAKEOVER,
    ClaimRefusal.HELD_BY_OTHER_LOCAL.value: Observation.OTHER_DEVICE,
}


class ProtocolError(ValueError):
    """The database's answer does not have the shape this client expects."""


# -- what the database says -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseAnswer:
    """What the database says of the lease, as seen by the caller.

    Any answer of ``execution_status`` and of either side's claim and release RPCs: they all return the
    same picture. The browser's guard and the cloud's :class:`~signalguard.core.lease.LeaseKeeper` read
    this one type.
    """

    you_hold: bool
    epoch: int
    expires_in_seconds: float
    reason: str | None
    retry_in_seconds: float | None
    takeover_available: bool
    machine_status: str | None
    error_message: str | None
    #: When the lease's current epoch began (its window's start, database clock, epoch µs), if told.
    acquired_at_us: int | None = None
    #: When the lease expires (database clock, epoch µs), if it has a holder.
    expires_at_us: int | None = None
    #: A claim's verdict: granted (or renewed). False for an answer that is no claim's.
    granted: bool = False
    #: From when the holder may sign candles (database clock, epoch µs): the start of the gap before
    #: its epoch that no earlier epoch covers (``signs_from``, migration ``gapless_handoff``); None
    #: from a database without it.
    signs_from_us: int | None = None

    @property
    def emits_from_us(self) -> int | None:
        """The earliest candle close the holder's signals may have: the gap's start, else the window's.

        With ``signs_from`` the executor also signs the candles that closed between the previous
        epoch's end and its own grant (up to the database's horizon), so every closed candle has one
        executor; without it, only its own window's (the database would refuse the others).
        """
        return self.signs_from_us if self.signs_from_us is not None else self.acquired_at_us

    @classmethod
    def from_json(cls, data: object) -> LeaseAnswer:
        """Parse an RPC answer; :class:`ProtocolError` names the first thing that is wrong."""
        if not isinstance(data, Mapping):
            raise ProtocolError("answer: expected a JSON object")
        lease = data.get("lease")
        if not isinstance(lease, Mapping):
            raise ProtocolError("lease: expected an object")
        machine = data.get("machine")
        if machine is not None and not isinstance(machine, Mapping):
            raise ProtocolError("machine: expected an object or null")
        reason = data.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ProtocolError("reason: expected a string or null")
        granted = data.get("granted", False)
        if not isinstance(granted, bool):
            raise ProtocolError("granted: expected true or false")
        return cls(
            you_hold=_bool(data, "you_hold"),
            epoch=_int(lease, "epoch"),
            expires_in_seconds=_num(lease, "expires_in_seconds", default=0.0) or 0.0,
            reason=reason,
            retry_in_seconds=_num(data, "retry_in_seconds", default=None),
            takeover_available=_bool(data, "takeover_available"),
            machine_status=_str(machine, "status") if machine else None,
            error_message=_str(machine, "error_message") if machine else None,
            acquired_at_us=timestamp_us(lease.get("acquired_at")),
            expires_at_us=timestamp_us(lease.get("expires_at")),
            granted=granted,
            signs_from_us=timestamp_us(lease.get("signs_from")),
        )


def _bool(d: Mapping[str, object], key: str) -> bool:
    v = d.get(key)
    if not isinstance(v, bool):
        raise ProtocolError(f"{key}: expected true or false")
    return v


def _int(d: Mapping[str, object], key: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ProtocolError(f"{key}: expected a non-negative integer")
    return v


def _num(d: Mapping[str, object], key: str, *, default: float | None) -> float | None:
    v = d.get(key)
    if v is None:
        return default
    if not isinstance(v, int | float) or isinstance(v, bool) or v != v:
        raise ProtocolError(f"{key}: expected a number")
    return float(v)


def _str(d: Mapping[str, object], key: str) -> str | None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        raise ProtocolError(f"{key}: expected a string or null")
    return v


# -- events -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answered:
    """A status poll or a claim was answered.

    ``sent_at`` is when the request left (on the clock of ``now``), so the lease's deadline is counted
    from before the round trip.
    """

    answer: LeaseAnswer
    sent_at: float


@dataclass(frozen=True, slots=True)
class CallFailed:
    """A call failed: network error, HTTP 5xx, or an answer that could not be parsed."""

    detail: str


@dataclass(frozen=True, slots=True)
class WriteRefused:
    """The database refused a write with a guard error code."""

    code: GuardError


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the adapter ticks about once a second)."""


@dataclass(frozen=True, slots=True)
class TakeoverConfirmed:
    """The user confirmed taking over from a cloud machine in error."""


@dataclass(frozen=True, slots=True)
class TabLock:
    """The tab lock (one generating tab per browser) was acquired (``held``) or is held elsewhere."""

    held: bool


@dataclass(frozen=True, slots=True)
class SchemaChecked:
    """The start-up schema check: the problems found (empty: all present)."""

    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The tab is closing: release the lease if held."""


Event = Answered | CallFailed | WriteRefused | Tick | TakeoverConfirmed | TabLock | SchemaChecked | Shutdown


# -- effects ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Effects:
    """What the adapter does after an event."""

    #: The mode after the event.
    mode: Mode
    #: Whether the engine may create signals and manage trades now.
    may_generate: bool
    #: The epoch to stamp on what it writes, while it may generate.
    epoch: int | None
    #: The badge's human text.
    badge: str
    #: A toast to show (on every change of mode), or None.
    toast: str | None
    #: The next call, and in how many seconds (replacing any scheduled one unless KEEP).
    call: Call
    call_in: float
    #: Whether the takeover button is offered (the database says takeover is allowed).
    takeover_offered: bool
    #: A longer explanation (an error message, what migration is missing), or None.
    detail: str | None
    #: From when the epoch signs candles (database clock, epoch µs: the gap's start before the epoch,
    #: else its window's), while it may generate and if known: the engine catches up the candles that
    #: closed since before it could emit, and emits nothing for a candle that closed before.
    since_us: int | None = None
    #: When the epoch's own window opened (database clock, epoch µs), while it may generate and if
    #: known: the gap before it is signed back to a horizon counted from here.
    started_us: int | None = None


@dataclass(slots=True)
class _Context:
    mode: Mode = Mode.UNKNOWN
    epoch: int | None = None
    since_us: int | None = None
    started_us: int | None = None
    deadline: float | None = None
    tab_lock: bool = False
    failures: int = 0
    retry_at: float | None = None
    takeover: bool = False
    detail: str | None = None


@dataclass(slots=True)
class ExecutionGuard:
    """The guard of one tab. ``process(event, now)`` returns the mode and the effects.

    ``now`` is seconds on a monotonic clock of the caller's choosing; every event of one guard must
    use the same clock.
    """

    _c: _Context = field(default_factory=_Context)

    @property
    def mode(self) -> Mode:
        """The current mode."""
        return self._c.mode

    def may_generate(self, now: float) -> bool:
        """Whether generating is allowed at ``now``: holding, with the lease's deadline ahead."""
        c = self._c
        return (
            c.mode is Mode.BROWSER
            and c.tab_lock
            and c.epoch is not None
            and c.deadline is not None
            and now < c.deadline
        )

    def process(self, event: Event, now: float) -> tuple[Mode, Effects]:
        """Feed one event; return the new mode and what to do."""
        c = self._c
        before = c.mode
        obs = self._observe(event, now)
        if (c.mode, obs) in TRANSITIONS:
            target = TRANSITIONS[(c.mode, obs)]
        else:
            target = TRANSITIONS.get((ANY, obs), STAY)
        if target is not None:
            c.mode = target
        if c.mode is not Mode.BROWSER:
            c.epoch = None
            c.since_us = None
            c.started_us = None
            c.deadline = None
        call, call_in = self._next_call(obs, event, now)
        toast = self._toast(now) if c.mode is not before else None
        return c.mode, Effects(
            mode=c.mode,
            may_generate=self.may_generate(now),
            epoch=c.epoch if self.may_generate(now) else None,
            badge=self._badge(now),
            toast=toast,
            call=call,
            call_in=call_in,
            takeover_offered=c.mode is Mode.ERROR and c.takeover,
            detail=c.detail,
            since_us=c.since_us if self.may_generate(now) else None,
            started_us=c.started_us if self.may_generate(now) else None,
        )

    # -- classification ---------------------------------------------------------------------------

    def _observe(self, event: Event, now: float) -> Observation:
        c = self._c
        if isinstance(event, Answered):
            c.failures = 0
            a = event.answer
            c.takeover = a.takeover_available
            c.retry_at = now + a.retry_in_seconds if a.retry_in_seconds is not None else None
            c.detail = a.error_message if a.machine_status == "error" else None
            if a.you_hold and a.expires_in_seconds > 0:
                if not c.tab_lock:
                    # Holding without the tab lock cannot happen through this adapter; refuse to act
                    # on it rather than generate from two tabs.
                    return Observation.OTHER_TAB
                c.epoch = a.epoch
                c.since_us = a.emits_from_us
                c.started_us = a.acquired_at_us
                c.deadline = event.sent_at + a.expires_in_seconds
                return Observation.HOLDING
            if a.reason is None:
                return Observation.FREE if c.tab_lock else Observation.OTHER_TAB
            obs = _REASONS.get(a.reason)
            if obs is None:
                c.detail = f"unknown refusal reason {a.reason!r}"
                return Observation.NETWORK_DOWN
            if obs is Observation.OTHER_DEVICE and not c.tab_lock:
                return Observation.OTHER_TAB
            return obs
        if isinstance(event, CallFailed):
            c.failures += 1
            c.detail = event.detail
            return Observation.NETWORK_DOWN
        if isinstance(event, WriteRefused):
            return Observation.WRITE_REFUSED if event.code.moves_guard else Observation.QUIET_TICK
        if isinstance(event, Tick):
            if c.mode is Mode.BROWSER and (c.deadline is None or now >= c.deadline):
                c.detail = "the lease lapsed without a renewal"
                return Observation.LEASE_LAPSED
            return Observation.QUIET_TICK
        if isinstance(event, TakeoverConfirmed):
            return Observation.TAKEOVER_CONFIRMED
        if isinstance(event, TabLock):
            c.tab_lock = event.held
            if not event.held:
                # Another tab of this browser has the lock; what it does (generate, or watch the
                # cloud) is the database's to say: the next answer sets the mode. Only a tab that
                # generated stops at once.
                return Observation.OTHER_TAB if c.mode is Mode.BROWSER else Observation.QUIET_TICK
            return Observation.FREE if c.mode is Mode.STANDBY else Observation.QUIET_TICK
        if isinstance(event, SchemaChecked):
            if event.problems:
                c.detail = " ".join(event.problems)
                return Observation.SCHEMA_MISSING
            c.detail = None
            return Observation.SCHEMA_OK
        return Observation.SHUTDOWN

    # -- what to do next --------------------------------------------------------------------------

    def _next_call(self, obs: Observation, event: Event, now: float) -> tuple[Call, float]:
        c = self._c
        if obs is Observation.SHUTDOWN:
            # Release whatever this tab may still hold; releasing what it does not hold changes
            # nothing in the database, and a tab without the tab lock never claimed.
            return (Call.RELEASE if c.tab_lock else Call.NONE), 0.0
        if c.mode is Mode.INCOMPATIBLE:
            return (
                (Call.SCHEMA, SCHEMA_RECHECK_SECONDS)
                if obs is Observation.SCHEMA_MISSING
                else (Call.KEEP, 0.0)
            )
        if obs is Observation.SCHEMA_OK:
            return Call.STATUS, 0.0
        if obs is Observation.TAKEOVER_CONFIRMED:
            return (Call.CLAIM_CONFIRMED, 0.0) if c.mode is Mode.ERROR and c.takeover else (Call.KEEP, 0.0)
        if obs is Observation.FREE:
            return Call.CLAIM, 0.0
        if obs in (Observation.WRITE_REFUSED, Observation.LEASE_LAPSED):
            return Call.STATUS, 0.0
        if obs is Observation.QUIET_TICK:
            return Call.KEEP, 0.0
        if obs is Observation.NETWORK_DOWN:
            delay = BACKOFF.delay(c.failures)
            if c.mode is Mode.BROWSER and c.deadline is not None:
                # Keep trying to renew before the deadline rather than after it.
                delay = min(delay, max(0.0, c.deadline - now - 1.0))
            return (Call.CLAIM if c.mode is Mode.BROWSER else Call.STATUS), delay
        if c.mode is Mode.BROWSER:
            assert c.deadline is not None
            return Call.CLAIM, max(0.0, min(POLL_SECONDS, c.deadline - now - RENEW_MARGIN_SECONDS))
        if c.mode is Mode.GRACE and c.retry_at is not None:
            return Call.STATUS, max(0.0, min(POLL_SECONDS, c.retry_at - now))
        return Call.STATUS, POLL_SECONDS

    # -- presentation -----------------------------------------------------------------------------

    def _seconds_left(self, now: float) -> int:
        c = self._c
        if c.retry_at is None:
            return 0
        return max(0, int(c.retry_at - now + 0.999))

    def _badge(self, now: float) -> str:
        c = self._c
        if c.mode is Mode.GRACE:
            return BADGES[Mode.GRACE].format(seconds=self._seconds_left(now))
        if c.mode is Mode.ERROR and c.takeover:
            return "Cloud error — take over?"
        if c.mode is Mode.STANDBY and c.tab_lock:
            return "Another device is generating"
        return BADGES[c.mode]

    def _toast(self, now: float) -> str:
        c = self._c
        text = TOASTS[c.mode]
        if c.mode is Mode.STANDBY and c.tab_lock:
            text = "Another device is generating — this tab is monitoring"
        return text.format(seconds=self._seconds_left(now), message=c.detail or "unknown")


def initial_effects() -> Effects:
    """The effects of a guard that has heard nothing yet: not generating, check the schema first."""
    return Effects(
        mode=Mode.UNKNOWN,
        may_generate=False,
        epoch=None,
        badge=BADGES[Mode.UNKNOWN],
        toast=None,
        call=Call.SCHEMA,
        call_in=0.0,
        takeover_offered=False,
        detail=None,
    )


__all__ = [
    "ANY",
    "BADGES",
    "STAY",
    "TOASTS",
    "TRANSITIONS",
    "Answered",
    "Call",
    "CallFailed",
    "Effects",
    "Event",
    "ExecutionGuard",
    "LeaseAnswer",
    "Mode",
    "Observation",
    "ProtocolError",
    "SchemaChecked",
    "Shutdown",
    "TabLock",
    "TakeoverConfirmed",
    "Tick",
    "WriteRefused",
    "initial_effects",
]
