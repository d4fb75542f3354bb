"""Refresh tokens: one use each, a reused one revokes its whole session, and the short reuse interval.

Supabase Auth rotates the refresh token at every refresh and treats a spent token presented again as a
sign of theft: the session (the token's family) is revoked, so neither the thief nor the victim keeps it.
Within a few seconds of the rotation (``refresh_reuse_seconds``, 10 by default) the spent token instead
answers the session's current token: the client that lost the first answer, or a second tab refreshing
at the same moment. Both sides of the interval are reached by backdating the spent token's revocation,
never by sleeping.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from stackkit import password_account, serving

from signalguard.devstack import schema
from signalguard.devstack.config import free_port
from signalguard.devstack.gateway import BCRYPT_COST, Gateway
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

PASSWORD = "refresh me please"


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@dataclasses.dataclass
class Auth:
    """Password sign-in and refresh against one gateway, for one new account."""

    http: httpx.Client
    base: str
    anon: str
    email: str
    user_id: str

    def sign_in(self) -> dict[str, Any]:
        r = self.http.post(
            f"{self.base}/auth/v1/token?grant_type=password",
            headers={"apikey": self.anon},
            json={"email": self.email, "password": PASSWORD},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def refresh(self, token: str) -> httpx.Response:
        return self.http.post(
            f"{self.base}/auth/v1/token?grant_type=refresh_token",
            headers={"apikey": self.anon},
            json={"refresh_token": token},
        )

    def user(self, access_token: str) -> httpx.Response:
        return self.http.get(
            f"{self.base}/auth/v1/user",
            headers={"apikey": self.anon, "Authorization": f"Bearer {access_token}"},
        )


def new_account(stack: LocalStack, http: httpx.Client, base: str | None = None) -> Auth:
    email, uid = password_account(stack, PASSWORD, prefix="refresh", cost=BCRYPT_COST)
    return Auth(http, base or stack.url, stack.config.anon_key(), email, uid)


def backdate_revocation(stack: LocalStack, token: str, seconds: float) -> None:
    with stack.connect() as conn:
        cur = conn.execute(
            "update auth.refresh_tokens set revoked_at = revoked_at - make_interval(secs => %s) "
            "where token = %s and revoked",
            (seconds, token),
        )
        assert cur.rowcount == 1


def session_tokens(stack: LocalStack, session_id: str) -> list[tuple[str, bool, str | None]]:
    with stack.connect() as conn:
        rows = conn.execute(
            "select token, revoked, parent from auth.refresh_tokens where session_id = %s "
            "order by created_at",
            (session_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def session_of(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["session_id"])


def already_used(r: httpx.Response) -> bool:
    return r.status_code == 400 and r.json()["error_code"] == "refresh_token_already_used"


def test_reuse_after_the_interval_revokes_the_whole_session(stack: LocalStack, http: httpx.Client) -> None:
    auth = new_account(stack, http)
    other_session = auth.sign_in()
    first = auth.sign_in()
    a = first["refresh_token"]
    r = auth.refresh(a)
    assert r.status_code == 200
    b = r.json()["refresh_token"]
    assert b != a
    backdate_revocation(stack, a, 11)
    # A spent token, long after its rotation: whoever presents it may have stolen it.
    r = auth.refresh(a)
    assert already_used(r), r.text
    assert r.json()["msg"] == "Invalid Refresh Token: Already Used"
    # Its descendant is revoked with it: the session is over for the thief and the victim alike.
    assert already_used(auth.refresh(b))
    sid = session_of(first["access_token"])
    assert [revoked for _, revoked, _ in session_tokens(stack, sid)] == [True, True]
    # The account's other session is untouched, and a fresh sign-in works.
    assert auth.refresh(other_session["refresh_token"]).status_code == 200
    fresh = auth.sign_in()
    assert auth.refresh(fresh["refresh_token"]).status_code == 200


def test_reuse_within_the_interval_answers_the_sessions_current_token(
    stack: LocalStack, http: httpx.Client
) -> None:
    auth = new_account(stack, http)
    first = auth.sign_in()
    sid = session_of(first["access_token"])
    a = first["refresh_token"]
    b = auth.refresh(a).json()["refresh_token"]
    backdate_revocation(stack, a, 5)
    again = auth.refresh(a)
    assert again.status_code == 200, again.text
    # The current token, not a new one: the family stays a single line.
    assert again.json()["refresh_token"] == b
    assert auth.user(again.json()["access_token"]).json()["id"] == auth.user_id
    assert [(t, p) for t, _, p in session_tokens(stack, sid)] == [(a, None), (b, a)]
    # The current token still rotates, and the parent then answers the newest one.
    c = auth.refresh(b).json()["refresh_token"]
    assert auth.refresh(a).json()["refresh_token"] == c
    assert auth.refresh(b).json()["refresh_token"] == c
    # Past the interval the same presentation ends the session.
    backdate_revocation(stack, a, 6)
    assert already_used(auth.refresh(a))
    assert already_used(auth.refresh(c))


def test_concurrent_refreshes_with_one_token_all_get_the_same_new_token(
    stack: LocalStack, http: httpx.Client
) -> None:
    auth = new_account(stack, http)
    first = auth.sign_in()
    answers: list[httpx.Response] = []
    gate = threading.Barrier(8)

    def refresh() -> None:
        with httpx.Client(timeout=30) as own:
            gate.wait()
            answers.append(dataclasses.replace(auth, http=own).refresh(first["refresh_token"]))

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    assert len({r.json()["refresh_token"] for r in answers}) == 1
    assert len(session_tokens(stack, session_of(first["access_token"]))) == 2


def test_a_spent_token_of_a_signed_out_session_is_refused_within_the_interval(
    stack: LocalStack, http: httpx.Client
) -> None:
    auth = new_account(stack, http)
    first = auth.sign_in()
    r = auth.refresh(first["refresh_token"])
    out = http.post(
        f"{auth.base}/auth/v1/logout?scope=local",
        headers={"apikey": auth.anon, "Authorization": f"Bearer {r.json()['access_token']}"},
    )
    assert out.status_code == 204
    assert already_used(auth.refresh(first["refresh_token"]))
    assert already_used(auth.refresh(r.json()["refresh_token"]))


def test_an_unknown_refresh_token_is_not_found(stack: LocalStack, http: httpx.Client) -> None:
    auth = new_account(stack, http)
    r = auth.refresh("a" * 32)
    assert r.status_code == 400 and r.json()["error_code"] == "refresh_token_not_found"


def test_the_reuse_interval_is_a_setting(stack: LocalStack, http: httpx.Client) -> None:
    config = dataclasses.replace(stack.config, gateway_port=free_port(), refresh_reuse_seconds=0)
    with serving(Gateway(config)):
        auth = new_account(stack, http, config.gateway_url)
        first = auth.sign_in()
        b = auth.refresh(first["refresh_token"]).json()["refresh_token"]
        assert already_used(auth.refresh(first["refresh_token"]))
        assert already_used(auth.refresh(b))


def test_the_compat_sql_adds_the_reuse_columns_to_an_existing_state_folder(stack: LocalStack) -> None:
    # A state folder made before reuse detection: its table lacks the columns, and its rows (spent
    # tokens with no revocation time) survive the start that adds them.
    password = stack.config.secrets().authenticator_password
    with stack.connect() as conn:
        conn.execute("alter table auth.refresh_tokens drop column parent, drop column revoked_at")
        before = conn.execute("select count(*) from auth.refresh_tokens").fetchone()
        schema.bootstrap(conn, password)
        schema.bootstrap(conn, password)
        after = conn.execute("select count(*) from auth.refresh_tokens").fetchone()
        columns = {
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'auth' and table_name = 'refresh_tokens'"
            )
        }
    assert before == after
    assert {"parent", "revoked_at"} <= columns
