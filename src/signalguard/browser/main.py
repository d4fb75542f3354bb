"""The page's entry point, and the only module that imports the platform (``js``, ``pyodide``).

``index.html`` runs ``start()``. It reads ``/config.json`` (see :mod:`~signalguard.browser.config`),
creates the supabase-js client through ``web/facade.js``, builds the adapters of
:mod:`~signalguard.browser.jsbridge` and :mod:`~signalguard.browser.dom` from the page's globals, and
starts :class:`~signalguard.browser.app.App`. The platform's modules have no types: ``js`` and
``create_proxy`` get theirs here, from :mod:`~signalguard.browser.jstypes`, where they are imported.
"""

from __future__ import annotations

import asyncio
import re
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Final

import js as _js  # type: ignore[import-not-found]  # Pyodide's, no stubs: typed as Globals below
from pyodide.ffi import create_proxy as _create_proxy  # type: ignore[import-not-found]  # the same

from signalguard.browser.app import App
from signalguard.browser.config import CONFIG_PATH, AppConfig, ConfigError
from signalguard.browser.dom import DomView
from signalguard.browser.jsbridge import (
    IndexedDbStore,
    SupabaseBackend,
    WebAttention,
    WebLocale,
    WebMarketData,
    WebPoster,
    WebTabLocks,
    WorkerTimers,
)
from signalguard.browser.jstypes import (
    AlertsFacade,
    CreateProxy,
    Event,
    Facade,
    Globals,
    PageTransitionEvent,
    Response,
    Worker,
)
from signalguard.market.klines import SymbolDirectory

#: The page's global scope.
js: Final[Globals] = _js
create_proxy: Final[CreateProxy] = _create_proxy

#: The tab's holder id lives in sessionStorage: it survives a reload of the tab (so the tab renews
#: its own lease) and is not shared with other tabs.
HOLDER_KEY: Final = "signalguard.holder"
TIMER_WORKER: Final = "./web/timer-worker.js"
_HOLDER_RE: Final = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

_tasks: set[asyncio.Future[None]] = set()
_app: App | None = None


def start_task(coro: Coroutine[object, object, None]) -> asyncio.Future[None]:
    """Run ``coro`` on the page's event loop and return its task; report (never swallow) what it raises."""
    task = asyncio.ensure_future(coro)
    _tasks.add(task)

    def done(t: asyncio.Future[None]) -> None:
        _tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            exc = t.exception()
            js.console.error("signalguard: " + "".join(traceback.format_exception(exc)))

    task.add_done_callback(done)
    return task


def spawn(coro: Coroutine[object, object, None]) -> None:
    """Run ``coro`` on the page's event loop; report (never swallow) what it raises."""
    start_task(coro)


def wall() -> float:
    """Seconds since the epoch on the page's clock (candles close by it, as on the exchange)."""
    return float(js.Date.now()) / 1000.0


def clock() -> float:
    """Seconds on the page's monotonic clock."""
    return float(js.performance.now()) / 1000.0


def holder_id() -> str:
    """The tab's holder id, made on first use."""
    storage = js.sessionStorage
    current = storage.getItem(HOLDER_KEY)
    if isinstance(current, str) and _HOLDER_RE.match(current):
        return current
    # 122 random bits from the browser's CSPRNG (the secrets module is not imported: start-up cost).
    made = str(js.crypto.randomUUID()).replace("-", "")
    storage.setItem(HOLDER_KEY, made)
    return made


async def load_config() -> AppConfig:
    """Fetch and validate ``/config.json``."""
    try:
        early: Callable[[], Awaitable[Response]] | None = getattr(
            getattr(js, "signalguard", None), "configFetch", None
        )
        if early is not None:
            response = await early()  # requested by facade.js while the runtime loaded
        else:
            response = await js.fetch(CONFIG_PATH, js.JSON.parse('{"cache": "no-store"}'))
    except Exception as exc:
        raise ConfigError(f"{CONFIG_PATH} could not be fetched ({exc})") from None
    if not response.ok:
        raise ConfigError(
            f"{CONFIG_PATH} answered HTTP {response.status}: the server must provide the app's settings "
            "(see src/signalguard/browser/config.py)"
        )
    return AppConfig.from_json(str(await response.text()), origin=str(js.location.origin))


def _timer_worker() -> Worker | None:
    try:
        return js.Worker.new(TIMER_WORKER)
    except Exception as exc:
        js.console.warn(f"signalguard: no timer worker ({exc}); hidden tabs will poll late")
        return None


async def parsed() -> None:
    """Return once the page is parsed and its deferred scripts (supabase-js, the facade) have run.

    PyScript's module is async (it starts the interpreter without waiting for them), so in principle
    the interpreter could be up first.
    """
    if str(js.document.readyState) != "loading":
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def loaded(_event: Event) -> None:
        if not done.done():
            done.set_result(None)

    js.document.addEventListener("DOMContentLoaded", create_proxy(loaded), js.JSON.parse('{"once": true}'))
    await done


async def run() -> None:
    """Build the app from the page and start it."""
    global _app
    await parsed()
    view = DomView(js.document, js.window, create_proxy)
    try:
        config = await load_config()
    except ConfigError as exc:
        view.fatal(f"The app cannot start: {exc}")
        return
    facade: Facade | None = getattr(js, "signalguard", None)
    if facade is None:
        view.fatal("The app cannot start: web/facade.js is not loaded")
        return
    facade.init(config.supabase_url, config.supabase_anon_key)
    backend = SupabaseBackend(facade, js.JSON.parse, create_proxy)
    timers = WorkerTimers(_timer_worker(), js.window, js.JSON.parse, create_proxy)
    market = (
        WebMarketData(facade, config.market_data_url, create_proxy, on_note=view.toast)
        if config.market_data_url
        else None
    )
    directory = SymbolDirectory(market) if market is not None else None
    alerts_js: AlertsFacade | None = getattr(js, "signalguardAlerts", None)
    attention = WebAttention(alerts_js, create_proxy) if alerts_js is not None else None
    app = App(
        backend,
        view,
        timers,
        WebTabLocks(facade, create_proxy),
        clock,
        spawn,
        holder_id(),
        store=IndexedDbStore(facade),
        market=market,
        start_task=start_task,
        wall=wall,
        # The editor's symbol picker: the market data's own list, fetched on the first search.
        symbols=directory.names if directory is not None else None,
        attention=attention,
        prefs=attention,
        locale=WebLocale(js.Date, js.Intl),
        symbol_list=directory,
        poster=WebPoster(facade),
        # A webhook may not point at this app's own servers: the API, and the page's origin.
        stack_urls=(config.supabase_url, str(js.location.origin)),
        # The local stack prints the sign-up and reset mails' links instead of sending them.
        local_mail=config.stack == "local-dev",
    )
    _app = app

    def pagehide(_event: PageTransitionEvent) -> None:
        app.unload()

    def pageshow(event: PageTransitionEvent) -> None:
        # Back from the back/forward cache: the lease and the tab lock were given up; start afresh.
        if bool(event.persisted):
            js.location.reload()

    js.window.addEventListener("pagehide", create_proxy(pagehide))
    js.window.addEventListener("pageshow", create_proxy(pageshow))
    await app.start()


def start() -> None:
    """Start the app (called by ``index.html``)."""
    spawn(run())
