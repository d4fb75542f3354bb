"""The handoff soak: the whole system under a seeded nemesis, then the history checker.

One run (:class:`Soak`):

1. a replay server of two symbols on the ``1s`` interval (a candle a second, looping; its series is
   generated from the seed), a local stack of its own (PostgreSQL + PostgREST + gateway), one Chromium
   with two contexts — *device A* with two tabs, *device B* with one — each signed in as a fresh user
   who has a cloud machine and three fast traders (one plain, one with a paper-trade plan, and one that
   matches every candle, whose signals show which executor evaluated each candle: the checker's
   exactly-once property); the database records every signal write it accepts
   (:func:`soakdb.record_signings`);
2. the nemesis applies ``events`` random events drawn from ``random.Random(seed)`` among those that make
   sense in the current state (a worker must run to be killed; one started by one of the last two
   events is signalled less often), with a short random gap after each.
   Every event is printed when applied (index, time since the start, what, the lease after it) and
   kept for the checker;
3. a settling phase: every fault is healed by then (each event heals its own fault before it ends);
   the cloud worker is started if none runs, and the run waits until it holds the lease, then for a
   quiet period in which no event is applied (trades reach their expiry, outboxes drain, the executor's
   periodic re-read of open trades comes round);
4. the rows are read and judged (:func:`checker.check`); the verdict prints every figure, every
   violation by kind, and the seed.

The nemesis' events:

``worker_start``         ``python -m signalguard cloud`` for the user's machine (not waited for)
``worker_sigterm``       the orderly stop; then the machine's timestamps are moved 30 s back, as the
                         end-to-end tests do, so that the browser's 30 s grace is not waited out
``worker_sigkill``       no goodbye: the machine stays ``running`` until its heartbeat is stale, the lease
                         until it expires
``worker_sigstop``       SIGSTOP, a pause of a few seconds, SIGCONT
``postgrest_kill``       SIGKILL of PostgREST (the gateway answers 503), a pause, a new PostgREST
``gateway_pause``        the gateway's event loop is blocked for a few seconds (every request hangs)
``tab_reload``           a tab is reloaded and waited for
``tab_close_reopen``     a tab is closed, and a new one opened in the same context (its session persists)
``page_hidden``          a tab's document reports ``hidden`` and its CPU is throttled 8x, for a few
                         seconds. Headless Chromium keeps every page visible and ignores lifecycle
                         freezing (checked with this Chromium), so the page is told it is hidden and
                         slowed down rather than really backgrounded.
``machine_error_takeover``  (no worker running) the machine is put in ``error`` as if three minutes ago (its
                         last signs of life moved a minute back); a tab offering the takeover is found
                         and the takeover confirmed there (none does while a browser holds the lease)

The executor's known down time is handed to the checker, which names it as the cause of the signals
lost meanwhile: the cloud from a SIGKILL (or a SIGTERM that came before the worker's handlers) until a
later worker logs that it generates, and while SIGSTOPped.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from checker import Downtime, History, NemesisEvent, Rules, Verdict, check
from e2ekit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FAST_SYMBOLS,
    FAST_TRADER,
    AppPage,
    Browsers,
    Watch,
    fresh_user,
    make_stack,
)
from playwright.sync_api import Browser, BrowserContext, sync_playwright
from psycopg.types.json import Jsonb
from soakdb import (
    dump_history,
    expected_signals,
    local_writes,
    max_holds,
    read_rows,
    read_traders,
    record_signings,
    served_candles,
    stream_observers,
)

from signalguard.devstack.assets import build
from signalguard.devstack.config import REPO_ROOT
from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer, running_replay
from signalguard.replay.synthetic import generate

#: The traded trader: fires on fewer candles than the plain one, holds each trade for 12 candles.
HOLD_CANDLES = 12
TRADED_TRADER = {
    **FAST_TRADER,
    "conditions": [{"indicator": "rsi", "period": 2, "op": "<", "value": 35}],
    "trade": {"side": "long", "notional": 100, "max_hold_candles": HOLD_CANDLES},
}

#: Matches every candle (a close is never 100 % below the previous one): one signal per candle it
#: evaluates, so its signals tell which candles were evaluated, and under which epoch (the checker's
#: exactly-once property; ``soakdb.always_matches``).
EVERY_CANDLE_TRADER = {
    **FAST_TRADER,
    "conditions": [{"indicator": "price_change_pct", "period": 1, "op": ">=", "value": -100}],
}

#: Relative weights of the nemesis' events (those that make no sense in the current state are skipped).
WEIGHTS = {
    "worker_start": 3.0,
    "worker_sigterm": 1.0,
    "worker_sigkill": 1.0,
    "worker_sigstop": 1.5,
    "postgrest_kill": 1.0,
    "gateway_pause": 1.0,
    # A new page loads Pyodide again (3 to 10 s here): rarer than the quick faults.
    "tab_reload": 0.8,
    "tab_close_reopen": 0.6,
    "page_hidden": 1.0,
    "machine_error_takeover": 0.5,
}
READY_MS = 45_000
#: Events after its start during which a worker is signalled less often (see Soak._applicable).
YOUNG_WORKER_EVENTS = 2


def now_us() -> int:
    """The wall clock in microseconds (the database runs on this host: the same clock)."""
    return time.time_ns() // 1000


@dataclass
class SoakOptions:
    """What one run does."""

    seed: int
    events: int = 50
    #: Pause after each event, seconds (drawn uniformly).
    gap: tuple[float, float] = (0.2, 1.0)
    #: How long a fault lasts (SIGSTOP, PostgREST down, gateway paused, page hidden), seconds.
    fault: tuple[float, float] = (0.5, 3.0)
    #: With this probability a SIGSTOP outlasts the lease (35 s): the fence, not the keeper, must stop
    #: the woken worker's stale writes.
    long_stop: float = 0.0
    #: Quiet seconds once one executor holds the lease, before the rows are read.
    quiet: float = 30.0
    rules: Rules = field(default_factory=Rules)
    #: Where the worker's log and the event log go (a temporary folder if None).
    log_dir: Path | None = None
    out: TextIO = sys.stdout


@dataclass
class Tab:
    """One tab of a device."""

    device: str
    slot: int
    app: AppPage

    @property
    def name(self) -> str:
        """E.g. ``A2``."""
        return f"{self.device}{self.slot}"


class Worker:
    """The cloud worker process for the soak's user (one at a time)."""

    def __init__(self, stack: LocalStack, market_url: str, email: str, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALGUARD_")}
        env.update(
            SIGNALGUARD_SUPABASE_URL=stack.url,
            SIGNALGUARD_SUPABASE_ANON_KEY=stack.config.anon_key(),
            SIGNALGUARD_MACHINE_TOKEN=stack.machine_token(email),
            SIGNALGUARD_MARKET_DATA_URL=market_url,
        )
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exit_codes: list[int] = []

    @property
    def alive(self) -> bool:
        """Whether a worker process runs (possibly SIGSTOPped)."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> int:
        """Start a worker; its pid."""
        assert not self.alive
        self._reap()
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== worker start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "signalguard", "cloud"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.starts += 1
        return self.process.pid

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the running worker."""
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """Wait for the worker to exit; its exit code (None if it did not)."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reap()
        return code

    def _reap(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            self.exit_codes.append(self.process.returncode)
            self.process = None

    def stop(self) -> None:
        """SIGCONT and SIGTERM whatever runs, then SIGKILL if it does not exit."""
        if not self.alive:
            self._reap()
            return
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        if self.wait(30) is None:
            self.process.kill()
            self.wait(10)


@dataclass
class RunResult:
    """A finished run: the verdict, the history it judged and where its logs are."""

    verdict: Verdict
    history: History
    log_dir: Path
    timings: dict[str, float]


class Soak:
    """One soak run; see the module documentation. ``run()`` does it all and returns the result."""

    def __init__(self, options: SoakOptions) -> None:
        self.o = options
        self.rng = random.Random(f"signalguard.soak:{options.seed}")
        self.log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="signalguard-soak-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.events: list[NemesisEvent] = []
        self.downtime: list[Downtime] = []
        self._cloud_down: tuple[int, str] | None = None
        self._killed: list[tuple[int, str]] = []
        self._worker_started_by = -10
        self.tabs: list[Tab] = []
        self.contexts: dict[str, tuple[BrowserContext, Watch]] = {}
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}
        self._event_log = open(self.log_dir / "events.log", "w")  # noqa: SIM115 (closed in run)

    # -- output --------------------------------------------------------------------------------------

    def say(self, line: str) -> None:
        """Print a line of the run's log (and keep it in ``events.log``)."""
        stamped = f"[{time.monotonic() - self.t0:7.1f} s] {line}"
        print(stamped, file=self.o.out, flush=True)
        self._event_log.write(stamped + "\n")
        self._event_log.flush()

    # -- the run -------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Set up, apply the events, settle, read and check; always tear everything down."""
        self.say(
            f"soak: seed {self.o.seed}, {self.o.events} events; replay with "
            f"`python -m bench.soak --events {self.o.events} --seed {self.o.seed}`; logs in {self.log_dir}"
        )
        try:
            with contextlib.ExitStack() as stack_of_things:
                return self._run(stack_of_things)
        finally:
            self._event_log.close()

    def _run(self, things: contextlib.ExitStack) -> RunResult:
        lap = time.monotonic()
        build(REPO_ROOT)
        series = generate(FAST_SYMBOLS, interval="1s", candles=600, seed=self.o.seed, warmup=100, spacing=60)
        self.replay: ReplayServer = things.enter_context(
            running_replay(series.series, history=300, loop=True)
        )
        self.stack = make_stack(self.replay.url)
        things.callback(self.stack.reset)
        with self.stack.connect() as conn:
            record_signings(conn)
        self.email, self.uid = fresh_user(self.stack, machine=True, definition=FAST_TRADER, name="Fast RSI")
        with self.stack.connect() as conn:
            for name, definition in (
                ("Fast RSI, traded", TRADED_TRADER),
                ("Every candle", EVERY_CANDLE_TRADER),
            ):
                conn.execute(
                    "insert into public.traders (user_id, name, definition) values (%s, %s, %s)",
                    (self.uid, name, Jsonb(definition)),
                )
        self.worker = Worker(self.stack, self.replay.url, self.email, self.log_dir / "worker.log")
        things.callback(self.worker.stop)
        playwright = things.enter_context(sync_playwright())
        if shutil.which(CHROMIUM) is None:
            raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium package")
        chromium: Browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        things.callback(chromium.close)
        self.browsers = Browsers(chromium, self.stack)
        things.callback(self._close_contexts)
        self._open_devices()
        self.timings["setup"] = time.monotonic() - lap
        self.say(f"set up in {self.timings['setup']:.1f} s; user {self.uid}; {self._lease_line()}")

        lap = time.monotonic()
        for i in range(1, self.o.events + 1):
            self._apply(i)
            time.sleep(self.rng.uniform(*self.o.gap))
        self.timings["events"] = time.monotonic() - lap

        lap = time.monotonic()
        self._settle()
        self.timings["settle"] = time.monotonic() - lap

        lap = time.monotonic()
        history = self._history()
        dump_history(history, self.log_dir / "history.json")
        verdict = check(history, self.o.rules)
        self.timings["check"] = time.monotonic() - lap
        for name, (_, watch) in self.contexts.items():
            (self.log_dir / f"console-{name}.log").write_text("\n".join(watch.errors) + "\n")
            page_errors = [e for e in watch.errors if e.startswith("page error")]
            verdict.figures[f"console_errors_{name}"] = len(watch.errors) - len(page_errors)
            verdict.figures[f"page_errors_{name}"] = len(page_errors)
        verdict.figures["worker_starts"] = self.worker.starts
        # 0 after SIGTERM, -9 after SIGKILL, -15 for a SIGTERM before the handlers were installed;
        # anything else (1: the worker's own error exit) happened without the nemesis asking.
        verdict.figures["worker_unexpected_exits"] = sum(
            1 for code in self.worker.exit_codes if code not in (0, -9, -15)
        )
        for line in verdict.report().splitlines():
            self.say(line)
        self.say(
            "timings: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
            + f"; total {time.monotonic() - self.t0:.1f} s"
        )
        return RunResult(verdict, history, self.log_dir, dict(self.timings))

    # -- devices and tabs ----------------------------------------------------------------------------

    def _open_devices(self) -> None:
        for device in ("A", "B"):
            ctx, watch = self.browsers.context()
            # A run provokes outages on purpose; the browser logs their failed requests.
            watch.allow(r".")
            self.contexts[device] = (ctx, watch)
        a1 = self._new_tab("A", 1, sign_in=True)
        self.tabs.append(a1)
        self.tabs.append(self._new_tab("A", 2))
        self.tabs.append(self._new_tab("B", 1, sign_in=True))

    def _new_tab(self, device: str, slot: int, *, sign_in: bool = False) -> Tab:
        ctx, watch = self.contexts[device]
        app = self.browsers.tab(ctx, watch)
        app.page.set_default_timeout(READY_MS)
        app.page.on("dialog", lambda d: d.accept())
        app.open()
        if sign_in:
            form = app.page.get_by_test_id("sign-in")
            form.wait_for(state="visible", timeout=READY_MS)
            app.sign_in(self.email)
        else:
            app.wait_ready()
        return Tab(device, slot, app)

    def _close_contexts(self) -> None:
        for ctx, _ in self.contexts.values():
            with contextlib.suppress(Exception):
                ctx.close()

    # -- the nemesis ---------------------------------------------------------------------------------

    def _applicable(self, index: int) -> dict[str, float]:
        running = self.worker.alive
        # A worker needs a few seconds to start and take the lease over; one that is signalled sooner
        # never executes. That happens too, but less often, so that most runs hand over many times.
        # (Counted in events, not seconds, so that a seed always draws the same events.)
        young = running and index - self._worker_started_by <= YOUNG_WORKER_EVENTS
        out = {}
        for kind, weight in WEIGHTS.items():
            if kind == "worker_start" and running:
                continue
            if kind in ("worker_sigterm", "worker_sigkill", "worker_sigstop"):
                if not running:
                    continue
                if young:
                    weight *= 0.25
            if kind == "machine_error_takeover" and running:
                continue  # a running worker's next heartbeat would say 'running' again
            out[kind] = weight
        return out

    def _apply(self, index: int) -> None:
        choices = self._applicable(index)
        kind = self.rng.choices(list(choices), weights=list(choices.values()))[0]
        start = now_us()
        if kind == "worker_start":
            self._worker_started_by = index
        detail = getattr(self, f"_do_{kind}")()
        end = now_us()
        self.events.append(NemesisEvent(index, kind, start, end, detail))
        self.say(f"#{index:03d} {kind}: {detail} ({(end - start) / 1e6:.1f} s); {self._lease_line()}")

    def _fault_seconds(self) -> float:
        return round(self.rng.uniform(*self.o.fault), 1)

    def _cloud_down_from(self, cause: str) -> None:
        if self._cloud_down is None:
            self._cloud_down = (now_us(), cause)

    def _cloud_up(self) -> None:
        if self._cloud_down is not None:
            start, cause = self._cloud_down
            self.downtime.append(Downtime("cloud", start, now_us(), cause))
            self._cloud_down = None

    def _cloud_started(self) -> None:
        """A worker was started: a kill's down time ends when it generates (see :meth:`_downtime`)."""
        if self._cloud_down is not None:
            start, cause = self._cloud_down
            self._killed.append((start, cause))
            self._cloud_down = None

    def _downtime(self) -> list[Downtime]:
        """The down time: SIGSTOPs as applied; each kill until a later worker logged that it generates.

        A new process takes a few seconds to start Python, connect and renew the lease (the lease of the
        machine, so the dead worker's epoch goes on): the candles closing meanwhile have no generator.
        """
        generating = worker_generating_times(self.worker.log_path)
        out = list(self.downtime)
        for start, cause in self._killed:
            end = next((t for t in generating if t > start), now_us())
            out.append(Downtime("cloud", start, end, cause))
        if self._cloud_down is not None:
            out.append(Downtime("cloud", self._cloud_down[0], now_us(), self._cloud_down[1]))
        merged: list[Downtime] = []
        for d in sorted(out, key=lambda d: d.start):
            if merged and d.start <= merged[-1].end:  # a kill while already down: one interval
                last = merged[-1]
                merged[-1] = Downtime(last.holder_kind, last.start, max(last.end, d.end), last.cause)
            else:
                merged.append(d)
        return merged

    def _do_worker_start(self) -> str:
        pid = self.worker.start()
        self._cloud_started()
        return f"pid {pid}"

    def _do_worker_sigterm(self) -> str:
        assert self.worker.process is not None
        pid = self.worker.process.pid
        self.worker.send(signal.SIGTERM)
        self._cloud_down_from("stopping")
        code = self.worker.wait(30)
        if code is None:
            self.worker.send(signal.SIGKILL)
            code = self.worker.wait(10)
            self._cloud_down = (self._cloud_down or (now_us(), ""))[0], "killed"
            return f"pid {pid} did not stop within 30 s: SIGKILL (exit {code})"
        if code != 0:
            # Killed by the signal before its handlers were installed (a worker still starting Python):
            # no goodbye, as after a SIGKILL.
            self._cloud_down = (self._cloud_down or (now_us(), ""))[0], "killed"
            return f"pid {pid} exited {code} (no orderly stop)"
        # The machine says 'stopped' (or 'error'); the lease is released. Skip the browser's grace.
        self._backdate_machine(30)
        self._cloud_up()
        return f"pid {pid} exited {code}; machine timestamps moved 30 s back"

    def _do_worker_sigkill(self) -> str:
        assert self.worker.process is not None
        pid = self.worker.process.pid
        self.worker.send(signal.SIGKILL)
        self._cloud_down_from("killed")
        self.worker.wait(10)
        return f"pid {pid}"

    def _do_worker_sigstop(self) -> str:
        assert self.worker.process is not None
        pid = self.worker.process.pid
        pause = 35.0 if self.rng.random() < self.o.long_stop else self._fault_seconds()
        self.worker.send(signal.SIGSTOP)
        self._cloud_down_from("stopped")
        time.sleep(pause)
        self.worker.send(signal.SIGCONT)
        self._cloud_up()
        return f"pid {pid} stopped for {pause} s"

    def _do_postgrest_kill(self) -> str:
        pause = self._fault_seconds()
        process = self.stack.postgrest.process
        assert process is not None
        process.kill()
        process.wait(10)
        time.sleep(pause)
        lap = time.monotonic()
        self.stack.postgrest.start()
        return f"down {pause} s, restarted in {time.monotonic() - lap:.1f} s"

    def _do_gateway_pause(self) -> str:
        pause = self._fault_seconds()
        # The gateway runs on its own event loop in a thread of this process (LocalStack); a blocking
        # call on that loop freezes it as SIGSTOP would a separate process: connections are accepted
        # by the kernel, nothing is answered until it resumes.
        loop = self.stack._loop
        assert loop is not None
        loop.call_soon_threadsafe(time.sleep, pause)
        time.sleep(pause)
        return f"paused {pause} s"

    def _pick_tab(self) -> Tab:
        return self.rng.choice(self.tabs)

    def _do_tab_reload(self) -> str:
        tab = self._pick_tab()
        lap = time.monotonic()
        tab.app.page.reload()
        tab.app.wait_ready()
        return f"{tab.name} ready again in {time.monotonic() - lap:.1f} s"

    def _do_tab_close_reopen(self) -> str:
        tab = self._pick_tab()
        pause = round(self.rng.uniform(0.2, 2.0), 1)
        tab.app.page.close()
        time.sleep(pause)
        lap = time.monotonic()
        new = self._new_tab(tab.device, tab.slot)
        self.tabs[self.tabs.index(tab)] = new
        return f"{tab.name} closed for {pause} s, reopened and ready in {time.monotonic() - lap:.1f} s"

    def _do_page_hidden(self) -> str:
        tab = self._pick_tab()
        pause = self._fault_seconds()
        page = tab.app.page
        cdp = page.context.new_cdp_session(page)
        page.evaluate(_SET_VISIBILITY, True)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 8})
        try:
            time.sleep(pause)
        finally:
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
            page.evaluate(_SET_VISIBILITY, False)
            cdp.detach()
        return f"{tab.name} hidden (CPU 8x slower) for {pause} s"

    def _do_machine_error_takeover(self) -> str:
        notes = []
        with self.stack.connect() as conn:
            conn.execute(
                "update public.cloud_machines set status = 'error', error_message = 'soak: out of memory' "
                "where user_id = %s",
                (self.uid,),
            )
            conn.execute(
                "update public.cloud_machines set status_changed_at = now() - interval '3 minutes', "
                "last_health_check = last_health_check - interval '60 seconds', "
                "stopped_at = stopped_at - interval '60 seconds' where user_id = %s",
                (self.uid,),
            )
        kind, _, live = self._lease()
        if kind == "local" and live:
            # The holding tab renews its lease whatever the machine says; the other tabs stand by for
            # it and offer nothing to take over.
            notes.append("a browser holds the lease: no takeover to confirm")
            return "; ".join(notes)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for tab in self.tabs:
                button = tab.app.page.get_by_test_id("takeover-button")
                if button.is_visible():
                    button.click()
                    tab.app.page.get_by_test_id("takeover-confirm").click()
                    granted = self._wait_mode(tab, "browser", 10)
                    notes.append(
                        f"takeover confirmed in {tab.name}: " + ("granted" if granted else "refused")
                    )
                    return "; ".join(notes)
            time.sleep(0.25)
        notes.append("no tab offered the takeover within 10 s")
        return "; ".join(notes)

    def _wait_mode(self, tab: Tab, mode: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if tab.app.badge.get_attribute("data-mode") == mode:
                return True
            time.sleep(0.25)
        return False

    def _backdate_machine(self, seconds: int) -> None:
        with self.stack.connect() as conn:
            conn.execute(
                "update public.cloud_machines set stopped_at = stopped_at - make_interval(secs => %s), "
                "last_health_check = last_health_check - make_interval(secs => %s) where user_id = %s",
                (seconds, seconds, self.uid),
            )

    # -- settling ------------------------------------------------------------------------------------

    def _lease(self) -> tuple[str | None, int, bool]:
        with self.stack.connect() as conn:
            row = conn.execute(
                "select holder_kind, epoch, coalesce(expires_at > clock_timestamp(), false) "
                "from public.execution_leases where user_id = %s",
                (self.uid,),
            ).fetchone()
        return (row[0], row[1], row[2]) if row else (None, 0, False)

    def _lease_line(self) -> str:
        kind, epoch, live = self._lease()
        return f"lease: {kind or 'nobody'} epoch {epoch}" + ("" if live else " (not live)")

    def _settle(self) -> None:
        self.say("settling: every fault is healed; one executor (the cloud worker), then a quiet period")
        if not self.worker.alive:
            self.say(f"  worker started: pid {self.worker.start()}")
            self._cloud_started()
        deadline = time.monotonic() + 75
        while True:
            kind, epoch, live = self._lease()
            if kind == "cloud" and live and self.worker.alive:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"no cloud executor 75 s into the settling phase ({self._lease_line()})")
            time.sleep(0.5)
        self.say(f"  the cloud holds the lease (epoch {epoch}); quiet for {self.o.quiet:.0f} s")
        time.sleep(self.o.quiet)
        pending = self._wait(lambda: all(_pending(t.app) == 0 for t in self.tabs), 20)
        self.say("  every tab's outbox is empty" if pending else "  a tab's outbox did not empty in 20 s")

    @staticmethod
    def _wait(probe: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not probe():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    # -- the history ---------------------------------------------------------------------------------

    def _history(self) -> History:
        # The cloud worker writes every 10 s: candles closed in the last flush period (and a margin)
        # may still be on their way.
        history = read_history(
            self.stack,
            self.replay,
            self.uid,
            horizon_lag=self.o.rules.flush_period + 2_000_000,
            events=self.events,
            downtime=self._downtime(),
            seed=self.o.seed,
        )
        history.local_writes, history.device_holders = local_writes(
            {name: list(watch.rpcs) for name, (_, watch) in self.contexts.items()}
        )
        return history


def read_history(
    stack: LocalStack,
    replay: ReplayServer,
    uid: str,
    *,
    horizon: int | None = None,
    horizon_lag: int = 12_000_000,
    events: Sequence[NemesisEvent] = (),
    downtime: Sequence[Downtime] = (),
    seed: int | None = None,
) -> History:
    """The user's history as the checker takes it: the rows now, and the reference over the candles
    ``replay`` served until now. Candles closing after ``horizon`` (default: ``horizon_lag`` before the
    read) are not judged."""
    with stack.connect() as conn:
        rows = read_rows(conn, uid)
        traders = read_traders(conn, uid)
    candles = served_candles(replay, rows.read_at / 1000)
    return History(
        user_id=uid,
        epochs=rows.epochs,
        signals=rows.signals,
        trades=rows.trades,
        expected=expected_signals(uid, traders, candles),
        candles=candles,
        horizon=rows.read_at - horizon_lag if horizon is None else horizon,
        read_at=rows.read_at,
        max_hold=max_holds(traders),
        events=list(events),
        downtime=list(downtime),
        lease_epoch=rows.lease_epoch,
        seed=seed,
        streams=stream_observers(traders),
        signings=rows.signings,
        schema_components=rows.schema_components,
    )


_SET_VISIBILITY = """hidden => {
  for (const [name, value] of [['hidden', hidden], ['visibilityState', hidden ? 'hidden' : 'visible']]) {
    Object.defineProperty(document, name, {configurable: true, get: () => value});
  }
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def _pending(app: AppPage) -> int:
    try:
        return int(app.page.get_by_test_id("pending-count").get_attribute("data-count", timeout=5000) or "0")
    except Exception:
        return -1


def worker_generating_times(log_path: Path) -> list[int]:
    """When each worker logged that it generates (under a granted or renewed epoch), in µs."""
    out: list[int] = []
    if not log_path.exists():
        return out
    for line in log_path.read_text(errors="replace").splitlines():
        if "signalguard.cloud: generating under epoch" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")  # local time, as logged
            out.append(int(stamp.timestamp() * 1_000_000))
    return sorted(out)


def run_soak(options: SoakOptions) -> RunResult:
    """Run one soak with ``options``."""
    return Soak(options).run()
