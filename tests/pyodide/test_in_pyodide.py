"""The core's tests inside real Pyodide (Python 3.14, wasm) under Node, as the browser runs the core.

``runner.mjs`` loads the pinned npm ``pyodide``, mounts the repository read-only and runs pytest or a
snippet in it; ``prepare.py`` installs pytest and hypothesis for Pyodide first (once). Nothing is
fetched while the tests run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prepare import REPO, prepare

from signalguard.core.codes import missing_schema
from signalguard.replay.synthetic import generate

RUNNER = Path(__file__).with_name("runner.mjs")
# Loading Pyodide takes ~3 s; the core's property tests run 10,000 examples each, several times
# slower than in CPython.
CORE_TIMEOUT = 1800
SNIPPET_TIMEOUT = 120


@pytest.fixture(scope="module", autouse=True)
def site() -> Path:
    return prepare()


def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(RUNNER), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def result_of(*args: str) -> Any:
    done = run(*args, timeout=SNIPPET_TIMEOUT)
    assert done.returncode == 0, done.stderr[-5000:]
    return json.loads(done.stdout)


@pytest.mark.timeout(CORE_TIMEOUT + 60)  # the project's default (300 s) is too short here
def test_core_tests_pass_in_pyodide() -> None:
    done = run("pytest", "tests/core", "-q", timeout=CORE_TIMEOUT)
    sys.stdout.write(done.stdout)  # pytest's own report, shown by pytest -s or on failure
    sys.stderr.write(done.stderr)
    # A crashed interpreter prints wasm stack frames, which say nothing; the runner's last line says where.
    output = [
        line for line in (done.stdout + done.stderr).splitlines() if not line.strip().startswith("at wasm://")
    ]
    assert done.returncode == 0, "\n".join(output)[-6000:]
    summary = done.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed[1]) > 0, summary


def test_snippet_runs_in_pyodide_with_the_core() -> None:
    reported = {"core": {"version": 1}, "signal_key": {"version": 0}}
    snippet = (
        "import json, sys\n"
        "from signalguard.core.codes import missing_schema\n"
        f"{{'python': list(sys.version_info[:2]), 'platform': sys.platform, "
        f"'missing': missing_schema(json.loads({json.dumps(reported)!r}))}}"
    )
    assert result_of("run", snippet) == {
        "python": [3, 14],
        "platform": "emscripten",
        "missing": missing_schema(reported),
    }


def test_call_mode_calls_a_module_function() -> None:
    arguments = [{"core": {"version": 1}}]
    assert result_of(
        "call", "signalguard.core.codes:missing_schema", json.dumps(arguments)
    ) == missing_schema(*arguments)


def test_synthetic_series_is_byte_identical_in_pyodide() -> None:
    # The generator promises the same bytes on every interpreter: compare CPython 3.11 with Pyodide 3.14.
    symbols, options = ["BTCUSDT", "DOGEUSDT", "ABCUSDT"], {"interval": "1s", "candles": 800, "seed": 42}
    snippet = (
        f"from signalguard.replay.synthetic import generate\ngenerate({symbols!r}, **{options!r}).to_json()"
    )
    done = run("run", snippet, timeout=SNIPPET_TIMEOUT)
    assert done.returncode == 0, done.stderr[-5000:]
    expected = generate(symbols, interval="1s", candles=800, seed=42).to_json()
    assert done.stdout == json.dumps(expected, sort_keys=True, allow_nan=False) + "\n"


def test_repository_is_read_only_in_pyodide() -> None:
    snippet = (
        "import errno\n"
        "try:\n"
        "    open('/repo/build/pyodide-write-probe', 'w')\n"
        "    outcome = 'written'\n"
        "except OSError as exc:\n"
        "    outcome = errno.errorcode[exc.errno]\n"
        "outcome"
    )
    assert result_of("run", snippet) == "EROFS"
    assert not (REPO / "build" / "pyodide-write-probe").exists()
