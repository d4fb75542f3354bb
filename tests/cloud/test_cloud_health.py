"""``GET /health`` (signalguard.cloud.health): each state with the in-memory doubles, the HTTP responder
on a real socket, and the worker process against the local stack (health, then a stop with writes
queued that cannot be sent, timed)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudkit import Market, WorkerProcess, make_cloud_user, unsigned_token, wait_until
from stackkit import Actors

from signalguard.cli import main
from signalguard.cloud.config import ConfigError, Timings, WorkerConfig, load_health
from signalguard.cloud.health import HealthServer, assess
from signalguard.cloud.testing import FakeDatabase, FakeMarketData, fast_timings
from signalguard.cloud.worker import CloudWorker
from signalguard.core.engine import TraderRecord
from signalguard.core.guard import LeaseAnswer
from signalguard.devstack.stack import LocalStack
from signalguard.market.testing import eventually
from signalguard.replay.reference import candles_of
from signalguard.replay.synthetic import generate

OWNER = str(uuid.uuid4())
MACHINE = str(uuid.uuid4())
TRADER = TraderRecord(
    str(uuid.uuid4()),
    "close above SMA(2)",
    {
        "version": 1,
        "symbols": ["BTCUSDT"],
        "interval": "1s",
        "conditions": [{"indicator": "close_vs_sma", "period": 2, "op": ">"}],
    },
)
FAST = fast_timings(stop_flush=0.5)
ROOT = Path(__file__).resolve().parents[2]


def rig(*, local_lease: bool = False) -> tuple[CloudWorker, FakeDatabase]:
    db = FakeDatabase(OWNER, MACHINE, traders=[TRADER])
    if local_lease:
        db.local_lease()
    config = WorkerConfig(
        "http://127.0.0.1:1", "anon", "a.b.c", OWNER, MACHINE, "http://127.0.0.1:2", "ws://x"
    )
    return CloudWorker(config, db, FakeMarketData(), timings=FAST), db


async def test_healthy_while_holding_the_lease_then_503_when_stopped() -> None:
    worker, _ = rig()
    assert assess(worker).healthy  # starting: the database has had less than a lease to answer
    task = asyncio.create_task(worker.run(handle_signals=False))
    await eventually(lambda: worker.keeper.may_generate(worker.now()), what="the lease")
    report = assess(worker)
    assert report.code == 200 and report.body["status"] == "running" and report.body["problems"] == []
    lease = report.body["lease"]
    assert isinstance(lease, dict) and lease["held"] is True and lease["epoch"] == 1
    assert 0 < lease["expires_in_s"] <= FAST.lease
    worker.request_stop("test")
    assert await task == 0
    stopped = assess(worker)
    assert stopped.code == 503 and stopped.body["problems"] == ["the worker is stopped"]
    assert stopped.body["lease"] == {"held": False, "epoch": None, "expires_in_s": None}


async def test_standing_by_behind_the_browser_is_healthy() -> None:
    worker, db = rig(local_lease=True)
    task = asyncio.create_task(worker.run(handle_signals=False))
    await eventually(lambda: db.calls.count("claim") >= 3, what="claims refused")
    await asyncio.sleep(FAST.lease * 1.5)  # longer than the lease: still healthy, the database answers
    report = assess(worker)
    assert report.code == 200 and report.body["status"] == "standby", report.body
    assert report.body["lease"] == {"held": False, "epoch": None, "expires_in_s": None}
    worker.request_stop("test")
    assert await task == 0


async def test_database_unreachable_beyond_the_lease_is_503() -> None:
    worker, db = rig()
    task = asyncio.create_task(worker.run(handle_signals=False))
    await eventually(lambda: worker.keeper.may_generate(worker.now()), what="the lease")
    db.down = True
    await asyncio.sleep(FAST.lease / 2)
    assert assess(worker).healthy  # a short outage: the lease still runs
    await eventually(lambda: not assess(worker).healthy, timeout=3, what="unhealthy")
    problems = assess(worker).body["problems"]
    assert isinstance(problems, list) and "the database has not answered for" in problems[0]
    db.down = False
    await eventually(lambda: assess(worker).healthy, timeout=3, what="healthy again")
    worker.request_stop("test")
    assert await task == 0


async def test_never_answering_database_at_start_is_503_after_the_lease() -> None:
    worker, db = rig()
    db.down = True
    task = asyncio.create_task(worker.run(handle_signals=False))
    await asyncio.sleep(FAST.lease / 2)
    assert assess(worker).healthy
    await eventually(lambda: not assess(worker).healthy, timeout=3, what="unhealthy")
    assert "since start" in str(assess(worker).body["problems"])
    worker.request_stop("test")
    assert await task == 0


async def test_a_refusal_that_is_not_the_browsers_turn_is_503() -> None:
    worker, db = rig()

    async def refused() -> LeaseAnswer:
        db.calls.append("claim")
        return db._answer(False, "machine_not_active", db._now_ms())

    db.claim_lease = refused  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run(handle_signals=False))
    await eventually(lambda: db.calls.count("claim") >= 2, what="claims refused")
    report = assess(worker)
    assert report.code == 503 and report.body["problems"] == ["the lease is refused: machine_not_active"]
    worker.request_stop("test")
    assert await task == 0


async def test_a_fatal_error_is_503() -> None:
    worker, db = rig()
    db.schema_missing = ["20250101000000_something"]
    assert await worker.run(handle_signals=False) == 1
    report = assess(worker)
    assert report.code == 503 and "error" in str(report.body["problems"])


async def test_the_responder_answers_get_health_only() -> None:
    worker, _ = rig()
    server = HealthServer(worker, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            ok = await client.get("/health?verbose=1")
            assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
            assert set(ok.json()) == {"status", "healthy", "lease", "market", "last_write_age_s", "problems"}
            assert (await client.get("/")).status_code == 404
            assert (await client.post("/health")).status_code == 405
        # Garbage and a silent client get nothing or a 400, and the server goes on.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"hello\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
        writer.close()
    finally:
        await server.close()


# -- the worker process against the local stack --------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.stack
def test_worker_process_serves_health_and_stops_within_the_kill_timeout(
    stack: LocalStack, market: Market, actors: Actors, db: Any, tmp_path: Path
) -> None:
    """/health until the lease is held; then PostgREST stops, a write is queued and cannot be sent, and
    SIGTERM: the worst stop (every goodbye call fails), timed against fly.toml's kill timeout."""
    user = make_cloud_user(actors, db)
    port = free_port()
    worker = WorkerProcess(
        stack, user, market.url, tmp_path / "worker.log", extra_env={"SIGNALGUARD_HEALTH_PORT": str(port)}
    ).start()
    url = f"http://127.0.0.1:{port}/health"

    def held() -> dict[str, Any] | None:
        try:
            answer = httpx.get(url, timeout=2)
        except httpx.TransportError:
            return None
        body: dict[str, Any] = answer.json()
        return body if answer.status_code == 200 and body["lease"]["held"] else None

    try:
        body = wait_until(held, timeout=30, what="/health saying the lease is held")
        assert body["status"] == "running" and body["lease"]["epoch"] >= 1 and body["problems"] == []
        stack.postgrest.stop()
        try:
            worker.wait_for_log(r"writing \d+ \w+ entr\w+ failed", timeout=20)  # a write is queued
            started = time.monotonic()
            code = worker.terminate(timeout=60)
            took = time.monotonic() - started
        finally:
            stack.postgrest.start()
    finally:
        worker.close()
    log = worker.log()
    assert code == 0, log
    assert re.search(r"\d+ writes could not be sent before the stop; unsent: \[", log), log
    kill_timeout = tomllib.loads((ROOT / "fly.toml").read_text())["kill_timeout"]
    print(f"\nSIGTERM with writes unsendable -> exit: {took:.1f} s (bound {Timings().stop_deadline:.0f} s)")
    assert took < Timings().stop_deadline + 3 < kill_timeout
    unsent = json.loads(log.split("unsent: ", 1)[1].splitlines()[0])
    assert unsent, "the log names what was not written"


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (8080, "127.0.0.1")),
        ({"SIGNALGUARD_HEALTH_PORT": "off"}, (None, "127.0.0.1")),
        ({"SIGNALGUARD_HEALTH_PORT": "0"}, (None, "127.0.0.1")),
        ({"SIGNALGUARD_HEALTH_PORT": " 9000 ", "SIGNALGUARD_HEALTH_HOST": "0.0.0.0"}, (9000, "0.0.0.0")),
        ({"SIGNALGUARD_HEALTH_HOST": "::"}, (8080, "::")),
    ],
)
def test_health_settings(env: dict[str, str], expected: tuple[int | None, str]) -> None:
    assert load_health(env) == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SIGNALGUARD_HEALTH_PORT": "http"}, "SIGNALGUARD_HEALTH_PORT"),
        ({"SIGNALGUARD_HEALTH_PORT": "70000"}, "SIGNALGUARD_HEALTH_PORT"),
        ({"SIGNALGUARD_HEALTH_PORT": "-1"}, "SIGNALGUARD_HEALTH_PORT"),
        ({"SIGNALGUARD_HEALTH_HOST": "localhost"}, "SIGNALGUARD_HEALTH_HOST"),
    ],
)
def test_bad_health_settings_name_the_variable_and_exit_2(
    env: dict[str, str], variable: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as info:
        load_health(env)
    assert info.value.variable == variable
    claims = {"role": "authenticated", "sub": str(uuid.uuid4()), "machine_id": str(uuid.uuid4())}
    for name, value in {
        "SIGNALGUARD_SUPABASE_URL": "http://127.0.0.1:1",
        "SIGNALGUARD_SUPABASE_ANON_KEY": "anon",
        "SIGNALGUARD_MACHINE_TOKEN": unsigned_token(claims),
        **env,
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["cloud"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"signalguard cloud: {variable} ")


# -- the stop with writes that cannot be sent ----------------------------------------------------


async def test_a_stop_that_cannot_write_ends_the_window_before_the_oldest_unsent_signal() -> None:
    """The release still works but the writes do not: the window ends before the oldest unsent signal's
    candle, so the next holder's gap (the gapless handoff) covers it and signs it again."""
    clock_ms = (int(time.time()) - 3600) * 1000
    series = generate(["BTCUSDT"], interval="1s", candles=400, seed=5).series
    candles = candles_of(series, clock_ms)
    history, live = candles[:300], candles[300:]
    now = [clock_ms / 1000 + 300]
    db = FakeDatabase(OWNER, MACHINE, traders=[TRADER], clock=lambda: now[0], gapless=True)
    market = FakeMarketData(history)
    config = WorkerConfig(
        "http://127.0.0.1:1", "anon", "a.b.c", OWNER, MACHINE, "http://127.0.0.1:2", "ws://x"
    )
    worker = CloudWorker(config, db, market, timings=FAST, wall=lambda: now[0])
    task = asyncio.create_task(worker.run(handle_signals=False))
    await eventually(lambda: worker.manager.may_generate and not worker.feed.pending_warmups, what="lease")
    db.fail_writes = 10_000
    for c in live:
        now[0] = (c.open_time + 1000) / 1000
        market.send(c)
    await eventually(lambda: worker.feed.candles >= len(live), what="candles fed")
    assert worker.sync.counters.signals_created > 0
    worker.request_stop("test")
    assert await task == 0
    assert not db.signals and len(worker.sync) > 0
    unsent_opens = [
        e["payload"]["candle_open_time"] for e in json.loads(worker.sync.unsent()) if e["kind"] == "signal"
    ]
    assert db.released_until == [min(unsent_opens)]
