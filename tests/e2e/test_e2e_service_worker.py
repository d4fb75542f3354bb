"""The service worker (web/sw.js): a repeat visit takes the runtime and the app's archive from its cache.

The first visit registers the worker once the page is ready and hands it what it loaded; the reload
then gets Pyodide's runtime, PyScript and ``web/app.zip`` from the worker without a request, while the
page, ``/config.json`` and every API call go to the network as before, and the page gets ready. When the
archive changes (rebuilt in place, as the local stack's is), the very next load is served the new one
and the old cache is gone. The stack here serves a copy of the app, so that the test can change it.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from e2ekit import AppPage, Watch, fresh_user, wait_until
from playwright.sync_api import Browser, BrowserContext, Request, Response

from signalguard.devstack.assets import ASSETS_HEADER
from signalguard.devstack.config import REPO_ROOT, StackConfig
from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def app_stack(assets: None, demo_market: ReplayServer) -> Iterator[LocalStack]:
    """A stack of the module's own serving a copy of the app (index.html, pyscript.toml, web/)."""
    root = Path(tempfile.mkdtemp(prefix="signalguard-e2e-sw-app-"))
    for name in ("index.html", "pyscript.toml"):
        shutil.copy2(REPO_ROOT / name, root / name)
    shutil.copytree(
        REPO_ROOT / "web", root / "web", ignore=shutil.ignore_patterns("node_modules", "package*")
    )
    config = StackConfig.for_tests(Path(tempfile.mkdtemp(prefix="signalguard-e2e-sw-")))
    stack = LocalStack(dataclasses.replace(config, app_root=root, market_data_url=demo_market.url))
    stack.start()
    try:
        yield stack
    finally:
        stack.reset()
        shutil.rmtree(root, ignore_errors=True)


KEPT = (
    "/web/vendor/pyodide/pyodide.mjs",
    "/web/vendor/pyodide/pyodide.asm.mjs",
    "/web/vendor/pyodide/pyodide.asm.wasm",
    "/web/vendor/pyodide/python_stdlib.zip",
    "/web/vendor/pyodide/pyodide-lock.json",
    "/web/vendor/pyscript/core.js",
    "/web/app.zip",
)
CACHES_JS = """
async () => {
  const out = {};
  for (const name of await caches.keys()) {
    out[name] = (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname);
  }
  return out;
}
"""


def test_a_repeat_visit_takes_the_runtime_and_the_archive_from_the_worker(
    app_stack: LocalStack, chromium: Browser
) -> None:
    stack = app_stack
    email, _ = fresh_user(stack)
    # Watched like the other tests' contexts, but without Playwright's request routing: routing switches
    # the page's cache off, and the worker leaves such requests to the network (see web/sw.js).
    ctx = chromium.new_context()
    watch = Watch()
    ctx.on("request", watch.on_request)
    try:
        tab = AppPage(ctx.new_page(), stack)
        tab.page.on("console", watch.on_console)
        tab.page.on("pageerror", watch.on_page_error)
        tab.open().sign_in(email)
        check_repeat_visits(tab, ctx, stack.config.app_root / "web" / "app.zip")
    finally:
        ctx.close()
    watch.assert_clean()


def check_repeat_visits(tab: AppPage, ctx: BrowserContext, archive: Path) -> None:
    page = tab.page
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=15_000)
    # The worker keeps what the first visit loaded; wait until it holds all of it.
    wait_until(
        "the worker to keep the first visit's files",
        lambda: set(KEPT) <= {p for paths in page.evaluate(CACHES_JS).values() for p in paths},
        timeout=20,
    )
    version = page.evaluate(f"fetch('/', {{method: 'HEAD'}}).then((r) => r.headers.get('{ASSETS_HEADER}'))")
    assert version
    caches = page.evaluate(CACHES_JS)
    assert list(caches) == [f"signalguard-assets-1-{version}"]
    (kept,) = caches.values()
    assert all(p.startswith(("/web/vendor/", "/web/app.zip")) for p in kept), kept

    responses: list[Response] = []
    by_worker: list[Request] = []
    page.on("response", lambda r: responses.append(r))
    ctx.on("request", lambda r: by_worker.append(r) if r.service_worker is not None else None)
    started = time.monotonic()
    page.reload()
    tab.wait_ready()
    print(f"\nrepeat visit to data-ready: {tab.ready_ms()} ms ({time.monotonic() - started:.2f} s)")
    served = {urlsplit(r.url).path: r.from_service_worker for r in responses}
    assert all(served.get(p) for p in KEPT), {p: served.get(p) for p in KEPT}
    # Answered from the cache: the worker asked the network for none of them.
    assert not [r.url for r in by_worker if urlsplit(r.url).path in KEPT]
    # The settings and the API never pass through it.
    api = [p for p in served if p == "/config.json" or p.startswith(("/rest/v1/", "/auth/v1/"))]
    assert "/config.json" in api and any(p.startswith("/rest/v1/rpc/") for p in api)
    assert not [p for p in api if served[p]], "answered by the service worker"
    # Nothing else is kept: only the vendored packages and the archive (also what loaded after the
    # first visit's files were handed over, like the chart library).
    now = page.evaluate(CACHES_JS)[f"signalguard-assets-1-{version}"]
    assert set(kept) <= set(now) and all(p.startswith(("/web/vendor/", "/web/app.zip")) for p in now), now

    # A rebuilt archive (other bytes, still a good zip): the next load already gets it from the
    # network, and the old cache is dropped.
    with zipfile.ZipFile(archive, "a") as zf:
        zf.comment += b" rebuilt"
    by_worker.clear()
    page.reload()
    tab.wait_ready()
    caches = page.evaluate(CACHES_JS)
    assert len(caches) == 1 and f"signalguard-assets-1-{version}" not in caches, caches
    assert [urlsplit(r.url).path for r in by_worker].count("/web/app.zip") == 1
