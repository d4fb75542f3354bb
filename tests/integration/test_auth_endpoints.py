"""Accounts on the local stack's /auth/v1: sign-up, password reset, the mails' one-time links.

As Supabase Auth with e-mail confirmations on: a sign-up makes an unconfirmed user and mails a link
(here: keeps it in ``stack.mails`` and prints it), its answer is the same for an address already
registered, a reset request always answers 200, ``GET /verify`` spends a link once and redirects to
``redirect_to`` (this stack's own origin only) with the session in the fragment, ``PUT /user`` sets a
new password. The throttle is tested on a gateway of the test's own with a hand-moved clock.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from stackkit import Api, serving
from test_dev_command import start_dev, stop_dev

from signalguard.devstack import tokens
from signalguard.devstack.cli import print_mail
from signalguard.devstack.config import free_port
from signalguard.devstack.gateway import LINK_REFUSED, Gateway, Mail
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

PASSWORD = "first-secret-1"
_n = itertools.count()


def address(label: str = "acct") -> str:
    return f"{label}{next(_n)}-{uuid.uuid4().hex[:8]}@signalguard.test"


class Auth:
    """Raw /auth/v1 calls to one gateway, as supabase-js makes them."""

    def __init__(self, base: str, anon: str, mails: list[Mail]) -> None:
        self.base = base
        self.anon = anon
        self.mails = mails
        self.http = httpx.Client(timeout=30, follow_redirects=False)

    @property
    def page(self) -> str:
        return self.base + "/"

    def post(self, path: str, body: Any, **params: str) -> httpx.Response:
        url = f"{self.base}/auth/v1/{path}"
        return self.http.post(url, json=body, params=params or None, headers={"apikey": self.anon})

    def sign_up(self, email: str, password: str = PASSWORD, redirect: str | None = None) -> httpx.Response:
        return self.post("signup", {"email": email, "password": password}, redirect_to=redirect or self.page)

    def recover(self, email: str, redirect: str | None = None) -> httpx.Response:
        return self.post("recover", {"email": email}, redirect_to=redirect or self.page)

    def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return self.post("token?grant_type=password", {"email": email, "password": password})

    def mails_to(self, email: str) -> list[Mail]:
        return [m for m in self.mails if m.to == email.lower()]

    def link(self, email: str, kind: str) -> str:
        found = [m.link for m in self.mails_to(email) if m.kind == kind and m.link]
        assert found, f"no {kind} mail to {email}: {self.mails_to(email)}"
        return found[-1]

    def open(self, link: str) -> dict[str, str]:
        """Open a mail's link as a browser would (no API key); the redirect's fragment."""
        r = self.http.get(link)
        assert r.status_code == 303, (r.status_code, r.text)
        location = r.headers["location"]
        assert location.startswith(self.page)
        return {k: v[0] for k, v in parse_qs(urlsplit(location).fragment).items()}

    def put_user(self, access: str, body: Any) -> httpx.Response:
        return self.http.put(
            f"{self.base}/auth/v1/user",
            json=body,
            headers={"apikey": self.anon, "Authorization": f"Bearer {access}"},
        )


@pytest.fixture(scope="module")
def auth(stack: LocalStack, api: Api) -> Auth:
    return Auth(stack.url, api.anon, stack.mails)


def user_row(stack: LocalStack, email: str) -> tuple[Any, ...] | None:
    with stack.connect() as conn:
        return conn.execute(
            "select id, email_confirmed_at, last_sign_in_at from auth.users where lower(email) = lower(%s)",
            (email,),
        ).fetchone()


def test_settings_say_sign_up_is_open_and_confirmed_by_mail(auth: Auth) -> None:
    r = auth.http.get(f"{auth.base}/auth/v1/settings", headers={"apikey": auth.anon})
    assert r.status_code == 200
    assert r.json()["disable_signup"] is False and r.json()["mailer_autoconfirm"] is False


def test_sign_up_then_the_link_confirms_and_signs_in(auth: Auth, stack: LocalStack) -> None:
    email = address("Signup")
    r = auth.sign_up(email)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "access_token" not in body and body["email"] == email.lower()
    assert body["confirmation_sent_at"] and body["identities"] == []
    row = user_row(stack, email)
    assert row is not None and row[1] is None  # unconfirmed
    # Unconfirmed: the right password is refused with Supabase's code; a wrong one as any wrong one.
    refused = auth.sign_in(email)
    assert refused.status_code == 400 and refused.json()["error_code"] == "email_not_confirmed"
    assert auth.sign_in(email, "wrong-password").json()["error_code"] == "invalid_credentials"

    link = auth.link(email, "signup")
    assert link.startswith(f"{stack.url}/auth/v1/verify?token=") and "type=signup" in link
    [mail] = auth.mails_to(email)
    assert mail.line == f"Mail to {email.lower()}: confirm your account: {link}"
    session = auth.open(link)
    assert session["type"] == "signup" and session["token_type"] == "bearer"
    assert int(session["expires_in"]) == tokens.USER_TOKEN_SECONDS
    assert int(session["expires_at"]) == pytest.approx(time.time() + tokens.USER_TOKEN_SECONDS, abs=30)
    me = auth.http.get(
        f"{auth.base}/auth/v1/user",
        headers={"apikey": auth.anon, "Authorization": f"Bearer {session['access_token']}"},
    )
    assert me.status_code == 200 and me.json()["email"] == email.lower() and me.json()["email_confirmed_at"]
    refreshed = auth.post("token?grant_type=refresh_token", {"refresh_token": session["refresh_token"]})
    assert refreshed.status_code == 200
    assert auth.sign_in(email).status_code == 200

    # The link is good once.
    again = auth.open(link)
    assert again == LINK_REFUSED


def test_a_second_sign_up_reveals_nothing(auth: Auth, stack: LocalStack) -> None:
    new, known = address("fresh"), address("known")
    assert auth.sign_up(known).status_code == 200
    auth.open(auth.link(known, "signup"))
    first = auth.sign_up(new)
    repeat = auth.sign_up(known.upper(), "another-secret")
    assert first.status_code == repeat.status_code == 200
    varying = ("id", "email", "created_at", "updated_at", "confirmation_sent_at")
    assert set(first.json()) == set(repeat.json())
    assert {k: v for k, v in first.json().items() if k not in varying} == {
        k: v for k, v in repeat.json().items() if k not in varying
    }
    assert repeat.json()["id"] != str(user_row(stack, known)[0])  # type: ignore[index]
    # The owner of the address hears of it; the account and its password are unchanged.
    assert auth.mails_to(known)[-1].kind == "existing" and auth.mails_to(known)[-1].link is None
    assert auth.sign_in(known).status_code == 200
    assert auth.sign_in(known, "another-secret").status_code == 400


def test_a_repeated_unconfirmed_sign_up_sends_a_new_link_and_the_old_one_dies(auth: Auth) -> None:
    email = address("again")
    assert auth.sign_up(email).status_code == 200
    old = auth.link(email, "signup")
    assert auth.sign_up(email).status_code == 200
    new = auth.link(email, "signup")
    assert new != old
    assert auth.open(old) == LINK_REFUSED
    assert auth.open(new)["type"] == "signup"


@pytest.mark.parametrize(
    ("email", "password", "status", "code", "message"),
    [
        (
            "no-at-sign",
            PASSWORD,
            400,
            "validation_failed",
            "Unable to validate email address: invalid format",
        ),
        ("a@nodot", PASSWORD, 400, "validation_failed", "Unable to validate email address: invalid format"),
        ("", PASSWORD, 400, "validation_failed", "Email and password are required"),
        ("ok@signalguard.test", "short", 422, "weak_password", "Password should be at least 6 characters."),
        (
            "ok@signalguard.test",
            "p" * 73,
            400,
            "validation_failed",
            "Password cannot be longer than 72 bytes",
        ),
        ("ok@signalguard.test", "secret\0x", 400, "validation_failed", "Password holds a NUL character"),
        ("o\nk@signalguard.test", PASSWORD, 400, "validation_failed", "Email holds a control character"),
    ],
)
def test_bad_sign_up_input_is_refused_before_anything_is_made(
    auth: Auth, stack: LocalStack, email: str, password: str, status: int, code: str, message: str
) -> None:
    before = len(stack.mails)
    r = auth.sign_up(email, password)
    assert r.status_code == status and r.json()["error_code"] == code and r.json()["msg"] == message
    assert len(stack.mails) == before and user_row(stack, "ok@signalguard.test") is None


@pytest.fixture(scope="module")
def pending_link(auth: Auth) -> str:
    """A sign-up's link, not opened yet."""
    email = address("relink")
    assert auth.sign_up(email).status_code == 200
    return auth.link(email, "signup")


@pytest.mark.parametrize(
    "redirect",
    [
        "https://evil.example/",
        "http://127.0.0.1:1/",
        "http://127.0.0.1:{port}.evil.example/",
        "http://127.0.0.1:{port}@evil.example/",
        "http://127.0.0.1:{port}\\@evil.example/",
        "//evil.example/",
        "http://127.0.0.1:{port}/#frag",
        "javascript:alert(1)",
    ],
)
def test_redirect_to_another_origin_is_refused_everywhere(
    auth: Auth, stack: LocalStack, pending_link: str, redirect: str
) -> None:
    target = redirect.format(port=stack.config.gateway_port)
    email = address("redirect")
    r = auth.sign_up(email, redirect=target)
    assert r.status_code == 400 and "redirect_to" in r.json()["msg"]
    assert user_row(stack, email) is None and auth.mails_to(email) == []
    assert auth.recover("alice@signalguard.test", redirect=target).status_code == 400
    # A link whose redirect_to was changed is refused, and spends nothing.
    token = parse_qs(urlsplit(pending_link).query)["token"][0]
    r = auth.http.get(
        f"{auth.base}/auth/v1/verify", params={"token": token, "type": "signup", "redirect_to": target}
    )
    assert r.status_code == 400 and "location" not in r.headers


def test_the_refused_redirects_spent_no_link(auth: Auth, pending_link: str) -> None:
    assert auth.open(pending_link)["type"] == "signup"


def test_reset_then_a_new_password(auth: Auth, stack: LocalStack) -> None:
    email = address("reset")
    assert auth.sign_up(email).status_code == 200
    old_session = auth.open(auth.link(email, "signup"))
    # The same answer for an address without an account, and no mail.
    nobody = address("nobody")
    for who in (email, nobody):
        r = auth.recover(who)
        assert r.status_code == 200 and r.json() == {}
    assert auth.mails_to(nobody) == []
    link = auth.link(email, "recovery")
    assert auth.mails_to(email)[-1].line == f"Mail to {email}: reset your password: {link}"
    session = auth.open(link)
    assert session["type"] == "recovery"
    access = session["access_token"]

    weak = auth.put_user(access, {"password": "short"})
    assert weak.status_code == 422 and weak.json()["error_code"] == "weak_password"
    same = auth.put_user(access, {"password": PASSWORD})
    assert same.status_code == 422 and same.json()["error_code"] == "same_password"
    moved = auth.put_user(access, {"email": "other@signalguard.test"})
    assert moved.status_code == 422
    changed = auth.put_user(access, {"password": "second-secret-2"})
    assert changed.status_code == 200 and changed.json()["email"] == email
    assert auth.sign_in(email).json()["error_code"] == "invalid_credentials"
    assert auth.sign_in(email, "second-secret-2").status_code == 200
    # The account's other sessions end; the one that set the password goes on.
    ended = auth.post("token?grant_type=refresh_token", {"refresh_token": old_session["refresh_token"]})
    assert ended.status_code == 400
    kept = auth.post("token?grant_type=refresh_token", {"refresh_token": session["refresh_token"]})
    assert kept.status_code == 200
    assert auth.open(link) == LINK_REFUSED


def test_a_recovery_link_confirms_an_unconfirmed_account(auth: Auth, stack: LocalStack) -> None:
    email = address("unconfirmed")
    assert auth.sign_up(email).status_code == 200
    assert auth.recover(email).status_code == 200
    assert auth.open(auth.link(email, "recovery"))["type"] == "recovery"
    row = user_row(stack, email)
    assert row is not None and row[1] is not None
    assert auth.sign_in(email).status_code == 200


def test_an_expired_or_mistyped_link_is_refused(auth: Auth, stack: LocalStack) -> None:
    email = address("expired")
    assert auth.sign_up(email).status_code == 200
    link = auth.link(email, "signup")
    token = parse_qs(urlsplit(link).query)["token"][0]
    for query in (
        {"token": token, "type": "recovery", "redirect_to": auth.page},
        {"token": token + "x", "type": "signup", "redirect_to": auth.page},
        {"token": "", "type": "signup", "redirect_to": auth.page},
        {"token": token, "type": "magiclink", "redirect_to": auth.page},
        {"token": "a\u00e9", "type": "signup"},
    ):
        r = auth.http.get(f"{auth.base}/auth/v1/verify", params=query)
        assert r.status_code == 303
        fragment = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).fragment).items()}
        assert fragment == LINK_REFUSED
    with stack.connect() as conn:
        conn.execute(
            "update auth.one_time_tokens set expires_at = now() - interval '1 second' "
            "where user_id = (select id from auth.users where email = %s)",
            (email,),
        )
    assert auth.open(link) == LINK_REFUSED
    assert user_row(stack, email)[1] is None  # type: ignore[index]


def test_only_a_hash_of_a_link_is_kept(auth: Auth, stack: LocalStack) -> None:
    email = address("hash")
    assert auth.sign_up(email).status_code == 200
    token = parse_qs(urlsplit(auth.link(email, "signup")).query)["token"][0]
    with stack.connect() as conn:
        rows = conn.execute(
            "select t.token_hash, t.token_type, t.expires_at - t.created_at from auth.one_time_tokens t "
            "join auth.users u on u.id = t.user_id where u.email = %s",
            (email,),
        ).fetchall()
    assert len(rows) == 1 and rows[0][1] == "signup" and token not in rows[0][0]
    assert rows[0][2].total_seconds() == pytest.approx(3600, abs=1)


def test_a_machine_token_cannot_change_the_password(auth: Auth, stack: LocalStack) -> None:
    machine = stack.machine_token("alice@signalguard.test")
    r = auth.put_user(machine, {"password": "taken-over-1"})
    assert r.status_code == 403
    assert auth.put_user("garbage", {"password": "taken-over-1"}).status_code == 401


def test_the_dev_command_prints_each_mail_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_mail(Mail("x@y.test", "signup", "http://127.0.0.1:8000/auth/v1/verify?token=t&type=signup"))
    print_mail(Mail("x@y.test", "recovery", "http://127.0.0.1:8000/auth/v1/verify?token=u&type=recovery"))
    print_mail(Mail("x@y.test", "existing", None))
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0]
        == "Mail to x@y.test: confirm your account: http://127.0.0.1:8000/auth/v1/verify?token=t&type=signup"
    )
    assert lines[1].startswith("Mail to x@y.test: reset your password: http://")
    assert lines[2].startswith("Mail to x@y.test: someone signed up again") and len(lines) == 3


# -- the throttle, on a gateway of the test's own --------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def own(stack: LocalStack) -> Iterator[tuple[Auth, Clock]]:
    clock = Clock()
    config = dataclasses.replace(stack.config, gateway_port=free_port(), signin_address_failures=8)
    mails: list[Mail] = []
    printed: list[str] = []
    with serving(Gateway(config, clock=clock, mails=mails, on_mail=lambda m: printed.append(m.line))):
        own = Auth(config.gateway_url, config.anon_key(), mails)
        yield own, clock
    assert printed == [m.line for m in mails]


def test_sign_ups_and_resets_are_throttled_per_account_and_address(own: tuple[Auth, Clock]) -> None:
    auth, clock = own
    email = address("throttle")
    answers = [auth.sign_up(email).status_code for _ in range(3)]
    answers += [auth.recover(email).status_code for _ in range(2)]
    assert answers == [200] * 5
    limited = auth.recover(email)
    assert limited.status_code == 429 and limited.json()["error_code"] == "over_email_send_rate_limit"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Unknown or not: the same allowance (nothing to learn from the 429 either).
    nobody = address("nobody")
    assert [auth.recover(nobody).status_code for _ in range(3)] == [200, 200, 200]
    assert auth.recover(nobody).status_code == 429  # the address's allowance (8) is spent
    clock.now += 60
    assert auth.recover(address("later")).status_code == 200
    # Bad input is refused before it counts.
    assert auth.sign_up("bad", PASSWORD).status_code == 400


def test_concurrent_opens_of_one_link_sign_in_once(auth: Auth, stack: LocalStack) -> None:
    email = address("race")
    assert auth.sign_up(email).status_code == 200
    link = auth.link(email, "signup")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: httpx.get(link).headers["location"], range(4)))
    assert sum("access_token=" in r for r in results) == 1
    with stack.connect() as conn:
        tokens_made = conn.execute(
            "select count(*) from auth.refresh_tokens r join auth.users u on u.id = r.user_id "
            "where u.email = %s",
            (email,),
        ).fetchone()
    assert tokens_made == (1,)


def test_signalguard_dev_prints_the_link_of_a_sign_up() -> None:
    """The whole way: ``signalguard dev`` (what ``make dev`` runs) prints the mail's link on its output."""
    state_dir = Path(tempfile.mkdtemp(prefix="signalguard-dev-mail-"))
    port = free_port()
    env = {
        "SIGNALGUARD_PG_PORT": str(free_port()),
        "SIGNALGUARD_REST_PORT": str(free_port()),
        "SIGNALGUARD_REST_ADMIN_PORT": str(free_port()),
        "SIGNALGUARD_REPLAY_PORT": str(free_port()),
    }
    proc, _ = start_dev(state_dir, port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        anon = httpx.get(f"{base}/config.json").json()["supabase_anon_key"]
        email = address("dev")
        r = httpx.post(
            f"{base}/auth/v1/signup",
            params={"redirect_to": f"{base}/"},
            json={"email": email, "password": PASSWORD},
            headers={"apikey": anon},
        )
        assert r.status_code == 200, r.text
    finally:
        out = stop_dev(proc)
        shutil.rmtree(state_dir, ignore_errors=True)
    [line] = [x for x in out.splitlines() if x.startswith("Mail to ")]
    assert line.startswith(f"Mail to {email}: confirm your account: {base}/auth/v1/verify?token=")
