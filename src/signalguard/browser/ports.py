"""What the browser app needs from the page, as protocols, and the plain values that cross them.

The app (:mod:`~signalguard.browser.app`) and the guard driver (:mod:`~signalguard.browser.driver`)
are written against these, so they run in CPython with fakes as well as in the page with the adapters
of :mod:`~signalguard.browser.jsbridge` and :mod:`~signalguard.browser.dom`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from signalguard.browser.chart import ChartData, SummaryLine
from signalguard.browser.editor import EditorView
from signalguard.browser.trades import ProfitLine, TradeItem
from signalguard.core.guard import Effects

if TYPE_CHECKING:
    from signalguard.browser.accounts import AccountView
    from signalguard.browser.machine import MachineView
    from signalguard.browser.webhooks import WebhookView
from signalguard.core.symbols import SymbolInfo

#: Run a coroutine in the background (the page's event loop); errors are reported, not raised. What
#: the coroutine yields to the loop and is sent back is the loop's business: ``object`` for both.
Spawn = Callable[[Coroutine[object, object, None]], None]


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error the API (or the network) answered with."""

    message: str
    #: PostgREST/PostgreSQL code (``SG001``…, ``42501``, ``PGRST…``), ``NETWORK``, or None.
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.message} ({self.code})" if self.code else self.message


@dataclass(frozen=True, slots=True)
class ApiResult:
    """One answered request: the data, or an error, and the HTTP status (0: no response)."""

    data: object
    error: ApiError | None
    status: int

    @classmethod
    def from_json(cls, text: str) -> ApiResult:
        """Read the facade's ``executeJson()`` answer; anything unreadable is an error result."""
        try:
            raw = json.loads(text)
        except (TypeError, ValueError):
            return cls(None, ApiError("unreadable answer from the facade", "CLIENT"), 0)
        if not isinstance(raw, dict):
            return cls(None, ApiError("unreadable answer from the facade", "CLIENT"), 0)
        err = raw.get("error")
        error = None
        if isinstance(err, dict):
            code = err.get("code")
            error = ApiError(str(err.get("message") or "request failed"), str(code) if code else None)
        status = raw.get("status")
        return cls(raw.get("data"), error, status if isinstance(status, int) else 0)


@dataclass(frozen=True, slots=True)
class User:
    """The signed-in user."""

    id: str
    email: str | None

    @classmethod
    def from_json(cls, raw: object) -> User | None:
        """A user from the facade's ``{id, email}`` (None for null or anything malformed)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            return None
        email = raw.get("email")
        return cls(raw["id"], email if isinstance(email, str) else None)


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What the link the page was opened from (a sign-up's or password reset's mail) brought."""

    #: ``signup`` (the address is confirmed, the user signed in), ``recovery`` (signed in to set a new
    #: password; also after a reload until it is set), or None (no link).
    kind: str | None = None
    #: Why the link was refused, as Supabase Auth says it (a link used already, or expired).
    error: str | None = None

    @classmethod
    def from_json(cls, text: str) -> LinkOutcome:
        """Read the facade's ``linkOutcome()`` answer; anything malformed is no link."""
        try:
            raw = json.loads(text)
        except (TypeError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        kind, error = raw.get("type"), raw.get("error")
        return cls(
            kind if kind in ("signup", "recovery") else None,
            error[:300] if isinstance(error, str) and error else None,
        )


class Backend(Protocol):
    """The database API and sign-in (supabase-js in the page)."""

    async def rpc(self, name: str, args: Mapping[str, object]) -> ApiResult:
        """Call ``/rest/v1/rpc/<name>``."""
        ...

    async def select(
        self,
        table: str,
        columns: str,
        *,
        order: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        match: Mapping[str, str] | None = None,
        among: Mapping[str, Sequence[str]] | None = None,
        after: Mapping[str, str] | None = None,
    ) -> ApiResult:
        """Read rows of a table (row level security limits them to the user's).

        Only rows whose columns equal ``match``, are each one of ``among``'s values, and are greater
        than ``after``'s.
        """
        ...

    async def update(
        self,
        table: str,
        values: Mapping[str, object],
        *,
        match: Mapping[str, str],
        returning: str | None = None,
    ) -> ApiResult:
        """Update the rows equal to ``match``; with ``returning``, answer those columns of them."""
        ...

    async def insert(self, table: str, values: Mapping[str, object], *, returning: str) -> ApiResult:
        """Insert one row; answer its ``returning`` columns (a list of one row)."""
        ...

    async def delete(self, table: str, *, match: Mapping[str, str]) -> ApiResult:
        """Delete the rows equal to ``match``."""
        ...

    async def sign_in(self, email: str, password: str) -> tuple[User | None, str | None]:
        """Sign in with a password: the user, or an error message."""
        ...

    async def current_user(self) -> User | None:
        """The user of the stored session, if any (the session survives reloads)."""
        ...

    async def sign_up(self, email: str, password: str) -> tuple[User | None, str | None]:
        """Create an account, its address confirmed by a mailed link.

        The user if the project signed the new account straight in (it confirms no address), else
        None; and the refusal's message, or None. The answer is the same for an address that has an
        account already.
        """
        ...

    async def request_password_reset(self, email: str) -> str | None:
        """Ask for a mail with a link to set a new password; an error message, or None (sent or not)."""
        ...

    async def update_password(self, password: str) -> str | None:
        """Set the signed-in user's password; an error message, or None."""
        ...

    async def link_outcome(self) -> LinkOutcome:
        """What the link the page was opened from brought (after :meth:`current_user`)."""
        ...

    async def sign_out(self) -> str | None:
        """End the session; an error message, or None."""
        ...

    def on_auth_change(self, callback: Callable[[str, User | None], None]) -> None:
        """Call ``callback(event, user)`` when the session changes (also from another tab)."""
        ...

    def rpc_on_unload(self, name: str, args: Mapping[str, object]) -> bool:
        """Send an RPC that outlives the page (from ``pagehide``); whether it could be sent."""
        ...


class Timers(Protocol):
    """Named timers; setting a name again replaces its timer."""

    def set(self, name: str, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, after ``seconds``."""
        ...

    def every(self, name: str, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` every ``seconds``."""
        ...

    def clear(self, name: str) -> None:
        """Cancel the timer of this name, if any."""
        ...


class TabLocks(Protocol):
    """One holder per lock name across the browser's tabs (the Web Locks API)."""

    def hold(self, name: str, on_change: Callable[[bool], None]) -> Callable[[], None]:
        """Ask for the lock; return a function that gives it up (or stops waiting for it).

        ``on_change(held)`` says at once whether this tab has it, and is called again with True when
        it is granted later.
        """
        ...


@dataclass(frozen=True, slots=True)
class TraderItem:
    """A trader as the page shows it."""

    id: str
    name: str
    enabled: bool
    #: What it watches, e.g. ``BTCUSDT, ETHUSDT · 1m · RSI(14) < 30``; or why it is invalid.
    summary: str
    valid: bool
    #: Why the trader does not generate although enabled (a stream the market data does not serve),
    #: in one plain line; empty when nothing is wrong.
    problem: str = ""
    #: The alert channels chosen for it on this browser (:class:`~.alerts.Channel` values).
    alerts: frozenset[str] = frozenset()
    #: The stream a click on its name charts (``SYMBOL|interval``; "" when its definition is invalid).
    stream: str = ""


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """A signal as the page shows it (stored, or still waiting in the outbox)."""

    key: str
    candle: str
    symbol: str
    interval: str
    price: str
    status: str
    source: str
    #: The candle's open time, epoch milliseconds (for ordering; -1 if unknown).
    open_ms: int = -1
    #: Found late: signed by an executor for a candle that closed before its own lease began (in the
    #: gap after the previous executor's end), not live.
    caught_up: bool = False
    #: The trader's name ("" when not known here), and the conditions that matched.
    trader: str = ""
    conditions: str = ""


class Intents(Protocol):
    """What the user asks for, as the view reports it."""

    def sign_in(self, email: str, password: str) -> None:
        """Sign in."""
        ...

    def sign_out(self) -> None:
        """Sign out (releasing the lease first)."""
        ...

    def account_form(self, form: str) -> None:
        """Show another signed-out form (``sign-in``, ``sign-up``, ``reset``)."""
        ...

    def sign_up(self, email: str, password: str, again: str) -> None:
        """Create an account (the password typed twice)."""
        ...

    def request_reset(self, email: str) -> None:
        """Ask for a mail to set a new password."""
        ...

    def set_password(self, password: str, again: str) -> None:
        """Set the new password after a recovery link (typed twice)."""
        ...

    def cancel_recovery(self) -> None:
        """Leave the new-password form: sign out."""
        ...

    def toggle_trader(self, trader_id: str, enabled: bool) -> None:
        """Enable or disable a trader."""
        ...

    def take_over(self) -> None:
        """Take over from a cloud machine in error (already confirmed by the user)."""
        ...

    def save_webhook(self, url: str, secret: str, enabled: bool) -> None:
        """Store the webhook (an empty secret keeps the stored one)."""
        ...

    def remove_webhook(self) -> None:
        """Delete the webhook (already confirmed by the user)."""
        ...

    def retry_webhook(self, key: str) -> None:
        """Put the failed delivery of signal ``key`` back in line."""
        ...

    def register_machine(self, name: str, region: str) -> None:
        """Register the user's cloud machine by its Fly name ("" region: none)."""
        ...

    def make_machine_key(self, label: str) -> None:
        """Make a key for the cloud machine (shown once)."""
        ...

    def revoke_machine_key(self, key_id: str) -> None:
        """Revoke one of the machine's keys (already confirmed by the user)."""
        ...

    def dismiss_machine_key(self) -> None:
        """The new key is copied: show it no more."""
        ...

    def choose_zone(self, utc: bool) -> None:
        """Write times in UTC, or in the browser's zone."""
        ...

    def choose_alert(self, trader_id: str, channel: str, on: bool) -> None:
        """Switch one alert channel of a trader on this browser (from the click's handler)."""
        ...

    def filter_source(self, source: str) -> None:
        """Show the signals of one source (``local``, ``cloud``) or of all (``all``)."""
        ...

    def select_chart(self, value: str) -> None:
        """Chart another watched stream (``SYMBOL|interval``)."""
        ...

    def close_trade(self, key: str) -> None:
        """Close the open paper trade of signal ``key`` by hand, at the last price."""
        ...

    def editor_field(self, path: str, value: str) -> None:
        """A field of the trader editor changed (see :meth:`~.workbench.Workbench.field`)."""
        ...

    def editor_action(self, name: str, arg: str) -> None:
        """A button of the trader editor or list (see :meth:`~.workbench.Workbench.action`)."""
        ...


class View(Protocol):
    """The page. Everything from the database is shown as text, never as HTML."""

    def bind(self, intents: Intents) -> None:
        """Send the user's actions to ``intents``."""
        ...

    def booted(self) -> None:
        """The runtime is up: remove the start-up progress."""
        ...

    def fatal(self, message: str) -> None:
        """The app cannot run (no configuration, no client library): say why."""
        ...

    def show_account(self, view: AccountView) -> None:
        """Show one of the signed-out forms (and hide the app)."""
        ...

    def show_app(self, user: User) -> None:
        """Show the app for ``user`` (and hide the sign-in form)."""
        ...

    def show_guard(self, effects: Effects) -> None:
        """The badge, the schema message, the takeover button."""
        ...

    def toast(self, text: str) -> None:
        """A short-lived notice."""
        ...

    def show_traders(self, traders: Sequence[TraderItem], *, editable: bool, note: str) -> None:
        """The traders list; toggles are disabled unless ``editable``."""
        ...

    def show_webhook(self, view: WebhookView) -> None:
        """The webhook panel: its settings, its deliveries' state, the failed ones."""
        ...

    def show_machine(self, view: MachineView) -> None:
        """The cloud machine panel: the machine, its keys, a new key shown once."""
        ...

    def show_zone(self, *, utc: bool, local: str, switchable: bool) -> None:
        """The time zone switch: UTC or the browser's zone ``local`` (hidden unless ``switchable``)."""
        ...

    def show_alerts_note(self, text: str) -> None:
        """A line about the alerts (a notification permission the browser refused); "" hides it."""
        ...

    def show_history(self, items: Sequence[HistoryItem], *, zone: str) -> None:
        """The recent signals; their times are in ``zone`` (named in the heading)."""
        ...

    def show_pending(self, count: int, detail: str) -> None:
        """How many writes wait in the outbox, and why they wait (empty when nothing is wrong)."""
        ...

    def show_market(self, state: str, text: str) -> None:
        """The market data's state (``off``, ``connecting``, ``live``, ``error``) and a line about it."""
        ...

    def show_chart(self, data: ChartData) -> None:
        """The candlestick chart of the selected stream, its signals marked by source."""
        ...

    def show_trades(self, items: Sequence[TradeItem], *, closable: bool, note: str) -> None:
        """The positions panel; open trades closable only while this tab is the executor."""
        ...

    def show_profit(self, lines: Sequence[ProfitLine]) -> None:
        """Profitability by source."""
        ...

    def show_summary(self, lines: Sequence[SummaryLine] | None, note: str) -> None:
        """The "by source" summary (None: keep the lines shown) and a line about it."""
        ...

    def show_editor(self, editor: EditorView | None) -> None:
        """The trader editor as described (None: closed)."""
        ...

    def set_ready(self, ready: bool) -> None:
        """Mark the page ready (``body[data-ready="1"]``): guard state known, lists drawn."""
        ...


class Permission(enum.Enum):
    """The browser's answer about notifications (``Notification.permission``)."""

    #: Not asked yet: the next click on a trader's notification switch asks.
    DEFAULT = "default"
    #: Allowed.
    GRANTED = "granted"
    #: Refused by the user or the browser's settings: shown, never asked again from the page.
    DENIED = "denied"
    #: This browser has no Notification API (or not in this context, e.g. an insecure origin).
    UNSUPPORTED = "unsupported"


class Preferences(Protocol):
    """Small strings kept by the browser and shared by its tabs (``localStorage``)."""

    def get(self, key: str) -> str | None:
        """The stored text, or None."""
        ...

    def put(self, key: str, value: str) -> None:
        """Store ``value`` (a full store is ignored: preferences are not worth an error)."""
        ...


class Attention(Protocol):
    """The page's ways to get the user's attention, and whether the user is looking."""

    def permission(self) -> Permission:
        """The notification permission now."""
        ...

    def request_permission(self, done: Callable[[Permission], None]) -> None:
        """Ask the browser (must run inside the click's handler); ``done`` gets the answer."""
        ...

    def notify(self, title: str, body: str, tag: str) -> bool:
        """Show a notification; whether the browser took it."""
        ...

    def chime(self) -> None:
        """Play the alert sound."""
        ...

    def set_title_count(self, count: int) -> None:
        """Show ``count`` unseen signals in the tab title (0: the plain title)."""
        ...

    def looking(self) -> bool:
        """Whether the tab is visible and focused."""
        ...

    def on_look(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the user looks at the tab again (shown, or focused)."""
        ...


class Locale(Protocol):
    """The browser's time zone."""

    def zone(self) -> str:
        """Its name (``Europe/Berlin``), or a UTC offset when the browser names none."""
        ...

    def offset(self, ms: int) -> int:
        """Minutes east of UTC at the instant ``ms`` (epoch ms): daylight saving is the zone's."""
        ...


class SymbolList(Protocol):
    """The market data's symbols (:class:`~signalguard.market.klines.SymbolDirectory`)."""

    def get(self, symbol: str) -> SymbolInfo | None:
        """The symbol's entry if the list is loaded (its ``price_precision``), without fetching."""
        ...

    async def symbols(self) -> tuple[SymbolInfo, ...]:
        """Load the list (once); raises ``MarketUnavailable``."""
        ...
