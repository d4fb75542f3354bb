"""Nothing about one account leaks to another through a write that names it.

The attacker holds a live lease of their own and writes rows naming other users: a victim who holds a
live lease with a long history of epochs, a victim who never held one, and a user who does not exist.
Every such write must get one answer, word for word, before any lease logic runs: the lease tables are
locked by another session while the attacker writes, so an answer that needed them would not come.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from stackkit import Actor, Actors, Api, seconds_ago, signal
from test_signal_guard import local_lease_backdated, write
from test_trades import open_op, signals

from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack


def victims(api: Api, actors: Actors, db: Any) -> tuple[Actor, int, Actor, Actor]:
    """A user with a live lease (and its epoch) and epochs behind it, one who never held a lease, one who
    does not exist."""
    holder = actors.make()
    for _ in range(3):  # several epochs, each with a window an attacker must not learn
        local_lease_backdated(api, holder, db)
        db.execute(
            "update execution_leases set expires_at = now() - interval '1 s' where user_id = %s",
            (holder.user_id,),
        )
    holder_epoch = local_lease_backdated(api, holder, db)
    idle = actors.make(machine=False)
    ghost = Actor(
        user_id=str(uuid.uuid4()),
        email="nobody@signalguard.test",
        token="",
        trader_id=str(uuid.uuid4()),
        machine_uuid=None,
        machine_token=None,
        holder="tab-nobody-1",
    )
    return holder, holder_epoch, idle, ghost


def forged_row(victim: Actor, epoch: int, db: Any) -> dict[str, Any]:
    """A signal of the victim's, in the victim's current window and under its epoch."""
    return signal(victim, epoch, seconds_ago(db, 60)) | {"user_id": victim.user_id}


def answer(api: Api, table: str, row: dict[str, Any], token: str) -> tuple[int, Any]:
    r = api.insert(table, [row], token)
    return r.status, r.body


def stored(db: Any, user_id: str) -> tuple[int, int]:
    found = db.execute(
        "select (select count(*) from signals where user_id = %(u)s),"
        " (select count(*) from trades where user_id = %(u)s)",
        {"u": user_id},
    ).fetchone()
    return found[0], found[1]


def test_a_signal_naming_another_user_gets_one_answer_whoever_that_user_is(
    api: Api, actors: Actors, db: Any
) -> None:
    attacker = actors.make()
    own_epoch = local_lease_backdated(api, attacker, db)
    holder, holder_epoch, idle, ghost = victims(api, actors, db)
    before = {v.user_id: stored(db, v.user_id) for v in (holder, idle)}

    answers = []
    for victim in (holder, idle, ghost):
        for epoch in (holder_epoch, 1, own_epoch):
            for token in (attacker.token, attacker.machine_token):
                assert token is not None
                row = forged_row(victim, epoch, db)
                if token == attacker.machine_token:
                    row |= {"source": "cloud", "machine_id": attacker.machine_uuid}
                answers.append(answer(api, "signals", row, token))

    assert len(set(map(json.dumps, answers))) == 1, answers
    status, body = answers[0]
    assert status == 403 and body["code"] == "42501", body
    # Nothing in the answer speaks of leases, epochs or times.
    assert "lease" not in body["message"] and "epoch" not in body["message"], body
    assert {v.user_id: stored(db, v.user_id) for v in (holder, idle)} == before


def test_a_trade_naming_another_user_gets_the_same_kind_of_answer(api: Api, actors: Actors, db: Any) -> None:
    attacker = actors.make()
    local_lease_backdated(api, attacker, db)
    holder, holder_epoch, idle, ghost = victims(api, actors, db)
    holder_key = signals(api, holder, db, holder_epoch)[0]

    answers = []
    for victim, key in ((holder, holder_key), (idle, "no-such-key"), (ghost, "no-such-key")):
        row = {"user_id": victim.user_id, "signal_key": key, "side": "long", "size": 1, "epoch": holder_epoch}
        answers.append(answer(api, "trades", row, attacker.token))
    assert len(set(map(json.dumps, answers))) == 1, answers
    assert answers[0][0] == 403 and answers[0][1]["code"] == "42501"
    # Through the RPC, another user's signal key is "no such signal", like a key that never existed.
    out = api.rpc(
        "write_trades",
        {"p_ops": [open_op(holder_key, holder_epoch), open_op("u:t:BTCUSDT:1m:0", holder_epoch)]},
        attacker.token,
    ).body
    assert [(o["outcome"], o["code"], o["message"]) for o in out] == [
        ("rejected", "not_found", "no such signal")
    ] * 2
    assert stored(db, holder.user_id)[1] == 0


def test_status_changes_of_another_users_signal_are_not_found_like_unknown_keys(
    api: Api, actors: Actors, db: Any
) -> None:
    attacker = actors.make()
    own_epoch = local_lease_backdated(api, attacker, db)
    holder, holder_epoch, _, _ = victims(api, actors, db)
    key = signals(api, holder, db, holder_epoch)[0]
    changes = [
        {"signal_key": key, "status": "closed", "updated_epoch": own_epoch},
        {
            "signal_key": f"{uuid.uuid4()}:{uuid.uuid4()}:BTCUSDT:1m:0",
            "status": "closed",
            "updated_epoch": own_epoch,
        },
    ]
    out = api.rpc("update_signal_statuses", {"p_changes": changes}, attacker.token).body
    assert [(o["outcome"], o["code"], o["message"]) for o in out] == [
        ("rejected", "not_found", "no such signal")
    ] * 2
    patched = api.update("signals", f"signal_key=eq.{key}", {"status": "closed"}, attacker.token)
    assert patched.status == 200 and patched.body == []
    assert db.execute("select status from signals where signal_key = %s", (key,)).fetchone() == ("new",)


@contextmanager
def lease_tables_locked(stack: LocalStack) -> Iterator[None]:
    """Hold an exclusive lock on the lease tables from another session: any read of them waits."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with stack.connect() as conn:
            conn.autocommit = False
            conn.execute("lock table public.lease_epochs, public.execution_leases in access exclusive mode")
            held.set()
            release.wait(30)
            conn.rollback()

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert held.wait(10)
    try:
        yield
    finally:
        release.set()
        t.join(10)


def test_the_answer_comes_before_any_lease_logic(
    stack: LocalStack, api: Api, actors: Actors, db: Any
) -> None:
    """Same work for every target: no lease table is read to refuse a row naming another user.

    With the lease tables locked, a refusal that consulted the target's epochs would wait for the lock;
    the owner check answers at once, for the holder of a lease and for a user who does not exist alike.
    """
    attacker = actors.make()
    own_epoch = local_lease_backdated(api, attacker, db)
    holder, holder_epoch, _, ghost = victims(api, actors, db)
    rows = [forged_row(holder, holder_epoch, db), forged_row(ghost, own_epoch, db)]
    headers = {"apikey": api.anon, "Authorization": f"Bearer {attacker.token}"}
    with lease_tables_locked(stack), httpx.Client(timeout=5) as http:
        for row in rows:
            r = http.post(f"{stack.url}/rest/v1/signals", json=[row], headers=headers)
            assert r.status_code == 403 and r.json()["code"] == "42501", r.text
    # The control: a write of the attacker's own, which must consult the lease, does wait for the lock.
    own = signal(attacker, own_epoch, seconds_ago(db, 120))
    with lease_tables_locked(stack), httpx.Client(timeout=2) as http, pytest.raises(httpx.ReadTimeout):
        http.post(f"{stack.url}/rest/v1/signals", json=[own], headers=headers)
    assert [o["outcome"] for o in write(api, attacker, [own])] in (["inserted"], ["duplicate"])
