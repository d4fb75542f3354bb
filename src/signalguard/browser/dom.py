"""The :class:`~.ports.View` on the page's DOM (``index.html``).

Everything from the database or the network goes in as ``textContent``, never as HTML. The document
and ``create_proxy`` are handed in by :mod:`~signalguard.browser.main`; nothing here imports the
platform (what the view uses of them: :mod:`~signalguard.browser.jstypes`). Elements are found by id
once; a missing one is a broken page and fails at start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from signalguard.browser.accounts import AccountView, Form
from signalguard.browser.chart import ChartData, SummaryLine, stream_label
from signalguard.browser.editor import EditorView
from signalguard.browser.editor_dom import EDITOR_IDS, EditorDom
from signalguard.browser.jstypes import present
from signalguard.browser.machine import MachineView
from signalguard.browser.ports import HistoryItem, Intents, TraderItem, User
from signalguard.browser.trades import ProfitLine, TradeItem, source_name
from signalguard.browser.webhooks import WebhookView
from signalguard.core.guard import Effects, Mode

if TYPE_CHECKING:
    from signalguard.browser.jstypes import (
        ChartLib,
        CreateProxy,
        Document,
        Element,
        Event,
        JsFunction,
        Window,
    )

#: A trader's alert switches: channel, label, what it does.
ALERT_SWITCHES: Final = (
    ("notify", "Notify", "Browser notification"),
    ("sound", "Sound", "Sound"),
    ("count", "Count", "Count in the tab title"),
)

#: The signed-out forms by :class:`~.accounts.Form`: the form's id, its e-mail field's, its password
#: fields'.
ACCOUNT_FORMS: Final = {
    Form.SIGN_IN: ("sign-in", "sign-in-email", ("sign-in-password",)),
    Form.SIGN_UP: ("sign-up", "sign-up-email", ("sign-up-password", "sign-up-again")),
    Form.RESET: ("reset", "reset-email", ()),
    Form.NEW_PASSWORD: ("new-password", None, ("new-password-password", "new-password-again")),
}

#: How long a toast stays, and how many are shown at most.
TOAST_SECONDS: Final = 8.0
TOAST_MAX: Final = 5

_IDS: Final = (
    "boot", "fatal", "sign-in", "sign-in-email", "sign-in-password", "sign-in-error", "sign-in-note",
    "sign-up", "sign-up-email", "sign-up-password", "sign-up-again", "sign-up-error",
    "reset", "reset-email", "reset-error",
    "new-password", "new-password-password", "new-password-again", "new-password-error",
    "new-password-for", "new-password-cancel", "app",
    "mode-badge", "user-email", "sign-out", "schema-message", "guard-detail", "takeover-button",
    "takeover-dialog", "traders", "traders-note", "alerts-note", "zone-switch", "history-time", "history",
    "history-empty", "toasts", "webhook", "webhook-form", "webhook-url", "webhook-secret",
    "webhook-enabled", "webhook-save", "webhook-remove", "webhook-error", "webhook-note", "webhook-failures",
    "machine", "machine-register", "machine-register-button", "machine-name", "machine-region",
    "machine-line", "machine-key-form", "machine-key-label", "machine-key-make", "machine-new-key",
    "machine-new-key-value", "machine-key-copy",
    "machine-key-done", "machine-error", "machine-keys",
    "source-filter", "pending-count", "pending-detail", "market-status", "chart-symbol", "chart",
    "chart-note", "summary", "summary-note", "trades", "trades-note", "trades-empty", "profit",
    *EDITOR_IDS,
)  # fmt: skip


def badge_mode(mode: Mode) -> str:
    """The badge's ``data-mode``: the guard's mode, but an incompatible database reads as offline."""
    return "offline" if mode is Mode.INCOMPATIBLE else mode.value


class DomView:
    """The page; see the module documentation."""

    def __init__(self, document: Document, window: Window, create_proxy: CreateProxy) -> None:
        """Find the page's elements."""
        self._doc = document
        self._window = window
        self._proxy = create_proxy
        self._keep: list[JsFunction] = []
        self._el: dict[str, Element] = {}
        # Column headings by table id, read from index.html on first use (see _cells).
        self._headings: dict[str, list[str]] = {}
        for name in _IDS:
            el = document.getElementById(name)
            if not present(el):
                raise RuntimeError(f"index.html has no #{name}")
            self._el[name] = el
        self._intents: Intents | None = None
        self._editor = EditorDom(document, window, self._el)
        self._shown: tuple[str, str, bool, str, str] | None = None
        self._account_form: Form | None = None

        def remove(el: Element) -> None:
            el.remove()

        self._remove_toast = create_proxy(remove)
        self._keep.append(self._remove_toast)

    # -- wiring ---------------------------------------------------------------------------------

    def _listen(self, el: Element, event: str, handler: Callable[[Event], None]) -> None:
        proxy = self._proxy(handler)
        self._keep.append(proxy)
        el.addEventListener(event, proxy)

    def bind(self, intents: Intents) -> None:
        """Send the user's actions to ``intents``."""
        self._intents = intents
        el = self._el

        def submitted(event: Event) -> None:
            event.preventDefault()
            intents.sign_in(str(el["sign-in-email"].value), str(el["sign-in-password"].value))

        def toggled(event: Event) -> None:
            target = event.target
            trader_id = target.getAttribute("data-trader-id")
            channel = target.getAttribute("data-channel")
            if isinstance(trader_id, str) and isinstance(channel, str):
                # An alert switch: handled within the click, as a permission prompt needs.
                intents.choose_alert(trader_id, channel, bool(target.checked))
            elif isinstance(trader_id, str):  # an absent attribute is jsnull, not None
                target.disabled = True
                intents.toggle_trader(trader_id, bool(target.checked))

        def takeover_closed(_event: Event) -> None:
            if str(el["takeover-dialog"].returnValue) == "confirm":
                intents.take_over()

        def signed_up(event: Event) -> None:
            event.preventDefault()
            intents.sign_up(
                str(el["sign-up-email"].value),
                str(el["sign-up-password"].value),
                str(el["sign-up-again"].value),
            )

        def reset_asked(event: Event) -> None:
            event.preventDefault()
            intents.request_reset(str(el["reset-email"].value))

        def password_set(event: Event) -> None:
            event.preventDefault()
            intents.set_password(str(el["new-password-password"].value), str(el["new-password-again"].value))

        def account_link(event: Event) -> None:
            # "Create an account", "Forgot your password?", "Back to sign in".
            target = event.target.closest("[data-account]")
            form = target.getAttribute("data-account") if present(target) else None
            if isinstance(form, str):
                intents.account_form(form)

        self._listen(el["sign-in"], "submit", submitted)
        self._listen(el["sign-up"], "submit", signed_up)
        self._listen(el["reset"], "submit", reset_asked)
        self._listen(el["new-password"], "submit", password_set)
        for name in ("sign-in", "sign-up", "reset"):
            self._listen(el[name], "click", account_link)
        self._listen(el["new-password-cancel"], "click", lambda _e: intents.cancel_recovery())
        self._listen(el["sign-out"], "click", lambda _e: intents.sign_out())
        self._listen(el["traders"], "change", toggled)
        self._listen(el["takeover-button"], "click", lambda _e: el["takeover-dialog"].showModal())
        self._listen(el["takeover-dialog"], "close", takeover_closed)
        self._listen(
            el["source-filter"], "change", lambda _e: intents.filter_source(str(el["source-filter"].value))
        )
        self._listen(
            el["zone-switch"], "change", lambda _e: intents.choose_zone(str(el["zone-switch"].value) == "utc")
        )
        self._listen(
            el["chart-symbol"], "change", lambda _e: intents.select_chart(str(el["chart-symbol"].value))
        )

        def close_clicked(event: Event) -> None:
            target = event.target
            key = target.getAttribute("data-signal-key") if target.tagName == "BUTTON" else None
            if isinstance(key, str) and self._window.confirm("Close this paper trade at the last price?"):
                target.disabled = True
                intents.close_trade(key)

        self._listen(el["trades"], "click", close_clicked)

        def chart_clicked(event: Event) -> None:
            # A signal's row or a trader's name: chart that stream, and bring the chart into view.
            target = event.target.closest("[data-chart]")
            stream = target.getAttribute("data-chart") if present(target) else None
            if isinstance(stream, str):
                intents.select_chart(stream)
                el["chart"].scrollIntoView(False)  # false: its bottom at the viewport's bottom

        self._listen(el["history"], "click", chart_clicked)

        def webhook_saved(event: Event) -> None:
            event.preventDefault()
            secret = el["webhook-secret"]
            intents.save_webhook(
                str(el["webhook-url"].value), str(secret.value), bool(el["webhook-enabled"].checked)
            )
            secret.value = ""  # never kept in the page longer than the save

        def webhook_removed(_event: Event) -> None:
            if self._window.confirm("Remove the webhook? No signal is posted to it from now on."):
                intents.remove_webhook()

        def failure_clicked(event: Event) -> None:
            key = event.target.getAttribute("data-retry")
            if isinstance(key, str):
                event.target.disabled = True
                intents.retry_webhook(key)

        self._listen(el["webhook-form"], "submit", webhook_saved)
        self._listen(el["webhook-remove"], "click", webhook_removed)
        self._listen(el["webhook-failures"], "click", failure_clicked)

        def machine_registered(event: Event) -> None:
            event.preventDefault()
            intents.register_machine(str(el["machine-name"].value), str(el["machine-region"].value))

        def key_made(event: Event) -> None:
            event.preventDefault()
            intents.make_machine_key(str(el["machine-key-label"].value))

        def key_copied(_event: Event) -> None:
            # Selected for a manual copy too: the clipboard API needs a secure page and permission.
            box = el["machine-new-key-value"]
            box.focus()
            box.select()
            navigator = getattr(self._window, "navigator", None)
            clipboard = getattr(navigator, "clipboard", None)
            if clipboard is not None and present(clipboard):
                clipboard.writeText(str(box.value))

        def key_revoked(event: Event) -> None:
            key = event.target.getAttribute("data-revoke")
            label = event.target.getAttribute("data-label")
            if isinstance(key, str) and self._window.confirm(
                f"Revoke the key '{label}'? A machine running with it stops at its next request."
            ):
                event.target.disabled = True
                intents.revoke_machine_key(key)

        self._listen(el["machine-register"], "submit", machine_registered)
        self._listen(el["machine-key-form"], "submit", key_made)
        self._listen(el["machine-key-copy"], "click", key_copied)
        self._listen(el["machine-key-done"], "click", lambda _e: intents.dismiss_machine_key())
        self._listen(el["machine-keys"], "click", key_revoked)
        self._listen(el["traders"], "click", chart_clicked)
        self._editor.bind(intents, self._listen)

    # -- states of the page ---------------------------------------------------------------------

    def booted(self) -> None:
        """Remove the start-up progress."""
        self._el["boot"].hidden = True
        self._doc.body.setAttribute("data-runtime", "ready")

    def fatal(self, message: str) -> None:
        """Show why the app cannot run."""
        self._el["boot"].hidden = True
        self._el["fatal"].textContent = message
        self._el["fatal"].hidden = False

    def show_account(self, view: AccountView) -> None:
        """Show one signed-out form: its error line, the sign-in note, busy fields.

        Leaving a form empties every password field; its e-mail goes along to the next form (nothing
        typed is lost). A refused sign-in empties its password, as before.
        """
        el = self._el
        el["app"].hidden = True
        el["mode-badge"].hidden = True
        el["sign-out"].hidden = True
        el["user-email"].textContent = ""
        form_id, email_id, _ = ACCOUNT_FORMS[view.form]
        previous = self._account_form
        typed = ""
        if previous is not None and previous is not view.form:
            _, old_email, _ = ACCOUNT_FORMS[previous]
            typed = str(el[old_email].value) if old_email is not None else ""
            for _, _, fields in ACCOUNT_FORMS.values():
                for name in fields:
                    el[name].value = ""
        self._account_form = view.form
        for other, (other_id, _, _) in ACCOUNT_FORMS.items():
            el[other_id].hidden = other is not view.form
        if email_id is not None:
            if view.email:
                el[email_id].value = view.email
            elif typed and not str(el[email_id].value):
                el[email_id].value = typed
        error = el[f"{form_id}-error"]
        error.textContent = view.error or ""
        error.hidden = view.error is None
        el["sign-in-note"].textContent = view.note or ""
        el["sign-in-note"].hidden = view.note is None or view.form is not Form.SIGN_IN
        el["new-password-for"].textContent = f"For {view.email}" if view.email else ""
        for field in el[form_id].querySelectorAll("input, button"):
            field.disabled = view.busy
        if view.error is not None and view.form is Form.SIGN_IN:
            el["sign-in-password"].value = ""
        self._shown = None

    def show_app(self, user: User) -> None:
        """Show the app for ``user``."""
        el = self._el
        for form_id, _, passwords in ACCOUNT_FORMS.values():
            el[form_id].hidden = True
            for name in passwords:
                el[name].value = ""
        self._account_form = None
        el["app"].hidden = False
        el["mode-badge"].hidden = False
        el["sign-out"].hidden = False
        el["user-email"].textContent = user.email or user.id

    def set_ready(self, ready: bool) -> None:
        """Mark (or unmark) ``body[data-ready="1"]``."""
        body = self._doc.body
        if ready:
            body.setAttribute("data-ready", "1")
            # Milliseconds from navigation to ready, for measurements.
            body.setAttribute("data-ready-ms", str(round(float(self._window.performance.now()))))
        else:
            body.removeAttribute("data-ready")

    # -- the guard ------------------------------------------------------------------------------

    def show_guard(self, effects: Effects) -> None:
        """Badge, schema message, takeover button (only what changed is touched)."""
        incompatible = effects.mode is Mode.INCOMPATIBLE
        detail = effects.detail or ""
        shown = (
            badge_mode(effects.mode),
            effects.badge,
            effects.takeover_offered,
            detail,
            effects.mode.value,
        )
        if shown == self._shown:
            return
        self._shown = shown
        el = self._el
        badge = el["mode-badge"]
        badge.setAttribute("data-mode", shown[0])
        badge.setAttribute("data-guard-mode", effects.mode.value)
        badge.textContent = effects.badge
        el["schema-message"].textContent = detail if incompatible else ""
        el["schema-message"].hidden = not incompatible
        show_detail = not incompatible and effects.mode in (Mode.ERROR, Mode.OFFLINE) and bool(detail)
        el["guard-detail"].textContent = detail if show_detail else ""
        el["guard-detail"].hidden = not show_detail
        el["takeover-button"].hidden = not effects.takeover_offered
        if not effects.takeover_offered and el["takeover-dialog"].open:
            el["takeover-dialog"].close("cancel")

    def toast(self, text: str) -> None:
        """Show a notice for a few seconds."""
        box = self._el["toasts"]
        item = self._doc.createElement("div")
        item.className = "toast"
        item.setAttribute("data-testid", "toast")
        item.setAttribute("role", "status")
        item.textContent = text
        box.appendChild(item)
        while box.childElementCount > TOAST_MAX:
            oldest = box.firstElementChild
            if not present(oldest):  # not while it has children; the loop ends regardless
                break
            oldest.remove()
        self._window.setTimeout(self._remove_toast, TOAST_SECONDS * 1000, item)

    # -- lists ----------------------------------------------------------------------------------

    def show_traders(self, traders: Sequence[TraderItem], *, editable: bool, note: str) -> None:
        """Redraw the traders list."""
        doc = self._doc
        ul = self._el["traders"]
        self._el["traders-note"].textContent = note if traders else "No traders yet."
        rows = []
        for t in traders:
            li = doc.createElement("li")
            li.setAttribute("data-testid", "trader-row")
            li.setAttribute("data-trader-id", t.id)
            toggle = doc.createElement("input")
            toggle.type = "checkbox"
            toggle.checked = t.enabled
            toggle.disabled = not editable or not t.valid
            toggle.setAttribute("data-testid", "trader-toggle")
            toggle.setAttribute("data-trader-id", t.id)
            toggle.setAttribute("aria-label", f"Enable {t.name}")
            # The name charts the trader's first stream when clicked.
            name = doc.createElement("button" if t.stream else "span")
            name.className = "name"
            name.textContent = t.name
            if t.stream:
                name.type = "button"
                name.setAttribute("data-chart", t.stream)
                name.setAttribute("data-testid", "trader-name")
                name.setAttribute("title", "Show on the chart")
            what = doc.createElement("span")
            what.className = "what"
            what.textContent = t.summary
            li.append(toggle, name, what, self._alert_switches(t))
            for action, text in (("edit", "Edit"), ("duplicate", "Duplicate")):
                button = doc.createElement("button")
                button.type = "button"
                button.className = "link"
                button.textContent = text
                button.setAttribute("data-action", action)
                button.setAttribute("data-arg", t.id)
                button.setAttribute("data-testid", f"trader-{action}")
                button.setAttribute("aria-label", f"{text} {t.name}")
                li.append(button)
            if t.problem:
                problem = doc.createElement("span")
                problem.className = "problem"
                problem.setAttribute("data-testid", "trader-problem")
                problem.setAttribute("role", "status")
                problem.textContent = t.problem
                li.append(problem)
            rows.append(li)
        ul.replaceChildren(*rows)

    def _alert_switches(self, t: TraderItem) -> Element:
        """A trader's alert switches (this browser's choice; switchable whoever generates)."""
        doc = self._doc
        group = doc.createElement("span")
        group.className = "alerts"
        group.setAttribute("role", "group")
        group.setAttribute("aria-label", f"Alerts for {t.name}")
        for channel, text, title in ALERT_SWITCHES:
            label = doc.createElement("label")
            label.className = "alert-switch"
            label.setAttribute("title", title)
            box = doc.createElement("input")
            box.type = "checkbox"
            box.checked = channel in t.alerts
            box.setAttribute("data-trader-id", t.id)
            box.setAttribute("data-channel", channel)
            box.setAttribute("data-testid", f"trader-alert-{channel}")
            box.setAttribute("aria-label", f"{title} for {t.name}")
            words = doc.createElement("span")
            words.textContent = text
            label.append(box, words)
            group.append(label)
        return group

    def show_webhook(self, view: WebhookView) -> None:
        """The webhook panel (hidden while the database has no webhooks)."""
        el = self._el
        el["webhook"].hidden = not view.available
        url = el["webhook-url"]
        typing = url.matches(":focus")
        if str(url.value) != view.url and not typing:
            url.value = view.url  # not while the user types in it
        el["webhook-enabled"].checked = view.enabled
        el["webhook-secret"].setAttribute(
            "placeholder", "set: type to replace" if view.has_secret else "none"
        )
        el["webhook-save"].disabled = view.busy
        el["webhook-remove"].hidden = not view.url
        el["webhook-remove"].disabled = view.busy
        for name, text in (("webhook-error", view.error), ("webhook-note", view.note)):
            el[name].textContent = text
            el[name].hidden = not text
        items = []
        for failure in view.failures:
            li = self._doc.createElement("li")
            li.setAttribute("data-testid", "webhook-failure")
            li.setAttribute("data-signal-key", failure.key)
            what = self._doc.createElement("span")
            what.textContent = f"{failure.signal}: {failure.reason}"
            button = self._doc.createElement("button")
            button.type = "button"
            button.className = "link"
            button.textContent = "Retry"
            button.setAttribute("data-retry", failure.key)
            button.setAttribute("data-testid", "webhook-retry")
            li.append(what, button)
            items.append(li)
        el["webhook-failures"].replaceChildren(*items)

    def show_machine(self, view: MachineView) -> None:
        """The cloud machine panel (hidden while the database has no machine keys)."""
        el, doc = self._el, self._doc
        el["machine"].hidden = not view.available
        el["machine-register"].hidden = bool(view.machine)
        el["machine-key-form"].hidden = not view.machine
        el["machine-line"].textContent = (
            f"{view.machine} · {view.status}" if view.machine else "No cloud machine registered yet."
        )
        for name in ("machine-key-make", "machine-key-done"):
            el[name].disabled = view.busy
        el["machine-register-button"].disabled = view.busy
        el["machine-new-key"].hidden = not view.new_key
        # The key lives in this one field while it is shown, and nowhere else in the page.
        el["machine-new-key-value"].value = view.new_key
        if view.new_key:
            el["machine-key-label"].value = ""
        el["machine-error"].textContent = view.error
        el["machine-error"].hidden = not view.error
        items = []
        for key in view.keys:
            li = doc.createElement("li")
            li.setAttribute("data-testid", "machine-key")
            li.setAttribute("data-key-id", key.id)
            li.toggleAttribute("data-revoked", bool(key.revoked))
            what = doc.createElement("span")
            used = f"last used {key.used}" if key.used else "never used"
            state = f"revoked {key.revoked}" if key.revoked else used
            what.textContent = f"{key.label} · {key.hint}… · made {key.made} · {state}"
            li.append(what)
            if not key.revoked:
                button = doc.createElement("button")
                button.type = "button"
                button.className = "link danger"
                button.textContent = "Revoke…"
                button.setAttribute("data-revoke", key.id)
                button.setAttribute("data-label", key.label)
                button.setAttribute("data-testid", "machine-key-revoke")
                li.append(button)
            items.append(li)
        el["machine-keys"].replaceChildren(*items)

    def show_zone(self, *, utc: bool, local: str, switchable: bool) -> None:
        """The header's time zone switch."""
        select = self._el["zone-switch"]
        select.hidden = not switchable
        option = select.querySelector("option[value='local']")
        if present(option):
            option.textContent = f"Local time ({local})" if local else "Local time"
        select.value = "utc" if utc else "local"

    def show_alerts_note(self, text: str) -> None:
        """A line on the alerts (a blocked permission); hidden when empty."""
        el = self._el["alerts-note"]
        el.textContent = text
        el.hidden = not text

    def show_editor(self, editor: EditorView | None) -> None:
        """The trader editor (None: closed)."""
        self._editor.show(editor)

    def _tbody(self, table: str) -> Element:
        """The ``<tbody>`` of the table ``#table`` (``index.html`` gives each one)."""
        body = self._el[table].querySelector("tbody")
        if not present(body):
            raise RuntimeError(f"index.html has no tbody in #{table}")
        return body

    def _cells(
        self, table: str, tr: Element, cells: Sequence[tuple[str, bool]], *, lines: bool = False
    ) -> None:
        """Append a ``<td>`` per (text, numeric) to ``tr``; the text as text, never as HTML.

        Each cell carries its column's heading (``data-label``): on a phone the tables read as lists,
        one block per row, each value under its name (``web/app.css``). With ``lines``, a newline in a
        text breaks the line there.
        """
        labels = self._labels(table)
        for i, (text, numeric) in enumerate(cells):
            td = self._doc.createElement("td")
            td.textContent = text
            td.className = " ".join(c for c, on in (("num", numeric), ("lines", lines)) if on)
            if i < len(labels) and labels[i]:
                td.setAttribute("data-label", labels[i])
            tr.append(td)

    def _labels(self, table: str) -> list[str]:
        """The column headings of the table ``#table``, read once from ``index.html``."""
        found = self._headings.get(table)
        if found is None:
            found = [str(th.textContent or "").strip() for th in self._el[table].querySelectorAll("thead th")]
            self._headings[table] = found
        return found

    def show_history(self, items: Sequence[HistoryItem], *, zone: str) -> None:
        """Redraw the signals table (``signal-row`` rows carrying their source and key)."""
        doc = self._doc
        self._el["history-time"].textContent = f"Candle ({zone})"
        body = self._tbody("history")
        rows = []
        for it in items:
            tr = doc.createElement("tr")
            tr.setAttribute("data-testid", "signal-row")
            tr.setAttribute("data-source", it.source)
            tr.setAttribute("data-signal-key", it.key)
            tr.setAttribute("data-status", it.status)
            tr.setAttribute("data-caught-up", "1" if it.caught_up else "0")
            # A click on the row charts its stream (dom.bind).
            tr.setAttribute("data-chart", f"{it.symbol}|{it.interval}")
            tr.setAttribute("title", "Show on the chart")
            # A caught-up signal was found after the fact (its candle closed before its executor's
            # lease began): said in the source column, so the row reads "Cloud · caught up".
            source = f"{it.source} · caught up" if it.caught_up else it.source
            self._cells("history", tr, (
                (it.candle, False), (it.trader, False), (it.symbol, False), (it.interval, False),
                (it.price, True), (it.conditions, False), (it.status, False), (source, False),
            ))  # fmt: skip
            rows.append(tr)
        body.replaceChildren(*rows)
        self._el["history"].hidden = not items
        self._el["history-empty"].hidden = bool(items)

    # -- outbox and market data -------------------------------------------------------------------

    def show_pending(self, count: int, detail: str) -> None:
        """The number of writes waiting in the outbox (``data-count``), and why they wait."""
        el = self._el["pending-count"]
        el.setAttribute("data-count", str(count))
        el.textContent = (
            "All signals saved" if count == 0 else f"{count} write{'' if count == 1 else 's'} pending"
        )
        detail_el = self._el["pending-detail"]
        detail_el.textContent = detail if count else ""
        detail_el.hidden = not (detail and count)

    def show_market(self, state: str, text: str) -> None:
        """The market data's state (``data-state``) and a line about it."""
        el = self._el["market-status"]
        el.setAttribute("data-state", state)
        el.textContent = text

    # -- chart and summary ------------------------------------------------------------------------

    def show_chart(self, data: ChartData) -> None:
        """The selector and the chart (drawn by ``web/chart.js``).

        Hooks on ``#chart``: ``data-symbol``, ``data-candles``, ``data-markers-local``/``-cloud``.
        """
        doc = self._doc
        select = self._el["chart-symbol"]
        values = [f"{s}|{i}" for s, i in data.streams]
        current = [str(o.value) for o in select.options]
        if values != current:
            options = []
            for (symbol, interval), value in zip(data.streams, values, strict=True):
                option = doc.createElement("option")
                option.value = value
                option.textContent = stream_label(symbol, interval)
                options.append(option)
            select.replaceChildren(*options)
        select.disabled = not data.streams
        el = self._el["chart"]
        counts = data.counts()
        if data.selected is not None:
            symbol, interval = data.selected
            select.value = f"{symbol}|{interval}"
            el.setAttribute("data-symbol", symbol)
            el.setAttribute("data-interval", interval)
            el.setAttribute("aria-label", f"Candlestick chart of {symbol}, {interval} candles")
        el.setAttribute("data-candles", str(len(data.candles)))
        el.setAttribute("data-markers-local", str(counts.get("local", 0)))
        el.setAttribute("data-markers-cloud", str(counts.get("cloud", 0)))
        el.setAttribute("data-markers-preview", str(counts.get("preview", 0)))
        el.setAttribute("data-markers-caught-up", str(counts.get("caught_up", 0)))
        lib: ChartLib | None = getattr(self._window, "signalguardChart", None)
        drawn = False
        if lib is not None:
            if data.candles and data.selected is not None:
                key = "|".join(data.selected)
                drawn = bool(lib.render(el, key, data.candles_json(), data.markers_json()))
            else:
                lib.clear()
        note = data.problem or ("" if drawn or not data.candles else "The chart library did not load.")
        self._el["chart-note"].textContent = note
        self._el["chart-note"].hidden = not note

    def show_trades(self, items: Sequence[TradeItem], *, closable: bool, note: str) -> None:
        """The positions panel (``trade-row`` rows with ``data-status``, ``data-source``, the key).

        An open trade has a Close button (``close-trade``) only while this tab is the executor.
        """
        doc = self._doc
        self._el["trades-note"].textContent = note
        rows = []
        for it in items:
            tr = doc.createElement("tr")
            tr.setAttribute("data-testid", "trade-row")
            tr.setAttribute("data-signal-key", it.key)
            tr.setAttribute("data-status", it.status)
            tr.setAttribute("data-source", it.source)
            tr.setAttribute("data-close-source", it.close_source)
            tr.setAttribute("data-pnl-sign", it.sign)
            # Two lines where two values belong together: the wide table fits a card, and reads as
            # "what, when" and "how much, what share".
            by = source_name(it.source) + (f" → {source_name(it.close_source)}" if it.close_source else "")
            exit_line = f"{it.price}\n{it.closed}" if it.closed else it.price
            self._cells("trades", tr, (
                (f"{it.symbol} {it.side}\n{it.quantity}", False), (f"{it.entry}\n{it.opened}", True),
                (exit_line, True), (f"{it.pnl}\n{it.pnl_pct}", True), (it.status, False), (by, False),
                (it.detail, False),
            ), lines=True)  # fmt: skip
            td = doc.createElement("td")
            if closable and it.status == "open":
                button = doc.createElement("button")
                button.type = "button"
                button.textContent = "Close"
                button.setAttribute("data-testid", "close-trade")
                button.setAttribute("data-signal-key", it.key)
                button.setAttribute("aria-label", f"Close the {it.side} {it.symbol} trade")
                td.append(button)
            tr.append(td)
            rows.append(tr)
        self._tbody("trades").replaceChildren(*rows)
        self._el["trades"].hidden = not items
        self._el["trades-empty"].hidden = bool(items)

    def show_profit(self, lines: Sequence[ProfitLine]) -> None:
        """Profitability by source (``profit-row`` rows with ``data-source`` and ``data-trades``)."""
        doc = self._doc
        rows = []
        for line in lines:
            tr = doc.createElement("tr")
            tr.setAttribute("data-testid", "profit-row")
            tr.setAttribute("data-source", line.source)
            tr.setAttribute("data-trades", str(line.trades))
            self._cells("profit", tr, (
                (line.label, False), (str(line.signals), True), (str(line.trades), True),
                (str(line.open), True), (f"{line.wins} / {line.losses}", True), (line.avg, True),
                (line.realised, True),
            ))  # fmt: skip
            rows.append(tr)
        self._tbody("profit").replaceChildren(*rows)
        self._el["profit"].hidden = not rows

    def show_summary(self, lines: Sequence[SummaryLine] | None, note: str) -> None:
        """The "by source" table (``summary-row`` rows with ``data-source`` or ``data-machine``)."""
        self._el["summary-note"].textContent = note
        if lines is None:
            return
        doc = self._doc
        rows = []
        for line in lines:
            tr = doc.createElement("tr")
            tr.setAttribute("data-testid", "summary-row")
            tr.setAttribute("data-machine" if line.machine else "data-source", line.key)
            tr.setAttribute("data-signals", str(line.signals))
            self._cells("summary", tr, (
                (line.label, False), (str(line.signals), True), (str(line.traders), True), (line.last, False),
            ))  # fmt: skip
            rows.append(tr)
        self._tbody("summary").replaceChildren(*rows)
        self._el["summary"].hidden = not rows
