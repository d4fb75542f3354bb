"""End-to-end tests: the real page in Chromium (Playwright, sync API) on the real local stack.

One stack for the session (PostgreSQL + PostgREST + gateway on free ports, in a throwaway state folder)
serves the checkout as the app, after the assets are vendored and the app zip is built. Every test gets
a fresh browser context, and every page is watched: a request to any host but 127.0.0.1, a console
error or an uncaught page error fails the test.

The page reads its settings from ``/config.json``, which the stack's gateway serves. Its market data
comes from a replay server on 127.0.0.1 (1m candles of the demo traders' symbols), so the tab's feed
connects as it would to the exchange.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import CHROMIUM, CHROMIUM_LOGS, DEMO_SYMBOLS, FAST_SYMBOLS, Browsers, chromium_args, make_stack
from playwright.sync_api import Browser, Playwright, sync_playwright

from signalguard.devstack.assets import build
from signalguard.devstack.config import REPO_ROOT
from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer, running_replay
from signalguard.replay.synthetic import generate


@pytest.fixture(scope="session")
def assets() -> None:
    build(REPO_ROOT)


@pytest.fixture(scope="session")
def demo_market() -> Iterator[ReplayServer]:
    # More closed history than any demo trader's warm-up (at most 202 candles).
    series = generate(DEMO_SYMBOLS, interval="1m", candles=600, seed=2).series
    with running_replay(series, history=400, loop=True) as server:
        yield server


@pytest.fixture(scope="module")
def fast_replay() -> Iterator[ReplayServer]:
    """A replay of FAST_SYMBOLS on the 1s interval (a candle closes every second, looping), per module."""
    series = generate(FAST_SYMBOLS, interval="1s", candles=600, seed=5, warmup=100, spacing=60).series
    with running_replay(series, history=300, loop=True) as server:
        yield server


@pytest.fixture(scope="module")
def fast_stack(assets: None, fast_replay: ReplayServer) -> Iterator[LocalStack]:
    """A stack of the module's own whose pages take their market data from ``fast_replay``."""
    s = make_stack(fast_replay.url)
    yield s
    s.reset()


@pytest.fixture()
def fast_tabs(chromium: Browser, fast_stack: LocalStack) -> Iterator[Browsers]:
    b = Browsers(chromium, fast_stack)
    yield b
    b.close()


@pytest.fixture(scope="session")
def stack(assets: None, demo_market: ReplayServer) -> Iterator[LocalStack]:
    s = make_stack(demo_market.url)
    yield s
    s.reset()


# Per module, not per session: the sync API keeps an event loop running on the main thread while it is
# open, and the other suites' ``asyncio.run`` must not find one.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright: Playwright, request: pytest.FixtureRequest) -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        # Debian's chromium package; Playwright's own browser downloads are not used. A missing
        # browser is a missing install step, never a reason to skip.
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (scripts/bootstrap does)")
    log = _chromium_log(request.module.__name__)
    log.unlink(missing_ok=True)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args(log), headless=True)
    yield browser
    browser.close()


@pytest.fixture()
def browsers(chromium: Browser, stack: LocalStack) -> Iterator[Browsers]:
    b = Browsers(chromium, stack)
    yield b
    b.close()


def _chromium_log(module: str) -> Path:
    return CHROMIUM_LOGS / f"{module.rsplit('.', 1)[-1]}.log"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test that failed on a crashed page or browser shows the end of its module's Chromium log.

    "Page crashed" and "Target crashed" say nothing of why; Chromium's log has the renderer's exit (a
    signal, an out-of-memory kill), and CI keeps only the test output.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed or "crash" not in str(report.longrepr).lower():
        return
    log = _chromium_log(item.module.__name__ if item.module is not None else "")
    if log.exists():
        tail = log.read_text(errors="replace").splitlines()[-60:]
        report.sections.append((f"Chromium log, last lines ({log})", "\n".join(tail)))
