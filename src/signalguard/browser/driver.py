"""Drive one tab's :class:`~signalguard.core.guard.ExecutionGuard`: make the calls it asks for.

The guard is sans-I/O: it says which call to make next and when (``Effects.call``/``call_in``). The
driver keeps that one scheduled call, makes it on time through the :class:`~.ports.Backend`, and feeds
what came back — ``Answered`` with the moment the request was *sent*, ``CallFailed``, or
``SchemaChecked`` — into the guard again. It also ticks the guard every second, and passes on the tab
lock and the user's takeover confirmation.

Rules of its own, each covering something the guard leaves to its adapter:

- at most one call is in flight; a call that comes due meanwhile is made as soon as the answer has
  been processed (and only if that answer did not reschedule it), so answers are never processed out
  of order;
- the lease is never polled or claimed before ``schema_version()`` has said the database has what this
  app needs: until then every call the guard asks for is a schema check;
- a call whose answer leaves nothing scheduled (the guard says KEEP, e.g. a failed schema re-check of
  an incompatible database) is retried after a back-off, so the tab never goes silent;
- once stopped (sign-out, page going away) answers still in flight are dropped, and the lease is
  released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Final

from signalguard.browser.ports import ApiResult, Backend, Spawn, Timers
from signalguard.core.backoff import BACKOFF
from signalguard.core.candles import iso_from_ms
from signalguard.core.codes import GAPLESS_HANDOFF, UNKNOWN_FUNCTION, has_component, missing_schema, no_schema
from signalguard.core.guard import (
    Answered,
    Call,
    CallFailed,
    Effects,
    Event,
    ExecutionGuard,
    LeaseAnswer,
    ProtocolError,
    SchemaChecked,
    Shutdown,
    TabLock,
    TakeoverConfirmed,
    Tick,
    initial_effects,
)
from signalguard.core.ports import Clock

#: The guard's clock tick.
TICK_SECONDS: Final = 1.0
#: Timer names (one scheduled call, one tick).
CALL_TIMER: Final = "guard-call"
TICK_TIMER: Final = "guard-tick"

_LEASE_CALLS: Final = frozenset({Call.STATUS, Call.CLAIM, Call.CLAIM_CONFIRMED})


class GuardDriver:
    """One tab's guard and its calls; see the module documentation."""

    def __init__(
        self,
        backend: Backend,
        timers: Timers,
        clock: Clock,
        spawn: Spawn,
        holder_id: str,
        on_effects: Callable[[Effects], None],
        evaluated_until: Callable[[], int | None] = lambda: None,
    ) -> None:
        """Prepare the driver; nothing happens until :meth:`start`.

        ``evaluated_until`` says where the tab's evaluation stands (epoch ms, see
        ``FeedPlanner.evaluated_until``); a release passes it on, so that the candles after it are the
        next holder's to sign.
        """
        self.guard = ExecutionGuard()
        self.holder_id = holder_id
        self.effects: Effects = initial_effects()
        self._backend = backend
        self._timers = timers
        self._clock = clock
        self._spawn = spawn
        self._on_effects = on_effects
        self._evaluated_until = evaluated_until
        self._next: tuple[Call, float] | None = None
        self._in_flight: asyncio.Future[None] | None = None
        self._schema_ok = False
        #: What ``schema_version()`` last reported (None before the first answer).
        self.components: Mapping[str, object] | None = None
        self._retries = 0
        self._started = False
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin: check the schema now, tick every second."""
        if self._started:
            return
        self._started = True
        self._apply(initial_effects(), made=None)
        self._timers.every(TICK_TIMER, TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        self.feed(Tick())

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` or :meth:`unload` ran."""
        return self._stopped

    async def stop(self) -> None:
        """Stop polling and release the lease (sign-out).

        Waits for a call in flight first, so a claim cannot be granted after the release.
        """
        if self._stopped:
            return
        self._halt()
        if self._in_flight is not None:
            await asyncio.shield(self._in_flight)
        _, effects = self.guard.process(Shutdown(), self._clock())
        self.effects = effects
        if effects.call is Call.RELEASE:
            await self._backend.rpc("release_local_lease", self._release_args())

    def unload(self) -> None:
        """The page is going away: release the lease with a request that outlives it."""
        if self._stopped:
            return
        self._halt()
        _, effects = self.guard.process(Shutdown(), self._clock())
        self.effects = effects
        if effects.call is Call.RELEASE:
            self._backend.rpc_on_unload("release_local_lease", self._release_args())

    def _release_args(self) -> dict[str, object]:
        """A release's (and a claim's) arguments: the holder, and where its evaluation stands.

        The second only when the database takes it (migration ``gapless_handoff``; an older one does
        not know the argument, and PostgREST would find no such function).
        """
        args: dict[str, object] = {"p_holder_id": self.holder_id}
        until = self._evaluated_until()
        if (
            until is not None
            and self.components is not None
            and has_component(self.components, GAPLESS_HANDOFF)
        ):
            args["p_evaluated_until"] = iso_from_ms(until)
        return args

    def _halt(self) -> None:
        self._stopped = True
        self._next = None
        self._timers.clear(CALL_TIMER)
        self._timers.clear(TICK_TIMER)

    # -- events ---------------------------------------------------------------------------------

    def feed(self, event: Event) -> Effects:
        """Process one event now and act on the effects."""
        return self._process(event, made=None)

    def tab_lock(self, held: bool) -> None:
        """The tab lock was granted (True) or is held by another tab (False)."""
        self.feed(TabLock(held))

    def take_over(self) -> None:
        """The user confirmed the takeover."""
        self.feed(TakeoverConfirmed())

    def _process(self, event: Event, *, made: Call | None) -> Effects:
        if self._stopped:
            return self.effects
        _, effects = self.guard.process(event, self._clock())
        self._apply(effects, made=made)
        return effects

    def _apply(self, effects: Effects, *, made: Call | None) -> None:
        self.effects = effects
        call, delay = effects.call, effects.call_in
        if call is Call.NONE:
            self._next = None
            self._timers.clear(CALL_TIMER)
        elif call is not Call.KEEP:
            if not self._schema_ok and call in _LEASE_CALLS:
                call = Call.SCHEMA
            self._schedule(call, delay)
        elif made is not None and self._next is None:
            self._schedule(made, self._backoff())
        self._on_effects(effects)

    def _backoff(self) -> float:
        self._retries += 1
        return BACKOFF.delay(self._retries)

    # -- the one scheduled call -----------------------------------------------------------------

    def _schedule(self, call: Call, delay: float) -> None:
        self._next = (call, self._clock() + max(0.0, delay))
        self._timers.set(CALL_TIMER, max(0.0, delay), self._due)

    def _due(self) -> None:
        if self._stopped or self._next is None or self._in_flight is not None:
            return
        call, at = self._next
        left = at - self._clock()
        if left > 0.005:
            # A stale timer message (the call was rescheduled after this one was armed).
            self._timers.set(CALL_TIMER, left, self._due)
            return
        self._next = None
        future: asyncio.Future[None] = asyncio.get_event_loop().create_future()
        self._in_flight = future
        self._spawn(self._run(call, future))

    async def _run(self, call: Call, future: asyncio.Future[None]) -> None:
        try:
            event = await self._call(call)
        except Exception as exc:
            # The adapters turn failures into values; anything raised is still a failed call, and
            # the poll must go on.
            event = CallFailed(f"{call.value}: {exc!r}")
        finally:
            self._in_flight = None
            future.set_result(None)
        if self._stopped:
            return
        if isinstance(event, Answered | SchemaChecked):
            self._retries = 0
        self._process(event, made=call)
        if self._next is not None and self._next[1] <= self._clock():
            self._due()

    async def _call(self, call: Call) -> Event:
        sent_at = self._clock()
        holder = {"p_holder_id": self.holder_id}
        if call is Call.SCHEMA:
            return self._schema_event(await self._backend.rpc("schema_version", {}))
        name, args = _LEASE_RPCS[call]
        if call in (Call.RELEASE, Call.CLAIM, Call.CLAIM_CONFIRMED):
            # A renewal the database refuses because the machine is ready ends the lease there and
            # then (it yields): it says where the evaluation stands, like a release.
            args = {**args, **self._release_args()}
        result = await self._backend.rpc(name, {**holder, **args})
        if result.error is not None and result.error.code == STALE_SCHEMA_CACHE:
            # schema_version() said the functions are there, but the API does not know them: its
            # schema cache predates the migration. Nothing is guessed: the guard treats it as a
            # missing schema (not generating, one message saying what to do) and checks again later.
            self._schema_ok = False
            return SchemaChecked((stale_schema_message(name),))
        if result.error is not None:
            return CallFailed(f"{name}: {result.error}")
        try:
            return Answered(LeaseAnswer.from_json(result.data), sent_at)
        except ProtocolError as exc:
            return CallFailed(f"{name}: {exc}")

    def _schema_event(self, result: ApiResult) -> Event:
        if result.error is not None and result.error.code == UNKNOWN_FUNCTION:
            # A project with nothing pushed (or a stale API cache): say which migrations, not "offline".
            self.components = {}
            self._schema_ok = False
            return SchemaChecked(tuple(no_schema()))
        if result.error is not None:
            return CallFailed(f"schema_version: {result.error}")
        data = result.data
        components = data.get("components") if isinstance(data, dict) else None
        if not isinstance(components, dict):
            return CallFailed("schema_version: the answer has no components")
        problems = tuple(missing_schema(components))
        self.components = components
        self._schema_ok = not problems
        return SchemaChecked(problems)


#: PostgREST's answer for a function missing from its schema cache.
STALE_SCHEMA_CACHE: Final = UNKNOWN_FUNCTION


def stale_schema_message(function: str) -> str:
    """What to do when the database has a function that its API does not see."""
    return (
        f"The database API (PostgREST) does not see {function}() although the database reports the "
        "guard's migrations: its schema cache is stale. Reload it (SQL: NOTIFY pgrst, 'reload schema'; "
        "on Supabase: Database → API → Reload schema). Nothing is generated until then."
    )


_LEASE_RPCS: Final[Mapping[Call, tuple[str, Mapping[str, object]]]] = {
    Call.STATUS: ("execution_status", {}),
    Call.CLAIM: ("claim_local_lease", {}),
    Call.CLAIM_CONFIRMED: ("claim_local_lease", {"p_confirm_takeover": True}),
    Call.RELEASE: ("release_local_lease", {}),
}
