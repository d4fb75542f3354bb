"""Every command the README shows works as written.

The commands are read from the README itself: each fenced ``sh`` block's lines, and each inline code
span that starts like a command (``make``, ``.venv/bin/``, ``scripts/``, ``python -m``, ``signalguard``,
``.ci/``, ``SIGNALGUARD_…=``). Each one must be known here, with how it is exercised: run right here
(the quick ones, exactly as written or with only a free port added), or by the named test that runs it
against a stack of its own (``make dev``'s ``signalguard dev``, the cloud worker). A command added to
the README without a check fails this test, so the README cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from signalguard.devstack import tokens
from signalguard.devstack.config import free_port
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV = ROOT / ".venv" / "bin"
_STARTS = r"(make |\.venv/bin/|scripts/|python -m |signalguard |\.ci/|SIGNALGUARD_\w+=)"

#: Commands run by other tests against stacks of their own (the test that does, by file and name).
ELSEWHERE = {
    "make dev": "tests/integration/test_dev_command.py::test_dev_starts_prints_url_and_stops_everything",
    "make test": ".ci/run (this run)",
    ".ci/run": ".ci/run (this run)",
    "scripts/bootstrap": "make test runs it first (scripts/test)",
    "signalguard cloud": "tests/e2e/e2ekit.py cloud_worker (the e2e tests' worker)",
    "signalguard token machine EMAIL": (
        "tests/integration/test_dev_command.py::test_token_cli_mints_user_and_machine_tokens"
    ),
    "scripts/schema-check": "tests/integration/test_schema_files.py (signalguard.devstack.schemacheck.check)",
    "python -m signalguard.devstack.schemacheck": "tests/integration/test_schema_files.py",
    ".venv/bin/signalguard schema --db-url URL": (
        "tests/integration/test_schema_command.py::test_the_installed_command"
    ),
    "SIGNALGUARD_FUZZ_CASES=50000": "tests/fuzz/conftest.py reads it",
    "SIGNALGUARD_SCREENSHOTS=DIR": "tests/e2e/e2ekit.py and test_e2e_demo.py read it",
    ".venv/bin/signalguard build-site --out DIR --supabase-url URL --anon-key KEY": (
        "tests/integration/test_site_build.py::test_the_installed_command"
    ),
}


def readme_commands() -> set[str]:
    """The commands the README shows (continuation lines joined, comments dropped)."""
    text = README.read_text()
    found: set[str] = set()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line:
                found.add(" ".join(line.split()))
    for span in re.findall(r"`([^`\n]+)`", text):
        if re.match(_STARTS, span):
            found.add(span)
    return found


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def test_every_readme_command_is_exercised() -> None:
    here = set(CHECKED_HERE)
    unknown = sorted(readme_commands() - here - set(ELSEWHERE))
    assert not unknown, f"README commands without a check (add one here): {unknown}"
    gone = sorted((here | set(ELSEWHERE)) - readme_commands())
    assert not gone, f"checks of commands the README no longer shows (remove them): {gone}"


def test_the_make_targets_run_the_scripts_the_readme_describes() -> None:
    for target in ("dev", "test", "bench", "reset"):
        dry = run("make", "-n", target)
        assert dry.returncode == 0, dry.stderr
        for script in re.findall(r"scripts/[a-z-]+", dry.stdout):
            path = ROOT / script
            assert path.is_file() and os.access(path, os.X_OK), script
    assert "scripts/bootstrap" in (ROOT / "scripts" / "dev").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_token_anon_and_the_cloud_workers_settings_as_written(stack: LocalStack) -> None:
    env = {"SIGNALGUARD_STATE_DIR": str(stack.config.state_dir)}
    anon = run(str(VENV / "signalguard"), "token", "anon", env=env)
    assert anon.returncode == 0, anon.stderr
    assert tokens.decode(stack.config.secrets().jwt_secret, anon.stdout.strip())["role"] == "anon"
    # The worker block: its settings are the ones the worker reads, each token command exists.
    (block,) = [c for c in readme_commands() if c.endswith(".venv/bin/signalguard cloud")]
    names = re.findall(r"(SIGNALGUARD_\w+)=", block)
    config = (ROOT / "src" / "signalguard" / "cloud" / "config.py").read_text()
    assert names and all(f'"{name}"' in config for name in names), names
    for kind in re.findall(r"signalguard token (\w+)", block):
        assert kind in ("user", "machine", "anon", "service")
    help_text = run(str(VENV / "signalguard"), "token", "--help").stdout
    assert "user" in help_text and "machine" in help_text and "service" in help_text


def test_the_replay_serves_as_written() -> None:
    port = free_port()
    args = [*shlex.split("signalguard replay --synthetic"), "--port", str(port)]
    proc = subprocess.Popen(
        [str(VENV / args[0]), *args[1:]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v3/exchangeInfo", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "the replay did not start"
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.json()["symbols"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_soak_takes_the_arguments_shown() -> None:
    shown = [c for c in readme_commands() if c.startswith(".venv/bin/python -m bench.soak")]
    assert len(shown) == 2
    usage = run(str(VENV / "python"), "-m", "bench.soak", "--help").stdout
    for command in shown:
        for flag in re.findall(r"--[a-z-]+", command):
            assert flag in usage, flag
    # The recheck of a history that is not there (LOGDIR is a placeholder): one line naming it.
    missing = run(str(VENV / "python"), "-m", "bench.soak", "--recheck", "LOGDIR/history.json")
    assert missing.returncode == 2, missing.stderr
    assert (
        missing.stderr.startswith("--recheck: cannot read LOGDIR/history.json")
        and "Traceback" not in missing.stderr
    )


def test_the_market_data_check_runs_as_written() -> None:
    (shown,) = [c for c in readme_commands() if c.endswith("cloud --check --symbols BTCUSDT,ETHUSDT")]
    port = free_port()
    replay = subprocess.Popen(
        [str(VENV / "signalguard"), "replay", "--synthetic", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        # As written, but for the replay's port (9443 may be make dev's own).
        command = shown.replace("127.0.0.1:9443", f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            check = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
            if check.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the replay is still starting
        assert check.returncode == 0, check.stdout + check.stderr
        assert "BTCUSDT" in check.stdout and "ETHUSDT" in check.stdout
    finally:
        replay.terminate()
        replay.wait(10)


def test_bench_and_reset_are_the_commands_named() -> None:
    assert run(str(VENV / "python"), "-c", "import bench.__main__").returncode == 0
    reset = run(str(VENV / "signalguard"), "reset", "--help")
    assert reset.returncode == 0, reset.stderr


#: Commands checked by the tests of this file.
CHECKED_HERE = {
    "SIGNALGUARD_MARKET_DATA_URL=http://127.0.0.1:9443 .venv/bin/signalguard cloud --check "
    "--symbols BTCUSDT,ETHUSDT": test_the_market_data_check_runs_as_written,
    "make bench": test_bench_and_reset_are_the_commands_named,
    "make reset": test_bench_and_reset_are_the_commands_named,
    ".venv/bin/signalguard token user|machine|anon|service [EMAIL]": (
        test_token_anon_and_the_cloud_workers_settings_as_written
    ),
    "signalguard replay --synthetic": test_the_replay_serves_as_written,
    ".venv/bin/python -m bench.soak --events 200 --seed 7": test_the_soak_takes_the_arguments_shown,
    ".venv/bin/python -m bench.soak --recheck LOGDIR/history.json": test_the_soak_takes_the_arguments_shown,
    "SIGNALGUARD_SUPABASE_URL=http://127.0.0.1:8000 "
    "SIGNALGUARD_SUPABASE_ANON_KEY=$(.venv/bin/signalguard token anon) "
    "SIGNALGUARD_MACHINE_TOKEN=$(.venv/bin/signalguard token machine alice@signalguard.test) "
    "SIGNALGUARD_MARKET_DATA_URL=http://127.0.0.1:9443 .venv/bin/signalguard cloud": (
        test_token_anon_and_the_cloud_workers_settings_as_written
    ),
}
