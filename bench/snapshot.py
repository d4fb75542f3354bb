"""A Pyodide memory snapshot of the imported app: its size, its cost, and the start-up it would save.

Pyodide (314.0.2, vendored in ``web/vendor/pyodide``) can copy the interpreter's whole linear memory
after it has loaded and imported things (``loadPyodide({_makeSnapshot: true})``, then
``pyodide.makeMemorySnapshot()``) and start from that copy instead of initialising Python
(``loadPyodide({_loadSnapshot: bytes})``). Both options are private and undocumented (``@ignore`` in
``pyodide.d.ts``). This benchmark makes two snapshots in Chromium (Debian's ``/usr/bin/chromium``,
driven by Playwright as the e2e tests drive it), from a bare page of the same origin:

- *bare*: right after ``loadPyodide()``;
- *app*: after fetching and unpacking ``web/app.zip`` and importing ``signalguard.browser.main``
  (what ``pyscript.toml`` and ``index.html`` make the interpreter do before the app starts),

and prints each one's size (raw, gzip -6/-9, brotli, as a host would serve it) and the time to make
it. Then it measures, in the same run, the time from navigation (the page's ``performance.now()``)
until the app's modules are imported, for four kinds of page, each in a fresh browser context (nothing
in the HTTP or code cache), interleaved, after one discarded warm-up round:

- ``cold``: ``loadPyodide()``, fetch and unpack ``app.zip``, ``import signalguard.browser.main``
  (the app's path today, without PyScript);
- ``bare snapshot``: ``loadPyodide({_loadSnapshot})`` from the bare snapshot, then the same unpack and
  import;
- ``app snapshot``: ``loadPyodide({_loadSnapshot})`` from the app snapshot: the modules are imported
  when it resolves;
- ``app snapshot + files``: the same, then fetch and unpack ``app.zip`` too. The snapshot holds the
  interpreter's memory, not its file system (Emscripten keeps files in JavaScript objects), so the
  unpacked sources are gone after a restore: PyScript's ``[files]`` unpacks them again anyway, and
  tracebacks need them for their source lines.

The snapshot is fetched in parallel with ``pyodide.mjs`` (the page asks for it first). After the
modules are imported, each page runs a small piece of the app's pure core (RSI, EMA, MACD and
Bollinger bands over 500 values, and a ``ValueError`` from a bad period) and reports the values, the
traceback, and what the restored interpreter looks like (``sys.path``, ``hash()`` of a string, whether
``random`` was imported); the values must be the same for every kind.

A *repeat visit* is measured too: a fresh browser profile on disk loads the page twice and the
second load counts, its files coming from the HTTP cache (and the wasm's compiled code from Chromium's
code cache). An incognito context keeps its cache in memory and does not keep responses as large as
the wasm or a snapshot, hence a profile on disk. The server here (a local static server, not the
gateway: these pages need no database) sends ``Cache-Control: public, max-age=31536000, immutable``,
as the static host does for the content-named files (``docs/deploy.md``).

Then the app itself, with ``bench.startup``'s set-up (the local stack on free ports, a market replay,
a returning user signed in before each run; navigation to ``body[data-ready="1"]``): ``index.html``
under PyScript as it is, and with the app snapshot. PyScript 0.7.31 has no option to hand Pyodide a
snapshot, but its ``interpreter`` setting names the module it takes ``loadPyodide`` and ``version``
from; the snapshot variant names a small module beside ``pyodide.mjs`` that re-exports ``version``
and wraps ``loadPyodide`` to add ``_loadSnapshot`` (``web/app.snap``). Only that line of
``pyscript.toml`` differs; the file is swapped between the interleaved runs.

Diagnostics, outside the figures: PyScript running a short script with and without the snapshot
loader (no stack); a snapshot made under Node (``bench/snapshot.mjs``) restored in Chromium; and the
same cold/restore comparison under Node 20, a fresh process per run.

The network is the loopback: downloads cost almost nothing here, while a snapshot adds megabytes to
a first visit. The report prints the bandwidth at which the extra bytes cost as much time as the
snapshot saves. This is a measurement, not a test: it never fails on speed.

``python -m bench.snapshot [--runs N] [--warmup N] [--repeat-runs N] [--diagnostic-runs N] [--app-runs N]
[--no-node] [--brotli-quality Q]`` prints all this.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from signalguard.devstack.assets import build
from signalguard.devstack.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))
from e2ekit import CHROMIUM, CHROMIUM_ARGS

RUNS = 5
WARMUP = 1
REPEAT_RUNS = 5
DIAGNOSTIC_RUNS = 3
APP_RUNS = 3
BROTLI_QUALITY = 11
TIMEOUT_MS = 120_000
NAN = float("nan")
ENTRY = "signalguard.browser.main"

# -- the pages -------------------------------------------------------------------------------------

#: Run by every page once the app's modules are imported: a piece of the pure core, and what the
#: interpreter looks like. Its last expression (a JSON string) is the result.
CHECK_PY = """
import json, math, os, sys, traceback

_app = sorted(m for m in sys.modules if m.split(".")[0] == "signalguard")
from signalguard.core.indicators import EMA, MACD, RSI, BollingerBands

_xs = [100 + 10 * math.sin(i / 7) + 0.05 * i for i in range(500)]
_values = {}
for _name, _ind in (("rsi14", RSI(14)), ("ema21", EMA(21)), ("macd", MACD(12, 26, 9)),
                    ("bb20", BollingerBands(20, 2.0))):
    _ind.extend(_xs)
    _values[_name] = repr(_ind.value)
try:
    RSI(0)
except ValueError:
    _tb = traceback.format_exc()
json.dumps({
    "values": _values,
    "app_modules": len(_app),
    "files_present": os.path.exists("signalguard/core/indicators.py"),
    "traceback_has_source": "raise ValueError" in _tb,
    "hash": hash("signalguard"),
    "random": sys.modules["random"].random() if "random" in sys.modules else None,
    "sys_path_head": sys.path[:3],
})
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Pyodide snapshot bench</title><link rel="icon" href="data:,">
<script type="module" src="./snapshot-bench.mjs"></script></head>
<body></body>
</html>
"""

# ?mode=cold | restore | make; &snap=FILE (restore); &files (restore: unpack app.zip and import too);
# &app (make: unpack and import before the snapshot); &out=NAME (make: where the snapshot is PUT).
PAGE_JS = """
const t = { script: performance.now() };
const q = new URLSearchParams(location.search);
const mode = q.get("mode");
const bytesOf = async (url) => {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
};
try {
  const snapshot = mode === "restore" ? bytesOf(`./${q.get("snap")}`) : null;
  const { loadPyodide } = await import("./vendor/pyodide/pyodide.mjs");
  t.mjs = performance.now();
  const options = { indexURL: new URL("./vendor/pyodide/", import.meta.url).href };
  if (mode === "make") options._makeSnapshot = true;
  if (snapshot) options._loadSnapshot = snapshot;
  const pyodide = await loadPyodide(options);
  t.loaded = performance.now();
  if (mode === "cold" || q.has("files") || q.has("app")) {
    const zip = await bytesOf("./app.zip");
    t.fetched = performance.now();
    pyodide.unpackArchive(zip, "zip", { extractDir: "." });
    t.unpacked = performance.now();
    pyodide.runPython("import ENTRY");
  }
  t.imported = performance.now();
  if (mode === "make") {
    const before = performance.now();
    const bytes = pyodide.makeMemorySnapshot();
    t.snapshot_ms = performance.now() - before;
    t.bytes = bytes.length;
    const r = await fetch(`./upload/${q.get("out")}`, { method: "PUT", body: bytes });
    if (!r.ok) throw new Error(`upload: HTTP ${r.status}`);
  } else {
    t.check = JSON.parse(pyodide.runPython(await (await fetch("./snapshot-check.py")).text()));
  }
} catch (e) {
  t.error = String(e?.stack ?? e).slice(0, 3000);
}
t.resources = performance.getEntriesByType("resource").map(
  (e) => [new URL(e.name).pathname, e.startTime, e.responseEnd, e.transferSize, e.encodedBodySize]);
globalThis.__sgSnap = t;
""".replace("ENTRY", ENTRY)

#: PyScript's ``interpreter`` setting names a module with Pyodide's exports; this one adds the snapshot.
LOADER_MJS = """
import { loadPyodide as load, version } from "./pyodide.mjs";

export { version };

export function loadPyodide(options = {}) {
  const snapshot = fetch(new URL("../../app.snap", import.meta.url)).then((r) => {
    if (!r.ok) throw new Error(`app.snap: HTTP ${r.status}`);
    return r.arrayBuffer();
  });
  return load({ ...options, _loadSnapshot: snapshot });
}
"""

PYSCRIPT_HTML = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>PyScript %(kind)s</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="./vendor/pyscript/core.css">
<script type="module" src="./vendor/pyscript/core.js"></script></head>
<body>
<mpy-config hidden>
plugins = ["!py-editor", "!py-game", "!py-terminal", "!donkey", "!deprecations-manager"]
</mpy-config>
<script type="py" config="./snapshot-pyscript-%(kind)s.toml">
import sys
import js
_preloaded = "%(entry)s" in sys.modules
import %(entry)s
js.document.body.dataset.preloaded = "1" if _preloaded else "0"
js.document.body.dataset.readyMs = str(js.performance.now())
from signalguard.core.indicators import RSI
_rsi = RSI(14)
_rsi.extend([100 + i %% 7 for i in range(100)])
js.document.body.dataset.check = repr(_rsi.value)
js.document.body.dataset.ready = "1"
</script>
</body>
</html>
"""

PYSCRIPT_TOML = """interpreter = "./vendor/pyodide/%(module)s"
plugins = ["!py-editor", "!py-game", "!py-terminal", "!donkey", "!deprecations-manager"]

[files]
"./app.zip" = "./*"
"""

MIME = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".zip": "application/zip",
    ".snap": "application/octet-stream",
    ".py": "text/plain; charset=utf-8",
    ".toml": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
}


def site(root: Path) -> Path:
    """The served folder: the vendored runtime, app.zip, the benchmark's pages."""
    web = root / "web"
    shutil.copytree(REPO_ROOT / "web" / "vendor", web / "vendor")
    shutil.copy2(REPO_ROOT / "web" / "app.zip", web / "app.zip")
    (web / "snapshot-bench.html").write_text(PAGE_HTML)
    (web / "snapshot-bench.mjs").write_text(PAGE_JS)
    (web / "snapshot-check.py").write_text(CHECK_PY)
    (web / "vendor" / "pyodide" / "snapshot-loader.mjs").write_text(LOADER_MJS)
    for kind, module in (("plain", "pyodide.mjs"), ("snapshot", "snapshot-loader.mjs")):
        (web / f"snapshot-pyscript-{kind}.html").write_text(PYSCRIPT_HTML % {"kind": kind, "entry": ENTRY})
        (web / f"snapshot-pyscript-{kind}.toml").write_text(PYSCRIPT_TOML % {"module": module})
    return web


class Handler(SimpleHTTPRequestHandler):
    """Static files with long-lived caching, and ``PUT /web/upload/NAME`` to receive a snapshot."""

    protocol_version = "HTTP/1.1"

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        return MIME.get(Path(path).suffix) or super().guess_type(path)

    def end_headers(self) -> None:
        if self.command == "GET":
            self.send_header("Cache-Control", "public, max-age=31536000, immutable")
        super().end_headers()

    def do_PUT(self) -> None:
        name = self.path.rsplit("/", 1)[1]
        if not self.path.startswith("/web/upload/") or not name.endswith(".snap"):
            self.send_error(404)
            return
        length = int(self.headers["Content-Length"])
        data = self.rfile.read(length)
        (Path(self.directory) / "web" / name).write_bytes(data)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving(root: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- Chromium --------------------------------------------------------------------------------------


def visit(page: Any, url: str, done: str = "globalThis.__sgSnap !== undefined") -> None:
    page.goto(url, wait_until="commit")
    page.wait_for_function(done, timeout=TIMEOUT_MS)


def run_page(browser: Any, url: str) -> dict[str, Any]:
    """Load ``url`` in a fresh context; the page's record."""
    context = browser.new_context()
    try:
        return record_of(context, url, repeat=False)
    finally:
        context.close()


def run_repeat(playwright: Any, url: str) -> dict[str, Any]:
    """Load ``url`` twice in a fresh profile on disk (a real HTTP and code cache); the second load's record.

    An incognito context (``browser.new_context()``) keeps its HTTP cache in memory and does not keep
    responses as large as the wasm or a snapshot, so a repeat visit needs a profile on disk.
    """
    with tempfile.TemporaryDirectory(prefix="signalguard-bench-snapshot-profile-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            return record_of(context, url, repeat=True)
        finally:
            context.close()


def record_of(context: Any, url: str, repeat: bool) -> dict[str, Any]:
    problems: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    if repeat:
        visit(page, url)
        page.goto("about:blank")
    visit(page, url)
    record: dict[str, Any] = page.evaluate("globalThis.__sgSnap")
    if record.get("error") or problems:
        raise SystemExit(f"{url}: {record.get('error')}\n" + "\n".join(problems))
    return record


def make_snapshots(browser: Any, origin: str) -> dict[str, dict[str, Any]]:
    out = {}
    for name, extra in (("bare", ""), ("app", "&app")):
        out[name] = run_page(browser, f"{origin}/web/snapshot-bench.html?mode=make&out={name}.snap{extra}")
    return out


KINDS: dict[str, str] = {
    "cold": "mode=cold",
    "bare snapshot": "mode=restore&snap=bare.snap&files",
    "app snapshot": "mode=restore&snap=app.snap",
    "app snapshot + files": "mode=restore&snap=app.snap&files",
}


#: The app snapshot made under Node (``bench/snapshot.mjs make``), restored in Chromium.
NODE_MADE = "mode=restore&snap=node.snap"


def measure(
    browser: Any, origin: str, kinds: Iterable[str], runs: int, warmup: int
) -> dict[str, list[dict[str, Any]]]:
    """First visits: each kind in a fresh context, interleaved, after ``warmup`` discarded rounds."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for i in range(warmup + runs):
        for kind in out:
            record = run_page(browser, f"{origin}/web/snapshot-bench.html?{KINDS[kind]}")
            if i >= warmup:
                out[kind].append(record)
    return out


def measure_repeat(
    playwright: Any, origin: str, kinds: Iterable[str], runs: int
) -> dict[str, list[dict[str, Any]]]:
    """Repeat visits: each kind loaded twice in a fresh profile, interleaved; the second loads."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for _ in range(runs):
        for kind in out:
            out[kind].append(run_repeat(playwright, f"{origin}/web/snapshot-bench.html?{KINDS[kind]}"))
    return out


def pyscript_page(browser: Any, url: str) -> dict[str, Any]:
    """A PyScript page in a fresh context: when its script ran, and whether the app was already imported."""
    context = browser.new_context()
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(url, wait_until="commit")
        try:
            page.wait_for_selector("body[data-ready='1']", state="attached", timeout=TIMEOUT_MS)
        except Exception as exc:
            return {"error": f"{exc}; " + "; ".join(problems)[:2000]}
        result: dict[str, Any] = page.evaluate(
            "({ready: Number(document.body.dataset.readyMs), preloaded: document.body.dataset.preloaded,"
            " check: document.body.dataset.check})"
        )
        return result
    finally:
        context.close()


def pyscript_runs(browser: Any, origin: str, runs: int) -> dict[str, list[dict[str, Any]]]:
    """PyScript pages, plain and with the snapshot loader as ``interpreter``, interleaved."""
    out: dict[str, list[dict[str, Any]]] = {"plain": [], "snapshot": []}
    for _ in range(runs):
        for kind in out:
            out[kind].append(pyscript_page(browser, f"{origin}/web/snapshot-pyscript-{kind}.html"))
    return out


def measure_app(browser: Any, snapshot: Path, work: Path, runs: int) -> dict[str, list[Any]]:
    """The real app (``index.html``, PyScript, the local stack), plain and with the app snapshot.

    ``bench.startup``'s set-up: a copy of the app served by the gateway, the stack on free ports, a
    replay of the market, a returning user signed in before each run; navigation to
    ``body[data-ready="1"]``. The snapshot variant differs only in ``pyscript.toml``'s ``interpreter``
    (the loader module beside ``pyodide.mjs``) and the snapshot at ``web/app.snap``; the file is
    swapped between runs (the gateway reads it at each request).
    """
    import dataclasses

    from e2ekit import DEMO_SYMBOLS

    from bench import startup
    from signalguard.devstack.config import StackConfig
    from signalguard.devstack.stack import LocalStack
    from signalguard.replay.server import running_replay
    from signalguard.replay.synthetic import generate

    root = startup.app_copy(work / "app")
    toml = root / "pyscript.toml"
    plain = toml.read_text()
    line = 'interpreter = "./web/vendor/pyodide/pyodide.mjs"'
    if line not in plain:
        raise SystemExit(f"pyscript.toml has no line {line!r}: the loader cannot be put in its place")
    variants = {
        "plain": plain,
        "snapshot": plain.replace(line, line.replace("pyodide.mjs", "snapshot-loader.mjs")),
    }
    (root / "web" / "vendor" / "pyodide" / "snapshot-loader.mjs").write_text(LOADER_MJS)
    # The snapshot's archive, not the checkout's (which may have been rebuilt since).
    shutil.copy2(snapshot, root / "web" / "app.snap")
    shutil.copy2(snapshot.parent / "app.zip", root / "web" / "app.zip")
    state = Path(tempfile.mkdtemp(prefix="signalguard-bench-snapshot-state-"))
    series = generate(DEMO_SYMBOLS, interval="1m", candles=600, seed=2).series
    out: dict[str, list[Any]] = {k: [] for k in variants}
    try:
        with running_replay(series, history=400, loop=True) as market:
            config = dataclasses.replace(
                StackConfig.for_tests(state), app_root=root, market_data_url=market.url
            )
            stack = LocalStack(config)
            stack.start()
            try:
                for i in range(runs + 1):  # the first round warms the gateway and the file cache
                    for kind, text in variants.items():
                        toml.write_text(text)
                        session = startup.sign_in(stack, startup.USER)
                        try:
                            sample, holder = startup.load(
                                browser,
                                "app",
                                f"{stack.url}/",
                                [startup.INSTRUMENT_JS, startup.session_script(stack, session)],
                            )
                        except SystemExit as exc:  # not ready: say why, and go on with the others
                            out[kind].append(f"run {i}: {exc}"[:3000])
                            continue
                        startup.release(stack, session, holder)
                        if i > 0:
                            out[kind].append(sample)
            finally:
                stack.reset()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return out


# -- Node ------------------------------------------------------------------------------------------


def node(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(REPO_ROOT / "bench" / "snapshot.mjs"), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"node bench/snapshot.mjs {args[0]}: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def node_runs(work: Path, runs: int) -> dict[str, Any]:
    zip_path, check = str(REPO_ROOT / "web" / "app.zip"), str(work / "check.py")
    Path(check).write_text(CHECK_PY)
    snap = str(work / "node-app.snap")
    made = node("make", snap, zip_path)
    out: dict[str, Any] = {"make": made, "cold": [], "restore": []}
    for _ in range(runs):
        out["cold"].append(node("cold", zip_path, check))
        out["restore"].append(node("restore", snap, check))
    return out


# -- the report ------------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    kept = [v for v in values if v == v]
    return statistics.median(kept) if kept else NAN


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def runs_text(values: Iterable[float]) -> str:
    return " ".join(f"{v:5.0f}" for v in values)


def served_bytes(record: dict[str, Any]) -> int:
    """Bytes the page received over the network (Resource Timing's transferSize: 0 from the cache)."""
    return sum(int(r[3]) for r in record["resources"])


def request_end(record: dict[str, Any], suffix: str) -> float:
    return next((float(r[2]) for r in record["resources"] if r[0].endswith(suffix)), NAN)


def print_sizes(
    made: dict[str, dict[str, Any]], sizes: dict[str, dict[str, Any]], pyodide: dict[str, Any]
) -> None:
    print("snapshots made in Chromium (one run each, from a bare page of the same origin):")
    for name, label in (("bare", "bare interpreter"), ("app", "after unpack + import " + ENTRY)):
        m, s = made[name], sizes[name]
        before = m["imported"] if name == "app" else m["loaded"]
        print(
            f"  {label:48} made at {before:5.0f} ms, makeMemorySnapshot() {m['snapshot_ms']:4.0f} ms; "
            f"{mib(s['raw'])} raw, gzip -6 {mib(s['gzip6'])}, gzip -9 {mib(s['gzip9'])}, "
            f"brotli q{s['brotli_quality']} {mib(s['brotli'])} ({s['brotli_ms'] / 1000:.0f} s to compress)"
        )
    print(
        "  for comparison, what loadPyodide() downloads today: pyodide.asm.wasm "
        f"{mib(pyodide['wasm_raw'])} (brotli q{pyodide['quality']} {mib(pyodide['wasm_brotli'])}), "
        f"python_stdlib.zip {mib(pyodide['stdlib_raw'])} (brotli {mib(pyodide['stdlib_brotli'])}), "
        f"pyodide.asm.mjs {mib(pyodide['mjs_raw'])} (brotli {mib(pyodide['mjs_brotli'])})"
    )


def print_figures(title: str, figures: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    print(f"\n{title}")
    medians = {}
    cold = median(r["imported"] for r in figures["cold"])
    for kind, records in figures.items():
        times = [float(r["imported"]) for r in records]
        m = median(times)
        medians[kind] = m
        loaded = median(r["loaded"] for r in records)
        snap = median(request_end(r, ".snap") for r in records)
        wasm = median(request_end(r, "pyodide.asm.wasm") for r in records)
        extra = f"snapshot received {snap:5.0f}, " if snap == snap else " " * 25
        over = mib(median(served_bytes(r) for r in records))
        print(
            f"  {kind:22} median {m:6.0f} ms  x{m / cold:.2f} of cold ({m - cold:+6.0f} ms)   "
            f"runs {runs_text(times)}"
        )
        print(
            f"  {'':22} (loadPyodide resolved {loaded:5.0f}, {extra}wasm received {wasm:5.0f}; "
            f"over the network {over}, uncompressed here)"
        )
    return medians


def print_checks(figures: dict[str, list[dict[str, Any]]]) -> None:
    print("\n  the restored modules at work (RSI/EMA/MACD/Bollinger over 500 values, a ValueError):")
    reference = figures["cold"][0]["check"]["values"]
    for kind, records in figures.items():
        checks = [r["check"] for r in records]
        same = all(c["values"] == reference for c in checks)
        c = checks[0]
        hashes = {c["hash"] for c in checks}
        randoms = {c["random"] for c in checks}
        print(
            f"    {kind:22} values {'identical to cold' if same else 'DIFFER from cold'}; "
            f"{c['app_modules']} signalguard modules already imported; sources on disk: "
            f"{c['files_present']}; traceback shows source lines: {c['traceback_has_source']}; "
            f"hash('signalguard') {len(hashes)} distinct in {len(checks)} runs; "
            f"random.random() {len(randoms)} distinct; sys.path[:3] {c['sys_path_head']}"
        )
    print(f"    values: {json.dumps(reference)}")


def print_app(app: dict[str, list[Any]]) -> None:
    from bench.startup import LOADED, LOADING

    print(
        f"\nthe app itself (index.html under PyScript, the local stack, a returning user), navigation -> "
        f"body[data-ready='1'], {len(app['plain'])} runs each, interleaved, a fresh context per run:"
    )
    for kind, records in app.items():
        for failure in [r for r in records if isinstance(r, str)][:2]:
            print(f"  {kind:9} NOT READY: {failure}")
    app = {k: [r for r in records if not isinstance(r, str)] for k, records in app.items()}
    plain = median(s.ready_ms for s in app["plain"])
    for kind, samples in app.items():
        if not samples:
            continue
        ready = [s.ready_ms for s in samples]
        m = median(ready)
        load = median(s.marks.get(LOADED, NAN) - s.marks.get(LOADING, NAN) for s in samples)
        py_ready = median(s.marks.get("py:ready", NAN) for s in samples)
        print(
            f"  {kind:9} median {m:6.0f} ms  x{m / plain:.2f} ({m - plain:+5.0f} ms)   "
            f"runs {runs_text(ready)}; "
            f"PyScript's loadPyodide() {load:5.0f} ms, py:ready at {py_ready:5.0f} ms"
        )
        problems = sorted({p for s in samples for p in s.problems})
        if problems:
            print(f"  {'':9} errors seen by the page: " + "; ".join(problems)[:1500])


def breakeven(saved_ms: float, extra_bytes: float) -> str:
    if saved_ms <= 0:
        return "never (nothing saved)"
    mbit_s = extra_bytes * 8 / 1e6 / (saved_ms / 1000)
    return f"{mbit_s:.0f} Mbit/s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshot", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"first-visit runs of each kind ({RUNS})")
    parser.add_argument("--warmup", type=int, default=WARMUP, help=f"discarded rounds first ({WARMUP})")
    parser.add_argument(
        "--repeat-runs", type=int, default=REPEAT_RUNS, help=f"repeat-visit runs, 0 for none ({REPEAT_RUNS})"
    )
    parser.add_argument(
        "--diagnostic-runs", type=int, default=DIAGNOSTIC_RUNS, help=f"PyScript pairs ({DIAGNOSTIC_RUNS})"
    )
    parser.add_argument(
        "--app-runs",
        type=int,
        default=APP_RUNS,
        help=f"the real app, plain and snapshot, 0 for none ({APP_RUNS})",
    )
    parser.add_argument("--no-node", action="store_true", help="skip the Node measurements")
    parser.add_argument(
        "--brotli-quality", type=int, default=BROTLI_QUALITY, help=f"brotli quality ({BROTLI_QUALITY})"
    )
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    if shutil.which(CHROMIUM) is None:
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium package (scripts/bootstrap does)")
    build(REPO_ROOT)
    work = Path(tempfile.mkdtemp(prefix="signalguard-bench-snapshot-"))
    before = os.getloadavg()[0]
    node_in_chromium: dict[str, Any] = {}
    try:
        web = site(work / "site")
        with serving(work / "site") as origin, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                made = make_snapshots(browser, origin)
                if not args.no_node:
                    # Made under Node, restored in Chromium: does the build step need a browser?
                    node("make", str(web / "node.snap"), str(REPO_ROOT / "web" / "app.zip"))
                    node_in_chromium = run_page(browser, f"{origin}/web/snapshot-bench.html?{NODE_MADE}")
                first = measure(browser, origin, list(KINDS), args.runs, args.warmup)
                repeat = (
                    measure_repeat(p, origin, ["cold", "app snapshot + files"], args.repeat_runs)
                    if args.repeat_runs > 0
                    else {}
                )
                pys = pyscript_runs(browser, origin, args.diagnostic_runs) if args.diagnostic_runs > 0 else {}
                app = measure_app(browser, web / "app.snap", work, args.app_runs) if args.app_runs > 0 else {}
            finally:
                browser.close()
        busy = f"{before:.1f} before the runs, {os.getloadavg()[0]:.1f} after"
        q = str(args.brotli_quality)
        sizes = {n: node("compress", str(web / f"{n}.snap"), "--brotli-quality", q) for n in ("bare", "app")}
        pyodide: dict[str, Any] = {"quality": args.brotli_quality}
        for key, name in (
            ("wasm", "pyodide.asm.wasm"),
            ("stdlib", "python_stdlib.zip"),
            ("mjs", "pyodide.asm.mjs"),
        ):
            c = node("compress", str(web / "vendor" / "pyodide" / name), "--brotli-quality", q)
            pyodide[f"{key}_raw"], pyodide[f"{key}_brotli"] = c["raw"], c["brotli"]
        nodes = node_runs(work, args.runs) if not args.no_node else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"Pyodide memory snapshot ({os.cpu_count()} CPUs, load average {busy})\n")
    print_sizes(made, sizes, pyodide)
    med = print_figures(
        f"first visit, navigation -> app modules imported (ms): {args.runs} runs of each kind, interleaved, "
        "a fresh browser context per run",
        first,
    )
    print_checks(first)
    extra = sizes["app"]["brotli"]
    saved = med["cold"] - med["app snapshot + files"]
    print(
        f"\n  app snapshot + files saves {saved:.0f} ms here over the loopback; the snapshot adds "
        f"{mib(extra)} (brotli) to the download, which costs as much as that saving at "
        f"{breakeven(saved, extra)}: below that bandwidth a first visit is slower with the snapshot"
    )
    if repeat:
        print_figures(
            f"repeat visit (the second load in a fresh profile on disk, files from the HTTP cache): "
            f"{args.repeat_runs} runs of each kind",
            repeat,
        )
    if pys:
        print(
            "\ndiagnostic: PyScript with the app's interpreter, navigation -> its script ran "
            f"({args.diagnostic_runs} runs each)"
        )
        for kind, records in pys.items():
            errors = [r["error"] for r in records if "error" in r]
            ok = [r for r in records if "error" not in r]
            if ok:
                print(
                    f"  {kind:9} median {median(r['ready'] for r in ok):6.0f} ms   runs "
                    f"{runs_text(r['ready'] for r in ok)}; app modules in sys.modules before the script's "
                    f"import: {sorted({r['preloaded'] == '1' for r in ok})}; "
                    f"RSI(14) {sorted({r['check'] for r in ok})}"
                )
            for e in errors[:1]:
                print(f"  {kind:9} FAILED: {e}")
    if app:
        print_app(app)
    if nodes is not None:
        reference = first["cold"][0]["check"]["values"]
        print(
            f"\ndiagnostic: a snapshot made under Node, restored in Chromium: modules imported at "
            f"{node_in_chromium['imported']:.0f} ms, values "
            f"{'identical' if node_in_chromium['check']['values'] == reference else 'DIFFERENT'}"
        )
        m = nodes["make"]
        version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        cold = [r["imported"] - r["start"] for r in nodes["cold"]]
        rest = [r["loaded"] - r["start"] for r in nodes["restore"]]
        print(
            f"\ndiagnostic: Node {version}, "
            f"a fresh process per run, script start -> app modules imported ({args.runs} runs each):"
        )
        print(
            f"  snapshot made after {m['imported'] - m['start']:.0f} ms in {m['snapshot_ms']:.0f} ms, "
            f"{mib(m['bytes'])}"
        )
        print(f"  cold     median {median(cold):6.0f} ms   runs {runs_text(cold)}")
        print(
            f"  restore  median {median(rest):6.0f} ms   runs {runs_text(rest)}  "
            f"(x{median(rest) / median(cold):.2f} of cold)"
        )
        same = all(r["check"]["values"] == nodes["cold"][0]["check"]["values"] for r in nodes["restore"])
        print(f"  restored values identical to cold: {same}")


if __name__ == "__main__":
    main()
