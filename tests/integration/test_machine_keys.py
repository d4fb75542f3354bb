"""Machine keys: the cloud machine's credential, made and revoked in the page, judged by the database.

The user registers their machine and makes a key with their own session; the worker then sends the
project's anon key and the key in ``x-signalguard-machine-key``, and PostgREST's pre-request function
turns the request into the machine token the key stands for. So everything a machine token may do, a
key may do, and nothing more; a revoked, unknown or malformed key, or a key sent with a session, is
refused (SG012) on the very next request. Nothing here uses the JWT secret on the machine's side: the
requests are what a worker on a hosted project sends.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from stackkit import Actor, Actors, Api, Response, seconds_ago, signal

from signalguard.core.codes import GuardError

pytestmark = pytest.mark.stack

KEY = re.compile(r"sgm_[0-9a-f]{64}")
HEADER = "x-signalguard-machine-key"


class KeyApi:
    """Requests as a worker with a key sends them: the anon key as apikey and bearer, and the key."""

    def __init__(self, api: Api, key: str, bearer: str | None = None) -> None:
        self.api, self.key = api, key
        self.bearer = bearer or api.anon

    def _headers(self) -> dict[str, str]:
        return {
            "apikey": self.api.anon,
            "Authorization": f"Bearer {self.bearer}",
            "Content-Type": "application/json",
            HEADER: self.key,
        }

    def rpc(self, name: str, args: dict[str, Any] | None = None) -> Response:
        r = self.api.http.post(
            f"{self.api.base}/rest/v1/rpc/{name}", json=args or {}, headers=self._headers()
        )
        return self.api._wrap(r)

    def select(self, table: str, query: str = "select=*") -> Response:
        r = self.api.http.get(f"{self.api.base}/rest/v1/{table}?{query}", headers=self._headers())
        return self.api._wrap(r)

    def update(self, table: str, query: str, patch: dict[str, Any]) -> Response:
        headers = {**self._headers(), "Prefer": "return=representation"}
        r = self.api.http.patch(f"{self.api.base}/rest/v1/{table}?{query}", json=patch, headers=headers)
        return self.api._wrap(r)


def register(api: Api, a: Actor, name: str | None = None) -> dict[str, Any]:
    r = api.rpc("create_cloud_machine", {"p_machine_id": name or f"sg-{a.user_id[:8]}"}, a.token)
    assert r.status == 200, r.body
    return r.body  # type: ignore[no-any-return]


def make_key(api: Api, a: Actor, label: str = "fly") -> dict[str, Any]:
    r = api.rpc("create_machine_key", {"p_label": label}, a.token)
    assert r.status == 200, r.body
    return r.body  # type: ignore[no-any-return]


def refused(r: Response, code: GuardError, words: str) -> None:
    assert r.status >= 400, r.body
    assert r.code == code.value, r.body
    assert words in r.body["message"], r.body


def with_key(actors: Actors, api: Api) -> tuple[Actor, KeyApi, dict[str, Any]]:
    a = actors.make(machine=False)
    machine = register(api, a)
    made = make_key(api, a)
    assert machine["created"] is True
    return a, KeyApi(api, made["key"]), made


def test_the_user_registers_one_machine_by_its_fly_name(actors: Actors, api: Api) -> None:
    a, b = actors.make(machine=False), actors.make(machine=False)
    name = f"sg-{a.user_id[:8]}"
    first = register(api, a, name)
    assert first["created"] is True and first["machine_id"] == name and first["status"] == "stopped"
    assert register(api, a, name) == {**first, "created": False}  # asking again is harmless
    refused(
        api.rpc("create_cloud_machine", {"p_machine_id": "another-one"}, a.token),
        GuardError.INVALID_ARGUMENT,
        f"you already have a cloud machine, {name}",
    )
    refused(
        api.rpc("create_cloud_machine", {"p_machine_id": name}, b.token), GuardError.INVALID_ARGUMENT, "taken"
    )
    for bad in ("", "ab", "Upper-Case", "-leading", "x" * 64, "has space"):
        refused(
            api.rpc("create_cloud_machine", {"p_machine_id": bad}, b.token),
            GuardError.INVALID_ARGUMENT,
            "machine name",
        )
    rows = api.select("cloud_machines", a.token).body
    assert [r["machine_id"] for r in rows] == [name]
    # The anonymous key registers nothing.
    assert api.rpc("create_cloud_machine", {"p_machine_id": "sg-anon"}).status in (401, 403)


def test_a_key_is_shown_once_and_stored_only_as_its_hash(actors: Actors, api: Api, db: Any) -> None:
    a = actors.make(machine=False)
    refused(api.rpc("create_machine_key", {"p_label": "fly"}, a.token), GuardError.INVALID_ARGUMENT, "first")
    register(api, a)
    made = make_key(api, a, "  fly ams  ")
    assert KEY.fullmatch(made["key"]), made
    assert made["label"] == "fly ams" and made["key_hint"] == made["key"][:10]
    listed = api.select("machine_keys", a.token, "select=id,label,key_hint,last_used_at,revoked_at").body
    assert listed == [
        {
            "id": made["id"],
            "label": "fly ams",
            "key_hint": made["key_hint"],
            "last_used_at": None,
            "revoked_at": None,
        }
    ]
    # The hash is no API role's to read, and the key itself is nowhere in the database.
    denied = api.select("machine_keys", a.token, "select=key_hash")
    assert denied.status in (401, 403) and denied.code == "42501", denied.body
    dump = db.execute("select k::text from public.machine_keys k where k.id = %s", (made["id"],)).fetchone()[
        0
    ]
    assert made["key"] not in dump and made["key"][4:] not in dump
    for label in ("", " ", "x" * 61, "two\nlines"):
        refused(
            api.rpc("create_machine_key", {"p_label": label}, a.token), GuardError.INVALID_ARGUMENT, "label"
        )


def test_a_key_stands_for_its_machine_token_and_nothing_more(actors: Actors, api: Api, db: Any) -> None:
    a, key, made = with_key(actors, api)
    other = actors.make()
    me = key.rpc("machine_identity")
    assert me.status == 200, me.body
    assert me.body["user_id"] == a.user_id and me.body["key_id"] == made["id"]
    machine = me.body["machine"]
    assert machine["machine_id"] == f"sg-{a.user_id[:8]}"

    # It reads its owner's traders and its own machine, not another user's.
    assert [t["id"] for t in key.select("traders", "select=id").body] == [a.trader_id]
    assert [m["id"] for m in key.select("cloud_machines", "select=id").body] == [machine["id"]]
    assert key.select("traders", f"select=id&user_id=eq.{other.user_id}").body == []
    # It may not edit traders, see the keys, or make or revoke keys: as a machine token.
    assert key.update("traders", f"id=eq.{a.trader_id}", {"name": "renamed"}).body == []
    assert key.select("machine_keys", "select=id").body == []
    refused(key.rpc("create_machine_key", {"p_label": "more"}), GuardError.NOT_A_BROWSER, "not_a_browser")
    refused(key.rpc("revoke_machine_key", {"p_id": made["id"]}), GuardError.NOT_A_BROWSER, "not_a_browser")
    refused(
        key.rpc("claim_local_lease", {"p_holder_id": a.holder}), GuardError.NOT_A_BROWSER, "not_a_browser"
    )
    # A user's session is not a machine.
    refused(api.rpc("machine_identity", {}, a.token), GuardError.NOT_A_MACHINE, "not_a_machine")

    # It heartbeats, takes the lease and writes its machine's cloud signals, and only those.
    beat = key.rpc("machine_heartbeat", {"p_status": "running"})
    assert beat.status == 200, beat.body
    lease = key.rpc("claim_cloud_lease")
    assert lease.status == 200 and lease.body["granted"] is True, lease.body
    epoch = lease.body["lease"]["epoch"]
    close = seconds_ago(db, 1)
    row = signal(a, epoch, close, source="cloud")
    row["machine_id"] = machine["id"]
    written = key.rpc("write_signals", {"p_signals": [row]})
    assert written.status == 200 and written.body[0]["outcome"] == "inserted", written.body
    local = signal(a, epoch, close, symbol="ETHUSDT", source="local")
    out = key.rpc("write_signals", {"p_signals": [local]}).body
    assert out[0]["outcome"] == "rejected" and out[0]["code"] == GuardError.SOURCE_MISMATCH.value, out
    stored = db.execute(
        "select source, machine_id::text from public.signals where user_id = %s", (a.user_id,)
    ).fetchall()
    assert stored == [("cloud", machine["id"])]

    # A write (the heartbeat) marks the key used; the page sees when.
    used = api.select("machine_keys", a.token, "select=last_used_at").body
    assert used[0]["last_used_at"] is not None


def test_a_revoked_key_is_refused_on_its_next_request(actors: Actors, api: Api, db: Any) -> None:
    a, key, made = with_key(actors, api)
    assert key.rpc("machine_heartbeat", {"p_status": "running"}).status == 200
    epoch = key.rpc("claim_cloud_lease").body["lease"]["epoch"]
    r = api.rpc("revoke_machine_key", {"p_id": made["id"]}, a.token)
    assert r.status == 200 and r.body["revoked_at"], r.body
    # The lease it held ends with it: its window closes at the revocation, so the candles after it
    # are the next holder's to sign (its gap), not a dead lease's.
    holder = db.execute("select holder_kind from public.execution_leases where user_id = %s", (a.user_id,))
    assert holder.fetchone() == (None,)
    ended = db.execute(
        "select ended_reason, valid_until <= clock_timestamp() from public.lease_epochs"
        " where user_id = %s and epoch = %s",
        (a.user_id, epoch),
    ).fetchone()
    assert ended == ("machine_stopped", True)
    again = api.rpc("revoke_machine_key", {"p_id": made["id"]}, a.token)
    assert again.body["revoked_at"] == r.body["revoked_at"]  # revoking twice keeps the first time
    for answer in (
        key.rpc("machine_heartbeat"),
        key.select("traders", "select=id"),
        key.rpc("machine_identity"),
    ):
        refused(answer, GuardError.MACHINE_KEY_REFUSED, "this key was revoked at")
        assert "SIGNALGUARD_MACHINE_KEY" in answer.body["hint"]
    # A new key works at once; the list shows both, the old one revoked.
    fresh = KeyApi(api, make_key(api, a, "rotated")["key"])
    assert fresh.rpc("machine_heartbeat").status == 200
    listed = {
        k["label"]: k["revoked_at"]
        for k in api.select("machine_keys", a.token, "select=label,revoked_at").body
    }
    assert listed["fly"] is not None and listed["rotated"] is None


def test_only_a_whole_live_key_with_the_anon_key_alone_gets_through(actors: Actors, api: Api) -> None:
    a, _, made = with_key(actors, api)
    unknown = "sgm_" + uuid.uuid4().hex + uuid.uuid4().hex
    for bad, words in (
        (unknown, "this key is unknown"),
        (made["key"][:-1], "not a machine key"),
        (made["key"].upper(), "not a machine key"),
        ("", "not a machine key"),
        ("sgm_" + "g" * 64, "not a machine key"),
    ):
        refused(KeyApi(api, bad).rpc("machine_heartbeat"), GuardError.MACHINE_KEY_REFUSED, words)
    # A key sent along with a user's session is refused, not silently ignored or merged.
    refused(
        KeyApi(api, made["key"], bearer=a.token).rpc("machine_identity"),
        GuardError.MACHINE_KEY_REFUSED,
        "goes with the project's anon key alone",
    )
    # Without the header, the anon key is what it always was: no rows, no calls.
    assert api.select("traders", None, "select=id").status in (401, 403)
    assert api.rpc("machine_heartbeat").status in (401, 403)
    # And a user's own session is untouched by the pre-request.
    assert [t["id"] for t in api.select("traders", a.token, "select=id").body] == [a.trader_id]


def test_keys_are_bounded_and_each_user_revokes_only_their_own(actors: Actors, api: Api) -> None:
    a, _, made = with_key(actors, api)
    b, _, _ = with_key(actors, api)
    for n in range(4):
        make_key(api, a, f"spare {n}")
    refused(
        api.rpc("create_machine_key", {"p_label": "sixth"}, a.token), GuardError.INVALID_ARGUMENT, "at most 5"
    )
    refused(
        api.rpc("revoke_machine_key", {"p_id": made["id"]}, b.token),
        GuardError.INVALID_ARGUMENT,
        "no such key",
    )
    assert api.rpc("revoke_machine_key", {"p_id": made["id"]}, a.token).status == 200
    make_key(api, a, "sixth")
    # Each user lists only their own keys.
    assert {k["label"] for k in api.select("machine_keys", b.token, "select=label").body} == {"fly"}
