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
    assert all(
        n.startswith(("signalguard/core/", "signalguard/market/", "signalguard/browser/")) for n in names[1:]
    )
    assert "signalguard/market/klines.py" in names
    assert not [n for n in names if "__pycache__" in n or not n.endswith(".py")]
    # Not rebuilt when nothing changed; rebuilt byte for byte the same from a copy of the sources.
    assert build_app_zip(REPO_ROOT) is False
    shutil.copytree(REPO_ROOT / "src" / "signalguard", tmp_path / "src" / "signalguard")
    assert build_app_zip(tmp_path) is True
    assert (tmp_path / "web" / "app.zip").read_bytes() == built.read_bytes()
    assert build_app_zip(tmp_path) is False
