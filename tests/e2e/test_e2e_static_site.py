"""The page built by ``signalguard build-site``, served by a plain static server, against the stack.

The folder is built for the e2e stack (its URL, its anon key, the replay market data) and served by
Python's ``http.server`` on another 127.0.0.1 port, with the folder's ``_headers`` applied as a static
host would. The page loads, a fresh user signs in and the app gets ready, every request goes to the
site, the API or the market data, and nothing is logged as an error. The site's service worker keeps
the hashed runtime and archive, and a reload takes them from it (but never the API's answers).
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from e2ekit import READY_TIMEOUT_MS, fresh_user, wait_until
from playwright.sync_api import Browser

from signalguard.devstack.assets import ASSETS_HEADER
from signalguard.devstack.config import REPO_ROOT, StackConfig, free_port
from signalguard.devstack.site import parse_headers, site_config, site_files, write_site
from signalguard.devstack.stack import DEMO_PASSWORD, LocalStack
from signalguard.replay.server import ReplayServer


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Files of one folder, with the headers its ``_headers`` gives each path (as Netlify would)."""

    rules: ClassVar[dict[str, dict[str, str]]] = {}

    def _rule(self) -> dict[str, str]:
        return self.rules.get(urlsplit(self.path).path, {})

    def send_head(self) -> Any:
        # The headers file configures the host; it is not part of the site.
        if urlsplit(self.path).path == "/_headers":
            self.send_error(404)
            return None
        return super().send_head()

    def guess_type(self, path: str) -> str:
        return self._rule().get("Content-Type") or super().guess_type(path)

    def end_headers(self) -> None:
        for name, value in self._rule().items():
            if name != "Content-Type":
                self.send_header(name, value)
        super().end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@dataclasses.dataclass
class Site:
    url: str
    folder: Path
    stack: LocalStack
    market: str


@pytest.fixture(scope="module")
def site(assets: None, demo_market: ReplayServer) -> Iterator[Site]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    config = StackConfig.for_tests(Path(tempfile.mkdtemp(prefix="signalguard-e2e-site-")))
    # The site is another origin: the gateway answers it only because it is named (CORS).
    stack = LocalStack(dataclasses.replace(config, market_data_url=demo_market.url, cors_origins=(origin,)))
    stack.start()
    folder = Path(tempfile.mkdtemp(prefix="signalguard-site-")) / "site"
    started = time.monotonic()
    settings = site_config(stack.url, stack.config.anon_key(), demo_market.url)
    write_site(folder, site_files(REPO_ROOT, settings))
    print(f"site built in {time.monotonic() - started:.2f} s")
    handler = type("Handler", (StaticHandler,), {"rules": parse_headers((folder / "_headers").read_text())})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(origin, folder, stack, demo_market.url)
    finally:
        server.shutdown()
        server.server_close()
        stack.stop()
        stack.reset()


def test_the_built_site_runs_from_a_static_server(chromium: Browser, site: Site) -> None:
    email, _ = fresh_user(site.stack)
    context = chromium.new_context()
    requests: list[str] = []
    errors: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.on("websocket", lambda ws: requests.append(ws.url))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    try:
        started = time.monotonic()
        answer = page.goto(site.url + "/")
        assert answer is not None and answer.status == 200
        csp = answer.headers["content-security-policy"]
        assert f"connect-src 'self' {site.stack.url} {site.market}" in csp
        page.get_by_test_id("sign-in").wait_for(state="visible", timeout=READY_TIMEOUT_MS)
        page.get_by_test_id("sign-in-email").fill(email)
        page.get_by_test_id("sign-in-password").fill(DEMO_PASSWORD)
        page.get_by_test_id("sign-in-submit").click()
        page.wait_for_selector("body[data-ready='1']", state="attached", timeout=READY_TIMEOUT_MS)
        print(f"ready {time.monotonic() - started:.2f} s after opening the static site")
        # The market data's stream opens once the trader warms up; wait for it, so it is counted.
        page.get_by_test_id("market-status").and_(page.locator("[data-state='live']")).wait_for(
            timeout=READY_TIMEOUT_MS
        )
        # Versioned files are kept a year; the page and its settings are asked for again every time.
        wasm = next(u for u in requests if u.endswith(".wasm"))
        assert urlsplit(wasm).path.startswith("/web/vendor/pyodide.")
        # The service worker (/sw.js) keeps the hashed files in a cache named after the release's
        # version; a reload takes them from it, while the API (another origin here) passes it by.
        version = parse_headers((site.folder / "_headers").read_text())["/"][ASSETS_HEADER]
        wait_until(
            "the service worker to keep the runtime",
            lambda: page.evaluate(
                "async (name) => (await caches.keys()).includes(name) && "
                "(await (await caches.open(name)).keys()).some((r) => r.url.endsWith('.wasm'))",
                f"signalguard-assets-1-{version}",
            ),
            timeout=20,
        )
        responses: list[tuple[str, bool]] = []
        page.on("response", lambda r: responses.append((r.url, r.from_service_worker)))
        page.reload()
        page.wait_for_selector("body[data-ready='1']", state="attached", timeout=READY_TIMEOUT_MS)
        assert [by for u, by in responses if u == wasm] == [True]
        assert [
            by for u, by in responses if re.fullmatch(r"/web/app\.[0-9a-f]{12}\.zip", urlsplit(u).path)
        ] == [True]
        api = [by for u, by in responses if u.startswith(site.stack.url + "/")]
        assert api and not any(api)
        assert not [u for u, by in responses if by and urlsplit(u).path in ("/config.json", "/pyscript.toml")]
    finally:
        context.close()
    market_ws = "ws" + site.market[len("http") :]
    allowed = (site.url + "/", site.stack.url + "/", site.market + "/", market_ws + "/")
    foreign = [
        u for u in requests if not u.startswith(allowed) and urlsplit(u).scheme not in ("data", "blob")
    ]
    assert not foreign, f"requests outside the site, the API and the market data: {foreign}"
    assert any(u.startswith(site.stack.url + "/auth/v1/") for u in requests)
    assert any(u.startswith(market_ws + "/") for u in requests)
    assert not errors, "\n".join(errors)
