"""The signed-out page: sign in, create an account, ask for a password reset, set a new password.

Written against :mod:`~signalguard.browser.ports` only, with Supabase Auth's own calls behind the
:class:`~.ports.Backend` (supabase-js ``signUp``, ``resetPasswordForEmail``, ``updateUser``), so the
page works the same against the local stack and a hosted project:

- a sign-up is checked here first (an address, a long enough password typed twice), then sent; its
  answer never says whether the address had an account already (Supabase Auth answers the same), so
  the page says "check your e-mail" either way;
- a reset request always gets the same answer too;
- a link from one of those mails brings the page back with a session (:class:`~.ports.LinkOutcome`):
  a confirmation link signs the user straight in, a recovery link asks for a new password first.

One line says what is wrong, and nothing typed is lost. Text from the network is shown as text.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Final

from signalguard.browser.ports import Backend, LinkOutcome, Spawn, User

#: Supabase Auth's default minimum password length, and bcrypt's limit (it reads no further).
PASSWORD_MIN_CHARS: Final = 6
PASSWORD_MAX_BYTES: Final = 72
EMAIL_MAX_CHARS: Final = 254

CHECK_MAIL: Final = "Check your e-mail for the confirmation link."
#: Added on the local stack, which sends no mail.
LOCAL_MAIL: Final = " On this local stack nothing is sent: the link is printed by make dev."
RESET_SENT: Final = (
    "If {email} has an account, a link to set a new password is on its way: check your e-mail."
)
CONFIRMED: Final = "Your e-mail address is confirmed: welcome."
PASSWORD_SET: Final = "Your new password is set."
NOT_CONFIRMED: Final = (
    "This account is not confirmed yet: open the link in the confirmation e-mail first "
    "(signing up again with the same address sends a new one)."
)
LINK_REFUSED: Final = "This link cannot be used any more (it was used already, or it expired)."


class Form(enum.Enum):
    """The form the signed-out page shows."""

    SIGN_IN = "sign-in"
    SIGN_UP = "sign-up"
    RESET = "reset"
    NEW_PASSWORD = "new-password"


@dataclass(frozen=True, slots=True)
class AccountView:
    """What the signed-out page shows: one form, with at most one error line and one note."""

    form: Form
    #: Why the last submission was refused, in one line (None: nothing wrong).
    error: str | None = None
    #: A line above the sign-in form's fields (a sign-up or reset request went out).
    note: str | None = None
    #: The form's fields are disabled while a request is out.
    busy: bool = False
    #: Put in the form's e-mail field (sign-in after a sign-up); for the new password, whose it is.
    email: str = ""


def refusal_text(code: str | None, message: str) -> str:
    """The line shown for a refusal of Supabase Auth: its message, clearer where the page knows more."""
    if code == "email_not_confirmed":
        return NOT_CONFIRMED
    return message or "The request was refused"


def email_problem(email: str) -> str | None:
    """Why ``email`` cannot be an account's address (before it is sent), or None."""
    if not email:
        return "Enter your e-mail address."
    local, at, domain = email.rpartition("@")
    if (
        len(email) > EMAIL_MAX_CHARS
        or not at
        or not local
        or "." not in domain.strip(".")
        or any(c.isspace() or not c.isprintable() for c in email)
    ):
        return f"{_shown(email)} is not an e-mail address (name@example.com)."
    return None


def password_problem(password: str, again: str) -> str | None:
    """Why ``password`` (typed twice: ``again``) cannot be an account's password, or None."""
    if len(password) < PASSWORD_MIN_CHARS:
        return f"Choose a password of at least {PASSWORD_MIN_CHARS} characters."
    if len(password.encode("utf-8", "surrogatepass")) > PASSWORD_MAX_BYTES:
        return f"A password can be at most {PASSWORD_MAX_BYTES} bytes long."
    if "\0" in password:
        return "A password cannot hold a NUL character."
    if password != again:
        return "The two passwords differ: type the same password in both fields."
    return None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


class Accounts:
    """The signed-out page's forms; ``enter`` is called with the user once one is signed in."""

    def __init__(
        self,
        backend: Backend,
        show: Callable[[AccountView], None],
        spawn: Spawn,
        enter: Callable[[User], Coroutine[object, object, None]],
        *,
        toast: Callable[[str], None],
        local_mail: bool = False,
    ) -> None:
        """Show forms with ``show``; ``local_mail``: the mails' links are printed by the local stack."""
        self.backend = backend
        self._show = show
        self.spawn = spawn
        self.enter = enter
        self.toast = toast
        self.local_mail = local_mail
        self.view = AccountView(Form.SIGN_IN)
        #: The user of a recovery link, while the new password is asked for (None: not recovering).
        self.recovering: User | None = None
        #: A request is out (a second submission waits for it).
        self.busy = False

    def show(self, view: AccountView) -> None:
        """Show ``view`` (and remember it)."""
        self.view = view
        self._show(view)

    # -- arrival ------------------------------------------------------------------------------

    async def arrive(self, user: User | None, link: LinkOutcome) -> None:
        """The page opened with ``user``'s stored session (or none) after ``link`` (if any)."""
        if user is not None and link.kind == "recovery":
            self.recovering = user
            self.show(AccountView(Form.NEW_PASSWORD, email=user.email or ""))
            return
        if user is None:
            error = None if link.error is None else f"{LINK_REFUSED} {link.error}."
            self.show(AccountView(Form.SIGN_IN, error=error))
            return
        await self.enter(user)
        if link.error is not None:
            self.toast(f"{LINK_REFUSED} {link.error}.")
        elif link.kind == "signup":
            self.toast(CONFIRMED)

    def signed_out(self) -> None:
        """The session ended: the sign-in form, empty."""
        self.recovering = None
        self.busy = False
        self.show(AccountView(Form.SIGN_IN))

    # -- intents ------------------------------------------------------------------------------

    def choose(self, form: str) -> None:
        """A link between the forms was followed (``sign-in``, ``sign-up``, ``reset``)."""
        if self.busy or self.recovering is not None or form == Form.NEW_PASSWORD.value:
            return
        try:
            chosen = Form(form)
        except ValueError:
            return
        self.show(AccountView(chosen))

    def sign_in(self, email: str, password: str) -> None:
        """The sign-in form was submitted."""
        self._run(self._sign_in(email.strip(), password))

    def sign_up(self, email: str, password: str, again: str) -> None:
        """The sign-up form was submitted."""
        self._run(self._sign_up(email.strip(), password, again))

    def request_reset(self, email: str) -> None:
        """The reset form was submitted."""
        self._run(self._request_reset(email.strip()))

    def set_password(self, password: str, again: str) -> None:
        """The new-password form was submitted."""
        self._run(self._set_password(password, again))

    def cancel_recovery(self) -> None:
        """The new password is not set after all: end the link's session."""
        self._run(self._cancel_recovery())

    def _run(self, step: Coroutine[object, object, None]) -> None:
        if self.busy:
            step.close()
            return
        self.busy = True

        async def guarded() -> None:
            try:
                await step
            finally:
                self.busy = False

        self.spawn(guarded())

    async def _sign_in(self, email: str, password: str) -> None:
        self.show(AccountView(Form.SIGN_IN, busy=True))
        user, error = await self.backend.sign_in(email, password)
        if user is None:
            self.show(AccountView(Form.SIGN_IN, error=error or "Sign-in failed"))
            return
        await self.enter(user)

    async def _sign_up(self, email: str, password: str, again: str) -> None:
        problem = email_problem(email) or password_problem(password, again)
        if problem is not None:
            self.show(AccountView(Form.SIGN_UP, error=problem))
            return
        self.show(AccountView(Form.SIGN_UP, busy=True))
        user, error = await self.backend.sign_up(email, password)
        if error is not None:
            self.show(AccountView(Form.SIGN_UP, error=error))
            return
        if user is not None:
            # A project that confirms no address signs the new account straight in.
            await self.enter(user)
            return
        note = CHECK_MAIL + (LOCAL_MAIL if self.local_mail else "")
        self.show(AccountView(Form.SIGN_IN, note=note, email=email))

    async def _request_reset(self, email: str) -> None:
        problem = email_problem(email)
        if problem is not None:
            self.show(AccountView(Form.RESET, error=problem))
            return
        self.show(AccountView(Form.RESET, busy=True))
        error = await self.backend.request_password_reset(email)
        if error is not None:
            self.show(AccountView(Form.RESET, error=error))
            return
        note = RESET_SENT.format(email=email) + (LOCAL_MAIL if self.local_mail else "")
        self.show(AccountView(Form.SIGN_IN, note=note, email=email))

    async def _set_password(self, password: str, again: str) -> None:
        user = self.recovering
        if user is None:
            return
        email = user.email or ""
        problem = password_problem(password, again)
        if problem is not None:
            self.show(AccountView(Form.NEW_PASSWORD, error=problem, email=email))
            return
        self.show(AccountView(Form.NEW_PASSWORD, busy=True, email=email))
        error = await self.backend.update_password(password)
        if error is not None:
            self.show(AccountView(Form.NEW_PASSWORD, error=error, email=email))
            return
        self.recovering = None
        await self.enter(user)
        self.toast(PASSWORD_SET)

    async def _cancel_recovery(self) -> None:
        if self.recovering is None:
            return
        error = await self.backend.sign_out()
        if error:
            self.toast(f"Sign-out: {error}")
        self.signed_out()
