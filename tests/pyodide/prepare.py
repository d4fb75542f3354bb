"""Install pytest and hypothesis for Pyodide (Python 3.14, wasm32) into ``build/pyodide-site``.

The runner (``runner.mjs``) puts that folder on Pyodide's ``sys.path``; nothing is fetched while the
tests run. The versions are the ones ``uv.lock`` pins for the CPython side (the closure of pytest's and
hypothesis's dependencies), so both interpreters run the same test tooling. pytest and its
dependencies are pure Python; hypothesis ships a native part, and its Pyodide wheel
(``pyemscripten_2026_0_wasm32``, the ABI of Pyodide 314) is chosen by the platform tags below.

Idempotent: a stamp file records what was installed, and a second run with the same pins returns at
once. Needs a ``pip`` (the project's venv has none: uv manages it), looked for as ``python3 -m pip``
and then through uv (``uv tool run pip``); uv's own installer cannot target Pyodide's platform tag.

Usage: ``.venv/bin/python tests/pyodide/prepare.py`` (prints the site folder).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "build" / "pyodide-site"
STAMP = SITE / ".prepared.json"

# What Pyodide 314.0.2 runs: CPython 3.14 compiled for emscripten, ABI "2026_0" (pyodide-lock.json).
PYTHON_VERSION = "3.14"
PLATFORM = "pyemscripten_2026_0_wasm32"
ROOTS = ("pytest", "hypothesis")


class PrepareError(RuntimeError):
    """The site folder could not be prepared; the message says why."""


def locked_pins(lock: Path = REPO / "uv.lock") -> dict[str, str]:
    """Return ``{name: version}`` for ROOTS and everything they depend on, as ``uv.lock`` pins it.

    Dependency markers are ignored here on purpose: a pin for a package that the target does not need
    (colorama is Windows-only) is harmless, because pip evaluates the markers itself.
    """
    packages = {p["name"]: p for p in tomllib.loads(lock.read_text())["package"]}
    pins: dict[str, str] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in pins:
            continue
        if name not in packages:
            raise PrepareError(f"{lock}: no locked version of {name!r}")
        pins[name] = packages[name]["version"]
        todo.extend(dep["name"] for dep in packages[name].get("dependencies", []))
    return dict(sorted(pins.items()))


def _pip() -> list[str]:
    """Return a command that runs pip (the first one that answers)."""
    candidates = [[sys.executable, "-m", "pip"], ["python3", "-m", "pip"]]
    uv = shutil.which("uv")
    candidates.append([uv, "tool", "run", "pip"] if uv else ["python3", "-m", "uv", "tool", "run", "pip"])
    for command in candidates:
        try:
            subprocess.run([*command, "--version"], check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            continue
        return command
    raise PrepareError("no pip found (tried python3 -m pip and uv tool run pip)")


def _install(pins: dict[str, str], target: Path) -> None:
    """Install the pinned roots (and, through the constraints, their pinned dependencies) into target."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("".join(f"{name}=={version}\n" for name, version in pins.items()))
    try:
        command = [
            *_pip(),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",  # CPython 3.11 bytecode is useless to Pyodide
            "--target",
            str(target),
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--abi",
            "cp" + PYTHON_VERSION.replace(".", ""),
            "--platform",
            PLATFORM,
            "--only-binary=:all:",
            "--constraint",
            constraints.name,
            *(f"{name}=={pins[name]}" for name in ROOTS),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        Path(constraints.name).unlink()
    if result.returncode != 0:
        raise PrepareError(f"pip failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def prepare() -> Path:
    """Make sure SITE holds the pinned packages for Pyodide; return it. Fast when already done."""
    pins = locked_pins()
    wanted = {"pins": pins, "python": PYTHON_VERSION, "platform": PLATFORM}
    # The script's own text is part of the stamp, so changing how we install reinstalls.
    wanted["script"] = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    SITE.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test processes may all call this; one installs, the others wait and reuse it.
    with open(SITE.parent / ".pyodide-site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if json.loads(STAMP.read_text()) == wanted:
                return SITE
        except (OSError, ValueError):
            pass
        # Install next to the final place and swap it in, so a failed run leaves no half folder.
        staging = Path(tempfile.mkdtemp(prefix="pyodide-site-", dir=SITE.parent))
        try:
            _install(pins, staging)
            (staging / STAMP.name).write_text(json.dumps(wanted, indent=2) + "\n")
            staging.chmod(0o755)  # mkdtemp makes it private
            shutil.rmtree(SITE, ignore_errors=True)
            staging.rename(SITE)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return SITE


def main() -> int:
    """Prepare the site folder and print where it is."""
    try:
        print(prepare())
    except PrepareError as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
