"""The signed-out page: sign-up, password reset and the mails' links, on the doubles of the ports."""

from __future__ import annotations

import json

import pytest

from signalguard.browser.accounts import (
    CHECK_MAIL,
    CONFIRMED,
    LINK_REFUSED,
    LOCAL_MAIL,
    NOT_CONFIRMED,
    PASSWORD_SET,
    Accounts,
    AccountView,
    Form,
    email_problem,
    password_problem,
    refusal_text,
)
from signalguard.browser.jsbridge import SupabaseBackend
from signalguard.browser.ports import LinkOutcome, User
from signalguard.browser.testing import FakeBackend, FakeTasks, on_loop

ALICE = User("u-1", "alice@example.com")


class Page:
    def __init__(self, *, local_mail: bool = True, signed_in: bool = False) -> None:
        self.backend = FakeBackend(account=ALICE, password="old-secret", signed_in=signed_in)
        self.tasks = FakeTasks()
        self.views: list[AccountView] = []
        self.entered: list[User] = []
        self.toasts: list[str] = []

        async def enter(user: User) -> None:
            self.entered.append(user)

        self.accounts = Accounts(
            self.backend,
            self.views.append,
            self.tasks.spawn,
            enter,
            toast=self.toasts.append,
            local_mail=local_mail,
        )

    @property
    def shown(self) -> AccountView:
        return self.views[-1]


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("", "Enter your e-mail address."),
        ("alice", "'alice' is not an e-mail address (name@example.com)."),
        ("alice@example", "'alice@example' is not an e-mail address (name@example.com)."),
        ("@example.com", "'@example.com' is not an e-mail address (name@example.com)."),
        ("al ice@example.com", "'al ice@example.com' is not an e-mail address (name@example.com)."),
        ("alice@example.com", None),
    ],
)
def test_an_address_is_checked_before_it_is_sent(email: str, problem: str | None) -> None:
    assert email_problem(email) == problem


@pytest.mark.parametrize(
    ("password", "again", "problem"),
    [
        ("short", "short", "Choose a password of at least 6 characters."),
        ("p" * 73, "p" * 73, "A password can be at most 72 bytes long."),
        ("é" * 37, "é" * 37, "A password can be at most 72 bytes long."),
        ("secret\0x", "secret\0x", "A password cannot hold a NUL character."),
        ("secret-1", "secret-2", "The two passwords differ: type the same password in both fields."),
        ("secret-1", "secret-1", None),
    ],
)
def test_a_password_is_checked_before_it_is_sent(password: str, again: str, problem: str | None) -> None:
    assert password_problem(password, again) == problem


@on_loop
async def test_sign_up_says_check_your_mail_and_keeps_the_address() -> None:
    page = Page()
    page.accounts.sign_up("  new@example.com ", "secret-1", "secret-1")
    await page.tasks.settle()
    assert page.backend.sign_ups == [("new@example.com", "secret-1")]
    assert page.views[0] == AccountView(Form.SIGN_UP, busy=True)
    assert page.shown == AccountView(Form.SIGN_IN, note=CHECK_MAIL + LOCAL_MAIL, email="new@example.com")
    assert page.entered == []
    # On a hosted project the mail is sent: no word of make dev.
    hosted = Page(local_mail=False)
    hosted.accounts.sign_up("new@example.com", "secret-1", "secret-1")
    await hosted.tasks.settle()
    assert hosted.shown.note == CHECK_MAIL


@on_loop
async def test_bad_sign_up_input_is_one_line_and_nothing_is_sent() -> None:
    page = Page()
    page.accounts.sign_up("new@example.com", "secret-1", "secret-2")
    await page.tasks.settle()
    assert page.shown == AccountView(
        Form.SIGN_UP, error="The two passwords differ: type the same password in both fields."
    )
    assert page.backend.sign_ups == []


@on_loop
async def test_the_servers_refusal_is_shown_as_it_says_it() -> None:
    page = Page()
    page.backend.sign_up_answer = (None, "Email rate limit exceeded")
    page.accounts.sign_up("new@example.com", "secret-1", "secret-1")
    await page.tasks.settle()
    assert page.shown == AccountView(Form.SIGN_UP, error="Email rate limit exceeded")


@on_loop
async def test_a_project_without_confirmations_signs_the_new_account_in() -> None:
    page = Page()
    page.backend.sign_up_answer = (User("u-2", "new@example.com"), None)
    page.accounts.sign_up("new@example.com", "secret-1", "secret-1")
    await page.tasks.settle()
    assert page.entered == [User("u-2", "new@example.com")]


@on_loop
async def test_a_reset_request_gets_the_same_answer_for_any_address() -> None:
    page = Page()
    page.accounts.choose("reset")
    assert page.shown == AccountView(Form.RESET)
    page.accounts.request_reset("nobody@example.com")
    await page.tasks.settle()
    assert page.backend.resets == ["nobody@example.com"]
    assert page.shown.form is Form.SIGN_IN and page.shown.email == "nobody@example.com"
    assert page.shown.note is not None and "If nobody@example.com has an account" in page.shown.note
    page.accounts.request_reset("alice")
    await page.tasks.settle()
    assert page.shown == AccountView(Form.RESET, error=email_problem("alice"))
    assert page.backend.resets == ["nobody@example.com"]


@on_loop
async def test_a_recovery_link_asks_for_a_new_password_before_the_app() -> None:
    page = Page(signed_in=True)
    await page.accounts.arrive(ALICE, LinkOutcome("recovery"))
    assert page.shown == AccountView(Form.NEW_PASSWORD, email="alice@example.com")
    assert page.entered == [] and page.accounts.recovering == ALICE
    # Forms cannot be switched away from it.
    page.accounts.choose("sign-in")
    assert page.shown.form is Form.NEW_PASSWORD
    page.accounts.set_password("new-secret", "new-secrex")
    await page.tasks.settle()
    assert page.shown.error == "The two passwords differ: type the same password in both fields."
    page.accounts.set_password("old-secret", "old-secret")
    await page.tasks.settle()
    assert page.shown == AccountView(
        Form.NEW_PASSWORD,
        error="New password should be different from the old password.",
        email="alice@example.com",
    )
    page.accounts.set_password("new-secret", "new-secret")
    await page.tasks.settle()
    assert page.backend.password == "new-secret"
    assert page.entered == [ALICE] and page.accounts.recovering is None
    assert page.toasts == [PASSWORD_SET]


@on_loop
async def test_leaving_the_new_password_form_signs_out() -> None:
    page = Page(signed_in=True)
    await page.accounts.arrive(ALICE, LinkOutcome("recovery"))
    page.accounts.cancel_recovery()
    await page.tasks.settle()
    assert page.backend.user is None and page.accounts.recovering is None
    assert page.shown == AccountView(Form.SIGN_IN)


@on_loop
async def test_a_confirmation_link_enters_and_a_refused_link_says_why() -> None:
    page = Page(signed_in=True)
    await page.accounts.arrive(ALICE, LinkOutcome("signup"))
    assert page.entered == [ALICE] and page.toasts == [CONFIRMED]
    signed_out = Page()
    await signed_out.accounts.arrive(None, LinkOutcome(None, "Email link is invalid or has expired"))
    assert signed_out.shown == AccountView(
        Form.SIGN_IN, error=f"{LINK_REFUSED} Email link is invalid or has expired."
    )
    plain = Page()
    await plain.accounts.arrive(None, LinkOutcome())
    assert plain.shown == AccountView(Form.SIGN_IN)


@on_loop
async def test_a_second_submission_waits_for_the_first() -> None:
    page = Page()
    page.accounts.sign_up("a@example.com", "secret-1", "secret-1")
    page.accounts.sign_up("a@example.com", "secret-1", "secret-1")
    await page.tasks.settle()
    assert len(page.backend.sign_ups) == 1


def test_an_unconfirmed_sign_in_gets_a_clear_line() -> None:
    assert refusal_text("email_not_confirmed", "Email not confirmed") == NOT_CONFIRMED
    assert refusal_text("invalid_credentials", "Invalid login credentials") == "Invalid login credentials"


class AuthFacade:
    def __init__(self, answer: dict[str, object]) -> None:
        self.answer = json.dumps(answer)
        self.calls: list[tuple[str, ...]] = []

    async def signIn(self, email: str, password: str) -> str:
        self.calls.append(("signIn", email, password))
        return self.answer

    async def signUp(self, email: str, password: str) -> str:
        self.calls.append(("signUp", email, password))
        return self.answer

    async def resetPassword(self, email: str) -> str:
        self.calls.append(("resetPassword", email))
        return self.answer

    async def updatePassword(self, password: str) -> str:
        self.calls.append(("updatePassword", password))
        return self.answer

    async def linkOutcome(self) -> str:
        return self.answer


@on_loop
async def test_the_bridge_reads_the_facades_auth_answers() -> None:
    refused = AuthFacade({"user": None, "error": "Email not confirmed", "code": "email_not_confirmed"})
    backend = SupabaseBackend(refused, json.loads, lambda f: f)  # type: ignore[arg-type]
    assert await backend.sign_in("a@b.test", "pw") == (None, NOT_CONFIRMED)
    assert await backend.sign_up("a@b.test", "pw") == (None, NOT_CONFIRMED)
    ok = AuthFacade({"user": None, "error": None, "code": None})
    backend = SupabaseBackend(ok, json.loads, lambda f: f)  # type: ignore[arg-type]
    assert await backend.sign_up("a@b.test", "secret-1") == (None, None)
    assert await backend.request_password_reset("a@b.test") is None
    assert await backend.update_password("secret-2") is None
    assert ok.calls == [
        ("signUp", "a@b.test", "secret-1"),
        ("resetPassword", "a@b.test"),
        ("updatePassword", "secret-2"),
    ]
    link = AuthFacade({"type": "recovery", "error": None})
    backend = SupabaseBackend(link, json.loads, lambda f: f)  # type: ignore[arg-type]
    assert await backend.link_outcome() == LinkOutcome("recovery")
    assert LinkOutcome.from_json('{"type": "other", "error": ""}') == LinkOutcome()
    assert LinkOutcome.from_json("garbage") == LinkOutcome()
