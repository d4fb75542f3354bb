"""SupabaseDatabase (supabase-py) against the real local stack: the machine RPCs, reads and both writes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from cloudkit import make_cloud_user
from stackkit import backdate_lease

from signalguard.cloud.config import WorkerConfig
from signalguard.cloud.database import DatabaseRefused, SupabaseDatabase
from signalguard.core.engine import LeaseWindow, Signal
from signalguard.devstack import tokens
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack


def worker_config(stack: LocalStack, owner: str, machine: str, token: str) -> WorkerConfig:
    return WorkerConfig(stack.url, stack.config.anon_key(), token, owner, machine)


async def test_machine_calls_reads_and_writes(stack: LocalStack, actors: Any, db: Any) -> None:
    user = make_cloud_user(actors, db)
    machine = user.actor.machine_uuid
    assert machine is not None and user.actor.machine_token is not None
    sdb = await SupabaseDatabase.connect(
        worker_config(stack, user.user_id, machine, user.actor.machine_token)
    )
    try:
        assert await sdb.schema_problems() == []
        await sdb.heartbeat("starting")
        answer = await sdb.claim_lease()
        assert answer.granted and answer.you_hold and answer.epoch == 1 and answer.reason is None
        assert answer.acquired_at_us is not None and answer.expires_at_us is not None
        assert answer.expires_at_us - answer.acquired_at_us == 30_000_000
        assert sorted((t.id, t.name, t.definition) for t in await sdb.load_traders()) == sorted(
            (t.id, t.name, t.definition) for t in user.traders
        )

        # Two 1s candles that open after the grant, so they close inside the window; wait for them.
        open_ms = (answer.acquired_at_us // 1_000_000 + 1) * 1000
        await asyncio.sleep(max(0.0, (open_ms + 1200) / 1000 - time.time()))
        trader = user.traders[0].id
        a, b = (
            Signal(f"{user.user_id}:{trader}:{s}:1s:{open_ms}", trader, s, "1s", open_ms, 101.25, ("X",), 1)
            for s in ("S00USDT", "S01USDT")
        )
        rows = [s.row(source="cloud", machine_id=machine) for s in (a, b)]
        assert [o["outcome"] for o in await sdb.write_signals(rows)] == ["inserted", "inserted"]
        assert [o["outcome"] for o in await sdb.write_signals(rows)] == ["duplicate", "duplicate"]

        expire = {"signal_key": a.key, "status": "expired", "updated_epoch": 1}
        updated = {"index": 0, "signal_key": a.key, "outcome": "updated"}
        assert await sdb.update_statuses([expire]) == [updated]
        # One call (update_signal_statuses); the guard refuses a's transition and only that change.
        mixed = await sdb.update_statuses(
            [
                {"signal_key": a.key, "status": "active", "updated_epoch": 1},
                {"signal_key": b.key, "status": "active", "updated_epoch": 1},
                {"signal_key": f"{a.key}9", "status": "active", "updated_epoch": 1},
            ]
        )
        assert [(o["index"], o["outcome"], o.get("code")) for o in mixed] == [
            (0, "rejected", "SG006"),
            (1, "updated", None),
            (2, "rejected", "not_found"),
        ]
        assert [s.key for s in await sdb.load_open_signals()] == [b.key]

        released = await sdb.release_lease()
        assert released.granted and not released.you_hold and released.epoch == 1
        closed = await sdb.update_statuses([{"signal_key": b.key, "status": "closed", "updated_epoch": 1}])
        assert [(o["outcome"], o.get("code")) for o in closed] == [("rejected", "SG001")]
        stored = db.execute(
            "select signal_key, status from signals where user_id = %s", (user.user_id,)
        ).fetchall()
        assert sorted(stored) == sorted([(a.key, "expired"), (b.key, "active")])
    finally:
        await sdb.aclose()


async def test_a_new_epoch_reads_the_machines_earlier_windows_and_fills_their_tails(
    stack: LocalStack, actors: Any, db: Any
) -> None:
    """The machine's lease ran out (it was killed) and it came back: epoch 2. Epoch 1's window is read
    back by the machine token, and a candle that closed in it is accepted under epoch 1 (not epoch 2)."""
    user = make_cloud_user(actors, db)
    machine = user.actor.machine_uuid
    assert machine is not None and user.actor.machine_token is not None
    sdb = await SupabaseDatabase.connect(
        worker_config(stack, user.user_id, machine, user.actor.machine_token)
    )
    try:
        await sdb.heartbeat("starting")
        assert (await sdb.claim_lease()).epoch == 1
        assert await sdb.earlier_windows(1) == []
        backdate_lease(db, user.user_id, 40)  # granted 40 s ago, expired 10 s ago
        await sdb.heartbeat("starting")
        second = await sdb.claim_lease()
        assert second.granted and second.epoch == 2
        row = db.execute(
            "select (extract(epoch from started_at) * 1e6)::bigint,"
            " (extract(epoch from valid_until) * 1e6)::bigint"
            " from lease_epochs where user_id = %s and epoch = 1",
            (user.user_id,),
        ).fetchone()
        assert row is not None
        assert await sdb.earlier_windows(2) == [LeaseWindow(1, row[0], row[1])]
        # A 1s candle that closed 5 s before epoch 1's window ended.
        open_ms = (row[1] // 1_000_000 - 6) * 1000
        trader = user.traders[0].id
        tail = Signal(
            f"{user.user_id}:{trader}:S00USDT:1s:{open_ms}", trader, "S00USDT", "1s", open_ms, 1.5, ("X",), 1
        )
        late = dataclasses.replace(tail, epoch=2)
        refused = await sdb.write_signals([late.row(source="cloud", machine_id=machine)])
        assert [(o["outcome"], o.get("code")) for o in refused] == [("rejected", "SG002")]
        accepted = await sdb.write_signals([tail.row(source="cloud", machine_id=machine)])
        assert [o["outcome"] for o in accepted] == ["inserted"]
    finally:
        await sdb.aclose()


async def test_a_token_the_database_does_not_accept_is_a_verdict(
    stack: LocalStack, actors: Any, db: Any
) -> None:
    user = make_cloud_user(actors, db)
    machine = user.actor.machine_uuid
    assert machine is not None
    forged = tokens.machine_token("not-the-secret-" * 3, user.user_id, machine)
    sdb = await SupabaseDatabase.connect(worker_config(stack, user.user_id, machine, forged))
    try:
        with pytest.raises(DatabaseRefused) as info:
            await sdb.heartbeat("starting")
        assert info.value.code.startswith("PGRST3")
    finally:
        await sdb.aclose()
    # A wrong anon key: the gateway refuses every request (no code; Supabase answers the same).
    config = worker_config(stack, user.user_id, machine, user.actor.machine_token or "")
    sdb = await SupabaseDatabase.connect(dataclasses.replace(config, anon_key="not-the-anon-key"))
    try:
        with pytest.raises(DatabaseRefused) as info:
            await sdb.schema_problems()
        assert info.value.code == "invalid_api_key"
    finally:
        await sdb.aclose()
    # A user token is not a machine's: the machine RPCs refuse it.
    sdb = await SupabaseDatabase.connect(worker_config(stack, user.user_id, machine, user.actor.token))
    try:
        with pytest.raises(DatabaseRefused) as info:
            await sdb.claim_lease()
        assert info.value.code == "SG007"
    finally:
        await sdb.aclose()
