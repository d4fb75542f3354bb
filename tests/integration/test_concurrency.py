"""Concurrent claims: two browser holders and a machine racing through PostgREST.

The invariant is read from the database's own history afterwards: the epochs of one user are granted
in strictly increasing order and their validity windows never overlap, so at no instant by the
database clock were there two holders.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from typing import Any

import httpx
import pytest
from stackkit import Actor, Actors, Api

pytestmark = pytest.mark.stack

THREADS = 20
ROUNDS = 3


def call(http: httpx.Client, api: Api, name: str, args: dict[str, Any], token: str) -> Any:
    r = http.post(
        f"{api.base}/rest/v1/rpc/{name}",
        json=args,
        headers={"apikey": api.anon, "Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


def race(api: Api, a: Actor, phase: str, seed: int) -> list[dict[str, Any]]:
    """THREADS callers released together by a barrier; each claims (or releases) ROUNDS times."""
    barrier = threading.Barrier(THREADS)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    holders = [a.holder, a.other_holder()]

    def worker(i: int) -> None:
        rnd = random.Random(seed * 100 + i)
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            for _ in range(ROUNDS):
                if i % 3 == 2 and phase == "handoff":
                    out = call(http, api, "claim_cloud_lease", {}, a.machine_token)
                    out["who"] = "cloud"
                else:
                    holder = holders[i % 2]
                    if rnd.random() < 0.3:
                        out = call(http, api, "release_local_lease", {"p_holder_id": holder}, a.token)
                        out["granted"] = False
                    else:
                        out = call(http, api, "claim_local_lease", {"p_holder_id": holder}, a.token)
                    out["who"] = holder
                with lock:
                    results.append(out)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_parallel_claims_never_overlap(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    # Phase 1: the machine is long stopped; two holders race for the browser lease.
    browser = race(api, a, "browser", seed=1)
    # Phase 2: the machine starts; the holders keep polling while the machine claims.
    with httpx.Client() as http:
        call(http, api, "machine_heartbeat", {"p_status": "starting"}, a.machine_token)
    handoff = race(api, a, "handoff", seed=2)

    granted = Counter(r["who"] for r in browser + handoff if r.get("granted"))
    assert granted["cloud"] >= 1, granted
    assert granted[a.holder] + granted[a.other_holder()] >= 1, granted

    rows = db.execute(
        "select epoch, holder_kind, holder_id, started_at, valid_until from lease_epochs "
        "where user_id = %s order by epoch",
        (a.user_id,),
    ).fetchall()
    epochs = [r[0] for r in rows]
    assert epochs == list(range(1, len(rows) + 1))  # strictly increasing, none skipped
    for prev, nxt in itertools.pairwise(rows):
        assert nxt[3] >= prev[4], f"epoch {nxt[0]} started before epoch {prev[0]} ended"
        assert nxt[3] > prev[3]
    # Each grant the callers saw names an epoch in the history with the same holder.
    history = {r[0]: r[2] for r in rows}
    for r in browser + handoff:
        if r.get("granted"):
            assert history[r["lease"]["epoch"]] == r["lease"]["holder_id"]
    # After the handoff the cloud holds the lease and no browser does.
    final = db.execute("select holder_kind from execution_leases where user_id = %s", (a.user_id,)).fetchone()
    assert final == ("cloud",)
    assert rows[-1][1] == "cloud"
