"""The browser app: sign-in, the execution guard, the traders and the recent signals.

Written against :mod:`~signalguard.browser.ports` only. What it does for a signed-in user:

1. starts a :class:`~signalguard.browser.driver.GuardDriver` (schema check, then the 5 s poll that
   claims and renews the lease while this tab may generate);
2. asks for the tab lock ``signalguard:<user id>`` so that only one tab of the browser generates; a
   tab that does not get it waits for it and takes over when the other tab closes;
3. loads the traders and the recent signals and draws them; trader toggles are enabled only while
   the guard says this tab may generate;
4. marks the page ready once the guard's mode is known and both lists are drawn;
5. runs the enabled traders in the tab (:class:`~signalguard.browser.generation.Generation`: market
   data, the engine, the outbox) — streaming only in the tab holding the tab lock, emitting only while
   the guard says it may; the outbox's guard verdicts go back to the guard as ``WriteRefused``;
6. keeps the signals table current: the database's newest signals (both sources, or one, as the
   filter says) re-read after every acknowledged write and every few seconds (Supabase realtime is not
   used), merged with this tab's signals still waiting in the outbox;
7. draws a candlestick chart of one watched symbol with its signals marked by source, and the "by
   source" summary of the last 7 days (:mod:`~signalguard.browser.chart`); neither holds up readiness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Final

from signalguard.browser.accounts import Accounts
from signalguard.browser.alerts import (
    ALERT_COLUMNS,
    ALERT_READ_LIMIT,
    AlertCenter,
    Channel,
    arrivals,
)
from signalguard.browser.chart import (
    CHART_CANDLES,
    CHART_MARKERS,
    SUMMARY_DAYS,
    ChartData,
    Marker,
    chart_candles,
    chart_markers,
    chart_streams,
    preview_markers,
    summary_lines,
)
from signalguard.browser.driver import GuardDriver
from signalguard.browser.formats import Formats
from signalguard.browser.generation import Generation, StartTask
from signalguard.browser.machine import MachinePanel
from signalguard.browser.ports import (
    Attention,
    Backend,
    HistoryItem,
    Locale,
    Preferences,
    Spawn,
    SymbolList,
    TabLocks,
    Timers,
    TraderItem,
    User,
    View,
)
from signalguard.browser.preview_text import PREVIEW_CANDLES
from signalguard.browser.sync import SignalSync
from signalguard.browser.trades import (
    TRADE_VIEW_COLUMNS,
    TRADED_SIGNALS,
    TRADES_SHOWN,
    profit_lines,
    trade_items,
)
from signalguard.browser.webhooks import WebhookPanel
from signalguard.browser.workbench import SymbolSearch, Workbench
from signalguard.core.candles import Candle, MarketDataError
from signalguard.core.codes import (
    GAPLESS_HANDOFF,
    MACHINE_KEYS,
    OPTIONAL_SCHEMA,
    REQUIRED_SCHEMA,
    WEBHOOKS,
    GuardError,
    has_component,
)
from signalguard.core.engine import (
    DEFAULT_MAX_TRACKED,
    OPEN_STATUSES,
    SIGNAL_COLUMNS,
    Signal,
    TraderRecord,
    open_signals,
)
from signalguard.core.guard import Effects, Mode, WriteRefused
from signalguard.core.ports import Clock, HttpPoster, JsonValue, KeyValueStore
from signalguard.core.positions import TRADE_COLUMNS, TradeBook, trade_book
from signalguard.core.preview import Preview
from signalguard.core.traders import TraderDefinitionError, parse_trader
from signalguard.market.feed import MarketData
from signalguard.market.klines import MarketUnavailable, fetch_history

#: Recent signals shown.
HISTORY_LIMIT: Final = 50
TRADER_COLUMNS: Final = "id,name,definition,enabled"
HISTORY_COLUMNS: Final = (
    "signal_key,trader_id,symbol,interval,candle_open_time,price,matched_conditions,status,source"
)
#: Where the time zone switch is kept (``utc`` or ``local``), shared by the browser's tabs.
ZONE_KEY: Final = "signalguard:time-zone"
#: The signals table is re-read this often (other sources' signals; statuses moved elsewhere).
HISTORY_SECONDS: Final = 5.0
HISTORY_TIMER: Final = "history"
#: The traders are re-read this often: an edit in another tab or device shows here (and reaches the
#: generating tab's engine) within this long.
TRADERS_SECONDS: Final = 5.0
TRADERS_TIMER: Final = "traders"
#: Re-reads of the traders' problems as the database holds them (the executor's view, maybe the cloud's).
PROBLEMS_TIMER: Final = "trader-problems"
PROBLEMS_SECONDS: Final = 5.0
SOURCES: Final = ("all", "local", "cloud")
#: Why the traders cannot be switched here, by the guard's mode (while this tab does not generate).
READ_ONLY_NOTES: Final[Mapping[Mode, str]] = {
    Mode.CLOUD: "Read-only: your cloud machine is generating; change traders there or stop it first.",
    Mode.STARTING: "Read-only: your cloud machine is starting and takes over from this browser.",
    Mode.GRACE: "Read-only until this browser resumes after the cloud machine's grace period.",
    Mode.ERROR: "Read-only: your cloud machine reports an error; take over to generate here.",
    Mode.STANDBY: "Read-only: another tab or device is generating.",
    Mode.OFFLINE: "Read-only while the database cannot be reached.",
    Mode.INCOMPATIBLE: "Read-only until the database is updated.",
}
#: What the positions panel says while this tab does not manage the trades: the traders' note, except
#: where that one speaks of generating signals and the panel names who manages the trades instead.
TRADES_READ_ONLY_NOTES: Final[Mapping[Mode, str]] = {
    **READ_ONLY_NOTES,
    Mode.CLOUD: "Read-only: your cloud machine manages the open trades.",
    Mode.STARTING: "Read-only: your cloud machine is starting and takes over the open trades.",
    Mode.ERROR: "Read-only: your cloud machine reports an error; take over to manage the trades here.",
    Mode.STANDBY: "Read-only: another tab or device manages the open trades.",
}
#: The chart's candles and markers are re-read this often (a 1m candle moves within the minute).
CHART_SECONDS: Final = 10.0
CHART_TIMER: Final = "chart"
#: The positions panel is re-read this often (mirror tabs, unrealised P&L at the newest price).
TRADES_SECONDS: Final = 10.0
TRADES_TIMER: Final = "trades"
CHART_COLUMNS: Final = "signal_key,symbol,interval,candle_open_time,source"
#: The webhook's deliveries are re-read this often (failures of the cloud's posts show too).
WEBHOOK_STATE_SECONDS: Final = 10.0
WEBHOOK_STATE_TIMER: Final = "webhook-state"
#: The machine panel is re-read this often (a key's last use, the machine's status).
MACHINE_SECONDS: Final = 30.0
MACHINE_TIMER: Final = "machine"
#: The summary is re-read this often.
SUMMARY_SECONDS: Final = 30.0
SUMMARY_TIMER: Final = "summary"
SUMMARY_RETRY_TIMER: Final = "summary-retry"
SUMMARY_SOON_TIMER: Final = "summary-soon"
#: After the stored signals change, the summary is read again this much later: soon enough that its
#: counts agree with the table, and at most one aggregate read per this many seconds under 1s candles.
SUMMARY_AFTER_CHANGE_SECONDS: Final = 3.0
SUMMARY_COMPONENT: Final = next(c for c in OPTIONAL_SCHEMA if c.name == "signal_summary")
SUMMARY_NEEDS: Final = f"This summary needs supabase/migrations/{SUMMARY_COMPONENT.migration}."
TRADES_COMPONENT: Final = next(c for c in REQUIRED_SCHEMA if c.name == "trades")
PROBLEMS_COMPONENT: Final = next(c for c in REQUIRED_SCHEMA if c.name == "trader_streams")
TRADES_NEEDS: Final = f"Paper trades need supabase/migrations/{TRADES_COMPONENT.migration}."


def lock_name(user_id: str) -> str:
    """The Web Lock that elects the one generating tab of a user in this browser."""
    return f"signalguard:{user_id.lower()}"


def trader_item(
    record: TraderRecord, problem: str = "", alerts: frozenset[Channel] = frozenset()
) -> TraderItem:
    """How a trader is listed: what it watches, or why its definition is invalid.

    ``problem`` says why it does not generate (a stream the market data refuses); shown while enabled.
    ``alerts`` are the channels chosen for it on this browser.
    """
    chosen = frozenset(c.value for c in alerts)
    try:
        d = parse_trader(record.definition)
    except TraderDefinitionError as exc:
        return TraderItem(
            record.id, record.name, record.enabled, f"invalid definition — {exc}", False, alerts=chosen
        )
    joiner = " and " if str(d.match) == "all" else " or "
    summary = f"{', '.join(d.symbols)} · {d.interval} · {joiner.join(d.labels)}"
    if d.trade is not None:
        t = d.trade
        rules = [
            f"{label} {value:g}{unit}"
            for label, value, unit in (
                ("target", t.take_profit_pct, "%"),
                ("stop", t.stop_loss_pct, "%"),
                ("hold ≤", t.max_hold_candles, f" × {d.interval}"),
            )
            if value is not None
        ]
        summary += f" · paper {t.side} {t.notional:g} ({', '.join(rules)})"
    return TraderItem(
        record.id,
        record.name,
        record.enabled,
        summary,
        True,
        problem if record.enabled else "",
        chosen,
        stream=f"{d.symbols[0]}|{d.interval}" if d.symbols else "",
    )


def problem_lines(rows: object) -> dict[str, str]:
    """``trader_problems`` rows as trader id to the line the page shows (the cloud's say so)."""
    out: dict[str, str] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        tid, line, source = row.get("trader_id"), row.get("problem"), row.get("source")
        if isinstance(tid, str) and isinstance(line, str) and line:
            out[tid.lower()] = f"Cloud machine: {line}" if source == "cloud" else line
    return out


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


def _open_ms(value: object) -> int:
    if not isinstance(value, str):
        return -1
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return -1
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _labels(value: object) -> str:
    return ", ".join(str(c) for c in value) if isinstance(value, list) else ""


def history_items(
    rows: object, fmt: Formats | None = None, names: Mapping[str, str] | None = None
) -> list[HistoryItem]:
    """Signal rows from the API as shown (all text, written by ``fmt``; traders named by ``names``)."""
    fmt, names = fmt or Formats(), names or {}
    out: list[HistoryItem] = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        symbol, interval = str(row.get("symbol", "")), str(row.get("interval", ""))
        open_ms = _open_ms(row.get("candle_open_time"))
        out.append(
            HistoryItem(
                key=str(row.get("signal_key", "")),
                candle=fmt.time(open_ms, seconds=interval.endswith("s")),
                symbol=symbol,
                interval=interval,
                price=fmt.price(symbol, _float(row.get("price"))),
                status=str(row.get("status", "")),
                source=str(row.get("source", "")),
                open_ms=open_ms,
                caught_up=row.get("caught_up") is True,
                trader=names.get(str(row.get("trader_id", "")).lower(), ""),
                conditions=_labels(row.get("matched_conditions")),
            )
        )
    return out


def pending_item(
    key: str,
    payload: Mapping[str, JsonValue],
    fmt: Formats | None = None,
    names: Mapping[str, str] | None = None,
) -> HistoryItem:
    """A signal still in the outbox, as shown (its status says it is not stored yet)."""
    fmt, names = fmt or Formats(), names or {}
    open_ms = payload.get("candle_open_time")
    ms = open_ms if isinstance(open_ms, int) else -1
    symbol, interval = str(payload.get("symbol", "")), str(payload.get("interval", ""))
    return HistoryItem(
        key=key,
        candle=fmt.time(ms, seconds=interval.endswith("s")),
        symbol=symbol,
        interval=interval,
        price=fmt.price(symbol, _float(payload.get("price"))),
        status="pending",
        source="local",
        open_ms=ms,
        trader=names.get(str(payload.get("trader_id", "")).lower(), ""),
        conditions=_labels(payload.get("matched_conditions")),
    )


def merge_history(stored: list[HistoryItem], pending: list[HistoryItem], limit: int) -> list[HistoryItem]:
    """Stored and pending signals, newest candle first, one row per key (a stored row wins), bounded."""
    seen = {it.key for it in stored}
    rows = stored + [it for it in pending if it.key not in seen]
    rows.sort(key=lambda it: (it.open_ms, it.key), reverse=True)
    return rows[:limit]


class Coalesced:
    """An async read-and-draw that runs one at a time.

    Asked again while it runs, it runs once more after, however often it was asked: a burst of
    writes must not become a burst of reads.
    """

    def __init__(self, step: Callable[[], Coroutine[object, object, bool]], spawn: Spawn) -> None:
        """``step`` reads and draws once; it returns False to stop (the user signed out meanwhile)."""
        self._step = step
        self._spawn = spawn
        self._running = False
        self._again = False

    def request(self) -> None:
        """Run soon, in the background."""
        if self._running:
            self._again = True
        else:
            self._spawn(self.run())

    async def run(self) -> None:
        """Run now (or once more after the run in progress)."""
        if self._running:
            self._again = True
            return
        self._running = True
        try:
            while True:
                self._again = False
                if not await self._step() or not self._again:
                    return
        finally:
            self._running = False


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
        *,
        store: KeyValueStore,
        market: MarketData | None,
        start_task: StartTask,
        wall: Clock,
        symbols: SymbolSearch | None = None,
        attention: Attention | None = None,
        prefs: Preferences | None = None,
        locale: Locale | None = None,
        symbol_list: SymbolList | None = None,
        poster: HttpPoster | None = None,
        stack_urls: tuple[str, ...] = (),
        local_mail: bool = False,
    ) -> None:
        """Wire the app to the page's adapters; nothing happens until :meth:`start`.

        ``store`` keeps the outbox, ``market`` is the market-data service (None: not configured),
        ``start_task`` runs a cancellable background task, ``wall`` is the wall clock (epoch seconds),
        ``symbols`` searches the market data's symbols for the editor (None: typed by hand),
        ``attention`` and ``prefs`` are the page's alert channels and the browser's preferences (None:
        no alerts), ``locale`` the browser's time zone (None: UTC only), ``symbol_list`` the market
        data's symbols, whose tick sizes give the prices their decimals (None: by their size),
        ``poster`` posts the user's webhook while this tab generates (None: it shows, never posts),
        ``stack_urls`` are this app's own servers, which a webhook may not point at, and ``local_mail``
        says the mails of sign-up and password reset are printed by the local stack, not sent.
        """
        self.backend = backend
        self.view = view
        self.timers = timers
        self.locks = locks
        self.clock = clock
        self.spawn = spawn
        self.holder_id = holder_id
        self.store = store
        self.market = market
        self.start_task = start_task
        self.wall = wall
        self.symbols = symbols
        self.attention = attention
        self.prefs = prefs
        self.locale = locale
        self.symbol_list = symbol_list
        self.poster = poster
        self.stack_urls = stack_urls
        #: The signed-out page: sign in, sign up, password reset (:mod:`~signalguard.browser.accounts`).
        self.accounts = Accounts(
            backend, view.show_account, spawn, self._enter, toast=view.toast, local_mail=local_mail
        )
        #: The signed-in user's webhook panel (None: signed out).
        self.webhooks: WebhookPanel | None = None
        #: The signed-in user's cloud machine panel (None: signed out).
        self.machine: MachinePanel | None = None
        self.formats = self._formats()
        #: The signals last read, as the API answered them (drawn again when the zone changes).
        self._stored_rows: object = []
        #: The signed-in user's alerts (None: signed out, or no alert channels on this page).
        self.alerts: AlertCenter | None = None
        self._alerting = Coalesced(self._alerts_step, spawn)
        self.workbench: Workbench | None = None
        self.user: User | None = None
        self.driver: GuardDriver | None = None
        self.generation: Generation | None = None
        self.traders: list[TraderRecord] = []
        #: Why traders do not generate: as the database holds it, and as this tab's feed sees it.
        self._stored_problems: dict[str, str] = {}
        self._local_problems: dict[str, str] = {}
        #: Called with every guard effects (the engine and the outbox subscribe here).
        self.effect_listeners: list[Callable[[Effects], None]] = []
        self._release_lock: Callable[[], None] | None = None
        self._drawn = False
        self._ready = False
        self._editable = False
        self._noted: Mode | None = None
        self._source = "all"
        self._stored: list[HistoryItem] = []
        self._history = Coalesced(self._history_step, spawn)
        self._summary_soon = False
        #: The trades last read (the API's rows), redrawn as they were while a read fails.
        self._trade_rows: object = []
        self._chart: tuple[str, str] | None = None
        #: The user picked the chart's stream (otherwise it follows the newest signal).
        self._chart_chosen = False
        self._charting = Coalesced(self._chart_step, spawn)
        self._trading = Coalesced(self._trades_step, spawn)
        #: The stream the editor previews and its markers (drawn on the chart while it is open).
        self._preview_stream: tuple[str, str] | None = None
        self._preview_markers: list[Marker] = []
        #: The last read of the traders failed (said once, not every few seconds).
        self._traders_failed = False

    # -- start ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the stored session (or show the sign-in form) and go."""
        self.view.bind(self)
        self.backend.on_auth_change(self._auth_changed)
        user = await self.backend.current_user()
        link = await self.backend.link_outcome()
        self.view.booted()
        await self.accounts.arrive(user, link)

    async def _enter(self, user: User) -> None:
        if self.user is not None:
            return
        self.user = user
        self._drawn = self._ready = False
        self.view.set_ready(False)
        self.view.show_app(user)
        generation = self._generation(user)
        self.generation = generation
        self.effect_listeners.append(generation.on_effects)
        driver = GuardDriver(
            self.backend,
            self.timers,
            self.clock,
            self.spawn,
            self.holder_id,
            self.on_effects,
            evaluated_until=generation.evaluated_until,
        )
        self.driver = driver
        self.on_effects(driver.effects)
        driver.start()
        if self.attention is not None and self.prefs is not None:
            self.alerts = AlertCenter(
                user.id,
                self.prefs,
                self.attention,
                self._names,
                on_note=self.view.toast,
                formats=lambda: self.formats,
            )
        alerts = self.alerts
        webhooks = WebhookPanel(
            user.id,
            self.backend,
            self.timers,
            self.spawn,
            poster=self.poster,
            stack_urls=self.stack_urls,
            show=self.view.show_webhook,
            formats=lambda: self.formats,
            available=self._has_webhooks,
            on_verdict=lambda code: self._webhook_verdict(driver, code),
        )
        self.webhooks = webhooks
        self.effect_listeners.append(webhooks.on_effects)
        self.machine = MachinePanel(
            self.backend,
            self.spawn,
            show=self.view.show_machine,
            formats=lambda: self.formats,
            available=self._has_machine_keys,
        )

        def tab_lock(held: bool) -> None:
            driver.tab_lock(held)
            if self.generation is generation:
                generation.set_active(held)
            if alerts is not None and self.alerts is alerts:
                # The tab holding the lock is the browser's one alerting tab.
                alerts.set_leader(held, round(self.wall() * 1000))

        self._release_lock = self.locks.hold(lock_name(user.id), tab_lock)
        self.workbench = Workbench(
            user.id,
            self.backend,
            self.store,
            self.spawn,
            show=self.view.show_editor,
            toast=self.view.toast,
            traders=lambda: self.traders,
            saved=self.reload_traders,
            search=self.symbols,
            history=self._preview_history if self.market is not None else None,
            on_preview=self._previewed,
        )
        self.workbench.set_editable(self._editable, self._traders_note())
        await asyncio.gather(self.reload_traders(), self.reload_history(), self._alerting.run())
        await self.workbench.restore()
        self.timers.every(HISTORY_TIMER, HISTORY_SECONDS, self.refresh_history)
        self.timers.every(TRADERS_TIMER, TRADERS_SECONDS, lambda: self.spawn(self.reload_traders()))
        self._drawn = True
        self._check_ready()

    def _generation(self, user: User) -> Generation:
        def verdict(code: GuardError) -> None:
            if self.driver is not None:
                self.driver.feed(WriteRefused(code))

        sync = SignalSync(
            user.id,
            self.backend,
            self.store,
            self.timers,
            self.clock,
            self.spawn,
            on_count=self.view.show_pending,
            on_verdict=verdict,
            on_written=self._written,
            on_problem=self.view.toast,
        )
        return Generation(
            user.id,
            self.market,
            sync,
            self.start_task,
            self.wall,
            on_market=self.view.show_market,
            on_trader_failed=self.view.toast,
            load_open=self._open_signals,
            load_trades=self._trade_book,
            on_trades=self.refresh_trades,
            on_problems=self._feed_problems,
            report_problems=self._report_problems,
        )

    def _feed_problems(self, problems: dict[str, str]) -> None:
        self._local_problems = problems
        self._draw_traders()

    async def _report_problems(self, epoch: int, problems: dict[str, str | None]) -> bool:
        result = await self.backend.rpc("report_trader_problems", {"p_epoch": epoch, "p_problems": problems})
        if result.error is None:
            self.spawn(self._read_problems())
        return result.error is None

    async def _read_problems(self) -> None:
        components = self.driver.components if self.driver is not None else None
        if components is None or not has_component(components, PROBLEMS_COMPONENT):
            return  # a database without the table: the schema message says what to apply (no 404)
        result = await self.backend.select("trader_problems", "trader_id,problem,source")
        if result.error is None and self.user is not None:
            stored = problem_lines(result.data)
            if stored != self._stored_problems:
                self._stored_problems = stored
                self._draw_traders()

    def _written(self) -> None:
        self.refresh_history()
        self.refresh_trades()
        if self.webhooks is not None:
            self.webhooks.kick()  # the signals just stored have their delivery rows

    @staticmethod
    def _webhook_verdict(driver: GuardDriver, code: GuardError) -> None:
        # A claim or record refused because the lease moved on: the guard hears it now, as from the
        # outbox, rather than at its next poll.
        driver.feed(WriteRefused(code))

    def _has_webhooks(self) -> bool:
        components = self.driver.components if self.driver is not None else None
        return components is not None and has_component(components, WEBHOOKS)

    def _has_machine_keys(self) -> bool:
        components = self.driver.components if self.driver is not None else None
        return components is not None and has_component(components, MACHINE_KEYS)

    def register_machine(self, name: str, region: str) -> None:
        """Register the user's cloud machine (checked here first, then by the database)."""
        if self.machine is not None:
            self.machine.register(name, region)

    def make_machine_key(self, label: str) -> None:
        """Make a key for the cloud machine (shown once)."""
        if self.machine is not None:
            self.machine.make_key(label)

    def revoke_machine_key(self, key_id: str) -> None:
        """Revoke one of the machine's keys (already confirmed by the user)."""
        if self.machine is not None:
            self.machine.revoke(key_id)

    def dismiss_machine_key(self) -> None:
        """The new key is copied: show it no more."""
        if self.machine is not None:
            self.machine.dismiss_key()

    def save_webhook(self, url: str, secret: str, enabled: bool) -> None:
        """Store the user's webhook (checked here first, then by the database)."""
        if self.webhooks is not None:
            self.webhooks.save(url, secret, enabled)

    def remove_webhook(self) -> None:
        """Delete the user's webhook (already confirmed by the user)."""
        if self.webhooks is not None:
            self.webhooks.remove()

    def retry_webhook(self, key: str) -> None:
        """Put a failed delivery back in line."""
        if self.webhooks is not None:
            self.webhooks.retry(key)

    # -- how times and numbers are written ----------------------------------------------------------

    def _formats(self) -> Formats:
        locale = self.locale
        stored = self.prefs.get(ZONE_KEY) if self.prefs is not None else None
        utc = locale is None or stored == "utc"
        self.view.show_zone(
            utc=utc, local=locale.zone() if locale is not None else "", switchable=locale is not None
        )
        if locale is None:
            return Formats(precision=self._symbol_precision)
        return Formats(utc=utc, zone=locale.zone(), offset=locale.offset, precision=self._symbol_precision)

    def _symbol_precision(self, symbol: str) -> int | None:
        info = self.symbol_list.get(symbol) if self.symbol_list is not None else None
        return info.price_precision if info is not None else None

    async def _load_symbols(self) -> None:
        """Load the symbol list once (prices get their tick size's decimals), then draw again."""
        if self.symbol_list is None:
            return
        try:
            await self.symbol_list.symbols()
        except MarketUnavailable:
            return  # prices keep the decimals their size gives; the editor's picker says why
        if self.user is not None:
            self._draw_history()
            self.refresh_trades()

    def choose_zone(self, utc: bool) -> None:
        """The time zone switch: times in UTC, or in the browser's zone (kept in the browser)."""
        if self.prefs is not None:
            self.prefs.put(ZONE_KEY, "utc" if utc else "local")
        self.formats = self._formats()
        if self.user is not None:
            self._draw_history()
            self.refresh_trades()
            self.refresh_summary()

    def _names(self) -> dict[str, str]:
        return {t.id.lower(): t.name for t in self.traders}

    # -- alerts ---------------------------------------------------------------------------------

    async def _alerts_step(self) -> bool:
        """Read the signals stored since the last read; alert the new ones (the first read primes)."""
        alerts = self.alerts
        if alerts is None or self.user is None:
            return False
        after = alerts.feed.after()
        result = await self.backend.select(
            "signals",
            ALERT_COLUMNS,
            # The priming read takes the newest rows; then the rows after the cursor, oldest first,
            # so that a backlog larger than one read is read over the next ones.
            order="created_at",
            descending=after is None,
            limit=ALERT_READ_LIMIT,
            after={"created_at": after} if after is not None else None,
        )
        if self.alerts is not alerts or result.error is not None:
            return False  # signed out meanwhile, or a failed read: the next one reads from the cursor
        alerts.arrived(alerts.feed.observe(arrivals(result.data)), round(self.wall() * 1000))
        return True

    def choose_alert(self, trader_id: str, channel: str, on: bool) -> None:
        """Switch one alert channel of a trader on this browser (called within the click)."""
        alerts = self.alerts
        try:
            chosen = Channel(channel)
        except ValueError:
            return
        if alerts is not None:
            alerts.choose(trader_id, chosen, on, self._draw_traders)

    async def _trade_book(self) -> TradeBook | None:
        """The user's open trades and which open signals have a trade (None: a read failed)."""
        open_rows, traded_rows = await asyncio.gather(
            self.backend.select(
                "trades",
                TRADE_COLUMNS,
                order="entry_time",
                limit=DEFAULT_MAX_TRACKED,
                match={"status": "open"},
            ),
            self.backend.select(
                "signals", TRADED_SIGNALS, limit=DEFAULT_MAX_TRACKED, among={"status": OPEN_STATUSES}
            ),
        )
        for result in (open_rows, traded_rows):
            if result.error is not None or not isinstance(result.data, list):
                return None
        return trade_book(open_rows.data, traded_rows.data)

    async def _open_signals(self) -> list[Signal] | None:
        """The user's ``new``/``active`` signals, oldest first (None: the read failed)."""
        result = await self.backend.select(
            "signals",
            SIGNAL_COLUMNS,
            order="candle_open_time",
            descending=True,
            limit=DEFAULT_MAX_TRACKED,
            among={"status": OPEN_STATUSES},
        )
        if result.error is not None or not isinstance(result.data, list):
            return None
        return open_signals(result.data)

    # -- the guard ------------------------------------------------------------------------------

    def on_effects(self, effects: Effects) -> None:
        """Show what the guard decided; pass it on to the listeners."""
        self.view.show_guard(effects)
        if effects.toast:
            self.view.toast(effects.toast)
        if effects.may_generate != self._editable or effects.mode is not self._noted:
            self._editable = effects.may_generate
            self._noted = effects.mode
            self._draw_traders()
            if self.workbench is not None:
                self.workbench.set_editable(self._editable, self._traders_note())
        for listener in self.effect_listeners:
            listener(effects)
        self._check_ready()

    def _check_ready(self) -> None:
        driver = self.driver
        if self._ready or not self._drawn or driver is None or driver.effects.mode is Mode.UNKNOWN:
            return
        self._ready = True
        self.view.set_ready(True)
        # Only now the extras: market data, the chart and the summary must not delay the guard and
        # the lists (and the summary needs the schema check's answer, which readiness implies).
        if self.generation is not None:
            self.generation.go()
        self.refresh_chart()
        self.refresh_summary()
        self.refresh_trades()
        self.spawn(self._load_symbols())
        if self.webhooks is not None:
            self.webhooks.refresh()
            self.timers.every(WEBHOOK_STATE_TIMER, WEBHOOK_STATE_SECONDS, self.webhooks.refresh)
        if self.machine is not None:
            self.machine.refresh()
            self.timers.every(MACHINE_TIMER, MACHINE_SECONDS, self.machine.refresh)
        self.timers.every(TRADES_TIMER, TRADES_SECONDS, self.refresh_trades)
        self.spawn(self._read_problems())
        self.timers.every(PROBLEMS_TIMER, PROBLEMS_SECONDS, lambda: self.spawn(self._read_problems()))
        self.timers.every(CHART_TIMER, CHART_SECONDS, self.refresh_chart)
        self.timers.every(SUMMARY_TIMER, SUMMARY_SECONDS, self.refresh_summary)

    # -- lists ----------------------------------------------------------------------------------

    def _traders_note(self) -> str:
        if self._editable:
            return "This tab generates signals: traders can be switched on and off here."
        mode = self.driver.effects.mode if self.driver else Mode.UNKNOWN
        return READ_ONLY_NOTES.get(mode, "Read-only: it is not yet known who generates.")

    def _draw_traders(self) -> None:
        # This tab's feed knows first; otherwise the database says what the executor (maybe the
        # cloud) sees.
        problems = {**self._stored_problems, **self._local_problems}
        alerts = self.alerts
        items = [
            trader_item(
                r,
                problems.get(r.id.lower(), ""),
                alerts.channels(r.id) if alerts is not None else frozenset(),
            )
            for r in self.traders
        ]
        self.view.show_traders(items, editable=self._editable, note=self._traders_note())
        self.view.show_alerts_note(alerts.note() if alerts is not None else "")

    async def reload_traders(self) -> None:
        """Read the user's traders and draw them (the engine hears of them only if they changed)."""
        user = self.user
        result = await self.backend.select("traders", TRADER_COLUMNS, order="name")
        if self.user is not user or user is None:
            return  # signed out meanwhile
        if result.error is not None:
            if not self._traders_failed:
                self.view.toast(f"Could not load the traders: {result.error}")
            self._traders_failed = True
        else:
            self._traders_failed = False
            records = trader_records(result.data)
            if records == self.traders and self._drawn:
                return
            self.traders = records
            if self.generation is not None:
                self.generation.set_traders(self.traders)
            streams = chart_streams(self.traders)
            if self._chart not in streams:
                self._chart = streams[0] if streams else None
                if self._drawn:
                    self.refresh_chart()
        self._draw_traders()

    def refresh_history(self) -> None:
        """Re-read the signals table soon (coalesced: one read at a time, one more if asked meanwhile)."""
        if self.user is not None:
            self._history.request()
            self._alerting.request()

    async def reload_history(self) -> None:
        """Read the most recent signals (of the chosen source) and draw them with the pending ones."""
        await self._history.run()

    async def _history_step(self) -> bool:
        source = self._source
        components = self.driver.components if self.driver is not None else None
        gapless = components is not None and has_component(components, GAPLESS_HANDOFF)
        result = await self.backend.select(
            "signals",
            HISTORY_COLUMNS + (",caught_up" if gapless else ""),
            order="candle_open_time",
            descending=True,
            limit=HISTORY_LIMIT,
            match=None if source == "all" else {"source": source},
        )
        if self.user is None:
            return False
        if result.error is not None:
            # Keep what is shown (an outage must not empty the table); the count says why.
            if not self._drawn:
                self.view.toast(f"Could not load the signals: {result.error}")
        elif source == self._source:
            stored = history_items(result.data)
            changed = stored != self._stored
            self._stored = stored
            self._stored_rows = result.data
            if changed and self._ready:
                self._summary_after_change()
            if stored and not self._chart_chosen:
                self._chart_newest(stored[0])
        self._draw_history()
        return True

    def _summary_after_change(self) -> None:
        """Read the summary again a little later, once however many changes come meanwhile.

        Its counts would otherwise lag the signals table by up to the summary's 30 s period.
        """
        if self._summary_soon:
            return
        self._summary_soon = True

        def due() -> None:
            self._summary_soon = False
            self.refresh_summary()

        self.timers.set(SUMMARY_SOON_TIMER, SUMMARY_AFTER_CHANGE_SECONDS, due)

    def _draw_history(self) -> None:
        pending: list[HistoryItem] = []
        generation = self.generation
        names = self._names()
        if generation is not None and self._source in ("all", "local"):
            keys = generation.sync.pending_keys()
            payloads = generation.sync.pending_signals()
            pending = [pending_item(k, p, self.formats, names) for k, p in zip(keys, payloads, strict=True)]
        stored = history_items(self._stored_rows, self.formats, names)
        self.view.show_history(merge_history(stored, pending, HISTORY_LIMIT), zone=self.formats.zone_label)

    # -- chart and summary --------------------------------------------------------------------------

    def refresh_chart(self) -> None:
        """Redraw the chart soon (coalesced like the signals table)."""
        if self.user is not None:
            self._charting.request()

    async def reload_chart(self) -> None:
        """Read the selected stream's candles and signals; draw them with this tab's pending ones."""
        await self._charting.run()

    async def _chart_step(self) -> bool:
        data = await self._chart_data()
        if self.user is None:
            return False
        self.view.show_chart(data)
        return True

    def _previewed(self, preview: Preview | None) -> None:
        """The editor previews a draft: chart its first stream with the preview's markers."""
        stream = (
            (preview.symbols[0].symbol, preview.symbols[0].interval) if preview and preview.symbols else None
        )
        markers = preview_markers(preview) if preview is not None else []
        if (stream, markers) == (self._preview_stream, self._preview_markers):
            return
        self._preview_stream, self._preview_markers = stream, markers
        if stream is not None:
            self._chart = stream
        elif self._chart not in chart_streams(self.traders):
            streams = chart_streams(self.traders)
            self._chart = streams[0] if streams else None
        self.refresh_chart()

    async def _preview_history(self, symbol: str, interval: str) -> list[Candle]:
        """The closed candles a preview runs on (the newest :data:`PREVIEW_CANDLES`)."""
        if self.market is None:
            raise MarketUnavailable("no market data URL is configured")
        return await fetch_history(self.market, symbol, interval, PREVIEW_CANDLES, round(self.wall() * 1000))

    async def _chart_data(self) -> ChartData:
        streams = chart_streams(self.traders)
        if self._preview_stream is not None and self._preview_stream not in streams:
            streams.append(self._preview_stream)
        selected = self._chart
        if selected is None:
            return ChartData(streams, None, problem="No trader watches a symbol yet.")
        symbol, interval = selected
        if self.market is None:
            return ChartData(streams, selected, problem="No market data URL is configured.")
        components = self.driver.components if self.driver is not None else None
        gapless = components is not None and has_component(components, GAPLESS_HANDOFF)
        rows, signals = await asyncio.gather(
            self._klines(symbol, interval),
            self.backend.select(
                "signals",
                CHART_COLUMNS + (",caught_up" if gapless else ""),
                order="candle_open_time",
                descending=True,
                limit=CHART_MARKERS,
                match={"symbol": symbol, "interval": interval},
            ),
        )
        pending: list[tuple[str, Mapping[str, object]]] = []
        if self.generation is not None:
            sync = self.generation.sync
            pending = list(zip(sync.pending_keys(), sync.pending_signals(), strict=True))
        markers = chart_markers(signals.data if signals.error is None else [], pending, symbol, interval)
        if selected == self._preview_stream:
            markers = sorted([*markers, *self._preview_markers], key=lambda m: (m.open_ms, m.source, m.key))
        if isinstance(rows, str):
            return ChartData(streams, selected, markers=markers, problem=rows)
        try:
            candles = chart_candles(rows, symbol, interval, round(self.wall() * 1000))
        except MarketDataError as exc:
            return ChartData(streams, selected, markers=markers, problem=f"Market data unreadable: {exc}")
        return ChartData(streams, selected, candles, markers)

    async def _klines(self, symbol: str, interval: str) -> object:
        """The REST answer, or a sentence saying why there is none."""
        assert self.market is not None
        try:
            return await self.market.klines(symbol, interval, limit=CHART_CANDLES)
        except MarketUnavailable as exc:
            return f"Market data unavailable: {exc}"

    def refresh_summary(self) -> None:
        """Re-read the "by source" summary (in the background)."""
        if self.user is not None:
            self.spawn(self.reload_summary())

    async def reload_summary(self) -> None:
        """Read ``signal_summary`` and draw it (only from a database that has it)."""
        components = self.driver.components if self.driver is not None else None
        if components is None:
            # The schema is not known yet (the tab became ready on another answer): ask again soon.
            self.timers.set(SUMMARY_RETRY_TIMER, 2.0, self.refresh_summary)
            return
        if not has_component(components, SUMMARY_COMPONENT):
            # Not called at all: a missing function answers 404, which the browser logs as an error.
            self.view.show_summary(
                [], f"This summary needs supabase/migrations/{SUMMARY_COMPONENT.migration}."
            )
            return
        result = await self.backend.rpc("signal_summary", {"p_days": SUMMARY_DAYS})
        if self.user is None:
            return
        if result.error is None:
            lines = summary_lines(result.data)
            self.view.show_summary(lines, f"Last {SUMMARY_DAYS} days, by the database clock.")
        elif result.error.code in ("PGRST202", "42883"):
            # The function is not there: an older database. Say which migration brings it.
            self.view.show_summary(
                [], f"This summary needs supabase/migrations/{SUMMARY_COMPONENT.migration}."
            )
        else:
            self.view.show_summary(None, f"Could not load the summary: {result.error}")

    # -- paper trades -----------------------------------------------------------------------------

    def refresh_trades(self) -> None:
        """Re-read the positions panel soon (coalesced like the signals table)."""
        if self.user is not None and self._ready:
            self._trading.request()

    async def _trades_step(self) -> bool:
        components = self.driver.components if self.driver is not None else None
        if components is None or not has_component(components, TRADES_COMPONENT):
            # Not called at all on a database without the table: a 404 is logged as a console error.
            if components is not None:
                self.view.show_trades([], closable=False, note=TRADES_NEEDS)
            return True
        trades, profit = await asyncio.gather(
            self.backend.select(
                "trades", TRADE_VIEW_COLUMNS, order="created_at", descending=True, limit=TRADES_SHOWN
            ),
            self.backend.rpc("trade_summary", {"p_days": SUMMARY_DAYS}),
        )
        if self.user is None:
            return False
        generation = self.generation
        closable = generation is not None and generation.manager.may_generate
        last = generation.manager.last_price if generation is not None else (lambda _s, _i: None)
        if trades.error is not None:
            # Keep the positions last read (an outage must not empty the panel), without Close buttons:
            # what they would close is not known to be current.
            note = f"Could not load the trades: {trades.error}"
            self.view.show_trades(
                trade_items(self._trade_rows, last, self.formats), closable=False, note=note
            )
        else:
            self._trade_rows = trades.data
            note = (
                "This tab manages the open trades: their exit rules run here."
                if closable
                else TRADES_READ_ONLY_NOTES.get(
                    self.driver.effects.mode if self.driver else Mode.UNKNOWN,
                    "Read-only: open trades are managed by whoever generates signals.",
                )
            )
            self.view.show_trades(trade_items(trades.data, last, self.formats), closable=closable, note=note)
        if profit.error is None:
            self.view.show_profit(profit_lines(profit.data))
        return True

    def close_trade(self, key: str) -> None:
        """The user closes an open trade by hand (only this tab's executor can)."""
        generation = self.generation
        if generation is None or not generation.close_trade(key):
            self.view.toast("This trade cannot be closed from this tab now: it is not managed here.")
        self.refresh_trades()

    def select_chart(self, value: str) -> None:
        """Chart another stream (``SYMBOL|interval``): the selector, a signal's row or a trader's name.

        Chosen by the user: the chart no longer follows the newest signal.
        """
        symbol, _, interval = value.partition("|")
        known = [*chart_streams(self.traders), self._preview_stream]
        if (symbol, interval) in known:
            self._chart_chosen = True
            if (symbol, interval) != self._chart:
                self._chart = (symbol, interval)
                self.refresh_chart()

    def _chart_newest(self, newest: HistoryItem) -> None:
        """Until the user picks a stream, the chart shows the stream of the newest signal."""
        stream = (newest.symbol, newest.interval)
        if stream != self._chart and stream in chart_streams(self.traders) and self._preview_stream is None:
            self._chart = stream
            if self._drawn:
                self.refresh_chart()

    # -- intents ----------------------------------------------------------------------------------

    def sign_in(self, email: str, password: str) -> None:
        """The sign-in form was submitted."""
        if self.user is None:
            self.accounts.sign_in(email, password)

    def account_form(self, form: str) -> None:
        """A link between the signed-out forms was followed."""
        self.accounts.choose(form)

    def sign_up(self, email: str, password: str, again: str) -> None:
        """The sign-up form was submitted."""
        if self.user is None:
            self.accounts.sign_up(email, password, again)

    def request_reset(self, email: str) -> None:
        """The password-reset form was submitted."""
        if self.user is None:
            self.accounts.request_reset(email)

    def set_password(self, password: str, again: str) -> None:
        """The new-password form (after a recovery link) was submitted."""
        self.accounts.set_password(password, again)

    def cancel_recovery(self) -> None:
        """The new-password form was left: sign out."""
        self.accounts.cancel_recovery()

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
        self.accounts.signed_out()

    async def _leave(self) -> None:
        driver, self.driver = self.driver, None
        generation, self.generation = self.generation, None
        if generation is not None:
            generation.stop()
            self.effect_listeners.remove(generation.on_effects)
        webhooks, self.webhooks = self.webhooks, None
        if webhooks is not None:
            webhooks.stop()
            self.effect_listeners.remove(webhooks.on_effects)
        machine, self.machine = self.machine, None
        if machine is not None:
            machine.stop()
        workbench, self.workbench = self.workbench, None
        if workbench is not None:
            self.view.show_editor(None)
        for timer in (
            HISTORY_TIMER,
            TRADERS_TIMER,
            PROBLEMS_TIMER,
            CHART_TIMER,
            TRADES_TIMER,
            SUMMARY_TIMER,
            SUMMARY_RETRY_TIMER,
            SUMMARY_SOON_TIMER,
            WEBHOOK_STATE_TIMER,
            MACHINE_TIMER,
        ):
            self.timers.clear(timer)
        self._summary_soon = False
        if self.alerts is not None and self.attention is not None:
            self.attention.set_title_count(0)
        self.alerts = None
        self._preview_stream, self._preview_markers = None, []
        self._trade_rows = []
        self._stored = []
        self._stored_rows = []
        self._chart = None
        self._chart_chosen = False
        self.user = None
        self.traders = []
        self._stored_problems = {}
        self._local_problems = {}
        self._editable = self._drawn = self._ready = False
        self._noted = None
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

    def editor_field(self, path: str, value: str) -> None:
        """A field of the trader editor changed."""
        if self.workbench is not None:
            self.workbench.field(path, value)

    def editor_action(self, name: str, arg: str) -> None:
        """A button of the trader editor (or the list's New, Edit, Duplicate)."""
        if self.workbench is not None:
            self.workbench.action(name, arg)

    def take_over(self) -> None:
        """The user confirmed taking over from the cloud machine in error."""
        if self.driver is not None:
            self.driver.take_over()

    def filter_source(self, source: str) -> None:
        """The source filter changed: show only that source's signals (or all)."""
        if source not in SOURCES or source == self._source:
            return
        self._source = source
        self._stored = []
        self._stored_rows = []
        self._draw_history()
        self.refresh_history()

    # -- page and session events ------------------------------------------------------------------

    def _auth_changed(self, event: str, user: User | None) -> None:
        # Signed out in another tab (supabase-js tells every tab): stop here too.
        if event == "SIGNED_OUT" and self.accounts.recovering is not None and self.user is None:
            self.accounts.signed_out()
        elif event == "SIGNED_OUT" and self.user is not None:
            self.spawn(self._sign_out(end_session=False))
        elif (
            event == "SIGNED_IN"
            and user is not None
            and self.user is None
            # A recovery link's session enters only once its new password is set.
            and self.accounts.recovering is None
        ):
            self.spawn(self._enter(user))

    def unload(self) -> None:
        """The page is going away (``pagehide``): release the lease with a request that outlives it."""
        if self.driver is not None:
            self.driver.unload()
        if self.generation is not None:
            self.generation.stop()
        if self._release_lock is not None:
            self._release_lock()
            self._release_lock = None
