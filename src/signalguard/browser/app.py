"""The browser app: sign-in, the execution guard, the traders and the recent signals.

Written against :mod:`~signalguard.browser.ports` only. What it does for a signed-in user:

1. starts a :class:`~signalguard.browser.driver.GuardDriver` (schema check, then the 5 s poll that
   claims and renews the lease while this tab may generate);
2. asks for the tab lock ``signalguard:<user id>`` so that only one tab of the browser generates; a
   tab that does not get it waits for it and takes over when the other tab closes;
3. loads the traders and the recent signals and draws them; trader toggles are enabled only while
   the guard says this tab may generate;
4. marks the page ready once the guard's mode is known and both lists are drawn.

Market data, the engine (:class:`~signalguard.core.engine.SignalManager`) and the outbox attach to
:meth:`App.on_effects` (the guard's epoch and ``may_generate``) and :attr:`App.traders`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Final

from signalguard.browser.driver import GuardDriver
from signalguard.browser.ports import (
    Backend,
    Clock,
    HistoryItem,
    Spawn,
    TabLocks,
    Timers,
    TraderItem,
    User,
    View,
)
from signalguard.core.engine import TraderRecord
from signalguard.core.guard import Effects, Mode
from signalguard.core.traders import TraderDefinitionError, parse_trader

#: Recent signals shown.
HISTORY_LIMIT: Final = 50
TRADER_COLUMNS: Final = "id,name,definition,enabled"
HISTORY_COLUMNS: Final = "signal_key,symbol,interval,candle_open_time,price,status,source"


def lock_name(user_id: str) -> str:
    """The Web Lock that elects the one generating tab of a user in this browser."""
    return f"signalguard:{user_id.lower()}"


def trader_item(record: TraderRecord) -> TraderItem:
    """How a trader is listed: what it watches, or why its definition is invalid."""
    try:
        d = parse_trader(record.definition)
    except TraderDefinitionError as exc:
        return TraderItem(record.id, record.name, record.enabled, f"invalid definition — {exc}", False)
    joiner = " and " if str(d.match) == "all" else " or "
    summary = f"{', '.join(d.symbols)} · {d.interval} · {joiner.join(d.labels)}"
    return TraderItem(record.id, record.name, record.enabled, summary, True)


def trader_records(rows: object) -> list[TraderRecord]:
    """Trader rows from the API, skipping anything malformed."""
    out: list[TraderRecord] = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        tid, name, enabled = row.get("id"), row.get("name"), row.get("enabled")
        if isinstance(tid, str) and isinstance(name, str) and isinstance(enabled, bool):
            out.append(TraderRecord(tid, name, row.get("definition"), enabled))
    return out


def _candle_text(value: object) -> str:
    if not isinstance(value, str):
        return "?"
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def history_items(rows: object) -> list[HistoryItem]:
    """Signal rows from the API as shown (all text)."""
    out: list[HistoryItem] = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        out.append(
            HistoryItem(
                key=str(row.get("signal_key", "")),
                candle=_candle_text(row.get("candle_open_time")),
                symbol=str(row.get("symbol", "")),
                interval=str(row.get("interval", "")),
                price=str(row.get("price", "")),
                status=str(row.get("status", "")),
                source=str(row.get("source", "")),
            )
        )
    return out


class App:
    """The app of one tab; see the module documentation."""

    def __init__(
        self,
        backend: Backend,
        view: View,
        timers: Timers,
        locks: TabLocks,
        clock: Clock,
        spawn: Spawn,
        holder_id: str,
    ) -> None:
        """Wire the app to the page's adapters; nothing happens until :meth:`start`."""
        self.backend = backend
        self.view = view
        self.timers = timers
        self.locks = locks
        self.clock = clock
        self.spawn = spawn
        self.holder_id = holder_id
        self.user: User | None = None
        self.driver: GuardDriver | None = None
        self.traders: list[TraderRecord] = []
        #: Called with every guard effects (the engine and the outbox subscribe here).
        self.effect_listeners: list[Callable[[Effects], None]] = []
        self._release_lock: Callable[[], None] | None = None
        self._drawn = False
        self._ready = False
        self._editable = False

    # -- start ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the stored session (or show the sign-in form) and go."""
        self.view.bind(self)
        self.backend.on_auth_change(self._auth_changed)
        user = await self.backend.current_user()
        self.view.booted()
        if user is None:
            self.view.show_sign_in()
        else:
            await self._enter(user)

    async def _enter(self, user: User) -> None:
        if self.user is not None:
            return
        self.user = user
        self._drawn = self._ready = False
        self.view.set_ready(False)
        self.view.show_app(user)
        driver = GuardDriver(
            self.backend, self.timers, self.clock, self.spawn, self.holder_id, self.on_effects
        )
        self.driver = driver
        self.on_effects(driver.effects)
        driver.start()
        self._release_lock = self.locks.hold(lock_name(user.id), driver.tab_lock)
        await asyncio.gather(self.reload_traders(), self.reload_history())
        self._drawn = True
        self._check_ready()

    # -- the guard ------------------------------------------------------------------------------

    def on_effects(self, effects: Effects) -> None:
        """Show what the guard decided; pass it on to the listeners."""
        self.view.show_guard(effects)
        if effects.toast:
            self.view.toast(effects.toast)
        if effects.may_generate != self._editable:
            self._editable = effects.may_generate
            self._draw_traders()
        for listener in self.effect_listeners:
            listener(effects)
        self._check_ready()

    def _check_ready(self) -> None:
        driver = self.driver
        if self._ready or not self._drawn or driver is None or driver.effects.mode is Mode.UNKNOWN:
            return
        self._ready = True
        self.view.set_ready(True)

    # -- lists ----------------------------------------------------------------------------------

    def _traders_note(self) -> str:
        if self._editable:
            return "This tab generates signals: traders can be switched on and off here."
        mode = self.driver.effects.mode if self.driver else Mode.UNKNOWN
        if mode is Mode.INCOMPATIBLE:
            return "Read-only until the database is updated."
        return "Read-only: another side is generating (or it is not yet known who is)."

    def _draw_traders(self) -> None:
        items = [trader_item(r) for r in self.traders]
        self.view.show_traders(items, editable=self._editable, note=self._traders_note())

    async def reload_traders(self) -> None:
        """Read the user's traders and draw them."""
        result = await self.backend.select("traders", TRADER_COLUMNS, order="name")
        if result.error is not None:
            self.view.toast(f"Could not load the traders: {result.error}")
        else:
            self.traders = trader_records(result.data)
        self._draw_traders()

    async def reload_history(self) -> None:
        """Read the most recent signals and draw them."""
        result = await self.backend.select(
            "signals", HISTORY_COLUMNS, order="candle_open_time", descending=True, limit=HISTORY_LIMIT
        )
        if result.error is not None:
            self.view.toast(f"Could not load the signals: {result.error}")
            self.view.show_history([])
            return
        self.view.show_history(history_items(result.data))

    # -- intents ----------------------------------------------------------------------------------

    def sign_in(self, email: str, password: str) -> None:
        """The sign-in form was submitted."""
        self.spawn(self._sign_in(email.strip(), password))

    async def _sign_in(self, email: str, password: str) -> None:
        if self.user is not None:
            return
        self.view.show_sign_in(busy=True)
        user, error = await self.backend.sign_in(email, password)
        if user is None:
            self.view.show_sign_in(error=error or "Sign-in failed")
            return
        await self._enter(user)

    def sign_out(self) -> None:
        """The sign-out button was pressed."""
        self.spawn(self._sign_out(end_session=True))

    async def _sign_out(self, *, end_session: bool) -> None:
        if self.user is None:
            return
        await self._leave()
        if end_session:
            error = await self.backend.sign_out()
            if error:
                self.view.toast(f"Sign-out: {error}")
        self.view.show_sign_in()

    async def _leave(self) -> None:
        driver, self.driver = self.driver, None
        self.user = None
        self.traders = []
        self._editable = self._drawn = self._ready = False
        self.view.set_ready(False)
        if driver is not None:
            await driver.stop()
        if self._release_lock is not None:
            self._release_lock()
            self._release_lock = None

    def toggle_trader(self, trader_id: str, enabled: bool) -> None:
        """A trader's toggle was switched."""
        self.spawn(self._toggle(trader_id, enabled))

    async def _toggle(self, trader_id: str, enabled: bool) -> None:
        if not self._editable:
            # The control should have been disabled; show the stored state again.
            self._draw_traders()
            return
        result = await self.backend.update("traders", {"enabled": enabled}, match={"id": trader_id})
        if result.error is not None:
            self.view.toast(f"Could not change the trader: {result.error}")
        await self.reload_traders()

    def take_over(self) -> None:
        """The user confirmed taking over from the cloud machine in error."""
        if self.driver is not None:
            self.driver.take_over()

    # -- page and session events ------------------------------------------------------------------

    def _auth_changed(self, event: str, user: User | None) -> None:
        # Signed out in another tab (supabase-js tells every tab): stop here too.
        if event == "SIGNED_OUT" and self.user is not None:
            self.spawn(self._sign_out(end_session=False))
        elif event == "SIGNED_IN" and user is not None and self.user is None:
            self.spawn(self._enter(user))

    def unload(self) -> None:
        """The page is going away (``pagehide``): release the lease with a request that outlives it."""
        if self.driver is not None:
            self.driver.unload()
        if self._release_lock is not None:
            self._release_lock()
            self._release_lock = None
