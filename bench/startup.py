"""Start-up to ``body[data-ready="1"]``: the app vs a bare ``loadPyodide()`` page, first and repeat visit.

The figure is the app's time from navigation until ``document.body.dataset.ready == "1"`` (the guard's
mode is known and the traders and signals are drawn) divided by the time a bare page of the same
origin takes to ``loadPyodide()`` from the same vendored Pyodide (``web/vendor/pyodide``, the folder
PyScript hands Pyodide as ``indexURL``, so both fetch the same four files). Both times are read on the
page's own clock (``performance.now()``, whose origin is the navigation), in the same run: 5 runs of
each, interleaved (bare, app, bare, app, ...) after one discarded warm-up pair (it warms the file cache
and the gateway, not the browser), each in a fresh browser context, i.e. a fresh profile with nothing
in its HTTP or code cache. The medians and their ratio are printed; the goal is a ratio of at most
1.05. This is a measurement, not a test: it never fails on speed.

The stack is the end-to-end tests' (``tests/e2e``): PostgreSQL, PostgREST and the gateway on free
ports in a throwaway state folder, a replay server for market data (the demo traders' symbols on 1m,
so the page's feed connects as it would to the exchange), and Debian's Chromium driven by Playwright.

The user is a *returning* one: ``carol@signalguard.test`` (the seed's browser-only user: traders, no
cloud machine), signed in before each app run through the stack's ``/auth/v1`` password grant. The
session is written into the fresh profile's localStorage, under the key supabase-js uses
(``sb-<first label of the host>-auth-token``), by an init script that runs before the page's own
scripts. So the figure is the start of a tab whose user is already signed in, and does not include
typing a password. After each app run the tab's lease is released (``release_local_lease``, as the page
does when it goes away), so every app run starts as the only tab of its user.

The bare page is ``web/bench-bare.html`` with its script in ``web/bench-bare.mjs`` (the gateway's CSP
allows no inline script). The gateway serves only the app's allow-listed files, so the stack here serves
a copy of the app (``index.html``, ``pyscript.toml``, ``web/`` without ``node_modules``) plus the
benchmark's pages, from a temporary folder (``StackConfig.app_root``). Neither the gateway nor the app
is changed, and Playwright intercepts no request: interception adds a round trip to the driver to
every request, and the app makes several times more requests than the bare page.

Then the repeat visit, in warm profiles. In each round, after the two pages above, the app is opened
three times in a new persistent profile of its own (a temporary user-data folder, as a browser keeps
it on disk), each visit in a new browser process on that folder, as when a user comes back later (so
nothing is shared in memory between visits), and each left open for 2 s once ready (the browser
writes its caches meanwhile). The first visit starts from the empty profile; its page registers the
service worker (``web/sw.js``) once ready, and its browser is closed only once the worker holds the
runtime and the archive. The second is the repeat visit: the worker answers the runtime, PyScript and
``web/app.zip`` from its cache. The third shows what Chromium's code cache for the WebAssembly adds
(it is written beside the worker's cache entry during the second). As the like-for-like cold page, the
round also opens the bare page in a new browser on an empty profile. Medians of the rounds (5 by
default) are printed with the ratios to the cold bare pages (repeat-visit app / cold bare page, and
the first and third visits likewise), where each visit's time goes, and the size of the profile's
caches after the third visit. ``--no-repeat`` leaves the repeat visits out.

After the figures it prints where the app's time goes, from the browser's own records: PyScript's
``py:progress`` steps and ``py:ready`` event, Resource Timing (when each file and each API request
started and finished), the page's own state changes (``data-runtime``, ``data-mode``, ``data-ready``,
seen by a MutationObserver), and main-thread long tasks. Diagnostics follow, outside the figures, in 3
rounds of three pages: a bare page; PyScript running an empty script with the same interpreter
(``web/bench-pyscript.html``), for PyScript's own cost; and a bare page that then does what the app's
Python does once the interpreter is up (fetch and unpack ``web/app.zip``, import
``signalguard.browser.main``), with the interpreter's import-time profile (``PYTHONPROFILEIMPORTTIME``),
and imports the app's modules once more from bytecode, for what shipping ``.pyc`` files would save.

Over a network. On 127.0.0.1 the 14 MiB of the runtime cost almost nothing to fetch, so the figures
above are CPU alone. ``--network NAME`` runs everything under a network profile (:data:`NETWORKS`:
``loopback``, the default, no throttling; ``broadband``, 50/10 Mbit/s and 20 ms; ``mobile``, Chrome
DevTools' "Fast 4G" preset, 8.1/1.35 Mbit/s and 165 ms; several separated by commas, or ``all``, each a
run of its own on the same stack, with a summary at the end). It is Chromium's own throttling, set with
DevTools Protocol on every measured page before it navigates (``Network.emulateNetworkConditions`` on a
session of the page: the cold bare pages, the app in fresh contexts, every visit in the persistent
profiles, and the diagnostics' pages), so every page of a run is under the same profile.

What it covers, as checked with Resource Timing (``deliveryType``, ``workerStart``, ``transferSize``,
``responseEnd``; :func:`print_sources` prints it for every run with a profile): every request that
goes out to the network, each paying the latency once and sharing the throughput: the navigation,
the runtime's files on a cold page, the page's API calls (PostgREST through the gateway, ``/auth/v1``)
and ``/config.json``, and the HTTP cache's revalidations (``transferSize`` 300). Not what is answered
without a request: the files the service worker answers from Cache Storage (``deliveryType``
"cache-storage", a few ms to a few tens of ms whatever the profile) and HTTP cache hits. A service
worker's own ``fetch()`` is its own: with the page alone throttled, the worker's fetch of the
navigation (the repeat visit's page, which the worker forwards) was throttled all the same, but of its
later fetches only the first were, then no more. So :func:`throttle` also attaches to the worker a
page starts (Chromium holds it until it is throttled) and throttles it the same way; then every fetch
of the worker pays the latency. Resource Timing's ``responseStart`` is not a guide under throttling:
Chromium holds a response back after that time is taken, so the check uses ``responseEnd``.
Chromium's throttling has no connections of its own (the latency is added per request, not per
handshake), and the gateway serves HTTP/1.1 without compression; ``--gzip`` serves the vendored files
gzip-compressed instead (as a host that compresses would). A page that does not get ready is run again
(its round, for a visit) and reported (:data:`NOT_READY`). What was measured is in
``docs/startup.md`` ("Over a network").

``python -m bench.startup [--runs N] [--warmup N] [--diagnostic-runs N] [--no-repeat]
[--network NAME[,NAME...]|all] [--gzip]`` prints all this.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from signalguard.devstack.assets import build
from signalguard.devstack.config import REPO_ROOT, StackConfig
from signalguard.devstack.stack import DEMO_PASSWORD, LocalStack

sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))
# The e2e tests' browser and the demo traders' symbols.
from e2ekit import CHROMIUM, CHROMIUM_ARGS, DEMO_SYMBOLS

RUNS = 5
WARMUP = 1
DIAGNOSTIC_RUNS = 3
USER = "carol@signalguard.test"
READY_TIMEOUT_MS = 120_000
GOAL = 1.05
NAN = float("nan")


@dataclass(frozen=True)
class Network:
    """A network profile applied to every measured page: Chrome's own throttling, set by DevTools Protocol.

    ``latency_ms`` is what ``Network.emulateNetworkConditions`` calls latency: the least time from a
    request's being sent to its response headers, added to every request (Chrome's emulation has no
    connections or handshakes of its own); the throughputs are shared by the throttled requests.
    """

    name: str
    #: Mbit/s (10**6 bits); None for no throttling at all (the loopback).
    down_mbit: float | None
    up_mbit: float | None
    latency_ms: float
    source: str

    @property
    def throttled(self) -> bool:
        return self.down_mbit is not None

    def conditions(self) -> dict[str, Any]:
        """``Network.emulateNetworkConditions``'s parameters (throughputs in bytes per second)."""
        assert self.down_mbit is not None and self.up_mbit is not None
        return {
            "offline": False,
            "latency": self.latency_ms,
            "downloadThroughput": self.down_mbit * 1e6 / 8,
            "uploadThroughput": self.up_mbit * 1e6 / 8,
        }

    def describe(self) -> str:
        if not self.throttled:
            return f"{self.name} (no throttling: the stack on 127.0.0.1 as it is)"
        return (
            f"{self.name} ({self.down_mbit:g} Mbit/s down, {self.up_mbit:g} Mbit/s up, "
            f"{self.latency_ms:g} ms latency per request; {self.source})"
        )


#: The named profiles of ``--network``. ``mobile`` is Chrome DevTools' "Fast 4G" preset as DevTools and
#: Puppeteer define it (``PredefinedNetworkConditions``): 9 Mbit/s x 0.9 down, 1.5 Mbit/s x 0.9 up, a
#: 60 ms round trip x 2.75 = 165 ms of request latency (DevTools' factors for what a real connection's
#: handshakes and slow start add, which its emulation leaves out). ``broadband`` is a plain fixed line
#: (cable or fibre at its lower end): 50 Mbit/s down, 10 up, 20 ms.
NETWORKS = {
    n.name: n
    for n in (
        Network("loopback", None, None, 0, "no throttling"),
        Network("broadband", 50, 10, 20, "a plain fixed line"),
        Network("mobile", 9 * 0.9, 1.5 * 0.9, 60 * 2.75, "Chrome DevTools' 'Fast 4G' preset"),
    )
}
LOOPBACK = NETWORKS["loopback"]

# -- the benchmark's pages, served beside the app -------------------------------------------------

BARE_PAGE = "web/bench-bare.html"
PYSCRIPT_PAGE = "web/bench-pyscript.html"
PAGES = {
    BARE_PAGE: """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>bare loadPyodide</title><link rel="icon" href="data:,">
<script type="module" src="./bench-bare.mjs"></script></head>
<body></body>
</html>
""",
    # The bare page: import Pyodide from the app's vendored folder and load it, nothing else. With
    # ``?probe`` it then does what the app's Python does once the interpreter is up (fetch and unpack
    # app.zip, as pyscript.toml says, and import the entry module) and reports each step's time and the
    # interpreter's import-time profile.
    "web/bench-bare.mjs": """
const marks = (globalThis.__sgBench ??= []);
const mark = (name) => marks.push([name, performance.now()]);
mark("bare: script");
const probe = new URLSearchParams(location.search).has("probe");
const { loadPyodide } = await import("./vendor/pyodide/pyodide.mjs");
mark("bare: pyodide.mjs imported");
const indexURL = new URL("./vendor/pyodide/", import.meta.url).href;
const stderr = [];
const options = probe ? { env: { PYTHONPROFILEIMPORTTIME: "1" }, stderr: (line) => stderr.push(line) } : {};
const pyodide = await loadPyodide({ indexURL, ...options });
mark("bare: loadPyodide resolved");
document.body.dataset.readyMs = String(Math.round(performance.now()));
document.body.dataset.ready = "1";
if (probe) {
  const boot = stderr.splice(0);
  const t0 = performance.now();
  const zip = await (await fetch("./app.zip", { cache: "no-store" })).arrayBuffer();
  const t1 = performance.now();
  pyodide.unpackArchive(zip, "zip", { extractDir: "." });
  const t2 = performance.now();
  pyodide.runPython("import signalguard.browser.main");
  const t3 = performance.now();
  const app = stderr.splice(0);
  // Once more from bytecode: compile the unpacked sources, forget signalguard's modules, import again
  // (the standard library's modules it needs stay imported).
  pyodide.runPython(`
import compileall, importlib, sys
compileall.compile_dir("signalguard", quiet=1)
for name in [m for m in sys.modules if m.split(".")[0] == "signalguard"]:
    del sys.modules[name]
importlib.invalidate_caches()
`);
  stderr.length = 0;
  const t4 = performance.now();
  pyodide.runPython("import signalguard.browser.main");
  const t5 = performance.now();
  globalThis.__sgProbe = {
    zip_bytes: zip.byteLength, fetch_ms: t1 - t0, unpack_ms: t2 - t1, import_ms: t3 - t2,
    pyc_import_ms: t5 - t4, boot_importtime: boot, app_importtime: app, pyc_importtime: stderr.splice(0),
  };
}
""",
    # PyScript with the app's interpreter and an empty script: what PyScript itself costs.
    PYSCRIPT_PAGE: """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>PyScript, empty script</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="./vendor/pyscript/core.css">
<script type="module" src="./vendor/pyscript/core.js"></script></head>
<body>
<mpy-config hidden>
plugins = ["!py-editor", "!py-game", "!py-terminal", "!donkey", "!deprecations-manager"]
</mpy-config>
<script type="py" config="./bench-pyscript.toml">
import js
js.document.body.dataset.ready = "1"
</script>
</body>
</html>
""",
    # The app's plugin list too: the plugins it switches off are not vendored (see pyscript.toml).
    "web/bench-pyscript.toml": (
        'interpreter = "./vendor/pyodide/pyodide.mjs"\n'
        'plugins = ["!py-editor", "!py-game", "!py-terminal", "!donkey", "!deprecations-manager"]\n'
    ),
}

# In every page, before its own scripts: PyScript's progress steps and events, the page's state
# changes, and main-thread long tasks, all on the page's clock.
INSTRUMENT_JS = """
(() => {
  if (globalThis.__sgLongTasks) return;
  const marks = (globalThis.__sgBench ??= []);
  const mark = (name) => marks.push([name, performance.now()]);
  addEventListener("py:progress", (e) => mark(`py:progress ${e.detail}`), true);
  for (const name of ["py:ready", "py:done", "py:all-done"]) addEventListener(name, () => mark(name), true);
  document.addEventListener("DOMContentLoaded", () => mark("DOMContentLoaded"));
  new MutationObserver((records) => {
    for (const r of records) {
      const el = r.target;
      const value = el.getAttribute(r.attributeName);
      mark(`${el.id || el.tagName.toLowerCase()}[${r.attributeName}]=${value ?? "(removed)"}`);
    }
  }).observe(document, {
    subtree: true, attributes: true, attributeFilter: ["data-runtime", "data-ready", "data-mode", "hidden"],
  });
  const tasks = (globalThis.__sgLongTasks = []);
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) tasks.push([e.startTime, e.duration]);
    }).observe({ type: "longtask", buffered: true });
  } catch (_exc) { /* no long task timing */ }
})();
"""

SESSION_JS = """
(() => {
  try {
    if (localStorage.getItem(%(key)s) === null) localStorage.setItem(%(key)s, %(value)s);
  } catch (_exc) { /* about:blank has no storage */ }
})();
"""

COLLECT_JS = """
() => ({
  marks: globalThis.__sgBench ?? [],
  longtasks: globalThis.__sgLongTasks ?? [],
  resources: performance.getEntriesByType("resource").map((e) => ({
    name: e.name, start: e.startTime, end: e.responseEnd, bytes: e.encodedBodySize,
    transfer: e.transferSize, worker: e.workerStart, first_byte: e.responseStart,
    delivery: e.deliveryType ?? "",
  })),
  response: performance.getEntriesByType("navigation")[0]?.responseEnd ?? 0,
  navigation: (() => {
    const e = performance.getEntriesByType("navigation")[0];
    return e ? {
      name: e.name, start: e.startTime, end: e.responseEnd, bytes: e.encodedBodySize,
      transfer: e.transferSize, worker: e.workerStart, first_byte: e.responseStart,
      delivery: e.deliveryType ?? "",
    } : null;
  })(),
  ready: document.body?.dataset.readyMs ?? null,
  holder: (() => {
    try { return sessionStorage.getItem("signalguard.holder"); } catch (_e) { return null; }
  })(),
})
"""

#: Files whose arrival is a milestone: (path under the origin, label).
FILES = (
    ("web/vendor/supabase/supabase.js", "supabase.js"),
    ("web/vendor/pyscript/core.js", "pyscript core.js"),
    ("pyscript.toml", "pyscript.toml"),
    ("web/vendor/pyodide/pyodide.mjs", "pyodide.mjs"),
    ("web/vendor/pyodide/pyodide.asm.mjs", "pyodide.asm.mjs"),
    ("web/vendor/pyodide/pyodide-lock.json", "pyodide-lock.json"),
    ("web/vendor/pyodide/python_stdlib.zip", "python_stdlib.zip"),
    ("web/vendor/pyodide/pyodide.asm.wasm", "pyodide.asm.wasm"),
    ("web/app.zip", "app.zip"),
    ("config.json", "/config.json"),
)
READY = "body[data-ready]=1"
LOADING = "py:progress Loading interpreter"
LOADED = "py:progress Loaded interpreter"
BARE_IMPORTED = "bare: pyodide.mjs imported"
BARE_LOADED = "bare: loadPyodide resolved"
#: The guard's requests before its mode is known, in the order the page sends them.
GUARD_RPCS = ("rest/v1/rpc/schema_version", "rest/v1/rpc/execution_status", "rest/v1/rpc/claim_local_lease")


@dataclass(frozen=True)
class Source:
    """Where one response came from, as Resource Timing tells it (ms from navigation)."""

    #: The path under the origin (see :func:`request_label`); :data:`PAGE` for the navigation.
    name: str
    #: ``workerStart > 0``: a service worker's fetch handler saw the request (it answered it, or let it
    #: go to the network).
    worker: bool
    #: ``transferSize``: bytes that came over the network, headers included (300 for a revalidation the
    #: HTTP cache then answered); 0 when no request went out from the page (a cache, or the worker).
    transfer: int
    #: From the request's start to its response's end (``responseEnd - startTime``). Not the time to
    #: the first byte: Chromium's throttling holds a response back after its ``responseStart`` is taken.
    duration: float
    #: ``deliveryType``: "cache-storage" for a response the worker answered from Cache Storage, "cache"
    #: for the HTTP cache (also after a revalidation, and for what the worker fetched), "" otherwise.
    delivery: str


PAGE = "(the page)"


@dataclass
class Sample:
    """One page load: when it was ready and what the browser recorded on the way (ms from navigation)."""

    kind: str
    ready_ms: float
    marks: dict[str, float]
    #: (path or host, start, end, encoded bytes) of every request that started before ready, in order.
    requests: list[tuple[str, float, float, int]]
    #: (start, duration) of every main-thread long task that started before ready.
    longtasks: list[tuple[float, float]]
    problems: list[str] = field(default_factory=list)
    #: Where each response before ready came from (the page's own first), by Resource Timing.
    sources: list[Source] = field(default_factory=list)

    def milestones(self) -> dict[str, float]:
        """Named moments: the page's marks and the arrival of the files in :data:`FILES`."""
        out = dict(self.marks)
        for path, label in FILES:
            end = next((e for name, _s, e, _b in self.requests if name == path), None)
            if end is not None:
                out[f"{label} received"] = end
        return out

    def first_request(self, path: str) -> float:
        return next((s for name, s, _e, _b in self.requests if name == path), NAN)

    def waiting_on(self, paths: Iterable[str]) -> float:
        """Time spent waiting for the first request to each of ``paths`` (from its start to its end)."""
        total = 0.0
        for path in paths:
            total += next((e - s for name, s, e, _b in self.requests if name == path), NAN)
        return total

    def outside_load_ms(self) -> float:
        """Time to ready that is not inside ``loadPyodide()`` (PyScript's call, or the bare page's own)."""
        start, end = (BARE_IMPORTED, BARE_LOADED) if self.kind == "bare" else (LOADING, LOADED)
        return self.ready_ms - (self.marks.get(end, NAN) - self.marks.get(start, NAN))

    def busy_ms(self, since: float = 0.0) -> float:
        """Long-task time on the main thread from ``since`` until ready."""
        return sum(d for s, d in self.longtasks if s >= since)


# -- set-up ----------------------------------------------------------------------------------------


def app_copy(target: Path) -> Path:
    """A copy of what the gateway serves of the checkout, plus the benchmark's pages; its root."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("index.html", "pyscript.toml"):
        shutil.copy2(REPO_ROOT / name, target / name)
    shutil.copytree(
        REPO_ROOT / "web",
        target / "web",
        ignore=shutil.ignore_patterns("node_modules", "package.json", "package-lock.json"),
    )
    for rel, text in PAGES.items():
        (target / rel).write_text(text)
    return target


def gzip_siblings(root: Path) -> tuple[int, int]:
    """Write ``<file>.gz`` beside the vendored files and ``web/app.zip`` of the copy at ``root``, where
    gzip makes them smaller; (bytes before, bytes after) of those files.

    The gateway's files are aiohttp ``FileResponse``s, which send such a sibling, with ``Content-Encoding:
    gzip``, to a browser that accepts gzip: as a host that compresses its files (gzip at a host's usual
    level 6) would send them. Only this copy gets them.
    """
    import gzip

    web = root / "web"
    before = after = 0
    for path in sorted([*(web / "vendor").rglob("*"), web / "app.zip"]):
        if not path.is_file() or path.suffix == ".gz":
            continue
        data = path.read_bytes()
        packed = gzip.compress(data, compresslevel=6, mtime=0)
        if len(packed) < 0.9 * len(data):
            path.with_name(path.name + ".gz").write_bytes(packed)
            before, after = before + len(data), after + len(packed)
    return before, after


def sign_in(stack: LocalStack, email: str) -> dict[str, Any]:
    """A fresh session for ``email`` from the stack's ``/auth/v1`` (what supabase-js stores)."""
    r = httpx.post(
        f"{stack.url}/auth/v1/token",
        params={"grant_type": "password"},
        headers={"apikey": stack.config.anon_key()},
        json={"email": email, "password": DEMO_PASSWORD},
        timeout=30,
    )
    r.raise_for_status()
    session: dict[str, Any] = r.json()
    return session


def release(stack: LocalStack, session: dict[str, Any], holder: str | None) -> None:
    """Give up the lease of the tab ``holder``, as the page does when it goes away."""
    if not holder:
        return
    httpx.post(
        f"{stack.url}/rest/v1/rpc/release_local_lease",
        headers={"apikey": stack.config.anon_key(), "Authorization": f"Bearer {session['access_token']}"},
        json={"p_holder_id": holder},
        timeout=30,
    ).raise_for_status()


def storage_key(url: str) -> str:
    """supabase-js's localStorage key for a project URL: ``sb-<first label of the host>-auth-token``."""
    return f"sb-{httpx.URL(url).host.split('.')[0]}-auth-token"


def session_script(stack: LocalStack, session: dict[str, Any]) -> str:
    key = storage_key(stack.url)
    return SESSION_JS % {"key": json.dumps(key), "value": json.dumps(json.dumps(session))}


# -- one page load ---------------------------------------------------------------------------------


def request_label(url: str, origin: str) -> str:
    """The path under ``origin`` (without the query), or host:port and path for another origin."""
    u = httpx.URL(url)
    if url.startswith(origin + "/"):
        return u.path.lstrip("/") or "/"
    return f"{u.host}:{u.port}{u.path}"


def load(
    browser: Any, kind: str, url: str, init_scripts: Iterable[str], network: Network = LOOPBACK
) -> tuple[Sample, str | None]:
    """Open ``url`` in a fresh context, wait for ``body[data-ready="1"]``; the sample and the tab's holder."""
    context = browser.new_context()
    try:
        return load_in(context, kind, url, init_scripts, network=network)
    finally:
        context.close()


#: Service workers throttled by :func:`throttle` (their URLs), and the errors their sessions answered.
WORKERS_THROTTLED: list[str] = []
WORKER_ERRORS: list[str] = []


def throttle(context: Any, page: Any, network: Network) -> Any:
    """Apply ``network`` to ``page`` before it navigates, and to the service worker it starts.

    The page's own session covers its requests, the navigation included. A service worker's own
    ``fetch()`` goes out under the worker's conditions: with the page alone throttled, the worker's
    fetch of the navigation was throttled, but of its later fetches only the first ones. So the page's
    session also auto-attaches to the worker that the page starts, which waits until it is throttled
    too (Chromium holds a worker that an auto-attaching session waits for; these sessions are not flat
    ones, so the messages go through ``Target.sendMessageToTarget``). Returns the session (None for no
    throttling).
    """
    if not network.throttled:
        return None
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", network.conditions())
    ids = itertools.count(1)

    def to_target(session_id: str, method: str, params: dict[str, Any] | None = None) -> None:
        message = json.dumps({"id": next(ids), "method": method, "params": params or {}})
        cdp.send("Target.sendMessageToTarget", {"sessionId": session_id, "message": message})

    def attached(event: dict[str, Any]) -> None:
        session_id, info = event["sessionId"], event["targetInfo"]
        try:
            if info["type"] == "service_worker":
                to_target(session_id, "Network.enable")
                to_target(session_id, "Network.emulateNetworkConditions", network.conditions())
                WORKERS_THROTTLED.append(info["url"])
        finally:
            to_target(session_id, "Runtime.runIfWaitingForDebugger")

    def answered(event: dict[str, Any]) -> None:
        message = json.loads(event["message"])
        if "error" in message:
            WORKER_ERRORS.append(json.dumps(message["error"])[:200])

    cdp.on("Target.attachedToTarget", attached)
    cdp.on("Target.receivedMessageFromTarget", answered)
    cdp.send(
        "Target.setAutoAttach",
        {
            "autoAttach": True,
            "waitForDebuggerOnStart": True,
            "flatten": False,
            "filter": [{"type": "service_worker"}],
        },
    )
    return cdp


def load_in(
    context: Any,
    kind: str,
    url: str,
    init_scripts: Iterable[str],
    after: Any = None,
    network: Network = LOOPBACK,
) -> tuple[Sample, str | None]:
    """Open ``url`` in a new tab of ``context`` under ``network``, wait for ready, run ``after(page)``."""
    problems: list[str] = []
    for script in init_scripts:
        context.add_init_script(script)
    page = context.new_page()
    try:
        throttle(context, page, network)
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on(
            "response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None
        )
        page.goto(url, wait_until="commit")
        try:
            page.wait_for_selector("body[data-ready='1']", state="attached", timeout=READY_TIMEOUT_MS)
        except Exception as exc:
            fatal = page.evaluate("document.getElementById('fatal')?.textContent ?? ''")
            raise NotReady(f"{kind}: {url} not ready ({exc}). {fatal}\n" + "\n".join(problems)) from None
        data = page.evaluate(COLLECT_JS)
        if after is not None:
            after(page)
    finally:
        page.close()
    marks: dict[str, float] = {}
    for name, t in data["marks"]:
        marks.setdefault(name, t)  # the first time each thing happened
    marks["HTML received"] = data["response"]
    # The observer's time of the attribute change; the page's own rounded figure if it missed it.
    ready = marks.get(READY, float(data["ready"] or NAN))
    origin = "/".join(url.split("/", 3)[:3])
    requests = [
        (request_label(r["name"], origin), r["start"], r["end"], r["bytes"])
        for r in sorted(data["resources"], key=lambda r: r["start"])
        if r["start"] <= ready
    ]
    tasks = [(s, d) for s, d in data["longtasks"] if s <= ready]
    entries = [data["navigation"]] if data["navigation"] else []
    entries += sorted(data["resources"], key=lambda r: r["start"])
    sources = [
        Source(
            PAGE if n == 0 and data["navigation"] else request_label(r["name"], origin),
            r["worker"] > 0,
            int(r["transfer"]),
            r["end"] - r["start"],
            r["delivery"],
        )
        for n, r in enumerate(entries)
        if r["start"] <= ready
    ]
    sample = Sample(kind, ready, marks, requests, tasks, problems, sources)
    return sample, data["holder"]


def measure(
    browser: Any,
    stack: LocalStack,
    runs: int,
    warmup: int,
    user: str,
    warm: bool = True,
    network: Network = LOOPBACK,
) -> dict[str, list[Sample]]:
    """The figures' runs, interleaved after ``warmup`` discarded rounds: each round a bare page and the
    app in fresh contexts, then (``warm``) the app's three visits in a persistent profile of its own;
    every page under ``network``."""
    bare_url, app_url = f"{stack.url}/{BARE_PAGE}", f"{stack.url}/"
    out: dict[str, list[Sample]] = {
        "bare": [],
        "app": [],
        "bare-browser": [],
        "visit1": [],
        "visit2": [],
        "visit3": [],
    }
    for i in range(warmup + runs):
        sample, _ = load(browser, "bare", bare_url, [INSTRUMENT_JS], network)
        if i >= warmup:
            out["bare"].append(sample)
        for attempt in range(3):
            session = sign_in(stack, user)
            scripts = [INSTRUMENT_JS, session_script(stack, session)]
            try:
                sample, holder = load(browser, "app", app_url, scripts, network)
                break
            except NotReady as exc:
                if attempt == 2:
                    raise
                not_ready(exc)
        release(stack, session, holder)
        if i >= warmup:
            out["app"].append(sample)
        time.sleep(0.5)  # the closed tab's last requests settle before the next run
        if warm:
            # The like-for-like cold page: a bare page in a new browser on an empty profile.
            sample, visits = warm_round(browser, stack, user, network)
            if i >= warmup:
                out["bare-browser"].append(sample)
                for n, visit in enumerate(visits, 1):
                    out[f"visit{n}"].append(visit)
    return out


#: Files the service worker must hold before the first visit's browser is closed.
KEPT_BY_WORKER = (
    "/web/vendor/pyodide/pyodide.asm.wasm",
    "/web/vendor/pyodide/python_stdlib.zip",
    "/web/app.zip",
)
KEPT_JS = """
async () => {
  const out = [];
  for (const name of await caches.keys()) {
    for (const r of await (await caches.open(name)).keys()) out.push(new URL(r.url).pathname);
  }
  return out;
}
"""
#: How long a visit stays open after it is ready (the browser writes its caches meanwhile).
SETTLE_S = 2.0
#: The profile's folders whose size is reported (Chromium's names).
PROFILE_CACHES = {
    "Cache Storage": ("Default", "Service Worker", "CacheStorage"),
    "wasm code cache": ("Default", "Code Cache", "wasm"),
    "JS code cache": ("Default", "Code Cache", "js"),
    "HTTP cache": ("Default", "Cache"),
}
#: Sizes (bytes) of PROFILE_CACHES after each warm profile's third visit, one dict per round.
PROFILE_SIZES: list[dict[str, int]] = []


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def in_new_browser(
    browser: Any,
    profile: Path,
    kind: str,
    url: str,
    init_scripts: Iterable[str],
    after: Any = None,
    network: Network = LOOPBACK,
) -> tuple[Sample, str | None]:
    """:func:`load_in` a new browser (another Chromium process) on the profile folder ``profile``."""
    context = browser.browser_type.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    try:
        for blank in context.pages:
            blank.close()
        return load_in(context, kind, url, init_scripts, after, network)
    finally:
        context.close()


#: Renderer crashes seen (and retried) in the warm rounds.
CRASHES: list[str] = []


class NotReady(SystemExit):
    """A page that did not get ready in time (its message has what it saw); ends the run unless retried."""


#: Pages that did not get ready, retried: what each saw (its HTTP errors and page errors, in short).
NOT_READY: list[str] = []


def not_ready(exc: NotReady) -> None:
    """Note a page that did not get ready, then wait out its tab's lease (30 s) before the retry."""
    lines = str(exc).splitlines()
    seen = sorted({line for line in lines[1:] if line.startswith(("HTTP ", "page error"))})
    NOT_READY.append(lines[0].split(" not ready")[0] + ": " + ", ".join(seen)[:600])
    time.sleep(31)


def warm_round(
    browser: Any, stack: LocalStack, user: str, network: Network = LOOPBACK
) -> tuple[Sample, list[Sample]]:
    """The bare page in a new browser on an empty profile, then :func:`warm_visits`.

    A renderer that crashes ("Target crashed", seen now and then on this machine) fails the round, which
    is run again once the crashed tab's lease has run out (30 s), at most twice; so does a page that does
    not get ready (:class:`NotReady`), noted in :data:`NOT_READY`.
    """
    from playwright.sync_api import Error as PlaywrightError

    bare_url = f"{stack.url}/{BARE_PAGE}"
    for attempt in range(3):
        try:
            with tempfile.TemporaryDirectory(prefix="signalguard-bench-profile-") as empty:
                bare, _ = in_new_browser(
                    browser, Path(empty), "bare", bare_url, [INSTRUMENT_JS], network=network
                )
            return bare, warm_visits(browser, stack, user, network)
        except NotReady as exc:
            if attempt == 2:
                raise
            not_ready(exc)
        except PlaywrightError as exc:
            if "crash" not in str(exc).lower() or attempt == 2:
                raise
            CRASHES.append(str(exc).splitlines()[0])
            time.sleep(31)
    raise AssertionError("unreachable")


def warm_visits(browser: Any, stack: LocalStack, user: str, network: Network = LOOPBACK) -> list[Sample]:
    """The app three times in one new persistent profile, each visit in a new browser on that profile.

    The first visit starts from an empty profile; its page registers the service worker once ready,
    and the browser is closed only once the worker holds the runtime and the archive. The second is
    the repeat visit: the worker answers them from its cache (Chromium's code cache for the
    WebAssembly has not been written for that cache entry yet). The third shows what the code cache
    adds. Each visit is a new browser process, as when a user comes back later, so nothing is shared
    in memory between visits.
    """
    profile = Path(tempfile.mkdtemp(prefix="signalguard-bench-profile-"))
    app_url = f"{stack.url}/"
    samples: list[Sample] = []
    try:
        session = sign_in(stack, user)
        for n in (1, 2, 3):

            def settle(page: Any, first: bool = n == 1) -> None:
                if first:
                    deadline = time.monotonic() + 60
                    while not set(KEPT_BY_WORKER) <= set(page.evaluate(KEPT_JS)):
                        if time.monotonic() > deadline:
                            raise SystemExit("the service worker did not keep the runtime within 60 s")
                        time.sleep(0.2)
                time.sleep(SETTLE_S)

            scripts = [INSTRUMENT_JS, session_script(stack, session)]
            sample, holder = in_new_browser(browser, profile, f"visit{n}", app_url, scripts, settle, network)
            release(stack, session, holder)
            samples.append(sample)
            time.sleep(0.5)
        PROFILE_SIZES.append({k: folder_size(profile.joinpath(*v)) for k, v in PROFILE_CACHES.items()})
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return samples


def python_probe(browser: Any, stack: LocalStack, network: Network = LOOPBACK) -> dict[str, Any]:
    """A bare page that then fetches and unpacks app.zip and imports the app (see ``bench-bare.mjs``)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        throttle(context, page, network)
        page.goto(f"{stack.url}/{BARE_PAGE}?probe", wait_until="commit")
        page.wait_for_function("globalThis.__sgProbe !== undefined", timeout=READY_TIMEOUT_MS)
        probe: dict[str, Any] = page.evaluate("globalThis.__sgProbe")
    finally:
        context.close()
    return probe


def diagnose(
    browser: Any, stack: LocalStack, runs: int, network: Network = LOOPBACK
) -> tuple[dict[str, list[Sample]], list[dict[str, Any]]]:
    """Rounds of (bare page, PyScript with an empty script, the Python probe), under ``network``."""
    bare_url, pyscript_url = f"{stack.url}/{BARE_PAGE}", f"{stack.url}/{PYSCRIPT_PAGE}"
    out: dict[str, list[Sample]] = {"bare": [], "pyscript": []}
    probes = []
    for _ in range(runs):
        out["bare"].append(load(browser, "bare", bare_url, [INSTRUMENT_JS], network)[0])
        out["pyscript"].append(load(browser, "pyscript", pyscript_url, [INSTRUMENT_JS], network)[0])
        probes.append(python_probe(browser, stack, network))
    return out, probes


# -- the report ------------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    kept = [v for v in values if v == v]  # NaN: not seen in that run
    return statistics.median(kept) if kept else NAN


def typical(samples: list[Sample]) -> Sample:
    """The run whose ready time is the median (the lower middle one for an even count)."""
    return sorted(samples, key=lambda s: s.ready_ms)[(len(samples) - 1) // 2]


def median_milestones(samples: list[Sample]) -> dict[str, float]:
    keys: dict[str, list[float]] = {}
    for s in samples:
        for k, v in s.milestones().items():
            keys.setdefault(k, []).append(v)
    return {k: median(v) for k, v in keys.items() if len(v) == len(samples)}


def ms(value: float, width: int = 7) -> str:
    return f"{value:{width}.0f}" if value == value else " " * (width - 1) + "-"


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def import_profile(lines: list[str]) -> list[tuple[str, int, int, int]]:
    """``-X importtime`` lines as (module, own us, cumulative us, depth)."""
    out = []
    for line in lines:
        m = _IMPORT_LINE.match(line)
        if m:
            out.append((m.group(4), int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2))
    return out


def print_figures(
    bare: list[Sample], app: list[Sample], user: str, busy: str, network: Network = LOOPBACK
) -> None:
    b, a = [s.ready_ms for s in bare], [s.ready_ms for s in app]
    mb, ma = median(b), median(a)
    ratio = ma / mb
    print(
        f"start-up, navigation -> body[data-ready='1']: {len(a)} runs each, interleaved (bare, app, ...), "
        "a fresh browser profile per run"
    )
    print(f"  network: {network.describe()}")
    print(f"  (machine load average {busy}; {os.cpu_count()} CPUs)")
    print(f"  bare page, loadPyodide()          median {mb:6.0f} ms   runs " + " ".join(ms(v, 5) for v in b))
    print(f"  app, {user:<28} median {ma:6.0f} ms   runs " + " ".join(ms(v, 5) for v in a))
    print(
        f"  ratio app / bare: {ratio:.3f} (app - bare: {ma - mb:+.0f} ms); goal <= {GOAL}: "
        f"{'met' if ratio <= GOAL else 'NOT met'}"
    )
    # loadPyodide() is most of both pages and most of the noise on a busy machine; what the app adds
    # around it is steadier.
    oa, ob = median(s.outside_load_ms() for s in app), median(s.outside_load_ms() for s in bare)
    inside = median(s.ready_ms - s.outside_load_ms() for s in bare)
    print(
        f"  outside loadPyodide() itself: app {oa:.0f} ms, bare {ob:.0f} ms; the app adds {oa - ob:.0f} ms, "
        f"{(oa - ob) / inside:.1%} of the bare page's median loadPyodide() ({inside:.0f} ms)"
    )


def print_warm(bare: list[Sample], app: list[Sample], figures: dict[str, list[Sample]]) -> None:
    """The warm profiles' visits against the same run's cold bare pages (and the cold app)."""
    visits = [figures["visit1"], figures["visit2"], figures["visit3"]]
    if not all(visits):
        return
    mb, ma = median(s.ready_ms for s in bare), median(s.ready_ms for s in app)
    bare_browser = figures["bare-browser"]
    mbb = median(s.ready_ms for s in bare_browser)
    print(
        f"\nrepeat visits: {len(visits[1])} rounds, each in a new persistent profile (a user-data "
        "folder), every visit a new browser on it; the cold pages above in the same rounds"
    )
    labels = (
        "bare page, new browser, empty profile",
        "app, first visit (empty profile)",
        "app, repeat visit (service worker)",
        "app, third visit",
    )
    for label, samples in zip(labels, [bare_browser, *visits], strict=True):
        values = [s.ready_ms for s in samples]
        print(f"  {label:<38} median {median(values):6.0f} ms   runs " + " ".join(ms(v, 5) for v in values))
    m1, m2, m3 = (median(s.ready_ms for s in v) for v in visits)
    for label, value in (("repeat", m2), ("third", m3), ("first", m1)):
        print(
            f"  ratio {label}-visit app / cold bare page: {value / mbb:.3f} against the bare page in a new "
            f"browser (app - bare: {value - mbb:+.0f} ms), {value / mb:.3f} vs the one in a fresh context"
            + (
                f"; {'faster' if value < mbb else 'NOT faster'} than the cold bare page"
                if label == "repeat"
                else ""
            )
        )
    print(f"  (first-visit app / cold bare page in fresh contexts, as above: {ma / mb:.3f})")

    def seg(m: dict[str, float]) -> list[float]:
        return [
            m.get(LOADING, NAN),
            m.get(LOADED, NAN) - m.get(LOADING, NAN),
            m.get("py:progress Loaded files", NAN) - m.get(LOADED, NAN),
            m.get("py:ready", NAN) - m.get("py:progress Loaded files", NAN),
            m.get(READY, NAN) - m.get("py:ready", NAN),
        ]

    b = median_milestones(bare_browser)
    bare_seg = [b.get(BARE_IMPORTED, NAN), b.get(BARE_LOADED, NAN) - b.get(BARE_IMPORTED, NAN), 0, 0, 0]
    rows = list(zip(*(seg(median_milestones(v)) for v in visits), bare_seg, strict=True))
    names = (
        "until loadPyodide() is called",
        "loadPyodide() itself (runtime fetched, compiled, started)",
        "PyScript [files]: app.zip fetched and unpacked",
        "PyScript until the app's script starts",
        "the app's script until ready (imports, config, API)",
    )
    print(
        "\n  segments (differences of the medians, ms)                   first  repeat   third"
        "  bare (new browser)"
    )
    for name, (v1, v2, v3, vb) in zip(names, rows, strict=True):
        print(f"    {name:58} {ms(v1)} {ms(v2)} {ms(v3)} {ms(vb, 10)}")
    if CRASHES:
        print(f"  ({len(CRASHES)} round(s) run again after a renderer crash: {'; '.join(CRASHES)})")
    if PROFILE_SIZES:
        sizes = ", ".join(
            f"{k} {median(d[k] for d in PROFILE_SIZES) / 2**20:.1f} MiB" for k in PROFILE_CACHES
        )
        print(f"  the profile after its third visit (medians): {sizes}")


#: Groups of responses for :func:`print_sources`: (label, test on the request's label).
SOURCE_GROUPS = (
    ("the page", lambda n: n == PAGE),
    ("Pyodide + app.zip", lambda n: n.startswith("web/vendor/pyodide/") or n == "web/app.zip"),
    (
        "other vendored files",
        lambda n: n.startswith("web/vendor/") and not n.startswith("web/vendor/pyodide/"),
    ),
    ("API (rest/v1, auth/v1)", lambda n: n.startswith(("rest/v1/", "auth/v1/"))),
    (
        "config.json, toml, css, js",
        lambda n: n in ("config.json", "pyscript.toml") or n.endswith((".css", ".js")),
    ),
)
KINDS = (
    ("bare", "bare page, fresh context"),
    ("app", "app, fresh context"),
    ("bare-browser", "bare page, new browser, empty profile"),
    ("visit1", "app, first visit (empty profile)"),
    ("visit2", "app, repeat visit (service worker)"),
    ("visit3", "app, third visit"),
)


def print_sources(figures: dict[str, list[Sample]], network: Network) -> None:
    """Where each page's responses came from, by Resource Timing: the check that the throttling covers
    what it should (the network) and not what it should not (the worker's Cache Storage)."""
    print(
        f"\n  where the responses before ready came from, all runs ({network.latency_ms:g} ms latency per "
        "network request; time = start -> response end, median and least):\n"
        "    storage = the worker answered from Cache Storage (deliveryType cache-storage); "
        "worker = the worker answered from its own fetch;\n"
        "    cache = the HTTP cache, no request; net = over the network (transferSize > 0: a download, or "
        "a revalidation the HTTP cache then answered)"
    )
    for kind, label in KINDS:
        samples = figures.get(kind) or []
        if not samples:
            continue
        print(f"    {label} ({len(samples)} runs):")
        for group, test in SOURCE_GROUPS:
            # (A response whose end the page was not given, e.g. a worker's script, has none to show.)
            found = [x for s in samples for x in s.sources if test(x.name) and x.duration >= 0]
            if not found:
                continue
            classes = {
                "storage": [x for x in found if x.delivery == "cache-storage"],
                "worker": [
                    x for x in found if x.worker and x.transfer == 0 and x.delivery != "cache-storage"
                ],
                "cache": [x for x in found if not x.worker and x.transfer == 0],
                "net": [x for x in found if x.transfer > 0],
            }
            mib = sum(x.transfer for x in classes["net"]) / len(samples) / 2**20
            parts = [f"{len(found) / len(samples):4.1f}/run"]
            for name, xs in classes.items():
                if xs:
                    times = [x.duration for x in xs]
                    parts.append(f"{name} {len(xs)} ({median(times):.0f} ms, least {min(times):.0f})")
            if classes["net"]:
                parts.append(f"{mib:.2f} MiB/run over the network")
            print(f"      {group:28} " + ", ".join(parts))
    if network.throttled:
        errors = sorted(set(WORKER_ERRORS))
        print(
            f"    service worker sessions throttled: {len(WORKERS_THROTTLED)}"
            + (f"; errors from them: {'; '.join(errors)}" if errors else "")
        )


def print_breakdown(bare: list[Sample], app: list[Sample]) -> None:
    am, bm = median_milestones(app), median_milestones(bare)
    print("\n  where the app's time goes: median ms from navigation (bare page beside)")
    rows = [
        ("HTML received", "HTML received"),
        ("supabase.js received", None),
        ("pyscript core.js received", None),
        ("pyscript.toml received", None),
        ("py:progress Loading Pyodide", None),
        ("pyodide.mjs received", "pyodide.mjs received"),
        ("py:progress Loading Storage", None),
        ("py:progress Loaded Storage", None),
        (LOADING, BARE_IMPORTED),
        ("pyodide.asm.mjs received", "pyodide.asm.mjs received"),
        ("pyodide-lock.json received", "pyodide-lock.json received"),
        ("python_stdlib.zip received", "python_stdlib.zip received"),
        ("pyodide.asm.wasm received", "pyodide.asm.wasm received"),
        (LOADED, BARE_LOADED),
        ("py:progress Loading files", None),
        ("app.zip received", None),
        ("py:progress Loaded files", None),
        ("py:progress Loaded Pyodide", None),
        ("py:ready", None),
        ("/config.json received", None),
        ("body[data-runtime]=ready", None),
        ("mode-badge[data-mode]=browser", None),
        (READY, READY),
    ]
    names = {
        LOADING: "loadPyodide() called (bare: pyodide.mjs imported)",
        LOADED: "loadPyodide() resolved",
        "py:ready": "py:ready (the app's script starts)",
        "body[data-runtime]=ready": "data-runtime=ready (stored session read)",
        "mode-badge[data-mode]=browser": "guard mode known (browser)",
        READY: "READY",
    }
    for key, bare_key in rows:
        if key in am:
            label = names.get(key, key.replace("py:progress ", "PyScript: "))
            print(f"    {label:52} {ms(am[key])} {ms(bm.get(bare_key or '', NAN)) if bare_key else ''}")

    def span(m: dict[str, float], start: str, end: str) -> float:
        return m.get(end, NAN) - m.get(start, NAN)

    config = median(s.first_request("config.json") for s in app)
    runtime = am.get("body[data-runtime]=ready", NAN)
    print("\n  segments (differences of the medians above)                  app    bare   app-bare")
    segments = [
        ("until loadPyodide() is called", am.get(LOADING, NAN), bm.get(BARE_IMPORTED, NAN)),
        ("loadPyodide() itself", span(am, LOADING, LOADED), span(bm, BARE_IMPORTED, BARE_LOADED)),
        ("PyScript [files]: app.zip fetched and unpacked", span(am, LOADED, "py:progress Loaded files"), 0.0),
        ("PyScript until the app's script starts", span(am, "py:progress Loaded files", "py:ready"), 0.0),
        ("import pyscript + the app's imports, until /config.json", config - am.get("py:ready", NAN), 0.0),
        ("/config.json, supabase-js client, stored session", runtime - config, 0.0),
        ("guard (3 RPCs in turn), traders, signals until ready", am.get(READY, NAN) - runtime, 0.0),
    ]
    for label, a_ms, b_ms in segments:
        print(f"    {label:56} {ms(a_ms)} {ms(b_ms)} {ms(a_ms - b_ms, 10)}")
    waiting = median(s.waiting_on(GUARD_RPCS) for s in app)
    rpcs = ", ".join(r.rsplit("/", 1)[1] for r in GUARD_RPCS)
    print(f"    (of the last, {waiting:.0f} ms waiting for the guard's RPCs, sent one after another: {rpcs})")

    t = typical(app)
    print(
        f"\n  requests of the median app run (ready at {t.ready_ms:.0f} ms): start -> end, ms from navigation"
    )
    seen: Counter[str] = Counter()
    for name, start, end, size in t.requests:
        seen[name] += 1
        shown = name if seen[name] == 1 else f"{name} (#{seen[name]})"
        kib = f"{size / 1024:7.0f} KiB" if size else ""
        print(f"    {shown[:66]:66} {ms(start)} -> {ms(end) if end >= start else '      ?'} {kib}")

    print(
        "\n  main-thread long tasks (> 50 ms) until ready, median total: "
        f"app {median(s.busy_ms() for s in app):.0f} ms, of which after loadPyodide() resolved "
        f"{median(s.busy_ms(s.marks.get(LOADED, 0.0)) for s in app):.0f} ms; "
        f"bare {median(s.busy_ms() for s in bare):.0f} ms"
    )
    tb = typical(bare)
    for label, s in (("app", t), ("bare", tb)):
        biggest = sorted(s.longtasks, key=lambda x: -x[1])[:6]
        print(
            f"    largest in the median {label} run: "
            + ", ".join(f"{d:.0f} ms at {at:.0f}" for at, d in biggest)
        )

    problems = sorted({p for s in app + bare for p in s.problems})
    if problems:
        print(f"\n  errors seen by the pages ({len(problems)} distinct): " + "; ".join(problems)[:2000])


def own_times(lines: list[str]) -> dict[str, float]:
    """Own import time (ms) of each module in an import-time profile."""
    return {name: own / 1000 for name, own, _cum, _depth in import_profile(lines)}


def median_own_times(probes: list[dict[str, Any]], key: str) -> dict[str, float]:
    """The median over the probes of each module's own import time (ms)."""
    runs = [own_times(p[key]) for p in probes]
    names = {n for r in runs for n in r}
    return {n: median(r.get(n, NAN) for r in runs) for n in names}


def print_diagnostics(diag: dict[str, list[Sample]], probes: list[dict[str, Any]]) -> None:
    bare, pys = diag["bare"], diag["pyscript"]
    mb, mp = median(s.ready_ms for s in bare), median(s.ready_ms for s in pys)
    pm, bm = median_milestones(pys), median_milestones(bare)
    print(
        "\n  diagnostic: PyScript running an empty script with the same interpreter, "
        f"{len(pys)} runs interleaved with bare pages:"
    )
    op, ob = median(s.outside_load_ms() for s in pys), median(s.outside_load_ms() for s in bare)
    print(
        f"    median {mp:.0f} ms vs bare {mb:.0f} ms ({mp - mb:+.0f} ms, x{mp / mb:.3f}); "
        f"outside loadPyodide() itself {op:.0f} ms vs {ob:.0f} ms: PyScript adds {op - ob:.0f} ms"
    )
    called, bare_called = pm.get(LOADING, NAN), bm.get(BARE_IMPORTED, NAN)
    took, bare_took = pm.get(LOADED, NAN) - called, bm.get(BARE_LOADED, NAN) - bare_called
    script = pm.get(READY, NAN) - pm.get("py:ready", NAN)
    print(
        f"    loadPyodide() called at {ms(called, 0)} ms (bare {ms(bare_called, 0)}), took {ms(took, 0)} ms "
        f"(bare {ms(bare_took, 0)}); loadPyodide() resolved -> py:ready "
        f"{ms(pm.get('py:ready', NAN) - pm.get(LOADED, NAN), 0)} ms; py:ready -> ready "
        f"(import pyscript, run the script) {ms(script, 0)} ms"
    )

    def med(key: str) -> float:
        return median(p[key] for p in probes)

    print(
        "\n  diagnostic: the app's Python once the interpreter is up (a bare page, then what pyscript.toml "
        f"and index.html do), medians of {len(probes)}:"
    )
    print(
        f"    app.zip ({probes[0]['zip_bytes'] / 1024:.0f} KiB) fetched in {med('fetch_ms'):.0f} ms, "
        f"unpacked in {med('unpack_ms'):.0f} ms; import signalguard.browser.main {med('import_ms'):.0f} ms"
    )
    own = median_own_times(probes, "app_importtime")
    if own:
        app_ms = sum(v for n, v in own.items() if n.split(".")[0] == "signalguard")
        others = sorted(n for n in own if n.split(".")[0] != "signalguard")
        print(
            f"    {len(own)} modules: signalguard's {len(own) - len(others)} ({app_ms:.0f} ms own time), "
            f"{len(others)} others ({sum(own[n] for n in others):.0f} ms): " + ", ".join(others)
        )
        largest = sorted(own.items(), key=lambda kv: -kv[1])[:12]
        print("    largest own times (ms): " + ", ".join(f"{n} {v:.0f}" for n, v in largest))
        pyc = median_own_times(probes, "pyc_importtime")
        print(
            "    signalguard's modules again from bytecode (.pyc; the others already imported): "
            f"{med('pyc_import_ms'):.0f} ms ({sum(pyc.values()):.0f} ms own time, "
            f"vs {app_ms:.0f} ms from source)"
        )
    boot = median_own_times(probes, "boot_importtime")
    if boot:
        print(
            f"    (for comparison, loadPyodide() itself imports {len(boot)} modules, "
            f"{sum(boot.values()):.0f} ms own time)"
        )


def networks_of(value: str) -> list[Network]:
    """``--network``'s value: a profile's name, several separated by commas, or ``all``."""
    names = list(NETWORKS) if value.strip() == "all" else [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown network profile {', '.join(unknown) or value!r}: "
            f"one or more of {', '.join(NETWORKS)}, or all"
        )
    return [NETWORKS[n] for n in names]


def print_summary(results: list[tuple[Network, dict[str, list[Sample]]]]) -> None:
    """One line per profile: the medians and the ratios to the cold bare page."""
    print("\n== summary: medians (ms) to data-ready, and ratios to the cold bare page in a new browser")
    print(
        f"  {'network':10} {'bare':>6} {'bare nb':>8} {'app':>6} {'first':>6} {'repeat':>7} {'third':>6}"
        "   repeat/bare  first/bare  app/bare (fresh contexts)"
    )
    for network, f in results:
        m = {k: median(s.ready_ms for s in v) for k, v in f.items()}
        nb, v1, v2, v3 = (m.get(k, NAN) for k in ("bare-browser", "visit1", "visit2", "visit3"))
        print(
            f"  {network.name:10} {ms(m['bare'], 6)} {ms(nb, 8)} {ms(m['app'], 6)} {ms(v1, 6)} {ms(v2)} "
            f"{ms(v3, 6)}   {v2 / nb:11.3f} {v1 / nb:11.3f} {m['app'] / m['bare']:9.3f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs of each page (default {RUNS})")
    parser.add_argument(
        "--warmup", type=int, default=WARMUP, help=f"discarded pairs first (default {WARMUP})"
    )
    parser.add_argument(
        "--diagnostic-runs",
        type=int,
        default=DIAGNOSTIC_RUNS,
        help=f"PyScript-only and bare pairs after the figures, 0 for none (default {DIAGNOSTIC_RUNS})",
    )
    parser.add_argument("--user", default=USER, help=f"the returning user (default {USER})")
    parser.add_argument(
        "--no-repeat", action="store_true", help="only the first visits (no persistent profiles)"
    )
    parser.add_argument(
        "--gzip",
        action="store_true",
        help="serve the vendored files and app.zip gzip-compressed (level 6), as a host that compresses "
        "them would; by default the gateway sends them as they are",
    )
    parser.add_argument(
        "--network",
        type=networks_of,
        default=[LOOPBACK],
        metavar="NAME[,NAME...]|all",
        help="the network profile(s) every measured page runs under, one run of everything each: "
        + "; ".join(n.describe() for n in NETWORKS.values())
        + " (default loopback)",
    )
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from signalguard.replay.server import running_replay
    from signalguard.replay.synthetic import generate

    if shutil.which(CHROMIUM) is None:
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium package (scripts/bootstrap does)")
    build(REPO_ROOT)
    served = Path(tempfile.mkdtemp(prefix="signalguard-bench-startup-"))
    # A folder of its own, as in the e2e tests: the database's system user must be able to reach it.
    state = Path(tempfile.mkdtemp(prefix="signalguard-bench-startup-state-"))
    series = generate(DEMO_SYMBOLS, interval="1m", candles=600, seed=2).series
    results: list[tuple[Network, dict[str, list[Sample]]]] = []
    try:
        root = app_copy(served / "app")
        if args.gzip:
            raw, packed = gzip_siblings(root)
            print(
                f"gzip: the gateway sends {raw / 2**20:.1f} MiB of the vendored files and app.zip as "
                f"{packed / 2**20:.1f} MiB (gzip -6 where it is smaller)\n"
            )
        with running_replay(series, history=400, loop=True) as market:
            config = dataclasses.replace(
                StackConfig.for_tests(state), app_root=root, market_data_url=market.url
            )
            stack = LocalStack(config)
            stack.start()
            try:
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                    try:
                        for n, network in enumerate(args.network):
                            if n:
                                print("\n")
                            results.append((network, run_profile(browser, stack, args, network)))
                    finally:
                        browser.close()
            finally:
                stack.reset()
    finally:
        shutil.rmtree(served, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    if len(results) > 1:
        print_summary(results)


def run_profile(browser: Any, stack: LocalStack, args: Any, network: Network) -> dict[str, list[Sample]]:
    """Everything once under ``network``: the figures, printed as soon as they are measured."""
    for seen in (CRASHES, PROFILE_SIZES, WORKERS_THROTTLED, WORKER_ERRORS, NOT_READY):
        seen.clear()
    diag: dict[str, list[Sample]] | None = None
    probes: list[dict[str, Any]] = []
    before = os.getloadavg()[0]
    figures = measure(
        browser, stack, args.runs, args.warmup, args.user, warm=not args.no_repeat, network=network
    )
    busy = f"{before:.1f} before the runs, {os.getloadavg()[0]:.1f} after"
    if args.diagnostic_runs > 0:
        diag, probes = diagnose(browser, stack, args.diagnostic_runs, network)
    print_figures(figures["bare"], figures["app"], args.user, busy, network)
    print_warm(figures["bare"], figures["app"], figures)
    if NOT_READY:
        print(
            f"  {len(NOT_READY)} page(s) not ready within {READY_TIMEOUT_MS // 1000} s, run again (their "
            "round, for a visit): " + " | ".join(NOT_READY)
        )
    if network.throttled:
        print_sources(figures, network)
    print_breakdown(figures["bare"], figures["app"])
    if diag is not None and probes:
        print_diagnostics(diag, probes)
    sys.stdout.flush()
    return figures


if __name__ == "__main__":
    main()
