"""The guard driver of the page, in CPython with fakes: no browser, no stack (fast)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from signalguard.browser.driver import CALL_TIMER, TICK_TIMER, GuardDriver
from signalguard.browser.ports import ApiError, ApiResult
from signalguard.browser.testing import FakeBackend, FakeTimers
from signalguard.core.codes import OPTIONAL_SCHEMA, REQUIRED_SCHEMA
from signalguard.core.guard import Effects, Mode, TabLock

ALL_SCHEMA = {"components": {c.name: {"version": c.version} for c in REQUIRED_SCHEMA}}
GAPLESS_SCHEMA = {
    "components": {c.name: {"version": c.version} for c in (*REQUIRED_SCHEMA, *OPTIONAL_SCHEMA)}
}
NO_LEASE_SCHEMA = {"components": {c.name: {"version": c.version} for c in REQUIRED_SCHEMA[:3]}}
HOLDER = "tab-holder-0001"


def status(
    *, you_hold: bool = False, reason: str | None = None, expires: float | None = None
) -> dict[str, Any]:
    return {
        "you_hold": you_hold,
        "lease": {"epoch": 7 if you_hold else 0, "expires_in_seconds": expires},
        "machine": None,
        "reason": reason,
        "retry_in_seconds": None,
        "takeover_available": False,
    }


def ok(data: object) -> ApiResult:
    return ApiResult(data, None, 200)


class Rig:
    def __init__(self, backend: FakeBackend, evaluated_until: int | None = None) -> None:
        self.now = 100.0
        self.timers = FakeTimers()
        self.backend = backend
        self.effects: list[Effects] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.driver = GuardDriver(
            backend,
            self.timers,
            lambda: self.now,
            self.spawn,
            HOLDER,
            self.effects.append,
            evaluated_until=lambda: evaluated_until,
        )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def fire(self, advance: float | None = None) -> None:
        delay, callback = self.timers.armed[CALL_TIMER]
        self.now += delay if advance is None else advance
        callback()
        await self.settle()

    async def settle(self) -> None:
        while pending := [t for t in self.tasks if not t.done()]:
            await asyncio.wait(pending, timeout=1)

    def names(self) -> list[str]:
        return [name for name, _ in self.backend.calls]


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_lease_calls_wait_for_the_schema_check_then_claim() -> None:
    async def scenario() -> None:
        rig = Rig(
            FakeBackend(
                {
                    "schema_version": [ok(ALL_SCHEMA)],
                    "execution_status": [ok(status())],
                    "claim_local_lease": [ok(status(you_hold=True, expires=30.0))],
                }
            )
        )
        rig.driver.start()
        assert TICK_TIMER in rig.timers.armed
        # The tab lock arrives first: the guard wants a claim, but the schema is checked before.
        # Calls due at once follow each other without waiting for a timer.
        rig.driver.feed(TabLock(True))
        await rig.fire()
        assert rig.names() == ["schema_version", "execution_status", "claim_local_lease"]
        assert rig.backend.calls[1][1] == {"p_holder_id": HOLDER}
        assert rig.driver.effects.mode is Mode.BROWSER and rig.driver.effects.epoch == 7
        # Renewal within the poll rhythm, before the deadline's margin.
        assert rig.timers.armed[CALL_TIMER][0] <= 5.0

    run(scenario())


def test_incompatible_database_is_rechecked_but_never_polled_for_the_lease() -> None:
    async def scenario() -> None:
        rig = Rig(FakeBackend({"schema_version": [ok(NO_LEASE_SCHEMA)]}))
        rig.driver.start()
        rig.driver.feed(TabLock(True))
        for _ in range(3):
            await rig.fire()
        assert rig.names() == ["schema_version"] * 3
        assert rig.driver.effects.mode is Mode.INCOMPATIBLE
        assert "20251003060300_execution_lease.sql" in (rig.driver.effects.detail or "")
        assert rig.timers.armed[CALL_TIMER][0] == 30.0

    run(scenario())


def test_failed_schema_check_is_retried_with_back_off() -> None:
    async def scenario() -> None:
        rig = Rig(FakeBackend({}))
        rig.driver.start()
        await rig.fire()
        await rig.fire()
        await rig.fire()
        assert rig.names() == ["schema_version"] * 3
        assert rig.driver.effects.mode is Mode.OFFLINE

    run(scenario())


def test_one_call_in_flight_and_stop_releases_after_it() -> None:
    async def scenario() -> None:
        backend = FakeBackend(
            {
                "schema_version": [ok(ALL_SCHEMA)],
                "execution_status": [ok(status())],
                "claim_local_lease": [ok(status(you_hold=True, expires=30.0))],
                "release_local_lease": [ok(status())],
            }
        )
        rig = Rig(backend)
        rig.driver.start()
        rig.driver.feed(TabLock(True))
        await rig.fire()
        assert rig.driver.effects.mode is Mode.BROWSER
        # A renewal is in flight when the user signs out.
        backend.gate = asyncio.Event()
        _, callback = rig.timers.armed[CALL_TIMER]
        rig.now += 5
        callback()
        await asyncio.sleep(0)
        callback()  # a second timer message while busy starts nothing
        await asyncio.sleep(0)
        assert rig.names().count("claim_local_lease") == 2, rig.names()
        stopping = asyncio.get_running_loop().create_task(rig.driver.stop())
        await asyncio.sleep(0)
        assert "release_local_lease" not in rig.names()
        backend.gate.set()
        await stopping
        await rig.settle()
        assert rig.names()[-1] == "release_local_lease"
        assert CALL_TIMER not in rig.timers.armed and TICK_TIMER not in rig.timers.armed

    run(scenario())


def test_unload_releases_with_a_request_that_outlives_the_page() -> None:
    async def scenario() -> None:
        rig = Rig(FakeBackend({}))
        rig.driver.start()
        rig.driver.feed(TabLock(True))
        rig.driver.unload()
        assert rig.backend.unload_calls == ["release_local_lease"]
        assert rig.driver.stopped

    run(scenario())


def test_stale_schema_cache_is_named_and_nothing_is_claimed_until_the_api_sees_the_functions() -> None:
    async def scenario() -> None:
        missing = ApiError("Could not find the function public.execution_status", "PGRST202")
        stale = ApiResult(None, missing, 404)
        backend = FakeBackend(
            {
                "schema_version": [ok(ALL_SCHEMA)],
                "execution_status": [stale, stale, ok(status())],
                "claim_local_lease": [ok(status(you_hold=True, expires=30.0))],
            }
        )
        rig = Rig(backend)
        rig.driver.start()
        rig.driver.feed(TabLock(True))
        await rig.fire()
        # The database says the migrations are there; the API does not know the function yet.
        assert rig.names() == ["schema_version", "execution_status"]
        effects = rig.driver.effects
        assert effects.mode is Mode.INCOMPATIBLE and not effects.may_generate
        detail = effects.detail or ""
        assert "schema cache is stale" in detail and "execution_status()" in detail
        assert rig.timers.armed[CALL_TIMER][0] == 30.0
        # 30 s later: checked again (schema, then the status call), still stale: still not generating.
        await rig.fire()
        assert rig.names()[2:] == ["schema_version", "execution_status"]
        assert rig.driver.effects.mode is Mode.INCOMPATIBLE
        # Once the API sees the functions (the cache was reloaded), the tab claims as usual.
        await rig.fire()
        assert "claim_local_lease" in rig.names() and rig.driver.effects.mode is Mode.BROWSER

    run(scenario())


def test_a_project_with_nothing_pushed_names_the_migrations_instead_of_reading_offline() -> None:
    async def scenario() -> None:
        unknown = ApiError("Could not find the function public.schema_version without parameters", "PGRST202")
        backend = FakeBackend({"schema_version": [ApiResult(None, unknown, 404)]})
        rig = Rig(backend)
        rig.driver.start()
        rig.driver.feed(TabLock(True))
        await rig.fire()
        effects = rig.driver.effects
        assert effects.mode is Mode.INCOMPATIBLE and not effects.may_generate
        detail = effects.detail or ""
        assert "does not know schema_version()" in detail and "20251003060000_core_tables.sql" in detail
        assert rig.names() == ["schema_version"]  # nothing claimed

    run(scenario())


#: 2023-11-14T22:13:20Z, where the tab's evaluation stands.
EVALUATED_MS = 1_700_000_000_000


async def holding_then(rig: Rig, leave: str) -> dict[str, object]:
    """Hold the lease, then leave (``stop`` or ``unload``); the release's arguments."""
    rig.driver.start()
    rig.driver.feed(TabLock(True))
    await rig.fire()
    assert rig.driver.effects.mode is Mode.BROWSER
    if leave == "stop":
        await rig.driver.stop()
        return rig.backend.args_of("release_local_lease")[-1]
    rig.driver.unload()
    return rig.backend.unload_args[-1]


def holding(schema: dict[str, Any]) -> FakeBackend:
    return FakeBackend(
        {
            "schema_version": [ok(schema)],
            "execution_status": [ok(status())],
            "claim_local_lease": [ok(status(you_hold=True, expires=30.0))],
            "release_local_lease": [ok(status())],
        }
    )


def test_a_release_says_where_the_tabs_evaluation_stands_when_the_database_takes_it() -> None:
    async def scenario() -> None:
        for leave in ("stop", "unload"):
            rig = Rig(holding(GAPLESS_SCHEMA), EVALUATED_MS)
            args = await holding_then(rig, leave)
            assert args == {"p_holder_id": HOLDER, "p_evaluated_until": "2023-11-14T22:13:20.000+00:00"}
            # A claim too: the renewal the database refuses when the machine is ready ends the lease.
            assert rig.backend.args_of("claim_local_lease") == [args]
            # A database without the gapless handoff does not know the argument: not sent.
            args = await holding_then(Rig(holding(ALL_SCHEMA), EVALUATED_MS), leave)
            assert args == {"p_holder_id": HOLDER}
            # Nothing evaluated (or no longer generating): the window ends at the release.
            args = await holding_then(Rig(holding(GAPLESS_SCHEMA), None), leave)
            assert args == {"p_holder_id": HOLDER}

    run(scenario())
