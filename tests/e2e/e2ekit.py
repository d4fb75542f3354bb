"""Helpers of the end-to-end tests: watched browser contexts, the app page, the database."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import psycopg
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Route,
)

from signalguard.devstack import demo_market
from signalguard.devstack.config import StackConfig
from signalguard.devstack.stack import DEMO_PASSWORD, LocalStack

CHROMIUM = "/usr/bin/chromium"
#: Chromium's own log of the run (``--log-file``): where a "Page crashed" leaves its reason (a renderer's
#: exit code or signal), which the test's error does not say. Rare, in clusters, not reproduced alone.
CHROMIUM_LOG = Path(__file__).resolve().parents[2] / "build" / "chromium.log"
CHROMIUM_LOG.parent.mkdir(parents=True, exist_ok=True)
#: Each test module's browser writes its own log here (``chromium_args``), so that a crash in one module
#: is not overwritten by the next module's launch.
CHROMIUM_LOGS = CHROMIUM_LOG.parent / "chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging",
    f"--log-file={CHROMIUM_LOG}",
]


def chromium_args(log: Path) -> list[str]:
    """:data:`CHROMIUM_ARGS` with Chromium's log written to ``log`` (its folder is made)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return [a if not a.startswith("--log-file=") else f"--log-file={log}" for a in CHROMIUM_ARGS]


#: Loading Pyodide and signing in takes a few seconds; nothing in these tests should take longer.
READY_TIMEOUT_MS = 30_000
#: A folder to save a screenshot of each mode the tests reach (``AppPage.snapshot``); unset, none is taken.
SCREENSHOTS_VARIABLE = "SIGNALGUARD_SCREENSHOTS"
LOCAL_HOST = "127.0.0.1"
_NOT_LOCAL = re.compile(r"^(?!(?:https?|wss?)://127\.0\.0\.1[:/])[a-z][a-z0-9+.-]*://.*", re.IGNORECASE)
_counter = itertools.count(1)

DEFINITION = {
    "version": 1,
    "symbols": ["BTCUSDT", "ETHUSDT"],
    "interval": "1m",
    "match": "all",
    "cooldown_candles": 5,
    "conditions": [{"indicator": "rsi", "period": 14, "op": "<", "value": 30}],
}


#: The fast market of the signal tests: a candle a second for these symbols (conftest's fast_replay).
FAST_SYMBOLS = ("BTCUSDT", "ETHUSDT")
#: Fires on about half of the closed candles of each symbol, so signals come within seconds.
FAST_TRADER = {
    "version": 1,
    "symbols": list(FAST_SYMBOLS),
    "interval": "1s",
    "match": "all",
    "cooldown_candles": 0,
    "conditions": [{"indicator": "rsi", "period": 2, "op": "<", "value": 50}],
}
#: What the demo users' traders watch (seed.sql): a replay of these on 1m keeps their pages' market
#: data live, so a test page never logs a refused connection.
DEMO_SYMBOLS = demo_market.DEMO_SYMBOLS


def make_stack(market_data_url: str, **start: Any) -> LocalStack:
    """A started stack in a throwaway folder the database's system user can reach."""
    config = StackConfig.for_tests(Path(tempfile.mkdtemp(prefix="signalguard-e2e-")))
    stack = LocalStack(dataclasses.replace(config, market_data_url=market_data_url))
    stack.start(**start)
    return stack


# -- watching the page ----------------------------------------------------------------------------


@dataclass
class Watch:
    """What the pages of one context asked for and complained about."""

    requests: list[str] = field(default_factory=list)
    #: (rpc name, JSON arguments) of every RPC, in order.
    rpcs: list[tuple[str, Any]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Console errors a test provokes on purpose (e.g. the browser logging a 503 during an outage).
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Do not count console errors matching ``pattern`` (a test's deliberate outage)."""
        self.allowed.append(re.compile(pattern))

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)
        path = urlsplit(request.url).path
        if path.startswith("/rest/v1/rpc/") and request.method == "POST":
            body = request.post_data
            self.rpcs.append((path.rsplit("/", 1)[1], json.loads(body) if body else None))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} @ {message.location.get('url')}")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"page error: {error}")

    def rpc_calls(self, name: str) -> list[Any]:
        """The arguments of every call of this RPC."""
        return [args for rpc, args in self.rpcs if rpc == name]

    def assert_clean(self) -> None:
        """Nothing left 127.0.0.1, and no console or page error."""
        foreign = [
            u
            for u in self.requests
            if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname != LOCAL_HOST
        ]
        assert not foreign and not self.blocked, f"requests off 127.0.0.1: {foreign + self.blocked}"
        errors = [e for e in self.errors if not any(p.search(e) for p in self.allowed)]
        assert not errors, "\n".join(errors)


class AppPage:
    """One tab of the app."""

    def __init__(self, page: Page, stack: LocalStack) -> None:
        self.page = page
        self.stack = stack
        self.badge = page.get_by_test_id("mode-badge")

    def open(self) -> AppPage:
        self.page.goto(f"{self.stack.url}/")
        return self

    def sign_in(self, email: str, password: str = DEMO_PASSWORD) -> AppPage:
        form = self.page.get_by_test_id("sign-in")
        form.wait_for(state="visible", timeout=READY_TIMEOUT_MS)
        self.page.get_by_test_id("sign-in-email").fill(email)
        self.page.get_by_test_id("sign-in-password").fill(password)
        self.page.get_by_test_id("sign-in-submit").click()
        return self.wait_ready()

    def wait_ready(self) -> AppPage:
        self.page.wait_for_selector("body[data-ready='1']", state="attached", timeout=READY_TIMEOUT_MS)
        return self

    def ready_ms(self) -> int:
        return int(self.page.locator("body").get_attribute("data-ready-ms") or -1)

    def holder_id(self) -> str:
        return str(self.page.evaluate("sessionStorage.getItem('signalguard.holder')"))

    def toggles(self) -> Any:
        return self.page.get_by_test_id("trader-toggle")

    def snapshot(self, name: str) -> None:
        """Save the whole page as ``<name>.png`` in ``$SIGNALGUARD_SCREENSHOTS``, if that is set: a look at
        each mode as the tests reach it, for whoever reviews the page. Without the variable, nothing."""
        folder = os.environ.get(SCREENSHOTS_VARIABLE)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


class Browsers:
    """Opens contexts (browser profiles) and tabs, each watched."""

    def __init__(self, chromium: Browser, stack: LocalStack) -> None:
        self.chromium = chromium
        self.stack = stack
        self.contexts: list[tuple[BrowserContext, Watch]] = []

    def context(self, **options: Any) -> tuple[BrowserContext, Watch]:
        """A new profile (``options`` as Playwright's ``new_context`` takes them), watched."""
        ctx = self.chromium.new_context(**options)
        watch = Watch()
        ctx.on("request", watch.on_request)

        def block(route: Route) -> None:
            watch.blocked.append(route.request.url)
            route.abort()

        ctx.route(_NOT_LOCAL, block)
        self.contexts.append((ctx, watch))
        return ctx, watch

    def tab(self, ctx: BrowserContext, watch: Watch) -> AppPage:
        page = ctx.new_page()
        page.on("console", watch.on_console)
        page.on("pageerror", watch.on_page_error)
        return AppPage(page, self.stack)

    def close(self) -> None:
        """Close every context, then check that none of them misbehaved (also while closing)."""
        for ctx, _ in self.contexts:
            ctx.close()
        for _, watch in self.contexts:
            watch.assert_clean()


# -- the database ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    holder_kind: str | None
    holder_id: str | None
    epoch: int
    live: bool


def lease_of(stack: LocalStack, user_id: str) -> Lease | None:
    with stack.connect() as conn:
        row = conn.execute(
            "select holder_kind, holder_id, epoch, coalesce(expires_at > clock_timestamp(), false) "
            "from public.execution_leases where user_id = %s",
            (user_id,),
        ).fetchone()
    return Lease(*row) if row else None


def fresh_user(
    stack: LocalStack,
    *,
    machine: bool = False,
    definition: dict[str, Any] | None = None,
    name: str | None = None,
) -> tuple[str, str]:
    """A new user (password: the demo password) with one trader (``DEFINITION`` unless given), and a
    stopped cloud machine if asked; (email, user id)."""
    n = next(_counter)
    uid = str(uuid.uuid4())
    email = f"e2e{n}-{uid[:8]}@signalguard.test"
    with stack.connect() as conn:
        conn.execute(
            "insert into auth.users (id, email, encrypted_password) "
            "values (%s, %s, extensions.crypt(%s, extensions.gen_salt('bf', 4)))",
            (uid, email, DEMO_PASSWORD),
        )
        conn.execute(
            "insert into public.traders (user_id, name, definition) values (%s, %s, %s)",
            (uid, name or f"Trader {n}", psycopg.types.json.Jsonb(definition or DEFINITION)),
        )
        if machine:
            conn.execute(
                "insert into public.cloud_machines (user_id, machine_id, region, status) "
                "values (%s, %s, 'ams', 'stopped')",
                (uid, f"vyx-{uid[:8]}"),
            )
    return email, uid


def fast_user(stack: LocalStack, *, machine: bool = False) -> tuple[str, str]:
    """A new user with only the fast 1s trader (and a stopped machine if asked); (email, user id)."""
    return fresh_user(stack, machine=machine, definition=FAST_TRADER, name="Fast RSI")


def signals_of(stack: LocalStack, uid: str) -> list[dict[str, Any]]:
    """Every stored signal of the user, oldest candle first (``candle_close`` for 1s candles)."""
    with stack.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "select signal_key, source, machine_id, epoch, status, candle_open_time, created_at, caught_up, "
            "candle_open_time + interval '1 second' as candle_close "
            "from public.signals where user_id = %s order by candle_open_time",
            (uid,),
        )
        return list(cur.fetchall())


# -- the simulated cloud machine, and time travel -------------------------------------------------

T = TypeVar("T")


def machine_rpc(stack: LocalStack, email: str, rpc: str, args: dict[str, Any] | None = None) -> Any:
    """Call an RPC with the machine token of ``email``'s cloud machine, as its worker does; the answer."""
    r = httpx.post(
        f"{stack.url}/rest/v1/rpc/{rpc}",
        json=args or {},
        headers={"apikey": stack.config.anon_key(), "Authorization": f"Bearer {stack.machine_token(email)}"},
        timeout=10,
    )
    assert r.status_code == 200, f"{rpc}: HTTP {r.status_code} {r.text}"
    return r.json()


def backdate_machine(stack: LocalStack, user_id: str, seconds: float, *columns: str) -> None:
    """Move the user's machine's timestamps (default: heartbeat and stop) ``seconds`` into the past.

    The database judges every window by its own clock, so a test moves the past instead of sleeping.
    The status trigger stamps ``status_changed_at`` on a status change only, so it is moved only when
    named here.
    """
    cols = columns or ("last_health_check", "stopped_at")
    sets = ", ".join(f"{c} = {c} - make_interval(secs => %(s)s)" for c in cols)
    with stack.connect() as conn:
        done = conn.execute(
            f"update public.cloud_machines set {sets} where user_id = %(u)s", {"s": seconds, "u": user_id}
        )
        assert done.rowcount == 1, f"user {user_id} has no cloud machine"


def machine_in_error(stack: LocalStack, user_id: str, message: str, *, minutes: int) -> None:
    """Put the user's machine in ``error`` with ``message``, as if ``minutes`` ago."""
    with stack.connect() as conn:
        conn.execute(
            "update public.cloud_machines set status = 'error', error_message = %s where user_id = %s",
            (message, user_id),
        )
        # The status trigger stamps status_changed_at on a status change only: move it back now.
        conn.execute(
            "update public.cloud_machines set status_changed_at = now() - make_interval(mins => %s) "
            "where user_id = %s",
            (minutes, user_id),
        )


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 30.0, every: float = 0.25) -> T:
    """Poll ``probe`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def cloud_worker(
    stack: LocalStack, market_url: str, email: str, *, key: str | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``python -m signalguard cloud`` for ``email``'s machine, its output in a log file; killed on exit if
    the test has not stopped it. With ``key``, the worker runs with that machine key alone (no token)."""
    log_path = Path(tempfile.mkdtemp(prefix="sg-worker-")) / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALGUARD_")}
    env.update(
        SIGNALGUARD_SUPABASE_URL=stack.url,
        SIGNALGUARD_SUPABASE_ANON_KEY=stack.config.anon_key(),
        SIGNALGUARD_MARKET_DATA_URL=market_url,
    )
    if key is None:
        env["SIGNALGUARD_MACHINE_TOKEN"] = stack.machine_token(email)
    else:
        env["SIGNALGUARD_MACHINE_KEY"] = key
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "signalguard", "cloud"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield worker, log_path
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def end_cloud_grace(stack: LocalStack, user_id: str) -> None:
    """Move the stopped machine's last signs of life 30 s into the past: the grace is over."""
    with stack.connect() as conn:
        conn.execute(
            "update public.cloud_machines set stopped_at = stopped_at - interval '30 seconds', "
            "last_health_check = last_health_check - interval '30 seconds' where user_id = %s",
            (user_id,),
        )
