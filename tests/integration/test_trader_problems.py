"""Why an enabled trader does not generate: report_trader_problems() under the live lease, the
trader_problems table it writes (read by every tab and the machine, written by nobody else), and the
traders' trigger that clears a problem when the trader is switched off or edited.

Through PostgREST with real tokens; durations by backdating timestamps, never by sleeping.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
import pytest
from stackkit import DEFINITION, Actor, Actors, Api, Response, backdate_lease

from signalguard.core.codes import GuardError

pytestmark = pytest.mark.stack

LINE = "NOSUCHUSDT 1m: the market data does not serve this symbol"
OTHER_LINE = "BTCUSDT 1s: the market data does not serve this interval"


# -- helpers -----------------------------------------------------------------------------------


def claim(api: Api, a: Actor, holder: str | None = None) -> int:
    """The browser's lease for ``holder`` (the actor's tab by default): its epoch."""
    r = api.rpc("claim_local_lease", {"p_holder_id": holder or a.holder}, a.token)
    assert r.status == 200 and r.body["granted"] is True, r.body
    return int(r.body["lease"]["epoch"])


def release(api: Api, a: Actor, holder: str | None = None) -> None:
    r = api.rpc("release_local_lease", {"p_holder_id": holder or a.holder}, a.token)
    assert r.status == 200 and r.body["released"] is True, r.body


def cloud_claim(api: Api, a: Actor) -> int:
    """The machine starts (a heartbeat) and takes the cloud lease: its epoch."""
    r = api.rpc("machine_heartbeat", {"p_status": "starting"}, a.machine_token)
    assert r.status == 200, r.body
    r = api.rpc("claim_cloud_lease", {}, a.machine_token)
    assert r.status == 200 and r.body["granted"] is True, r.body
    return int(r.body["lease"]["epoch"])


def report(api: Api, token: str | None, epoch: int | None, problems: Any) -> Response:
    return api.rpc("report_trader_problems", {"p_epoch": epoch, "p_problems": problems}, token)


def stored(api: Api, token: str | None, epoch: int | None, problems: Any) -> dict[str, Any]:
    r = report(api, token, epoch, problems)
    assert r.status == 200, r.body
    return r.body


def refused(r: Response, code: GuardError) -> None:
    assert r.status == 400 and r.code == code, (r.status, r.body)


def denied(r: Response, status: int) -> None:
    """Refused by PostgreSQL's privileges (401 for the anonymous key, 403 for a signed-in user)."""
    assert r.status == status and r.code == "42501", (r.status, r.body)


def problems(db: psycopg.Connection[Any], user_id: str) -> dict[str, tuple[Any, ...]]:
    """The user's rows as the database holds them: trader id -> (problem, source, epoch)."""
    rows = db.execute(
        "select trader_id::text, problem, source, epoch from public.trader_problems where user_id = %s",
        (user_id,),
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def times(db: psycopg.Connection[Any], trader_id: str) -> tuple[datetime, datetime]:
    row = db.execute(
        "select since, updated_at from public.trader_problems where trader_id = %s", (trader_id,)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def add_trader(db: psycopg.Connection[Any], a: Actor, name: str = "second") -> str:
    tid = str(uuid.uuid4())
    db.execute(
        "insert into public.traders (id, user_id, name, definition) values (%s, %s, %s, %s)",
        (tid, a.user_id, name, psycopg.types.json.Jsonb(DEFINITION)),
    )
    return tid


# -- the browser holder ------------------------------------------------------------------------


def test_browser_holder_stores_and_clears(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    second = add_trader(db, a)
    epoch = claim(api, a)
    body = stored(api, a.token, epoch, {a.trader_id: LINE, second: OTHER_LINE})
    assert body == {"stored": 2, "cleared": 0, "unknown": []}
    assert problems(db, a.user_id) == {
        a.trader_id: (LINE, "local", epoch),
        second: (OTHER_LINE, "local", epoch),
    }
    # null clears one; clearing a trader that has no problem counts nothing.
    body = stored(api, a.token, epoch, {a.trader_id: None})
    assert body == {"stored": 0, "cleared": 1, "unknown": []}
    body = stored(api, a.token, epoch, {a.trader_id: None})
    assert body == {"stored": 0, "cleared": 0, "unknown": []}
    assert problems(db, a.user_id) == {second: (OTHER_LINE, "local", epoch)}
    # Setting one and clearing another in the same call; an empty object changes nothing.
    body = stored(api, a.token, epoch, {a.trader_id: LINE, second: None})
    assert body == {"stored": 1, "cleared": 1, "unknown": []}
    assert problems(db, a.user_id) == {a.trader_id: (LINE, "local", epoch)}
    assert stored(api, a.token, epoch, {}) == {"stored": 0, "cleared": 0, "unknown": []}
    assert problems(db, a.user_id) == {a.trader_id: (LINE, "local", epoch)}


def test_since_is_kept_for_the_same_line_and_renewed_when_it_changes(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make()
    epoch = claim(api, a)
    stored(api, a.token, epoch, {a.trader_id: LINE})
    since, updated = times(db, a.trader_id)
    assert since == updated
    # Seen a minute ago; the same line again keeps when it was first seen and renews updated_at.
    db.execute(
        "update public.trader_problems set since = since - interval '1 minute', "
        "updated_at = updated_at - interval '1 minute' where trader_id = %s",
        (a.trader_id,),
    )
    earlier, _ = times(db, a.trader_id)
    assert stored(api, a.token, epoch, {a.trader_id: LINE})["stored"] == 1
    since, updated = times(db, a.trader_id)
    assert since == earlier and updated > earlier
    # Another line is another problem: first seen now.
    assert stored(api, a.token, epoch, {a.trader_id: OTHER_LINE})["stored"] == 1
    since, updated = times(db, a.trader_id)
    assert since > earlier and since == updated
    assert problems(db, a.user_id) == {a.trader_id: (OTHER_LINE, "local", epoch)}


def test_unknown_ids_are_listed_and_not_stored(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    b = actors.make()
    stranger = str(uuid.uuid4())
    # B's trader has a problem of B's own, which A can neither overwrite nor clear.
    stored(api, b.token, claim(api, b), {b.trader_id: OTHER_LINE})
    epoch = claim(api, a)
    body = stored(api, a.token, epoch, {a.trader_id: LINE, b.trader_id: LINE, stranger: LINE})
    assert body["stored"] == 1 and body["cleared"] == 0
    assert sorted(body["unknown"]) == sorted([b.trader_id, stranger])
    body = stored(api, a.token, epoch, {b.trader_id: None, stranger: None})
    assert body["stored"] == 0 and body["cleared"] == 0
    assert sorted(body["unknown"]) == sorted([b.trader_id, stranger])
    assert problems(db, a.user_id) == {a.trader_id: (LINE, "local", epoch)}
    assert problems(db, b.user_id) == {b.trader_id: (OTHER_LINE, "local", 1)}
    assert db.execute(
        "select count(*) from public.trader_problems where trader_id = %s", (stranger,)
    ).fetchone() == (0,)


def test_boundaries_that_are_accepted(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = claim(api, a)
    # A line of 300 characters (counted as characters, not bytes); an upper-case UUID key.
    body = stored(api, a.token, epoch, {a.trader_id.upper(): "é" * 300})
    assert body == {"stored": 1, "cleared": 0, "unknown": []}
    assert problems(db, a.user_id) == {a.trader_id: ("é" * 300, "local", epoch)}
    # 500 traders in one call: the caller's own and 499 unknown ones.
    many: dict[str, str | None] = {str(uuid.uuid4()): None for _ in range(499)}
    many[a.trader_id] = "x" * 300
    body = stored(api, a.token, epoch, many)
    assert body["stored"] == 1 and body["cleared"] == 0 and len(body["unknown"]) == 499
    assert a.trader_id not in body["unknown"]
    assert problems(db, a.user_id) == {a.trader_id: ("x" * 300, "local", epoch)}


# -- the cloud holder, and who reads ---------------------------------------------------------


def test_cloud_holder_stores_with_source_cloud_and_owner_reads(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    b = actors.make()
    epoch = cloud_claim(api, a)
    body = stored(api, a.machine_token, epoch, {a.trader_id: LINE})
    assert body == {"stored": 1, "cleared": 0, "unknown": []}
    assert problems(db, a.user_id) == {a.trader_id: (LINE, "cloud", epoch)}
    for token in (a.token, a.machine_token):
        r = api.select("trader_problems", token)
        assert r.status == 200, r.body
        assert [(p["trader_id"], p["user_id"], p["problem"], p["source"], p["epoch"]) for p in r.body] == [
            (a.trader_id, a.user_id, LINE, "cloud", epoch)
        ]
    r = api.select("trader_problems", b.token)
    assert r.status == 200 and r.body == []
    r = api.select("trader_problems", b.token, f"trader_id=eq.{a.trader_id}")
    assert r.status == 200 and r.body == []
    # The machine clears it, too.
    assert stored(api, a.machine_token, epoch, {a.trader_id: None})["cleared"] == 1
    assert api.select("trader_problems", a.token).body == []


def test_the_same_line_from_the_other_side_is_a_new_sighting(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    local_epoch = claim(api, a)
    stored(api, a.token, local_epoch, {a.trader_id: LINE})
    db.execute(
        "update public.trader_problems set since = since - interval '1 minute' where trader_id = %s",
        (a.trader_id,),
    )
    earlier, _ = times(db, a.trader_id)
    release(api, a)
    cloud_epoch = cloud_claim(api, a)
    assert cloud_epoch == local_epoch + 1
    stored(api, a.machine_token, cloud_epoch, {a.trader_id: LINE})
    since, updated = times(db, a.trader_id)
    assert since > earlier and since == updated
    assert problems(db, a.user_id) == {a.trader_id: (LINE, "cloud", cloud_epoch)}


# -- refused: the lease (SG001) ----------------------------------------------------------------


def test_refused_without_the_live_lease(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    # No lease at all, under any epoch.
    for epoch in (0, 1, None):
        refused(report(api, a.token, epoch, {a.trader_id: LINE}), GuardError.LEASE_NOT_HELD)
    epoch = claim(api, a)
    # A wrong epoch.
    for wrong in (epoch + 1, epoch - 1, None):
        refused(report(api, a.token, wrong, {a.trader_id: LINE}), GuardError.LEASE_NOT_HELD)
    # The machine token while the browser holds the lease.
    refused(report(api, a.machine_token, epoch, {a.trader_id: LINE}), GuardError.LEASE_NOT_HELD)
    assert problems(db, a.user_id) == {}
    # The right epoch works; once the lease has expired it does not, not even to clear.
    stored(api, a.token, epoch, {a.trader_id: LINE})
    backdate_lease(db, a.user_id, 31)
    refused(report(api, a.token, epoch, {a.trader_id: OTHER_LINE}), GuardError.LEASE_NOT_HELD)
    refused(report(api, a.token, epoch, {a.trader_id: None}), GuardError.LEASE_NOT_HELD)
    assert problems(db, a.user_id) == {a.trader_id: (LINE, "local", epoch)}


def test_browser_refused_while_the_cloud_holds(api: Api, actors: Actors, db: Any, stack: Any) -> None:
    a = actors.make()
    b = actors.make()
    epoch = cloud_claim(api, a)
    refused(report(api, a.token, epoch, {a.trader_id: LINE}), GuardError.LEASE_NOT_HELD)
    # A machine token under A's identity naming B's machine is not the holder either.
    from signalguard.devstack import tokens

    forged = tokens.machine_token(stack.config.secrets().jwt_secret, a.user_id, b.machine_uuid)
    refused(report(api, forged, epoch, {a.trader_id: LINE}), GuardError.LEASE_NOT_HELD)
    assert problems(db, a.user_id) == {}


def test_the_anon_key_cannot_report(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = claim(api, a)
    denied(report(api, None, epoch, {a.trader_id: LINE}), 401)
    assert problems(db, a.user_id) == {}


# -- refused: the payload (SG009) --------------------------------------------------------------


def bad_payloads(a: Actor) -> list[Any]:
    own = a.trader_id
    return [
        None,
        [{own: LINE}],
        LINE,
        42,
        {"not-a-uuid": LINE, own: LINE},
        {own[:-1]: LINE},
        {own + "0": LINE},
        {own: 42},
        {own: True},
        {own: {"line": LINE}},
        {own: ""},
        {own: "x" * 301},
        {own: LINE, str(uuid.uuid4()): ""},
        {own: LINE, **{str(uuid.uuid4()): None for _ in range(500)}},
    ]


def test_malformed_payloads_are_refused_and_store_nothing(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = claim(api, a)
    for payload in bad_payloads(a):
        refused(report(api, a.token, epoch, payload), GuardError.INVALID_ARGUMENT)
    assert problems(db, a.user_id) == {}
    # Nor does a refused call clear anything.
    stored(api, a.token, epoch, {a.trader_id: LINE})
    refused(report(api, a.token, epoch, {a.trader_id: None, "x": None}), GuardError.INVALID_ARGUMENT)
    refused(report(api, a.token, epoch, {a.trader_id: OTHER_LINE, "x": None}), GuardError.INVALID_ARGUMENT)
    assert problems(db, a.user_id) == {a.trader_id: (LINE, "local", epoch)}


def test_one_trader_under_two_spellings_is_refused(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = claim(api, a)
    own, upper = a.trader_id, a.trader_id.upper()
    refused(report(api, a.token, epoch, {own: LINE, upper: OTHER_LINE}), GuardError.INVALID_ARGUMENT)
    refused(report(api, a.token, epoch, {own: LINE, upper: None}), GuardError.INVALID_ARGUMENT)
    assert problems(db, a.user_id) == {}


# -- nobody writes the table directly ----------------------------------------------------------


def test_direct_writes_are_refused(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = claim(api, a)
    row = {"trader_id": a.trader_id, "user_id": a.user_id, "problem": LINE, "source": "local", "epoch": epoch}
    for token in (a.token, a.machine_token):
        denied(api.insert("trader_problems", row, token), 403)
    assert problems(db, a.user_id) == {}
    stored(api, a.token, epoch, {a.trader_id: LINE})
    for token in (a.token, a.machine_token):
        patch = {"problem": OTHER_LINE}
        denied(api.update("trader_problems", f"trader_id=eq.{a.trader_id}", patch, token), 403)
        denied(api.delete("trader_problems", f"trader_id=eq.{a.trader_id}", token), 403)
    assert problems(db, a.user_id) == {a.trader_id: (LINE, "local", epoch)}
    # The anonymous key reads nothing.
    denied(api.select("trader_problems", None), 401)


# -- the traders' trigger ----------------------------------------------------------------------


def patch_trader(api: Api, a: Actor, patch: dict[str, Any]) -> None:
    r = api.update("traders", f"id=eq.{a.trader_id}", patch, a.token)
    assert r.status == 200 and len(r.body) == 1, r.body


def test_switching_off_clears_and_switching_on_does_not_create(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = claim(api, a)
    stored(api, a.token, epoch, {a.trader_id: LINE})
    # Saving it still on changes nothing.
    patch_trader(api, a, {"enabled": True})
    assert problems(db, a.user_id) == {a.trader_id: (LINE, "local", epoch)}
    patch_trader(api, a, {"enabled": False})
    assert problems(db, a.user_id) == {}
    # A report racing the switch (sent before the executor saw it) does not bring the problem back.
    answer = report(api, a.token, epoch, {a.trader_id: LINE})
    assert answer.status == 200 and answer.body["stored"] == 0 and answer.body["unknown"] == [], answer.body
    assert problems(db, a.user_id) == {}
    patch_trader(api, a, {"enabled": True})
    assert problems(db, a.user_id) == {}


def test_editing_the_definition_clears_renaming_keeps(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    second = add_trader(db, a)
    epoch = claim(api, a)
    stored(api, a.token, epoch, {a.trader_id: LINE, second: OTHER_LINE})
    # The name only: the problem stays.
    patch_trader(api, a, {"name": "renamed"})
    # The same definition saved again is no edit.
    patch_trader(api, a, {"definition": DEFINITION})
    assert problems(db, a.user_id) == {
        a.trader_id: (LINE, "local", epoch),
        second: (OTHER_LINE, "local", epoch),
    }
    # An edited definition clears this trader's problem, and only this trader's.
    patch_trader(api, a, {"definition": {**DEFINITION, "interval": "5m"}})
    assert problems(db, a.user_id) == {second: (OTHER_LINE, "local", epoch)}


def test_deleting_the_trader_deletes_its_problem(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    second = add_trader(db, a)
    epoch = claim(api, a)
    stored(api, a.token, epoch, {a.trader_id: LINE, second: OTHER_LINE})
    r = api.delete("traders", f"id=eq.{a.trader_id}", a.token)
    assert r.status == 200 and len(r.body) == 1, r.body
    assert problems(db, a.user_id) == {second: (OTHER_LINE, "local", epoch)}
    # Reported again, the deleted trader is unknown.
    body = stored(api, a.token, epoch, {a.trader_id: LINE})
    assert body == {"stored": 0, "cleared": 0, "unknown": [a.trader_id]}


# -- a stale holder ----------------------------------------------------------------------------


@pytest.mark.parametrize("move", ["release", "expiry"])
def test_stale_browser_holder_is_refused(api: Api, actors: Actors, db: Any, move: str) -> None:
    a = actors.make()
    old = claim(api, a)
    stored(api, a.token, old, {a.trader_id: LINE})
    if move == "release":
        release(api, a)
    else:
        backdate_lease(db, a.user_id, 31)
    new = claim(api, a, a.other_holder())
    assert new == old + 1
    body = stored(api, a.token, new, {a.trader_id: OTHER_LINE})
    assert body == {"stored": 1, "cleared": 0, "unknown": []}
    # The earlier holder, late: neither its line nor its clearing lands.
    refused(report(api, a.token, old, {a.trader_id: LINE}), GuardError.LEASE_NOT_HELD)
    refused(report(api, a.token, old, {a.trader_id: None}), GuardError.LEASE_NOT_HELD)
    assert problems(db, a.user_id) == {a.trader_id: (OTHER_LINE, "local", new)}


def test_stale_browser_is_refused_after_the_cloud_takes_over(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    old = claim(api, a)
    stored(api, a.token, old, {a.trader_id: LINE})
    # The machine starts; the tab's next poll yields the lease and the machine takes it.
    assert api.rpc("machine_heartbeat", {"p_status": "starting"}, a.machine_token).status == 200
    r = api.rpc("claim_local_lease", {"p_holder_id": a.holder}, a.token)
    assert r.body["granted"] is False and r.body["yielded"] is True, r.body
    new = cloud_claim(api, a)
    assert new == old + 1
    stored(api, a.machine_token, new, {a.trader_id: OTHER_LINE})
    for epoch in (old, new):
        refused(report(api, a.token, epoch, {a.trader_id: None}), GuardError.LEASE_NOT_HELD)
        refused(report(api, a.token, epoch, {a.trader_id: LINE}), GuardError.LEASE_NOT_HELD)
    # The machine under the tab's epoch is refused as well.
    refused(report(api, a.machine_token, old, {a.trader_id: LINE}), GuardError.LEASE_NOT_HELD)
    assert problems(db, a.user_id) == {a.trader_id: (OTHER_LINE, "cloud", new)}
