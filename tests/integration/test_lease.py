"""Every rule of the execution lease, through PostgREST, with the database clock.

Durations are exercised by backdating timestamps (see conftest), never by sleeping.
"""

from __future__ import annotations

from typing import Any

import pytest
from stackkit import Actor, Actors, Api, backdate_lease, backdate_machine

from signalguard.core.codes import ClaimRefusal, GuardError

pytestmark = pytest.mark.stack


def claim(api: Api, a: Actor, holder: str | None = None, confirm: bool = False) -> dict[str, Any]:
    args: dict[str, Any] = {"p_holder_id": holder or a.holder}
    if confirm:
        args["p_confirm_takeover"] = True
    r = api.rpc("claim_local_lease", args, a.token)
    assert r.status == 200, r.body
    return r.body


def heartbeat(api: Api, a: Actor, status: str | None = None, error: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if status:
        args["p_status"] = status
    if error:
        args["p_error_message"] = error
    r = api.rpc("machine_heartbeat", args, a.machine_token)
    assert r.status == 200, r.body
    return r.body


def cloud_claim(api: Api, a: Actor) -> dict[str, Any]:
    r = api.rpc("claim_cloud_lease", {}, a.machine_token)
    assert r.status == 200, r.body
    return r.body


def status(api: Api, a: Actor, holder: str | None = None) -> dict[str, Any]:
    r = api.rpc("execution_status", {"p_holder_id": holder or a.holder}, a.token)
    assert r.status == 200, r.body
    return r.body


# -- the status call ---------------------------------------------------------------------------


def test_status_reports_machine_health_lease_and_server_time(api: Api, actors: Actors) -> None:
    a = actors.make()
    s = status(api, a)
    assert s["machine"]["id"] == a.machine_uuid
    assert s["machine"]["status"] == "stopped"
    assert s["healthy"] is False
    assert s["lease"] == {
        "holder_kind": None,
        "holder_id": None,
        "machine_id": None,
        "epoch": 0,
        "acquired_at": None,
        "expires_at": None,
        "live": False,
        "expires_in_seconds": None,
        "signs_from": None,
    }
    assert s["may_claim"] is True and s["reason"] is None and s["may_generate"] is False
    assert s["server_time"] and s["schema_version"] == 1


def test_user_without_machine_may_claim(api: Api, actors: Actors) -> None:
    a = actors.make(machine=False)
    s = status(api, a)
    assert s["machine"] is None and s["healthy"] is False and s["may_claim"] is True
    c = claim(api, a)
    assert c["granted"] is True and c["lease"]["epoch"] == 1 and c["may_generate"] is True


# -- claim, renew, release ---------------------------------------------------------------------


def test_claim_renew_keeps_epoch_and_extends_window(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    first = claim(api, a)
    assert first["granted"] and not first["renewed"] and first["lease"]["epoch"] == 1
    assert first["lease"]["holder_kind"] == "local" and first["lease"]["holder_id"] == a.holder
    assert 29 <= first["lease"]["expires_in_seconds"] <= 30
    backdate_lease(db, a.user_id, 10)
    again = claim(api, a)
    assert again["granted"] and again["renewed"] and again["lease"]["epoch"] == 1
    assert again["lease"]["expires_at"] > first["lease"]["expires_at"]
    # The epoch's window follows the renewal.
    row = db.execute(
        "select e.valid_until = l.expires_at from lease_epochs e join execution_leases l "
        "using (user_id, epoch) where e.user_id = %s",
        (a.user_id,),
    ).fetchone()
    assert row == (True,)


def test_second_holder_refused_while_first_is_live(api: Api, actors: Actors) -> None:
    a = actors.make()
    assert claim(api, a)["granted"]
    other = claim(api, a, a.other_holder())
    assert other["granted"] is False
    assert other["reason"] == ClaimRefusal.HELD_BY_OTHER_LOCAL
    assert 0 < other["retry_in_seconds"] <= 30
    assert status(api, a, a.other_holder())["may_claim"] is False


def test_expired_lease_is_taken_by_other_holder_with_new_epoch(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    assert claim(api, a)["lease"]["epoch"] == 1
    backdate_lease(db, a.user_id, 31)
    taken = claim(api, a, a.other_holder())
    assert taken["granted"] and taken["lease"]["epoch"] == 2
    assert taken["lease"]["holder_id"] == a.other_holder()


def test_same_holder_after_expiry_gets_new_epoch(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    claim(api, a)
    backdate_lease(db, a.user_id, 31)
    back = claim(api, a)
    assert back["granted"] and not back["renewed"] and back["lease"]["epoch"] == 2


def test_release_ends_lease_and_window(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    claim(api, a)
    r = api.rpc("release_local_lease", {"p_holder_id": a.holder}, a.token)
    assert r.status == 200 and r.body["released"] is True and r.body["lease"]["live"] is False
    ended = db.execute(
        "select valid_until <= clock_timestamp(), ended_reason from lease_epochs "
        "where user_id = %s and epoch = 1",
        (a.user_id,),
    ).fetchone()
    assert ended == (True, "released")
    # Releasing twice, or someone else's lease, changes nothing.
    assert api.rpc("release_local_lease", {"p_holder_id": a.holder}, a.token).body["released"] is False
    assert claim(api, a, a.other_holder())["lease"]["epoch"] == 2
    r = api.rpc("release_local_lease", {"p_holder_id": a.holder}, a.token)
    assert r.body["released"] is False and r.body["lease"]["holder_id"] == a.other_holder()


# -- the cloud's health ------------------------------------------------------------------------


def test_healthy_cloud_blocks_browser(api: Api, actors: Actors) -> None:
    a = actors.make()
    heartbeat(api, a, "running")
    s = status(api, a)
    assert s["healthy"] is True and s["may_claim"] is False and s["reason"] == "cloud_healthy"
    c = claim(api, a)
    assert c["granted"] is False and c["reason"] == ClaimRefusal.CLOUD_HEALTHY
    assert 29 <= c["retry_in_seconds"] <= 30


def test_heartbeat_29s_old_is_healthy_31s_is_not(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    heartbeat(api, a, "running")
    backdate_machine(db, a.machine_uuid, 29, "last_health_check")
    assert status(api, a)["healthy"] is True
    assert claim(api, a)["reason"] == "cloud_healthy"
    backdate_machine(db, a.machine_uuid, 2, "last_health_check")
    s = status(api, a)
    assert s["healthy"] is False and s["cloud_last_seen_seconds"] >= 31
    assert claim(api, a)["granted"] is True


def test_grace_after_stop(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    heartbeat(api, a, "running")
    heartbeat(api, a, "stopped")
    s = status(api, a)
    assert s["healthy"] is False and s["machine"]["stopped_at"] is not None
    assert 29 <= s["grace_seconds_left"] <= 30
    c = claim(api, a)
    assert c["granted"] is False and c["reason"] == ClaimRefusal.CLOUD_GRACE
    backdate_machine(db, a.machine_uuid, 20)
    c = claim(api, a)
    assert c["reason"] == "cloud_grace" and 9 <= c["retry_in_seconds"] <= 10
    backdate_machine(db, a.machine_uuid, 11)
    assert claim(api, a)["granted"] is True


@pytest.mark.parametrize("state", ["starting", "provisioning"])
def test_starting_machine_blocks_browser_for_30s(api: Api, actors: Actors, db: Any, state: str) -> None:
    a = actors.make()
    db.execute("update cloud_machines set status = %s where id = %s", (state, a.machine_uuid))
    c = claim(api, a)
    assert c["granted"] is False and c["reason"] == ClaimRefusal.CLOUD_STARTING
    backdate_machine(db, a.machine_uuid, 25, "status_changed_at")
    assert claim(api, a)["reason"] == "cloud_starting"
    # Stuck in starting for over 30 s without a heartbeat: treated as dead.
    backdate_machine(db, a.machine_uuid, 6, "status_changed_at")
    assert claim(api, a)["granted"] is True


def test_starting_machine_that_heartbeats_keeps_blocking(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    heartbeat(api, a, "starting")
    backdate_machine(db, a.machine_uuid, 120, "status_changed_at")
    assert claim(api, a)["reason"] == "cloud_starting"


# -- the 2-minute error rule -------------------------------------------------------------------


def test_error_takeover_after_two_minutes_with_confirmation(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    heartbeat(api, a, "running")
    heartbeat(api, a, "error", "exchange feed lost")
    backdate_machine(db, a.machine_uuid, 31, "last_health_check", "status_changed_at")
    c = claim(api, a, confirm=True)
    assert c["granted"] is False and c["reason"] == ClaimRefusal.CLOUD_ERROR_WAIT
    assert 88 <= c["retry_in_seconds"] <= 89
    assert status(api, a)["takeover_available"] is False

    backdate_machine(db, a.machine_uuid, 90, "status_changed_at")
    s = status(api, a)
    assert s["takeover_available"] is True and s["needs_confirmation"] is True
    assert s["machine"]["error_message"] == "exchange feed lost"
    c = claim(api, a)
    assert c["granted"] is False and c["reason"] == ClaimRefusal.TAKEOVER_NEEDS_CONFIRMATION

    c = claim(api, a, confirm=True)
    assert c["granted"] is True and c["cleared_error"] is True
    assert c["machine"]["status"] == "stopped" and c["machine"]["error_message"] is None
    row = db.execute(
        "select status, error_message from cloud_machines where id = %s", (a.machine_uuid,)
    ).fetchone()
    assert row == ("stopped", None)


def test_error_machine_still_heartbeating_is_in_grace(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    heartbeat(api, a, "error", "boom")
    backdate_machine(db, a.machine_uuid, 121, "status_changed_at")
    heartbeat(api, a)  # still alive
    c = claim(api, a, confirm=True)
    assert c["granted"] is False and c["reason"] == "cloud_grace"
    row = db.execute("select status from cloud_machines where id = %s", (a.machine_uuid,)).fetchone()
    assert row == ("error",)


# -- handoff between browser and cloud ---------------------------------------------------------


def test_renewal_refused_when_cloud_starts_yields_the_lease(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    assert claim(api, a)["granted"]
    heartbeat(api, a, "starting")
    # The cloud may not take the lease while the browser's is live...
    cc = cloud_claim(api, a)
    assert cc["granted"] is False and cc["reason"] == ClaimRefusal.LOCAL_LEASE_LIVE
    assert 0 < cc["retry_in_seconds"] <= 30
    # ...the browser's next poll sees 'starting' and gives it up...
    r = claim(api, a)
    assert r["granted"] is False and r["reason"] == "cloud_starting" and r["yielded"] is True
    assert r["lease"]["live"] is False and r["may_generate"] is False
    reason = db.execute(
        "select ended_reason from lease_epochs where user_id = %s and epoch = 1", (a.user_id,)
    ).fetchone()
    assert reason == ("yielded_to_cloud",)
    # ...and the cloud takes it at once, with the next epoch.
    cc = cloud_claim(api, a)
    assert cc["granted"] is True and cc["lease"]["epoch"] == 2
    assert cc["lease"]["holder_kind"] == "cloud" and cc["lease"]["machine_id"] == a.machine_uuid
    assert cc["you_hold"] is True


def test_cloud_waits_for_browser_lease_to_expire(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    claim(api, a)
    heartbeat(api, a, "starting")
    assert cloud_claim(api, a)["reason"] == "local_lease_live"
    backdate_lease(db, a.user_id, 31)  # the browser went away without releasing
    assert cloud_claim(api, a)["granted"] is True


def test_cloud_claim_needs_an_active_machine_with_fresh_heartbeat(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    r = cloud_claim(api, a)
    assert r["granted"] is False and r["reason"] == ClaimRefusal.MACHINE_NOT_ACTIVE
    heartbeat(api, a, "starting")
    backdate_machine(db, a.machine_uuid, 31, "last_health_check")
    r = cloud_claim(api, a)
    assert r["granted"] is False and r["reason"] == ClaimRefusal.HEARTBEAT_STALE
    heartbeat(api, a)
    r = cloud_claim(api, a)
    assert r["granted"] is True and r["lease"]["epoch"] == 1
    again = cloud_claim(api, a)
    assert again["granted"] is True and again["lease"]["epoch"] == 1  # renewal


def test_cloud_holds_then_browser_refused_then_stop_and_grace(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    heartbeat(api, a, "starting")
    assert cloud_claim(api, a)["granted"]
    heartbeat(api, a, "running")
    backdate_machine(db, a.machine_uuid, 31, "last_health_check")  # heartbeat stale...
    c = claim(api, a)
    assert c["granted"] is False and c["reason"] == ClaimRefusal.HELD_BY_CLOUD  # ...lease still live
    heartbeat(api, a, "stopping")
    rel = api.rpc("release_cloud_lease", {}, a.machine_token).body
    assert rel["released"] is True
    heartbeat(api, a, "stopped")
    assert claim(api, a)["reason"] == "cloud_grace"
    backdate_machine(db, a.machine_uuid, 31)
    c = claim(api, a)
    assert c["granted"] is True and c["lease"]["epoch"] == 2


def test_machine_stopping_to_error_or_stopped_ends_its_lease(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    heartbeat(api, a, "starting")
    assert cloud_claim(api, a)["granted"]
    hb = heartbeat(api, a, "error", "out of memory")
    assert hb["lease"]["live"] is False
    assert db.execute(
        "select ended_reason from lease_epochs where user_id = %s and epoch = 1", (a.user_id,)
    ).fetchone() == ("machine_stopped",)


def test_sigkill_cloud_heartbeat_goes_stale_browser_claims_after_30s(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make()
    heartbeat(api, a, "starting")
    cloud_claim(api, a)
    heartbeat(api, a, "running")
    # Killed: no more heartbeats, no release. 29 s later the browser still waits...
    backdate_machine(db, a.machine_uuid, 29, "last_health_check")
    backdate_lease(db, a.user_id, 29)
    c = claim(api, a)
    assert c["granted"] is False and c["reason"] == "held_by_cloud"
    assert status(api, a)["healthy"] is True
    # ...at 31 s the heartbeat is stale, the cloud lease expired, the grace is over.
    backdate_machine(db, a.machine_uuid, 2, "last_health_check")
    backdate_lease(db, a.user_id, 2)
    c = claim(api, a)
    assert c["granted"] is True and c["lease"]["epoch"] == 2


def test_epochs_rise_by_one_on_each_change_of_holder(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    seen = [claim(api, a)["lease"]["epoch"]]
    api.rpc("release_local_lease", {"p_holder_id": a.holder}, a.token)
    seen.append(claim(api, a, a.other_holder())["lease"]["epoch"])
    api.rpc("release_local_lease", {"p_holder_id": a.other_holder()}, a.token)
    heartbeat(api, a, "starting")
    seen.append(cloud_claim(api, a)["lease"]["epoch"])
    api.rpc("release_cloud_lease", {}, a.machine_token)
    heartbeat(api, a, "stopped")
    backdate_machine(db, a.machine_uuid, 31)
    seen.append(claim(api, a)["lease"]["epoch"])
    assert seen == [1, 2, 3, 4]
    rows = db.execute(
        "select epoch, holder_kind from lease_epochs where user_id = %s order by epoch",
        (a.user_id,),
    ).fetchall()
    assert rows == [(1, "local"), (2, "local"), (3, "cloud"), (4, "local")]


# -- who may call what -------------------------------------------------------------------------


def test_rpc_permissions_and_error_codes(api: Api, actors: Actors, stack: Any) -> None:
    a = actors.make()
    b = actors.make()
    assert api.rpc("execution_status", {}, None).status == 401  # anon key only
    r = api.rpc("machine_heartbeat", {}, a.token)
    assert r.code == GuardError.NOT_A_MACHINE
    r = api.rpc("claim_cloud_lease", {}, a.token)
    assert r.code == GuardError.NOT_A_MACHINE
    r = api.rpc("claim_local_lease", {"p_holder_id": a.holder}, a.machine_token)
    assert r.code == GuardError.NOT_A_BROWSER
    r = api.rpc("claim_local_lease", {"p_holder_id": "x"}, a.token)
    assert r.code == GuardError.INVALID_ARGUMENT
    r = api.rpc("claim_local_lease", {"p_holder_id": "<script>alert(1)</script>"}, a.token)
    assert r.code == GuardError.INVALID_ARGUMENT
    r = api.rpc("machine_heartbeat", {"p_status": "exploded"}, a.machine_token)
    assert r.code == GuardError.INVALID_ARGUMENT
    # A token claiming B's machine under A's identity is not a machine token of A.
    from signalguard.devstack import tokens

    forged = tokens.machine_token(stack.config.secrets().jwt_secret, a.user_id, b.machine_uuid)
    assert api.rpc("machine_heartbeat", {}, forged).code == GuardError.NOT_A_MACHINE
    # A token signed with another secret is refused by PostgREST.
    bad = tokens.user_token("x" * 64, a.user_id, a.email)
    assert api.rpc("execution_status", {}, bad).status == 401


def test_status_as_machine_shows_its_own_lease(api: Api, actors: Actors) -> None:
    a = actors.make()
    heartbeat(api, a, "starting")
    cloud_claim(api, a)
    r = api.rpc("execution_status", {}, a.machine_token)
    assert r.status == 200 and r.body["you_hold"] is True and r.body["may_generate"] is True
    assert r.body["may_claim"] is None
