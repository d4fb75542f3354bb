"""Tokens at ``/auth/v1``: a machine token is no user session, and a logout names what it ends.

A machine token is signed with the same secret as a user's and carries its owner's ``sub``; without a
check of its ``machine_id`` claim, ``/auth/v1/user`` answered it as the owner and ``/auth/v1/logout`` let it
end the owner's sessions. The worker never calls ``/auth/v1``: it only needs the database API.
"""

from __future__ import annotations

import pytest
from stackkit import Actors
from test_auth_signin import PASSWORD, client, sign_in, user_with_password

from signalguard.devstack.gateway import BCRYPT_COST
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack


def test_a_machine_token_is_refused_by_auth_user_and_logout(stack: LocalStack, actors: Actors) -> None:
    actor = actors.make()
    assert actor.machine_token is not None
    anon = stack.config.anon_key()
    with stack.connect() as conn:
        conn.execute(
            "update auth.users set encrypted_password = extensions.crypt(%s, extensions.gen_salt('bf', %s)) "
            "where id = %s",
            (PASSWORD, BCRYPT_COST, actor.user_id),
        )
    with client() as http:
        session = sign_in(http, stack.url, anon, actor.email, PASSWORD).json()
        machine = {"apikey": anon, "Authorization": f"Bearer {actor.machine_token}"}
        r = http.get(f"{stack.url}/auth/v1/user", headers=machine)
        assert r.status_code == 403 and r.json()["error_code"] == "bad_jwt", r.text
        for scope in ("global", "local", "others"):
            r = http.post(f"{stack.url}/auth/v1/logout?scope={scope}", headers=machine)
            assert r.status_code == 403 and r.json()["error_code"] == "bad_jwt", r.text
        # Nothing was signed out: the owner's session still refreshes, and the owner's own token reads
        # the account.
        r = http.post(
            f"{stack.url}/auth/v1/token?grant_type=refresh_token",
            headers={"apikey": anon},
            json={"refresh_token": session["refresh_token"]},
        )
        assert r.status_code == 200, r.text
        me = http.get(
            f"{stack.url}/auth/v1/user",
            headers={"apikey": anon, "Authorization": f"Bearer {r.json()['access_token']}"},
        )
        assert me.status_code == 200 and me.json()["id"] == actor.user_id
        # The machine token still does what it is for: the database API.
        r = http.post(f"{stack.url}/rest/v1/rpc/machine_heartbeat", headers=machine, json={})
        assert r.status_code in (200, 204), r.text


def test_an_unknown_logout_scope_is_refused_and_signs_nothing_out(stack: LocalStack) -> None:
    # An unknown scope used to be taken as "others", which signs the account's other sessions out.
    email, _ = user_with_password(stack)
    anon = stack.config.anon_key()
    with client() as http:
        first = sign_in(http, stack.url, anon, email, PASSWORD).json()
        second = sign_in(http, stack.url, anon, email, PASSWORD).json()
        r = http.post(
            f"{stack.url}/auth/v1/logout?scope=everything",
            headers={"apikey": anon, "Authorization": f"Bearer {second['access_token']}"},
        )
        assert r.status_code == 400 and r.json()["error_code"] == "validation_failed"
        r = http.post(
            f"{stack.url}/auth/v1/token?grant_type=refresh_token",
            headers={"apikey": anon},
            json={"refresh_token": first["refresh_token"]},
        )
        assert r.status_code == 200
