"""`signalguard dev`: one command brings the stack up, prints where it is, and Ctrl-C stops it all."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from signalguard.devstack import tokens
from signalguard.devstack.config import free_port
from signalguard.devstack.demo_market import DEMO_SYMBOLS

pytestmark = pytest.mark.stack


@pytest.fixture()
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="signalguard-dev-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (the cluster's data folder)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmd:
            found.append(cmd)
    return found


def start_dev(
    state_dir: Path, port: int, env_extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], list[str]]:
    env = {**os.environ, "SIGNALGUARD_STATE_DIR": str(state_dir)}
    env.pop("SIGNALGUARD_MARKET_DATA_URL", None)  # the default unless a test sets it
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "signalguard", "dev", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    seen: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, ""):
            seen.put(line.rstrip())
            if "Press Ctrl-C to stop" in line:
                return
        seen.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = seen.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        lines.append(line)
        if "Press Ctrl-C to stop" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("dev did not come up:\n" + "\n".join(lines))


def stop_dev(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_dev_starts_prints_url_and_stops_everything(state_dir: Path) -> None:
    # The dev command's ports other than the gateway are fixed defaults; move them aside so a
    # developer's running stack does not collide with this test.
    port = free_port()
    env = {
        "SIGNALGUARD_PG_PORT": str(free_port()),
        "SIGNALGUARD_REST_PORT": str(free_port()),
        "SIGNALGUARD_REST_ADMIN_PORT": str(free_port()),
        "SIGNALGUARD_REPLAY_PORT": str(free_port()),
    }
    proc, lines = start_dev(state_dir, port, env)
    text = "\n".join(lines)
    # The demo market data, served by the same command and named in the page's settings.
    market = f"http://127.0.0.1:{env['SIGNALGUARD_REPLAY_PORT']}"
    assert f"Market:    {market} (a replay of BTCUSDT, ETHUSDT, SOLUSDT, BNBUSDT on 1m, looping;" in text
    assert httpx.get(f"http://127.0.0.1:{port}/config.json").json()["market_data_url"] == market
    for symbol in DEMO_SYMBOLS:
        params = {"symbol": symbol, "interval": "1m", "limit": 5}
        assert len(httpx.get(f"{market}/api/v3/klines", params=params).json()) == 5
    assert f"App:       http://127.0.0.1:{port}/" in text
    assert "DEVELOPMENT ONLY" in text
    assert "alice@signalguard.test" in text and "signalguard-demo" in text
    assert "applied migration 20251003060300_execution_lease.sql" in text
    assert httpx.get(f"http://127.0.0.1:{port}/_stack/health").json()["gateway"] == "ok"
    assert processes_using(state_dir)  # postgres runs from the state folder
    stop_dev(proc)
    time.sleep(0.2)
    assert processes_using(state_dir) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/_stack/health")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{market}/api/v3/exchangeInfo")

    # A restart keeps the data and applies nothing new. With a market data URL set, that is where the
    # page goes, and no replay is served.
    marker = "persisted-trader"
    elsewhere = f"http://127.0.0.1:{free_port()}"
    proc, lines = start_dev(state_dir, port, {**env, "SIGNALGUARD_MARKET_DATA_URL": elsewhere})
    try:
        from signalguard.devstack.config import StackConfig
        from signalguard.devstack.stack import LocalStack

        config = StackConfig(state_dir=state_dir, gateway_port=port, pg_port=int(env["SIGNALGUARD_PG_PORT"]))
        stack = LocalStack(config)
        with stack.connect() as conn:
            conn.execute(
                "update traders set name = %s where id = 'a11ce000-0000-4000-8000-0000000000a1'",
                (marker,),
            )
        assert not any("applied migration" in line for line in lines)
        assert not any("new database" in line for line in lines)
        assert f"  Market:    {elsewhere} (SIGNALGUARD_MARKET_DATA_URL)" in lines
        assert httpx.get(f"http://127.0.0.1:{port}/config.json").json()["market_data_url"] == elsewhere
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{market}/api/v3/exchangeInfo")
    finally:
        stop_dev(proc)
    proc, lines = start_dev(state_dir, port, env)
    try:
        with stack.connect() as conn:
            row = conn.execute(
                "select name from traders where id = 'a11ce000-0000-4000-8000-0000000000a1'"
            ).fetchone()
        assert row == (marker,)
    finally:
        stop_dev(proc)

    # Reset wipes the state folder.
    out = subprocess.run(
        [sys.executable, "-m", "signalguard", "reset"],
        capture_output=True,
        text=True,
        env={**os.environ, "SIGNALGUARD_STATE_DIR": str(state_dir)},
        check=True,
    )
    assert "removed" in out.stdout and not state_dir.exists()


def test_dev_names_a_taken_replay_port_and_starts_nothing(state_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        env = {**os.environ, "SIGNALGUARD_STATE_DIR": str(state_dir), "SIGNALGUARD_REPLAY_PORT": str(busy)}
        env.pop("SIGNALGUARD_MARKET_DATA_URL", None)
        out = subprocess.run(
            [sys.executable, "-m", "signalguard", "dev", "--port", str(free_port())],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    assert out.returncode == 2, out
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(
        f"signalguard dev: SIGNALGUARD_REPLAY_PORT: cannot serve the demo market data on port {busy}"
    )
    assert "SIGNALGUARD_MARKET_DATA_URL" in line
    assert not (state_dir / "pg").exists() and processes_using(state_dir) == []
    # A malformed port is named too.
    env["SIGNALGUARD_REPLAY_PORT"] = "ninety"
    out = subprocess.run(
        [sys.executable, "-m", "signalguard", "dev"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "SIGNALGUARD_REPLAY_PORT must be a TCP port number" in out.stderr, out


def test_token_cli_mints_user_and_machine_tokens(stack: Any) -> None:
    env = {
        **os.environ,
        "SIGNALGUARD_STATE_DIR": str(stack.config.state_dir),
        "SIGNALGUARD_PG_PORT": str(stack.config.pg_port),
    }

    def token(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "signalguard", "token", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    secret = stack.config.secrets().jwt_secret
    alice = stack.user_id("alice@signalguard.test")
    user = tokens.decode(secret, token("user", "alice@signalguard.test").stdout.strip())
    assert (user["role"], user["sub"]) == ("authenticated", alice) and "machine_id" not in user
    machine = tokens.decode(secret, token("machine", "alice@signalguard.test").stdout.strip())
    assert (machine["role"], machine["sub"]) == ("authenticated", alice)
    assert machine["machine_id"] == "a11ce000-0000-4000-8000-0000000000c1"
    assert tokens.decode(secret, token("anon").stdout.strip())["role"] == "anon"
    assert token("anon").stdout == token("anon").stdout  # API keys are stable
    none = token("machine", "carol@signalguard.test")
    assert none.returncode == 1 and "has no cloud machine" in none.stderr
    missing = token("user")
    assert missing.returncode == 2 and "needs the user's email" in missing.stderr
