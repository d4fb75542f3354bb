"""Coalesced reads of the page: one at a time, and one more for any number of requests meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from signalguard.browser.app import Coalesced


def test_requests_during_a_run_make_exactly_one_more_run() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        runs: list[int] = []
        tasks: list[asyncio.Task[None]] = []

        def spawn(coro: Coroutine[Any, Any, None]) -> None:
            tasks.append(asyncio.get_running_loop().create_task(coro))

        async def step() -> bool:
            runs.append(len(runs))
            await gate.wait()
            return True

        reads = Coalesced(step, spawn)
        reads.request()
        await asyncio.sleep(0)
        for _ in range(5):
            reads.request()  # while the first read waits: remembered once
        assert len(tasks) == 1 and runs == [0]
        gate.set()
        await asyncio.gather(*tasks)
        assert runs == [0, 1]
        reads.request()
        await asyncio.gather(*tasks)
        assert runs == [0, 1, 2] and len(tasks) == 2

    asyncio.run(scenario())


def test_a_step_that_says_stop_ends_the_run_even_if_asked_again() -> None:
    async def scenario() -> None:
        runs: list[int] = []

        async def step() -> bool:
            runs.append(1)
            reads.request()  # asked again while running...
            return False  # ...but signed out meanwhile

        reads = Coalesced(step, lambda coro: coro.close())
        await reads.run()
        assert runs == [1]

    asyncio.run(scenario())
