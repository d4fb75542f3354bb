"""The browser assets: vendored files and the app zip are exact, deterministic and idempotent."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from signalguard.devstack.assets import build_app_zip, vendor, vendor_plan
from signalguard.devstack.config import REPO_ROOT


def test_vendor_copies_exactly_the_plan_and_nothing_twice(assets: None) -> None:
    root = REPO_ROOT / "web" / "vendor"
    plan = vendor_plan(REPO_ROOT)
    present = {p.relative_to(root) for p in root.rglob("*") if p.is_file()}
    assert present == set(plan)
    names = {p.as_posix() for p in plan}
    assert {"pyscript/core.js", "pyodide/pyodide.asm.wasm", "supabase/supabase.js"} <= names
    # The editor's and terminal's heavy parts never load on this page.
    assert not [n for n in names if "codemirror" in n or "xterm" in n or n.endswith(".map")]
    report = vendor(REPO_ROOT)
    assert report.copied == [] and report.removed == [] and report.unchanged == len(plan)


def test_app_zip_is_deterministic_and_holds_only_the_browser_side(assets: None, tmp_path: Path) -> None:
    built = REPO_ROOT / "web" / "app.zip"
    with zipfile.ZipFile(built) as zf:
        names = zf.namelist()
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert names == sorted(names)
    assert "signalguard/__init__.py" in names and "signalguard/browser/main.py" in names
    packages = tuple(f"signalguard/{p}/" for p in ("core", "market", "webhooks", "browser", "__pycache__"))
    assert all(n.startswith(packages) for n in names[1:])
    assert "signalguard/market/klines.py" in names
    # Each module with its bytecode for the page's interpreter (Pyodide's Python 3.14), nothing else.
    sources = {n for n in names if n.endswith(".py")}
    compiled = {n for n in names if n.endswith(".pyc")}
    assert len(sources) > 20 and len(sources) + len(compiled) == len(names)
    assert compiled == {
        f"{n.rpartition('/')[0]}/__pycache__/{n.rpartition('/')[2][:-3]}.cpython-314.pyc" for n in sources
    }
    with zipfile.ZipFile(built) as zf:
        pyc = zf.read("signalguard/core/__pycache__/engine.cpython-314.pyc")
    assert pyc[4:8] == (1).to_bytes(4, "little")  # PEP 552: hash-based, not checked against the source
    # Not rebuilt when nothing changed; rebuilt byte for byte the same from a copy of the sources.
    assert build_app_zip(REPO_ROOT) is False
    shutil.copytree(REPO_ROOT / "src" / "signalguard", tmp_path / "src" / "signalguard")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "node_modules").symlink_to(REPO_ROOT / "web" / "node_modules")
    assert build_app_zip(tmp_path) is True
    assert (tmp_path / "web" / "app.zip").read_bytes() == built.read_bytes()
    assert build_app_zip(tmp_path) is False
