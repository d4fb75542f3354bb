"""Accounts in the page: sign up, confirm by the mailed link, reset a forgotten password.

The local stack sends no mail: it prints each one's link (``signalguard dev``'s output) and keeps the
mails on the stack object, where these tests read the printed line. The page calls Supabase Auth as it
would on a hosted project (supabase-js ``signUp``, ``resetPasswordForEmail``, ``updateUser``); a link
brings it back with the session in the URL's fragment, which the page takes and removes.
"""

from __future__ import annotations

import itertools
import re
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from e2ekit import READY_TIMEOUT_MS, AppPage, Browsers, fresh_user, wait_until
from playwright.sync_api import Page, expect

from signalguard.devstack.stack import DEMO_PASSWORD, LocalStack

pytestmark = pytest.mark.stack

PASSWORD = "first-secret-1"
NEW_PASSWORD = "second-secret-2"
_n = itertools.count(1)
#: The browser logs each refused auth request (a wrong password, an unconfirmed account) as an error.
REFUSED_AUTH = r"status of 4\d\d .*/auth/v1/(token|user|verify)"


def address() -> str:
    return f"acct{next(_n)}-{uuid.uuid4().hex[:8]}@signalguard.test"


def printed_link(stack: LocalStack, email: str, kind: str) -> str:
    """The link of the newest mail of ``kind`` to ``email``, read from the line the stack prints."""
    what = {"signup": "confirm your account", "recovery": "reset your password"}[kind]
    pattern = re.compile(rf"^Mail to {re.escape(email)}: {what}: (http://\S+)$")

    def newest() -> str | None:
        found = [m for m in (pattern.match(mail.line) for mail in stack.mails) if m]
        return found[-1].group(1) if found else None

    return wait_until(f"the {kind} mail to {email}", newest, timeout=10)


def signed_out(tab: AppPage) -> Page:
    tab.page.get_by_test_id("sign-in").wait_for(state="visible", timeout=READY_TIMEOUT_MS)
    return tab.page


def assert_fits(page: Page) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width


def test_sign_up_confirm_by_the_printed_link_and_a_second_sign_up_reveals_nothing(
    stack: LocalStack, browsers: Browsers
) -> None:
    email = address()
    ctx, watch = browsers.context(viewport={"width": 390, "height": 844})
    watch.allow(REFUSED_AUTH)
    tab = browsers.tab(ctx, watch).open()
    page = signed_out(tab)
    page.get_by_test_id("to-sign-up").click()
    expect(page.get_by_test_id("sign-up")).to_be_visible()
    expect(page.get_by_test_id("sign-in")).to_be_hidden()
    assert_fits(page)

    # Bad input: one line, and nothing typed is lost.
    page.get_by_test_id("sign-up-email").fill(email)
    page.get_by_test_id("sign-up-password").fill(PASSWORD)
    page.get_by_test_id("sign-up-again").fill(PASSWORD + "x")
    page.get_by_test_id("sign-up-submit").click()
    error = page.get_by_test_id("sign-up-error")
    expect(error).to_have_text("The two passwords differ: type the same password in both fields.")
    expect(page.get_by_test_id("sign-up-email")).to_have_value(email)
    expect(page.get_by_test_id("sign-up-password")).to_have_value(PASSWORD)
    page.get_by_test_id("sign-up-password").fill("short")
    page.get_by_test_id("sign-up-again").fill("short")
    page.get_by_test_id("sign-up-submit").click()
    expect(error).to_have_text("Choose a password of at least 6 characters.")
    assert not [m for m in stack.mails if m.to == email]

    page.get_by_test_id("sign-up-password").fill(PASSWORD)
    page.get_by_test_id("sign-up-again").fill(PASSWORD)
    page.get_by_test_id("sign-up-submit").click()
    note = page.get_by_test_id("sign-in-note")
    expect(note).to_contain_text("Check your e-mail for the confirmation link.")
    expect(note).to_contain_text("printed by make dev")
    expect(page.get_by_test_id("sign-in-email")).to_have_value(email)
    said = note.text_content() or ""
    tab.snapshot("accounts-check-mail")
    link = printed_link(stack, email, "signup")
    assert link.startswith(f"{stack.url}/auth/v1/verify?")
    assert parse_qs(urlsplit(link).query)["redirect_to"] == [f"{stack.url}/"]

    # Not confirmed yet: the right password is refused with a clear line.
    page.get_by_test_id("sign-in-password").fill(PASSWORD)
    page.get_by_test_id("sign-in-submit").click()
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("not confirmed yet")

    # The printed link signs the page in, and leaves no token in the address bar.
    page.goto(link)
    # The notice first: it stays 8 s, and the page may take longer than that to be ready.
    expect(page.get_by_test_id("toast").filter(has_text="confirmed")).to_be_visible(timeout=READY_TIMEOUT_MS)
    tab.wait_ready()
    expect(page.get_by_test_id("user-email")).to_have_text(email)
    assert page.url == f"{stack.url}/"
    with stack.connect() as conn:
        row = conn.execute("select email_confirmed_at from auth.users where email = %s", (email,)).fetchone()
    assert row is not None and row[0] is not None

    # Used twice: refused, with a line that says so.
    page.get_by_test_id("sign-out").click()
    signed_out(tab)
    page.goto(link)
    expect(page.get_by_test_id("sign-in-error")).to_contain_text(
        "cannot be used any more", timeout=READY_TIMEOUT_MS
    )
    assert page.url == f"{stack.url}/"

    # A second sign-up with the same address: the page says exactly what it said the first time.
    other = browsers.tab(*browsers.context())
    other_page = signed_out(other.open())
    other_page.get_by_test_id("to-sign-up").click()
    other_page.get_by_test_id("sign-up-email").fill(email)
    other_page.get_by_test_id("sign-up-password").fill("another-secret")
    other_page.get_by_test_id("sign-up-again").fill("another-secret")
    other_page.get_by_test_id("sign-up-submit").click()
    expect(other_page.get_by_test_id("sign-in-note")).to_have_text(said)
    expect(other_page.get_by_test_id("sign-up-error")).to_be_hidden()
    wait_until("the owner's mail", lambda: [m for m in stack.mails if m.to == email and m.kind == "existing"])
    # The account is unchanged: its password is the first one.
    other_page.get_by_test_id("sign-in-password").fill(PASSWORD)
    other_page.get_by_test_id("sign-in-submit").click()
    other.wait_ready()
    watch.assert_clean()


def test_reset_a_forgotten_password_by_the_printed_link(stack: LocalStack, browsers: Browsers) -> None:
    email, _ = fresh_user(stack)
    ctx, watch = browsers.context(viewport={"width": 390, "height": 844})
    watch.allow(REFUSED_AUTH)
    tab = browsers.tab(ctx, watch).open()
    page = signed_out(tab)
    page.get_by_test_id("sign-in-email").fill(email)
    page.get_by_test_id("to-reset").click()
    expect(page.get_by_test_id("reset")).to_be_visible()
    # The address typed for signing in comes along.
    expect(page.get_by_test_id("reset-email")).to_have_value(email)
    page.get_by_test_id("reset-email").fill("not an address")
    page.get_by_test_id("reset-submit").click()
    expect(page.get_by_test_id("reset-error")).to_have_text(
        "'not an address' is not an e-mail address (name@example.com)."
    )
    expect(page.get_by_test_id("reset-email")).to_have_value("not an address")

    # An address without an account gets the same answer.
    nobody = address()
    page.get_by_test_id("reset-email").fill(nobody)
    page.get_by_test_id("reset-submit").click()
    note = page.get_by_test_id("sign-in-note")
    expect(note).to_contain_text(f"If {nobody} has an account, a link to set a new password is on its way")
    page.get_by_test_id("to-reset").click()
    page.get_by_test_id("reset-email").fill(email)
    page.get_by_test_id("reset-submit").click()
    expect(note).to_contain_text(f"If {email} has an account, a link to set a new password is on its way")
    link = printed_link(stack, email, "recovery")
    assert not [m for m in stack.mails if m.to == nobody]

    # The link asks for a new password before the app.
    page.goto(link)
    form = page.get_by_test_id("new-password")
    expect(form).to_be_visible(timeout=READY_TIMEOUT_MS)
    assert page.url == f"{stack.url}/"
    expect(page.get_by_test_id("new-password-for")).to_have_text(f"For {email}")
    expect(page.locator("body")).not_to_have_attribute("data-ready", "1")
    assert_fits(page)
    tab.snapshot("accounts-new-password")
    page.get_by_test_id("new-password-password").fill(NEW_PASSWORD)
    page.get_by_test_id("new-password-again").fill(NEW_PASSWORD + "!")
    page.get_by_test_id("new-password-submit").click()
    expect(page.get_by_test_id("new-password-error")).to_have_text(
        "The two passwords differ: type the same password in both fields."
    )
    # A reload still asks for it (the link's session is there, the password is not set yet).
    page.reload()
    expect(form).to_be_visible(timeout=READY_TIMEOUT_MS)
    page.get_by_test_id("new-password-password").fill(NEW_PASSWORD)
    page.get_by_test_id("new-password-again").fill(NEW_PASSWORD)
    page.get_by_test_id("new-password-submit").click()
    toast = page.get_by_test_id("toast").filter(has_text="new password is set")
    expect(toast).to_be_visible(timeout=READY_TIMEOUT_MS)
    tab.wait_ready()
    expect(page.get_by_test_id("user-email")).to_have_text(email)
    page.reload()
    tab.wait_ready()  # set: a reload goes straight to the app

    # The old password no longer works; the new one does.
    ctx2, watch2 = browsers.context()
    watch2.allow(REFUSED_AUTH)
    fresh = browsers.tab(ctx2, watch2).open()
    fresh_page = signed_out(fresh)
    fresh_page.get_by_test_id("sign-in-email").fill(email)
    fresh_page.get_by_test_id("sign-in-password").fill(DEMO_PASSWORD)
    fresh_page.get_by_test_id("sign-in-submit").click()
    expect(fresh_page.get_by_test_id("sign-in-error")).to_have_text("Invalid login credentials")
    fresh.sign_in(email, NEW_PASSWORD)

    # The recovery link is spent.
    fresh_page.get_by_test_id("sign-out").click()
    signed_out(fresh)
    fresh_page.goto(link)
    expect(fresh_page.get_by_test_id("sign-in-error")).to_contain_text(
        "cannot be used any more", timeout=READY_TIMEOUT_MS
    )
    watch.assert_clean()
    watch2.assert_clean()


def test_an_expired_link_and_a_foreign_redirect_are_refused(stack: LocalStack, browsers: Browsers) -> None:
    email = address()
    r = httpx.post(
        f"{stack.url}/auth/v1/signup",
        params={"redirect_to": f"{stack.url}/"},
        json={"email": email, "password": PASSWORD},
        headers={"apikey": stack.config.anon_key()},
    )
    assert r.status_code == 200, r.text
    link = printed_link(stack, email, "signup")
    ctx, watch = browsers.context()
    watch.allow(REFUSED_AUTH)
    tab = browsers.tab(ctx, watch)
    page = tab.page

    # The same link sent elsewhere: the stack answers 400 and sends the browser nowhere.
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    foreign = f"{stack.url}/auth/v1/verify?" + urlencode({**query, "redirect_to": "https://evil.example/"})
    response = page.goto(foreign)
    assert response is not None and response.status == 400
    assert page.url.startswith(f"{stack.url}/auth/v1/verify")
    assert "redirect_to" in (page.text_content("body") or "")

    with stack.connect() as conn:
        conn.execute(
            "update auth.one_time_tokens set expires_at = now() - interval '1 second' "
            "where user_id = (select id from auth.users where email = %s)",
            (email,),
        )
    page.goto(link)
    expect(page.get_by_test_id("sign-in-error")).to_contain_text(
        "cannot be used any more", timeout=READY_TIMEOUT_MS
    )
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("Email link is invalid or has expired")
    assert page.url == f"{stack.url}/"
    with stack.connect() as conn:
        row = conn.execute("select email_confirmed_at from auth.users where email = %s", (email,)).fetchone()
    assert row == (None,)
    watch.assert_clean()
