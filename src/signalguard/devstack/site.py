"""The page as a folder any static host can serve: ``signalguard build-site``.

``signalguard build-site --out DIR --supabase-url URL --anon-key KEY [--market-data-url URL]`` writes:

- ``index.html`` and ``pyscript.toml``, with their references to the versioned files rewritten;
- ``config.json``: the hosted project's URL and anon key and the market data URL, checked by the page's
  own rules (:class:`~signalguard.browser.config.AppConfig`); a ``service_role`` key is refused;
- ``web/``: only what the page loads. The app's own files get content-hashed names
  (``web/facade.<hash>.js``, ``web/app.<hash>.zip``), and each vendored package a content-hashed folder
  (``web/vendor/pyodide.<hash>/``), so every one of them can be cached for a year: a release that
  changes a file changes its name. A file whose name the app's Python spells out (the timer worker) keeps
  its name and is revalidated instead, as are ``index.html``, ``pyscript.toml`` and ``config.json``;
- ``sw.js``: the page's service worker (``web/sw.js``), at the root so that it controls the whole
  site, under its stable name and revalidated on every visit (a browser checks it for updates);
- ``_headers`` (Netlify and Cloudflare Pages): the Content-Security-Policy of :func:`page_csp`, the
  caching above, the MIME types of ``.wasm`` and ``.mjs``, and on the page the version of the files the
  service worker keeps (``X-Signalguard-Assets``, a hash of them: the worker's cache is named after it,
  so a new release starts a new cache and the old one is deleted). One rule per file, so no two rules
  give the same header (Cloudflare would join their values).

``signalguard build-site --check DIR`` (also run at the end of every build) checks that the folder names
nothing outside itself but the project and the market data: see :func:`check_site`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import html.parser
import json
import os
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from signalguard.browser.config import CONFIG_PATH, AppConfig, ConfigError
from signalguard.devstack.assets import ASSETS_HEADER, SERVICE_WORKER, WORKER_KEPT, assets_version
from signalguard.market.limits import derive_stream_url, region_fallback

#: Where the page may post the user's webhook from a hosted site: any https receiver.
SITE_WEBHOOK_CONNECT: Final = "https:"
#: The market data a build uses unless told otherwise: Binance's public REST API, as the worker's.
DEFAULT_MARKET_DATA_URL: Final = "https://api.binance.com"
#: The settings, each with its option and its variable.
SETTINGS: Final = {
    "supabase_url": ("--supabase-url", "SIGNALGUARD_SUPABASE_URL"),
    "supabase_anon_key": ("--anon-key", "SIGNALGUARD_SUPABASE_ANON_KEY"),
    "market_data_url": ("--market-data-url", "SIGNALGUARD_MARKET_DATA_URL"),
}
IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"
#: Types a static host may not know (Python's ``mimetypes`` and some hosts serve ``.mjs`` as
#: ``application/octet-stream``, which a browser refuses to run as a module).
CONTENT_TYPES: Final = {".wasm": "application/wasm", ".mjs": "text/javascript"}
#: The page's own files that are copied from ``web/`` (not the vendored ones), by suffix.
OWN_SUFFIXES: Final = (".js", ".css", ".svg")
#: The top-level files of the site besides ``web/``.
TOP_FILES: Final = ("index.html", "pyscript.toml", "config.json", "_headers")
#: Never part of a site, at any depth.
FORBIDDEN: Final = frozenset({"node_modules", "package.json", "package-lock.json"})

# A reference to a file of the site from a page's own file: ``./web/…`` with a file suffix.
_REF: Final = re.compile(r"\./(web/[A-Za-z0-9._@/-]+\.[A-Za-z0-9]+)")
# Absolute URLs: with a scheme, or protocol-relative (``//host``, not the ``//`` of a scheme or a comment).
_ABSOLUTE: Final = re.compile(r"(?i)\b(?:https?|wss?)://[^\s\"'<>()`\\]+")
_RELATIVE_HOST: Final = re.compile(
    r"(?<![A-Za-z0-9:/\\])//(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?::[0-9]+)?(?![A-Za-z0-9.-])"
)
_HASH_CHARS: Final = 12


class SiteInputError(ValueError):
    """A setting of the build is missing or wrong; the message names it."""


# -- the Content-Security-Policy ---------------------------------------------------------------------


def page_stream_url(market_data_url: str) -> str:
    """The WebSocket base the page streams from (Binance's stream host for Binance's API).

    The page's own rule (:func:`~signalguard.market.limits.derive_stream_url`, as
    ``browser.jsbridge.WebMarketData`` uses it): the policy must allow exactly what the page opens.
    """
    return derive_stream_url(market_data_url.rstrip("/"))


def page_csp(*, supabase_url: str | None, market_data_url: str | None, webhook_connect: str) -> str:
    """The page's Content-Security-Policy, for the local gateway and for a static host alike.

    Pyodide compiles WebAssembly and PyScript evaluates its bootstrap, hence the two eval allowances;
    nothing else loads from anywhere but the page's origin. Connections go to the origin, the project
    (``supabase_url``; None when it is the origin), the market data (REST and stream) and, for the
    user's webhook (which the generating tab posts), ``webhook_connect``. Scripts still come from the
    origin only, and the page puts no text from the network into HTML.
    """
    connect = ["'self'"]
    if supabase_url:
        connect.append(supabase_url.rstrip("/"))
    if market_data_url:
        rest, stream = market_data_url.rstrip("/"), page_stream_url(market_data_url)
        connect += [rest, stream]
        # Where Binance's own API answers HTTP 451, the page switches to its market-data-only
        # endpoints (market.limits.MarketEndpoints): the policy allows them too, for Binance's URL only.
        connect += [u for u in region_fallback(rest, stream) if u is not None]
    connect.append(webhook_connect)
    return (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' 'unsafe-eval'; "
        f"connect-src {' '.join(dict.fromkeys(connect))}; worker-src 'self'; "
        "img-src 'self' data:; "
        "style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    )


# -- the settings -----------------------------------------------------------------------------------


def _setting(key: str) -> str:
    option, variable = SETTINGS[key]
    return f"{option} ({variable})"


def _jwt_role(key: str) -> object:
    """The ``role`` claim of a JWT's payload (not verified: only the project can), or None."""
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return claims.get("role") if isinstance(claims, dict) else None


def site_config(
    supabase_url: str | None, anon_key: str | None, market_data_url: str | None
) -> dict[str, str]:
    """``config.json`` for these settings, checked as the page checks it; or :class:`SiteInputError`."""
    if not supabase_url or not supabase_url.strip():
        raise SiteInputError(
            f"{_setting('supabase_url')} is required: the project's URL, https://REF.supabase.co"
        )
    if not anon_key or not anon_key.strip():
        raise SiteInputError(f"{_setting('supabase_anon_key')} is required: the project's anon key")
    anon_key = anon_key.strip()
    role = _jwt_role(anon_key)
    if role == "service_role":
        raise SiteInputError(
            f"{_setting('supabase_anon_key')} is a service_role key, which bypasses row level security "
            "and must never reach a browser: give the project's anon key"
        )
    if role not in (None, "anon"):
        raise SiteInputError(
            f"{_setting('supabase_anon_key')} has role {str(role)[:40]!r}: give the project's anon key"
        )
    doc = {
        "supabase_url": supabase_url.strip(),
        "supabase_anon_key": anon_key,
        "market_data_url": (market_data_url or DEFAULT_MARKET_DATA_URL).strip(),
    }
    try:
        # The page's own check; the origin is never used, since the URL is given.
        config = AppConfig.from_json(json.dumps(doc), origin="https://origin.invalid")
    except ConfigError as exc:
        message = str(exc).removeprefix(f"{CONFIG_PATH}: ")
        key = next((k for k in SETTINGS if message.startswith(k)), "")
        if not key:
            raise SiteInputError(message) from None
        raise SiteInputError(f"{_setting(key)}{message[len(key) :]}") from None
    assert config.market_data_url is not None  # given above
    return {
        "supabase_url": config.supabase_url,
        "supabase_anon_key": config.supabase_anon_key,
        "market_data_url": config.market_data_url,
    }


# -- building ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteFile:
    """One file of the site: where it goes, its bytes, and how long a browser may keep it."""

    path: str
    data: bytes
    immutable: bool


def _digest(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "big") + chunk)
    return h.hexdigest()[:_HASH_CHARS]


def hashed_name(path: str, data: bytes) -> str:
    """``web/facade.js`` -> ``web/facade.<first 12 hex of its SHA-256>.js``."""
    folder, _, name = path.rpartition("/")
    stem, dot, suffix = name.partition(".")
    return (
        f"{folder}/{stem}.{_digest([data])}{dot}{suffix}"
        if folder
        else f"{stem}.{_digest([data])}{dot}{suffix}"
    )


def rewrite_refs(text: str, renames: Mapping[str, str]) -> str:
    """``text`` with every ``./web/…`` reference in ``renames`` replaced by its new path."""

    def swap(match: re.Match[str]) -> str:
        new = renames.get(match[1])
        return f"./{new}" if new else match[0]

    return _REF.sub(swap, text)


def _names_in_app(repo_root: Path) -> set[str]:
    """``web/…`` paths the app's Python spells out: those files keep their names.

    (The zip is not rewritten, and its bytecode holds the same strings.)
    """
    from signalguard.devstack.assets import app_sources

    found: set[str] = set()
    for _, path in app_sources(repo_root):
        found.update(_REF.findall(path.read_text(encoding="utf-8")))
    return found


def site_files(repo_root: Path, config: Mapping[str, str]) -> list[SiteFile]:
    """Every file of the site for ``config``, from the checkout's built assets.

    Those are ``web/vendor`` and ``web/app.zip``: run :func:`signalguard.devstack.assets.build` first.
    """
    web = repo_root / "web"
    vendor = web / "vendor"
    renames: dict[str, str] = {}
    out: list[SiteFile] = []
    # Vendored packages: one hashed folder each, so their files' relative references to one another
    # (PyScript's chunks, Pyodide's runtime next to pyodide.mjs) keep working.
    for package in sorted(p for p in vendor.iterdir() if p.is_dir()):
        files = sorted(f for f in package.rglob("*") if f.is_file() and not f.name.endswith(".tmp"))
        digest = _digest(
            chunk for f in files for chunk in (f.relative_to(package).as_posix().encode(), f.read_bytes())
        )
        for f in files:
            old = f"web/vendor/{package.name}/{f.relative_to(package).as_posix()}"
            new = f"web/vendor/{package.name}.{digest}/{f.relative_to(package).as_posix()}"
            renames[old] = new
            out.append(SiteFile(new, f.read_bytes(), immutable=True))
    app_zip = web / "app.zip"
    if not app_zip.is_file():
        raise SiteInputError(f"{app_zip} is missing: run python -m signalguard.devstack.assets")
    zipped = app_zip.read_bytes()
    renames["web/app.zip"] = hashed_name("web/app.zip", zipped)
    out.append(SiteFile(renames["web/app.zip"], zipped, immutable=True))
    fixed = _names_in_app(repo_root)
    own = {
        f"web/{f.name}": f.read_bytes()
        for f in sorted(web.iterdir())
        if f.is_file()
        and f.suffix in OWN_SUFFIXES
        and not f.name.startswith(".")
        and f.name != SERVICE_WORKER
    }
    # An own file that names another is hashed after it (its text changes with the other's name).
    pending = dict(own)
    while pending:
        ready = [
            p
            for p, data in pending.items()
            if not any(f"./{q}" in data.decode("utf-8") for q in pending if q != p)
        ]
        if not ready:
            raise SiteInputError(f"the page's files name one another in a cycle: {sorted(pending)}")
        for path in ready:
            data = rewrite_refs(pending.pop(path).decode("utf-8"), renames).encode("utf-8")
            if path in fixed:
                out.append(SiteFile(path, data, immutable=False))
            else:
                renames[path] = hashed_name(path, data)
                out.append(SiteFile(renames[path], data, immutable=True))
    for name in ("index.html", "pyscript.toml"):
        text = rewrite_refs((repo_root / name).read_text(encoding="utf-8"), renames)
        out.append(SiteFile(name, text.encode("utf-8"), immutable=False))
    # The service worker keeps its name (the page registers ./sw.js, and a browser recognises an update
    # of a worker by its unchanged URL); it names no file of the site, so nothing is rewritten in it.
    out.append(SiteFile(SERVICE_WORKER, (web / SERVICE_WORKER).read_bytes(), immutable=False))
    config_text = json.dumps(dict(config), indent=2) + "\n"
    out.append(SiteFile("config.json", config_text.encode("utf-8"), immutable=False))
    out.append(SiteFile("_headers", headers_file(out, config).encode("utf-8"), immutable=False))
    return out


def site_assets_version(files: Iterable[tuple[str, bytes]]) -> str:
    """The version of the site's files the service worker keeps: those ``WORKER_KEPT`` matches."""
    return assets_version(sorted((path, data) for path, data in files if WORKER_KEPT.match(path)))


def headers_file(files: Iterable[SiteFile], config: Mapping[str, str]) -> str:
    """The ``_headers`` file (Netlify and Cloudflare Pages) for ``files``: one rule per path."""
    files = list(files)
    version = site_assets_version((f.path, f.data) for f in files)
    csp = page_csp(
        supabase_url=config["supabase_url"],
        market_data_url=config.get("market_data_url"),
        webhook_connect=SITE_WEBHOOK_CONNECT,
    )
    lines = [
        "# Headers of the signalguard page (Netlify, Cloudflare Pages), written by signalguard build-site.",
        "# One rule per path: where two rules match, Cloudflare joins their values of the same header.",
    ]
    page = [
        f"Content-Security-Policy: {csp}",
        f"Cache-Control: {REVALIDATE}",
        "X-Content-Type-Options: nosniff",
        f"{ASSETS_HEADER}: {version}",
    ]
    rules: dict[str, list[str]] = {"/": page}
    for f in sorted(files, key=lambda f: f.path):
        if f.path == "_headers":
            continue
        if f.path == "index.html":
            rules["/index.html"] = page
            continue
        if f.path == SERVICE_WORKER:
            # Its own policy is the page's (a worker runs under the policy of its script's response).
            rules[f"/{f.path}"] = [
                f"Content-Security-Policy: {csp}",
                f"Cache-Control: {REVALIDATE}",
                "X-Content-Type-Options: nosniff",
            ]
            continue
        headers = []
        content_type = CONTENT_TYPES.get(Path(f.path).suffix)
        if content_type:
            headers.append(f"Content-Type: {content_type}")
        headers += [
            f"Cache-Control: {IMMUTABLE if f.immutable else REVALIDATE}",
            "X-Content-Type-Options: nosniff",
        ]
        rules[f"/{f.path}"] = headers
    for path, headers in rules.items():
        lines.append(path)
        lines += [f"  {h}" for h in headers]
    return "\n".join(lines) + "\n"


def parse_headers(text: str) -> dict[str, dict[str, str]]:
    """A ``_headers`` file as written by :func:`headers_file`: path -> {header: value}."""
    rules: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            current = rules.setdefault(line.strip(), {})
        elif current is not None and ":" in line:
            name, _, value = line.strip().partition(":")
            current[name.strip()] = value.strip()
    return rules


def write_site(out: Path, files: Iterable[SiteFile]) -> None:
    """Write ``files`` into ``out``, replacing a site built there before (never anything else)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_site(out))):
        raise SiteInputError(
            f"--out: {out} exists and is not a site built by this command: choose a new or empty folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for f in files:
            target = staging / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.data)
        staging.chmod(0o755)
        if out.exists():
            old = out.with_name(f".{out.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_site(folder: Path) -> bool:
    return all((folder / name).is_file() for name in TOP_FILES)


# -- the check --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """Something the check found: where (``file:line``) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"FAIL  {self.where}: {self.what}"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _allowed(url: str, bases: Iterable[str]) -> bool:
    for base in bases:
        if base.startswith("//"):
            if url == base or url.startswith((base + "/", base + "?")):
                return True
        elif url.lower() == base.lower() or url.lower().startswith((base.lower() + "/", base.lower() + "?")):
            return True
    return False


def _urls(text: str) -> list[tuple[int, str]]:
    found = [(m.start(), m[0].rstrip(".,;:")) for m in _ABSOLUTE.finditer(text)]
    found += [(m.start(), m[0]) for m in _RELATIVE_HOST.finditer(text)]
    return sorted(found)


class _PageScan(html.parser.HTMLParser):
    """Absolute URLs of ``index.html``, each with its line and whether the page loads it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str, bool]] = []

    def _scan(self, text: str, *, loads: bool) -> None:
        line = self.getpos()[0]
        self.found += [(line + text.count("\n", 0, at), url, loads) for at, url in _urls(text)]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text() or ""
        for name, value in attrs:
            # A link the user may follow and a placeholder's example are never requested by the page.
            shown_only = (tag == "a" and name == "href") or name == "placeholder"
            for _, url in _urls(value or ""):
                # The line of the attribute, not of the tag's start (a tag may span lines).
                line = self.getpos()[0] + raw.count("\n", 0, max(raw.find(url), 0))
                self.found.append((line, url, not shown_only))

    def handle_data(self, data: str) -> None:
        self._scan(data, loads=True)

    def handle_comment(self, data: str) -> None:
        self._scan(data, loads=True)


def check_site(folder: Path) -> tuple[list[Finding], list[str]]:
    """Check a built site: (findings, notes); no findings when it names nothing else but the API and market.

    The page's own files (``index.html``, ``pyscript.toml``, ``config.json``, ``web/*.js`` and
    ``web/*.css``) may hold no absolute URL (``http(s)://``, ``ws(s)://``, ``//host``) but the project's
    and the market data's (REST or stream), except a link the user follows (``<a href>``) or a
    placeholder's example, which are noted; each ``./web/…`` they name must be in the folder. The
    vendored bundles mention URLs in their messages and docs, so for them it checks what decides where
    they load from: PyScript's interpreter and files are paths in the folder, Pyodide's runtime lies
    next to ``pyodide.mjs`` (its ``indexURL``), and no packages are asked for. No package file, source
    or dotfile is in the folder, ``config.json`` holds no service_role key, and ``_headers`` covers
    every file with the policy :func:`page_csp` gives for this ``config.json``. The service worker
    (``sw.js``, which the page registers) is there, is revalidated and names no host either, and the
    page's ``X-Signalguard-Assets`` is the version of the files in the folder that the worker keeps.
    """
    findings: list[Finding] = []
    notes: list[str] = []
    for name in TOP_FILES:
        if not (folder / name).is_file():
            findings.append(Finding(name, "missing"))
    if findings:
        return findings, notes
    config_text = (folder / "config.json").read_text(encoding="utf-8")
    try:
        config = AppConfig.from_json(config_text, origin="https://origin.invalid")
        data = json.loads(config_text)
        site_config(data.get("supabase_url"), config.supabase_anon_key, config.market_data_url)
    except (ConfigError, SiteInputError) as exc:
        return [Finding("config.json", str(exc))], notes
    bases = [config.supabase_url]
    if config.market_data_url:
        bases += [config.market_data_url, page_stream_url(config.market_data_url)]
    bases += ["//" + b.split("://", 1)[1] for b in list(bases)]
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    for path in files:
        parts = path.split("/")
        if any(p in FORBIDDEN or p.startswith(".") for p in parts) or path.endswith((".py", ".map")):
            findings.append(
                Finding(path, "does not belong on a static host (a package file, source or dotfile)")
            )
    if SERVICE_WORKER not in files:
        findings.append(Finding(SERVICE_WORKER, "missing (the page registers it as its service worker)"))
    own = ["index.html", "pyscript.toml", "config.json"] + [
        p
        for p in files
        if p == SERVICE_WORKER or (p.count("/") == 1 and p.startswith("web/") and p.endswith((".js", ".css")))
    ]
    present = set(files)
    for path in own:
        text = (folder / path).read_text(encoding="utf-8")
        if path == "index.html":
            scan = _PageScan()
            scan.feed(text)
            scan.close()
            urls = scan.found
        else:
            urls = [(_line_of(text, at), url, True) for at, url in _urls(text)]
        for line, url, loads in urls:
            if _allowed(url, bases):
                continue
            if loads:
                findings.append(
                    Finding(f"{path}:{line}", f"names {url}, outside the site, project and market data")
                )
            else:
                notes.append(f"{path}:{line}: {url} is a link or an example, never loaded")
        for match in _REF.finditer(text):
            if match[1] not in present:
                findings.append(
                    Finding(f"{path}:{_line_of(text, match.start())}", f"./{match[1]} is not in the site")
                )
    findings += _check_pyscript(folder, present)
    findings += _check_headers(folder, config, present)
    return findings, notes


def _check_pyscript(folder: Path, present: set[str]) -> list[Finding]:
    from signalguard.devstack.assets import PYODIDE_FILES

    try:
        toml = tomllib.loads((folder / "pyscript.toml").read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        return [Finding("pyscript.toml", f"is not TOML ({exc})")]
    findings = []
    interpreter = toml.get("interpreter")
    if not isinstance(interpreter, str) or interpreter.removeprefix("./") not in present:
        findings.append(Finding("pyscript.toml", f"interpreter {interpreter!r} is not a file of the site"))
    else:
        # loadPyodide() fetches its runtime from the folder of pyodide.mjs (its indexURL).
        index = interpreter.removeprefix("./").rpartition("/")[0]
        for name in PYODIDE_FILES:
            if f"{index}/{name}" not in present:
                findings.append(
                    Finding("pyscript.toml", f"{index}/{name} is missing next to the interpreter")
                )
    if toml.get("packages"):
        findings.append(Finding("pyscript.toml", "packages would load from outside the site"))
    files = toml.get("files", {})
    for source in files if isinstance(files, dict) else ():
        if str(source).removeprefix("./") not in present:
            findings.append(Finding("pyscript.toml", f"[files] {source!r} is not a file of the site"))
    return findings


def _check_headers(folder: Path, config: AppConfig, present: set[str]) -> list[Finding]:
    rules = parse_headers((folder / "_headers").read_text(encoding="utf-8"))
    findings = []
    csp = page_csp(
        supabase_url=config.supabase_url,
        market_data_url=config.market_data_url,
        webhook_connect=SITE_WEBHOOK_CONNECT,
    )
    version = site_assets_version((p, (folder / p).read_bytes()) for p in present if WORKER_KEPT.match(p))
    for page in ("/", "/index.html"):
        if rules.get(page, {}).get("Content-Security-Policy") != csp:
            findings.append(Finding("_headers", f"{page} lacks the page's Content-Security-Policy ({csp})"))
        if rules.get(page, {}).get(ASSETS_HEADER) != version:
            findings.append(
                Finding("_headers", f"{page} needs {ASSETS_HEADER}: {version} (the files the worker keeps)")
            )
    worker = rules.get(f"/{SERVICE_WORKER}", {})
    if SERVICE_WORKER in present and worker.get("Cache-Control") != REVALIDATE:
        findings.append(
            Finding("_headers", f"/{SERVICE_WORKER} needs Cache-Control: {REVALIDATE} (never kept stale)")
        )
    for path in sorted(present - {"_headers"}):
        rule = rules.get(f"/{path}")
        if rule is None:
            findings.append(Finding("_headers", f"no rule for /{path}"))
            continue
        wanted = CONTENT_TYPES.get(Path(path).suffix)
        if wanted and rule.get("Content-Type") != wanted:
            findings.append(Finding("_headers", f"/{path} needs Content-Type: {wanted}"))
    return findings


# -- the command ------------------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Register ``build-site`` on the ``signalguard`` command's subparsers."""
    parser = sub.add_parser(
        "build-site",
        help="build the page as a folder for a static host (or --check one)",
        description=(
            "Write the page as a folder any static host can serve: index.html, pyscript.toml, "
            "config.json, the files the page loads under web/ (versioned names), and _headers. "
            "Settings come from the options or SIGNALGUARD_SUPABASE_URL, SIGNALGUARD_SUPABASE_ANON_KEY, "
            "SIGNALGUARD_MARKET_DATA_URL. See docs/deploy.md."
        ),
    )
    parser.add_argument("--out", metavar="DIR", help="the folder to write (replaced if built here before)")
    parser.add_argument("--supabase-url", metavar="URL", help="the project's URL, https://REF.supabase.co")
    parser.add_argument(
        "--anon-key", metavar="KEY", help="the project's anon key (never the service_role key)"
    )
    parser.add_argument(
        "--market-data-url",
        metavar="URL",
        help=f"Binance-compatible market data (default {DEFAULT_MARKET_DATA_URL})",
    )
    parser.add_argument("--check", metavar="DIR", help="only check a built folder")
    parser.set_defaults(func=run)


def _report(folder: Path, findings: list[Finding], notes: list[str]) -> int:
    for note in notes:
        print(f"note  {note}")
    for finding in findings:
        print(finding)
    if findings:
        print(f"{folder}: {len(findings)} problem(s)")
        return 1
    return 0


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Build (and check) or only check; 0 when the folder is good, 1 when not, 2 for bad input."""
    env = os.environ if environ is None else environ
    prog = "signalguard build-site"
    if args.check is not None:
        if args.out is not None:
            print(f"{prog}: --check DIR checks a built folder; give it without --out", file=sys.stderr)
            return 2
        folder = Path(args.check)
        if not folder.is_dir():
            print(f"{prog}: --check: {folder} is not a folder", file=sys.stderr)
            return 2
        findings, notes = check_site(folder)
        if not findings:
            print(f"{folder}: names nothing outside itself but the project and the market data")
        return _report(folder, findings, notes)
    if not args.out:
        print(f"{prog}: --out DIR is required (the folder to write), or --check DIR", file=sys.stderr)
        return 2
    try:
        config = site_config(
            args.supabase_url if args.supabase_url is not None else env.get("SIGNALGUARD_SUPABASE_URL"),
            args.anon_key if args.anon_key is not None else env.get("SIGNALGUARD_SUPABASE_ANON_KEY"),
            args.market_data_url
            if args.market_data_url is not None
            else env.get("SIGNALGUARD_MARKET_DATA_URL"),
        )
    except SiteInputError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    from signalguard.devstack.assets import AssetError, build
    from signalguard.devstack.config import REPO_ROOT

    out = Path(args.out)
    try:
        build(REPO_ROOT)
        files = site_files(REPO_ROOT, config)
        write_site(out, files)
    except AssetError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except SiteInputError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    size = sum(len(f.data) for f in files)
    print(f"built {out}: {len(files)} files, {size / 2**20:.1f} MiB")
    print(f"  project:     {config['supabase_url']}")
    print(
        f"  market data: {config['market_data_url']} (streams {page_stream_url(config['market_data_url'])})"
    )
    findings, notes = check_site(out)
    if not findings:
        print("  check: names nothing outside itself but the project and the market data")
        print(f"  deploy it as it is, e.g. npx wrangler pages deploy {out} (see docs/deploy.md)")
    return _report(out, findings, notes)
