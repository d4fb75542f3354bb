"""``signalguard cloud`` with a machine key from the page, and nothing else: no token, no JWT secret.

The user makes the key with their own session (``create_machine_key``), as the page does; the worker
gets the project URL, the anon key and the key, as it would on a hosted project, asks the database whose
machine it is, and runs as with a machine token. Revoking the key in the page stops it at its next
request, with a line saying so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cloudkit import Market, WorkerProcess, make_cloud_user, signals, wait_until
from stackkit import Actors, Api

from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack


def key_worker(stack: LocalStack, market: Market, user: Any, key: str, log: Path) -> WorkerProcess:
    # The token the test user also has is blanked: the worker sees the key alone.
    env = {"SIGNALGUARD_MACHINE_TOKEN": "", "SIGNALGUARD_MACHINE_KEY": key}
    return WorkerProcess(stack, user, market.url, log, extra_env=env).start()


def test_a_worker_runs_with_a_key_and_stops_when_it_is_revoked(
    stack: LocalStack, market: Market, api: Api, db: Any, tmp_path: Path
) -> None:
    user = make_cloud_user(Actors(stack), db)
    made = api.rpc("create_machine_key", {"p_label": "test machine"}, user.actor.token)
    assert made.status == 200, made.body
    worker = key_worker(stack, market, user, made.body["key"], tmp_path / "worker.log")
    try:
        worker.wait_for_log(
            rf"the machine key is machine {user.actor.machine_uuid}'s, of user {user.user_id}", 20
        )
        worker.wait_for_log(r"lease granted", 20)
        wait_until(lambda: len(signals(db, user.user_id)) >= 2, timeout=40, what="two stored cloud signals")
        rows = signals(db, user.user_id)
        assert {(r["source"], r["machine_id"]) for r in rows} == {("cloud", user.actor.machine_uuid)}
        listed = api.select("machine_keys", user.actor.token, "select=last_used_at").body
        assert listed[0]["last_used_at"] is not None

        revoked = api.rpc("revoke_machine_key", {"p_id": made.body["id"]}, user.actor.token)
        assert revoked.status == 200, revoked.body
        assert worker.process is not None
        code = worker.process.wait(timeout=30)
        log = worker.log()
        assert code == 1, log
        assert "cannot run: DatabaseRefused: SG012: machine_key_refused: this key was revoked at" in log, log
        assert "SIGNALGUARD_MACHINE_KEY" in log
        # It stopped generating at the first refusal (SG012 moves the guard) rather than queueing
        # writes until its next heartbeat: what was refused is the signals of one candle, two at most.
        # (A heartbeat may come first: then nothing was refused, and it stopped there.)
        refused_candles = set(re.findall(r"the database refused signal \S+:(\d+): SG012", log))
        assert len(refused_candles) <= 2, log
        if refused_candles:
            assert "not generating: guard verdict SG012" in log, log
    finally:
        worker.close()


def test_a_worker_with_an_unknown_key_says_so_and_exits(
    stack: LocalStack, market: Market, db: Any, tmp_path: Path
) -> None:
    user = make_cloud_user(Actors(stack), db)
    worker = key_worker(stack, market, user, "sgm_" + "5" * 64, tmp_path / "worker.log")
    try:
        assert worker.process is not None
        code = worker.process.wait(timeout=30)
        log = worker.log()
        assert code == 1, log
        assert "cannot run: SG012: machine_key_refused: this key is unknown" in log, log
        # It never started generating: nothing written, the machine row untouched.
        assert signals(db, user.user_id) == []
    finally:
        worker.close()
