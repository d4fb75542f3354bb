"""The browser app's built assets: vendored npm files and the zip of the Python the page imports.

Two outputs, both derived from files in the checkout and both ignored by git:

- ``web/vendor/`` — exactly the files the page loads from the pinned npm side (``web/node_modules``):
  PyScript's core and the chunks it imports on this app's path, Pyodide's runtime, the supabase-js
  UMD bundle, TradingView's Lightweight Charts (standalone build). The page loads nothing from any
  other host, so everything it needs is copied here.
- ``web/app.zip`` — ``signalguard/__init__.py``, ``signalguard/core/**``, ``signalguard/market/**``,
  ``signalguard/webhooks/**`` and ``signalguard/browser/**``, each with its bytecode as compiled by
  the pinned Pyodide (``pyc.mjs``); ``pyscript.toml`` unpacks it into the interpreter's working
  directory. Deterministic: sorted entries, fixed timestamps and permissions, so the same sources
  always give the same bytes.

Both steps are idempotent and cheap when nothing changed (a vendored file is copied only when its size
or modification time differs; the zip records a digest of its sources and is rewritten only when the
digest changes). ``python -m signalguard.devstack.assets`` runs both.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

#: PyScript chunks that its core imports lazily and that load on this app's path (by name without the
#: content hash): the TOML reader for ``pyscript.toml`` and the error plugin. The other plugins core
#: knows (editor, game, terminal, donkey, deprecation notices) are switched off (``plugins = ["!…"]``
#: in ``pyscript.toml`` and ``index.html``'s ``<mpy-config>``), so they are neither requested nor
#: vendored; nothing else in ``dist`` is ever requested.
PYSCRIPT_CHUNKS: Final = frozenset({"toml", "error"})
#: Pyodide's runtime, as ``loadPyodide`` fetches it from the folder of ``pyodide.mjs``.
PYODIDE_FILES: Final = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
#: Packages of ``src/signalguard`` shipped to the browser; devstack, replay and cloud code never are.
APP_PACKAGES: Final = ("core", "market", "webhooks", "browser")
#: Zip entries carry this timestamp whatever the files' times (the earliest a zip can record).
ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
#: The zip's comment starts with this, followed by the digest of the sources it was built from.
ZIP_DIGEST_PREFIX: Final = b"signalguard-app sha256="

#: The page's service worker (``web/sw.js`` in the checkout), served at the origin's root so that it
#: controls the whole page, under this stable name, and always revalidated.
SERVICE_WORKER: Final = "sw.js"
#: The header of the page's own response (``/`` and ``/index.html``) that names the version of the files
#: the service worker keeps (:func:`assets_version`); the worker names its cache after it.
ASSETS_HEADER: Final = "X-Signalguard-Assets"
#: The paths (under the origin, without the leading slash) the service worker keeps: the vendored
#: packages and the app's archive, under the local stack's names or build-site's hashed ones. The same
#: rule as ``KEPT`` in ``web/sw.js``.
WORKER_KEPT: Final = re.compile(
    r"^web/(?:vendor/[A-Za-z0-9_@-]+(?:\.[0-9a-f]{12})?/.+|app(?:\.[0-9a-f]{12})?\.zip)$"
)

_STATIC_IMPORT_RE: Final = re.compile(r"""(?:\bfrom|\bimport)\s*["'](\./[A-Za-z0-9_.-]+\.js)["']""")
_DYNAMIC_IMPORT_RE: Final = re.compile(r"""\bimport\(\s*["'](\./[A-Za-z0-9_.-]+\.js)["']\s*\)""")
# Rollup's content hashes: 8 characters of the URL-safe alphabet, after a hyphen.
_HASHED_RE: Final = re.compile(r"^(?P<stem>.+)-[A-Za-z0-9_-]{8}\.js$")


class AssetError(RuntimeError):
    """The npm side or the sources are not as expected; the message says what to do."""


@dataclass
class VendorReport:
    """What :func:`vendor` did."""

    copied: list[Path] = field(default_factory=list)
    unchanged: int = 0
    removed: list[Path] = field(default_factory=list)


# -- vendoring ----------------------------------------------------------------------------------------


def _js_imports(path: Path) -> tuple[set[str], set[str]]:
    """Relative ``./x.js`` modules a bundled module imports: (static, dynamic)."""
    text = path.read_text(encoding="utf-8")
    return set(_STATIC_IMPORT_RE.findall(text)), set(_DYNAMIC_IMPORT_RE.findall(text))


def _chunk_stem(name: str) -> str:
    match = _HASHED_RE.match(name)
    return match.group("stem") if match else name.removesuffix(".js")


def pyscript_files(dist: Path) -> list[str]:
    """The files of ``@pyscript/core/dist`` this app needs, found by following imports from ``core.js``.

    A static import is always followed (the importer cannot load without it); a dynamic one only from
    the core chunk, and only to one of :data:`PYSCRIPT_CHUNKS`. Hashed names change with every
    PyScript release, so they are discovered rather than listed.
    """
    entry = dist / "core.js"
    if not entry.is_file():
        raise AssetError(f"{entry} is missing: run scripts/bootstrap to install the npm side")
    wanted = {"core.js", "core.css"}
    queue = ["core.js"]
    while queue:
        name = queue.pop()
        static, dynamic = _js_imports(dist / name)
        # Only the core chunk's lazy imports are on this app's path; a plugin's lazy imports (the
        # editor's TOML reader, the terminal's xterm) load only when a page uses that plugin.
        core = name != "core.js" and _chunk_stem(name) == "core"
        lazy = {d for d in dynamic if core and _chunk_stem(d.removeprefix("./")) in PYSCRIPT_CHUNKS}
        for spec in sorted(static | lazy):
            child = spec.removeprefix("./")
            if child in wanted:
                continue
            if not (dist / child).is_file():
                raise AssetError(f"{dist / name} imports {spec}, which is missing from {dist}")
            wanted.add(child)
            queue.append(child)
    missing = PYSCRIPT_CHUNKS - {_chunk_stem(n) for n in wanted}
    if missing:
        raise AssetError(f"PyScript's core no longer imports {sorted(missing)}: update PYSCRIPT_CHUNKS")
    return sorted(wanted)


def vendor_plan(repo_root: Path) -> dict[Path, Path]:
    """Destination (relative to ``web/vendor``) -> source, for every vendored file."""
    modules = repo_root / "web" / "node_modules"
    dist = modules / "@pyscript" / "core" / "dist"
    plan: dict[Path, Path] = {Path("pyscript") / n: dist / n for n in pyscript_files(dist)}
    for name in PYODIDE_FILES:
        plan[Path("pyodide") / name] = modules / "pyodide" / name
    charts = modules / "lightweight-charts" / "dist" / "lightweight-charts.standalone.production.js"
    plan[Path("lightweight-charts") / charts.name] = charts
    plan[Path("supabase") / "supabase.js"] = (
        modules / "@supabase" / "supabase-js" / "dist" / "umd" / "supabase.js"
    )
    for dest, src in plan.items():
        if not src.is_file():
            raise AssetError(f"{src} is missing (for web/vendor/{dest}): run scripts/bootstrap")
    return plan


def _same(src: Path, dest: Path) -> bool:
    try:
        a, b = src.stat(), dest.stat()
    except FileNotFoundError:
        return False
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def vendor(repo_root: Path) -> VendorReport:
    """Copy the files the page loads from ``web/node_modules`` into ``web/vendor``.

    Copies a file only when it is missing or differs in size or modification time (``copy2`` keeps the
    source's time, so an unchanged npm install copies nothing), and removes files that are no longer
    part of the plan (a chunk renamed by a PyScript upgrade).
    """
    root = repo_root / "web" / "vendor"
    report = VendorReport()
    plan = vendor_plan(repo_root)
    for rel, src in sorted(plan.items()):
        dest = root / rel
        if _same(src, dest):
            report.unchanged += 1
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copy2(src, tmp)
        tmp.replace(dest)
        report.copied.append(dest)
    for path in sorted(root.rglob("*"), reverse=True):
        rel = path.relative_to(root)
        if path.is_file() and rel not in plan:
            path.unlink()
            report.removed.append(path)
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return report


# -- what the service worker keeps ------------------------------------------------------------------


def worker_files(app_root: Path) -> list[tuple[str, Path]]:
    """(path under the origin, file) of every file the service worker keeps, as the gateway serves them."""
    web = app_root / "web"
    found = [p for p in (web / "vendor").rglob("*") if p.is_file()] if (web / "vendor").is_dir() else []
    if (web / "app.zip").is_file():
        found.append(web / "app.zip")
    out = []
    for path in found:
        rel = path.relative_to(app_root).as_posix()
        if WORKER_KEPT.match(rel) and not rel.endswith(".tmp"):
            out.append((rel, path))
    return sorted(out)


def assets_version(files: Iterable[tuple[str, bytes]]) -> str:
    """The version of the files the service worker keeps: a hash of their paths and bytes (16 hex).

    Any change to one of them, or to the set, changes it; the worker then starts a new cache.
    """
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:16]


# -- the app zip ---------------------------------------------------------------------------------------


def app_sources(repo_root: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file) for every Python file the page imports, sorted by name."""
    pkg = repo_root / "src" / "signalguard"
    init = pkg / "__init__.py"
    if not init.is_file():
        raise AssetError(f"{init} is missing")
    out = [("signalguard/__init__.py", init)]
    for sub in APP_PACKAGES:
        base = pkg / sub
        if not base.is_dir():
            raise AssetError(f"{base} is missing")
        for path in base.rglob("*.py"):
            rel = path.relative_to(pkg.parent)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            out.append((rel.as_posix(), path))
    return sorted(out)


def _digest(sources: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in sources:
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def _zip_digest(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            comment = zf.comment
    except (OSError, zipfile.BadZipFile):
        return None
    if not comment.startswith(ZIP_DIGEST_PREFIX):
        return None
    return comment[len(ZIP_DIGEST_PREFIX) :].decode("ascii", "replace")


def _zip_bytes(sources: list[tuple[str, bytes]], digest: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in sources:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            info.create_system = 3  # Unix, so the mode above is read the same everywhere
            zf.writestr(info, data, compresslevel=9)
        zf.comment = ZIP_DIGEST_PREFIX + digest.encode("ascii")
    return buf.getvalue()


def compile_for_pyodide(repo_root: Path, sources: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``__pycache__`` entries for ``sources``, compiled by the pinned Pyodide (``pyc.mjs`` under Node).

    The page then imports bytecode instead of compiling each module at start (a tenth of a second and
    more on a laptop). Raises :class:`AssetError` if Node or Pyodide cannot do it.
    """
    pyodide = repo_root / "web" / "node_modules" / "pyodide"
    node = shutil.which("node")
    if node is None or not (pyodide / "pyodide.mjs").is_file():
        raise AssetError("Node.js and web/node_modules/pyodide are needed: run scripts/bootstrap")
    payload = json.dumps({name: data.decode("utf-8") for name, data in sources})
    done = subprocess.run(
        [node, str(Path(__file__).with_name("pyc.mjs")), str(pyodide)],
        input=payload,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise AssetError(f"compiling the app for Pyodide failed: {done.stderr.strip()[-2000:]}")
    answer = json.loads(done.stdout)
    tag, compiled = answer["cache_tag"], answer["pyc"]
    out = []
    for name, _ in sources:
        folder, _, file = name.rpartition("/")
        out.append(
            (f"{folder}/__pycache__/{file.removesuffix('.py')}.{tag}.pyc", base64.b64decode(compiled[name]))
        )
    return out


def build_app_zip(repo_root: Path) -> bool:
    """Write ``web/app.zip`` if its sources (or Pyodide) changed; return whether it was written."""
    sources = [(name, path.read_bytes()) for name, path in app_sources(repo_root)]
    lock = repo_root / "web" / "node_modules" / "pyodide" / "package.json"
    compiler = [("pyodide/package.json", lock.read_bytes() if lock.is_file() else b"")]
    digest = _digest(sources + compiler)
    target = repo_root / "web" / "app.zip"
    if _zip_digest(target) == digest:
        return False
    entries = sorted(sources + compile_for_pyodide(repo_root, sources))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(_zip_bytes(entries, digest))
    tmp.replace(target)
    return True


def build(repo_root: Path) -> tuple[VendorReport, bool]:
    """Vendor the npm files and build the app zip; what :func:`main` runs."""
    return vendor(repo_root), build_app_zip(repo_root)


def main(argv: list[str] | None = None) -> int:
    """``python -m signalguard.devstack.assets [-v] [REPO_ROOT]``: vendor and zip, print what changed."""
    args = sys.argv[1:] if argv is None else argv
    from signalguard.devstack.config import REPO_ROOT

    paths = [a for a in args if not a.startswith("-")]
    root = Path(paths[0]).resolve() if paths else REPO_ROOT
    t = time.monotonic()
    try:
        report, zipped = build(root)
    except AssetError as exc:
        print(f"assets: {exc}", file=sys.stderr)
        return 1
    took = time.monotonic() - t
    changes = [f"copied {len(report.copied)}"] if report.copied else []
    if report.removed:
        changes.append(f"removed {len(report.removed)} stale")
    if zipped:
        changes.append("rebuilt web/app.zip")
    # Quiet when nothing changed, like the rest of the install script.
    if changes or "-v" in args:
        summary = ", ".join(changes) if changes else "up to date"
        print(f"assets: {summary} ({took * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
