"""The deploy files (Dockerfile, fly.toml) cannot be built here; their commands are checked instead.

The image's command must be the CLI the other tests run (``python -m signalguard cloud``): the console
script ``signalguard`` is ``signalguard.cli:main``, as ``python -m signalguard`` is.
"""

from __future__ import annotations

import ast
import json
import shlex
import tomllib
import uuid
from pathlib import Path

import pytest
from cloudkit import unsigned_token

import signalguard
from signalguard.cli import main
from signalguard.cloud.config import DEFAULT_HEALTH_PORT, Timings, load_config, load_health

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def image_command() -> list[str]:
    [cmd] = [args for word, args in dockerfile() if word == "CMD"]
    command = json.loads(cmd)  # exec form: the worker is PID 1 and receives SIGTERM itself
    assert isinstance(command, list)
    return command


def fly() -> dict[str, object]:
    return tomllib.loads((ROOT / "fly.toml").read_text())


def test_image_is_python_311_slim_with_the_cloud_extra() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    [run] = [args for word, args in steps if word == "RUN"]
    assert "--extra cloud" in run and "--frozen" in run and "--no-dev" in run
    assert ("STOPSIGNAL", "SIGTERM") in steps
    assert any(word == "USER" and args != "root" for word, args in steps)
    copied = " ".join(args for word, args in steps if word == "COPY")
    for needed in ("pyproject.toml", "uv.lock", "README.md", "src"):
        assert needed in copied
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*" and "!src/" in ignore  # nothing else (.venv, .devstack, tests) in the context


def test_image_and_fly_run_the_same_command_the_tests_run(capsys: pytest.CaptureFixture[str]) -> None:
    command = image_command()
    assert command == ["signalguard", "cloud"]
    config = fly()
    processes = config["processes"]
    assert isinstance(processes, dict)
    assert [shlex.split(c) for c in processes.values()] == [command]
    build = config["build"]
    assert isinstance(build, dict) and build["dockerfile"] == "Dockerfile"
    # The console script is the function `python -m signalguard` calls.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"][command[0]] == "signalguard.cli:main"
    entry = ast.parse((Path(signalguard.__file__).parent / "__main__.py").read_text())
    imports = [(n.module, a.name) for n in ast.walk(entry) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert ("signalguard.cli", "main") in imports  # `python -m signalguard` runs the same main()
    with pytest.raises(SystemExit) as info:
        main([*command[1:], "--help"])
    assert info.value.code == 0 and "SIGNALGUARD_MACHINE_TOKEN" in capsys.readouterr().out


def test_fly_gives_the_worker_time_to_stop() -> None:
    config = fly()
    assert config["kill_signal"] == "SIGTERM"
    timings = Timings()
    # 'stopping', the bounded flush, the release and 'stopped', each call bounded.
    needed = timings.stop_flush + 3 * timings.stop_call
    assert isinstance(config["kill_timeout"], int) and config["kill_timeout"] >= needed + 5
    assert "http_service" not in config and "services" not in config  # a worker listens on nothing
    env = config["env"]
    assert isinstance(env, dict) and all(name.startswith("SIGNALGUARD_") for name in env)
    # What fly.toml sets is valid configuration (the secrets are set per machine).
    secrets = {
        "SIGNALGUARD_SUPABASE_URL": "https://abcd.supabase.co",
        "SIGNALGUARD_SUPABASE_ANON_KEY": "anon",
        "SIGNALGUARD_MACHINE_TOKEN": unsigned_token(
            {"role": "authenticated", "sub": str(uuid.uuid4()), "machine_id": str(uuid.uuid4())}
        ),
    }
    config_ = load_config({**secrets, **{k: str(v) for k, v in env.items()}})
    assert config_.market_data_url == "https://api.binance.com"


def test_fly_checks_the_workers_health_endpoint_and_stops_it_with_a_signal_it_handles() -> None:
    config = fly()
    checks = config["checks"]
    assert isinstance(checks, dict) and len(checks) == 1
    [check] = checks.values()
    env = config["env"]
    assert isinstance(env, dict)
    settings = load_health({k: str(v) for k, v in env.items()})
    # The check reads the port the worker listens on, on an address the check reaches (not loopback).
    assert check["type"] == "http" and check["path"] == "/health" and check["method"] == "get"
    assert check["port"] == settings[0] == DEFAULT_HEALTH_PORT and settings[1] == "0.0.0.0"
    assert load_health({}) == (DEFAULT_HEALTH_PORT, "127.0.0.1")  # the worker's own default
    # The grace covers a start behind a browser's lease (up to the 30 s lease, then the claim).
    assert _seconds(check["grace_period"]) > Timings().lease and _seconds(check["timeout"]) <= 10
    processes = config["processes"]
    assert isinstance(processes, dict) and check["processes"] == list(processes)
    # The kill signal is one the worker's stop path handles; the kill timeout outlasts its bound.
    handled = ast.parse((ROOT / "src/signalguard/cloud/worker.py").read_text())
    names = {n.attr for n in ast.walk(handled) if isinstance(n, ast.Attribute) and n.attr.startswith("SIG")}
    assert {"SIGTERM", "SIGINT"} <= names and config["kill_signal"] in names
    timeout = config["kill_timeout"]
    assert isinstance(timeout, int) and timeout > Timings().stop_deadline
    # The image runs the same worker, listening for the check on the port it exposes.
    steps = dockerfile()
    assert image_command() == ["signalguard", "cloud"]
    assert ("EXPOSE", str(DEFAULT_HEALTH_PORT)) in steps
    [image_env] = [args for word, args in steps if word == "ENV" and "SIGNALGUARD_HEALTH" in args]
    assert dict(shlex.split(p)[0].split("=", 1) for p in image_env.split()) == {
        "SIGNALGUARD_HEALTH_PORT": str(DEFAULT_HEALTH_PORT),
        "SIGNALGUARD_HEALTH_HOST": "0.0.0.0",
    }
    # Nothing secret in fly.toml: the credentials are `fly secrets`.
    for secret in (
        "SIGNALGUARD_SUPABASE_ANON_KEY",
        "SIGNALGUARD_MACHINE_KEY",
        "SIGNALGUARD_MACHINE_TOKEN",
        "SIGNALGUARD_SUPABASE_URL",
    ):
        assert secret not in env
    text = (ROOT / "fly.toml").read_text()
    assert "eyJ" not in text and "sgm_" not in text  # no JWT or key pasted anywhere, comments included


def _seconds(duration: object) -> float:
    text = str(duration)
    assert text.endswith("s") and text[:-1].isdigit(), text
    return float(text[:-1])
