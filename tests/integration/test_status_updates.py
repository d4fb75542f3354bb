"""update_signal_statuses: status changes in one call, one outcome each, under the same write guard."""

from __future__ import annotations

from typing import Any

import pytest
from stackkit import Actor, Actors, Api, seconds_ago, signal
from test_lease import claim, cloud_claim, heartbeat
from test_signal_guard import local_lease_backdated, write

from signalguard.core.codes import GuardError

pytestmark = pytest.mark.stack


def update(api: Api, a: Actor, changes: Any, token: str | None = None) -> list[dict[str, Any]]:
    r = api.rpc("update_signal_statuses", {"p_changes": changes}, token or a.token)
    assert r.status == 200, r.body
    return r.body


def stored(db: Any, keys: list[str]) -> list[tuple[str, int | None]]:
    rows = dict(
        (k, (s, e))
        for k, s, e in db.execute(
            "select signal_key, status, updated_epoch from signals where signal_key = any(%s)", (keys,)
        ).fetchall()
    )
    return [rows[k] for k in keys]


def three_signals(api: Api, a: Actor, db: Any) -> tuple[int, list[str]]:
    epoch = local_lease_backdated(api, a, db)
    rows = [signal(a, epoch, seconds_ago(db, 60 * (i + 1))) for i in range(3)]
    return epoch, [o["signal_key"] for o in write(api, a, rows)]


def test_every_change_gets_its_outcome_in_one_statement(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch, keys = three_signals(api, a, db)
    out = update(api, a, [{"signal_key": k, "status": "active", "updated_epoch": epoch} for k in keys])
    assert [(o["index"], o["signal_key"], o["outcome"]) for o in out] == [
        (i, k, "updated") for i, k in enumerate(keys)
    ]
    assert stored(db, keys) == [("active", epoch)] * 3
    assert update(api, a, []) == []


def test_refusals_are_outcomes_and_the_rest_goes_through(api: Api, actors: Actors, db: Any) -> None:
    a, b = actors.make(), actors.make()
    epoch, keys = three_signals(api, a, db)
    b_epoch, b_keys = three_signals(api, b, db)
    out = update(
        api,
        a,
        [
            {"signal_key": keys[0], "status": "active", "updated_epoch": epoch},
            {"signal_key": keys[0], "status": "new", "updated_epoch": epoch},  # active -> new: no
            {"signal_key": "no-such-key", "status": "active", "updated_epoch": epoch},
            {"signal_key": b_keys[0], "status": "active", "updated_epoch": b_epoch},  # b's: invisible
            {"signal_key": keys[2], "status": "closed", "updated_epoch": epoch + 7},  # not the lease
            {"signal_key": keys[0], "status": "expired", "updated_epoch": epoch},  # a second step
            {"status": "active"},  # malformed
        ],
    )
    assert [(o["outcome"], o.get("code")) for o in out] == [
        ("updated", None),
        ("rejected", GuardError.INVALID_TRANSITION),
        ("rejected", "not_found"),
        ("rejected", "not_found"),
        ("rejected", GuardError.LEASE_NOT_HELD),
        ("updated", None),
        ("rejected", GuardError.INVALID_ARGUMENT),
    ]
    assert [o["index"] for o in out] == list(range(7))
    assert stored(db, keys) == [("expired", epoch), ("new", epoch), ("new", epoch)]
    assert stored(db, b_keys[:1]) == [("new", b_epoch)]


def test_after_the_handoff_only_the_cloud_moves_statuses(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch, keys = three_signals(api, a, db)
    heartbeat(api, a, "starting")
    claim(api, a)  # the browser sees 'starting' and yields
    cloud_epoch = cloud_claim(api, a)["lease"]["epoch"]
    out = update(api, a, [{"signal_key": keys[0], "status": "active", "updated_epoch": epoch}])
    assert out[0]["code"] == GuardError.LEASE_NOT_HELD
    out = update(
        api, a, [{"signal_key": keys[0], "status": "active", "updated_epoch": cloud_epoch}], a.machine_token
    )
    assert out[0]["outcome"] == "updated"
    assert stored(db, keys[:1]) == [("active", cloud_epoch)]


def test_bad_arguments_are_refused_whole(api: Api, actors: Actors) -> None:
    a = actors.make()
    for bad in ({"signal_key": "x"}, "changes", None):
        r = api.rpc("update_signal_statuses", {"p_changes": bad}, a.token)
        assert r.status == 400 and r.code == GuardError.INVALID_ARGUMENT, r.body
    r = api.rpc("update_signal_statuses", {"p_changes": [{}] * 501}, a.token)
    assert r.code == GuardError.INVALID_ARGUMENT and "at most 500" in r.body["message"]
    assert api.rpc("update_signal_statuses", {"p_changes": []}, None).status in (401, 403)
