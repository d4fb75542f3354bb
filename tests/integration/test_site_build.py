"""``signalguard build-site``: the folder, its headers, its settings and the check (no stack needed)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import jwt
import pytest

from signalguard.browser.jsbridge import WebMarketData
from signalguard.devstack.assets import ASSETS_HEADER, WORKER_KEPT, build
from signalguard.devstack.config import REPO_ROOT
from signalguard.devstack.gateway import WEBHOOK_CONNECT
from signalguard.devstack.site import (
    IMMUTABLE,
    check_site,
    hashed_name,
    page_csp,
    page_stream_url,
    parse_headers,
    run,
    site_assets_version,
    site_config,
    site_files,
    write_site,
)

PROJECT = "https://abcdefgh.supabase.co"
MARKET = "https://api.binance.com"
VENV = REPO_ROOT / ".venv" / "bin"


def key(role: str) -> str:
    return jwt.encode({"iss": "supabase", "ref": "abcdefgh", "role": role}, "s" * 32, algorithm="HS256")


ANON = key("anon")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build(REPO_ROOT)
    out = tmp_path_factory.mktemp("site") / "site"
    write_site(out, site_files(REPO_ROOT, site_config(PROJECT, ANON, None)))
    return out


def args(**given: str | None) -> argparse.Namespace:
    base: dict[str, str | None] = {
        "out": None,
        "supabase_url": None,
        "anon_key": None,
        "market_data_url": None,
        "check": None,
    }
    return argparse.Namespace(**{**base, **given})


def files_of(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_the_folder_holds_only_what_the_page_loads(site: Path) -> None:
    files = files_of(site)
    assert {"index.html", "pyscript.toml", "config.json", "_headers", "sw.js", "web/timer-worker.js"} <= files
    # The service worker at the root (it controls the whole site), under its stable name, as written.
    assert (site / "sw.js").read_bytes() == (REPO_ROOT / "web" / "sw.js").read_bytes()
    assert not [f for f in files if f.startswith("web/sw")]
    assert not [f for f in files if "node_modules" in f or "package" in f or f.endswith((".py", ".map"))]
    # The app's own files and the app zip by content hash; each vendored package in a hashed folder.
    assert len([f for f in files if f.startswith("web/facade.") and f.endswith(".js")]) == 1
    assert len([f for f in files if f.startswith("web/app.") and f.endswith(".zip")]) == 1
    vendored = {f.split("/")[2].partition(".")[0] for f in files if f.startswith("web/vendor/")}
    assert vendored == {"pyodide", "pyscript", "supabase", "lightweight-charts"}
    vendor = [p for p in (REPO_ROOT / "web" / "vendor").rglob("*") if p.is_file()]
    assert len([f for f in files if f.startswith("web/vendor/")]) == len(vendor)
    # The page and its config name the versioned files; the preloads name files that exist.
    index = (site / "index.html").read_text()
    toml = tomllib.loads((site / "pyscript.toml").read_text())
    assert toml["interpreter"].removeprefix("./") in files
    assert [s.removeprefix("./") for s in toml["files"]] == [
        f for f in files if f.endswith(".zip") and "/app." in f
    ]
    for ref in ("./web/facade.js", "./web/app.css", "./web/vendor/pyodide/", "./web/vendor/pyscript/"):
        assert ref not in index
    assert json.loads((site / "config.json").read_text()) == {
        "supabase_url": PROJECT,
        "supabase_anon_key": ANON,
        "market_data_url": MARKET,
    }
    assert check_site(site)[0] == []


def test_the_same_checkout_builds_the_same_folder(site: Path) -> None:
    again = {f.path: f.data for f in site_files(REPO_ROOT, site_config(PROJECT, ANON, None))}
    assert again == {f: (site / f).read_bytes() for f in files_of(site)}
    assert hashed_name("web/facade.js", b"a") != hashed_name("web/facade.js", b"b")
    assert hashed_name("web/app.zip", b"a").startswith("web/app.") and hashed_name(
        "web/app.zip", b"a"
    ).endswith(".zip")


def test_headers_give_types_caching_and_the_policy(site: Path) -> None:
    rules = parse_headers((site / "_headers").read_text())
    files = files_of(site) - {"_headers"}
    assert set(rules) == {"/"} | {f"/{f}" for f in files}
    wasm = [f for f in files if f.endswith(".wasm")]
    mjs = [f for f in files if f.endswith(".mjs")]
    assert wasm and mjs
    assert all(rules[f"/{f}"]["Content-Type"] == "application/wasm" for f in wasm)
    assert all(rules[f"/{f}"]["Content-Type"] == "text/javascript" for f in mjs)
    fresh = {"/", "/index.html", "/config.json", "/pyscript.toml", "/web/timer-worker.js", "/sw.js"}
    assert {p for p, r in rules.items() if r["Cache-Control"] == "no-cache"} == fresh
    assert all(r["Cache-Control"] == IMMUTABLE for p, r in rules.items() if p not in fresh)
    csp = rules["/"]["Content-Security-Policy"]
    assert rules["/index.html"]["Content-Security-Policy"] == csp
    # Binance's own API, and its market-data-only endpoints the page switches to after a 451.
    assert (
        f"connect-src 'self' {PROJECT} {MARKET} wss://stream.binance.com:9443 "
        "https://data-api.binance.vision wss://data-stream.binance.vision https:;"
    ) in csp
    assert "default-src 'self'" in csp and "script-src 'self' 'wasm-unsafe-eval' 'unsafe-eval'" in csp
    # The worker runs under the page's policy, which lets the page register it (worker-src 'self').
    assert rules["/sw.js"]["Content-Security-Policy"] == csp and "worker-src 'self'" in csp
    assert "Service-Worker-Allowed" not in rules["/sw.js"]  # at the root, its scope is "/" already


def test_the_page_names_the_version_of_what_the_worker_keeps(site: Path, tmp_path: Path) -> None:
    rules = parse_headers((site / "_headers").read_text())
    version = rules["/"][ASSETS_HEADER]
    assert rules["/index.html"][ASSETS_HEADER] == version and len(version) == 16
    kept = sorted(f for f in files_of(site) if WORKER_KEPT.match(f))
    assert any(f.endswith("/pyodide.asm.wasm") for f in kept) and any(f.startswith("web/app.") for f in kept)
    assert not [f for f in kept if not f.startswith(("web/vendor/", "web/app."))]
    assert version == site_assets_version((f, (site / f).read_bytes()) for f in kept)
    # Another archive, another version (the worker then starts a new cache).
    changed = [(f, (site / f).read_bytes() + (b"x" if f.startswith("web/app.") else b"")) for f in kept]
    assert site_assets_version(changed) != version
    # The check finds a stale version, a missing worker and a worker kept for a year.
    bad = tmp_path / "bad"
    shutil.copytree(site, bad)
    (bad / "sw.js").unlink()
    headers = (bad / "_headers").read_text().replace(version, "0" * 16)
    worker = headers.index("/sw.js\n")
    rule_end = headers.index("\n/", worker + 1)
    headers = headers[:worker] + headers[worker:rule_end].replace("no-cache", IMMUTABLE) + headers[rule_end:]
    (bad / "_headers").write_text(headers)
    found = "\n".join(str(f) for f in check_site(bad)[0])
    assert "FAIL  sw.js: missing" in found
    assert f"/ needs {ASSETS_HEADER}: {version}" in found and f"/index.html needs {ASSETS_HEADER}" in found
    (bad / "sw.js").write_bytes((site / "sw.js").read_bytes())
    found = "\n".join(str(f) for f in check_site(bad)[0])
    assert "/sw.js needs Cache-Control: no-cache" in found and "sw.js: missing" not in found


def test_the_gateway_and_the_site_share_one_policy() -> None:
    # The gateway's (the API on its own origin; local webhook receivers too), as it always was.
    assert page_csp(
        supabase_url=None, market_data_url="http://127.0.0.1:9443", webhook_connect=WEBHOOK_CONNECT
    ) == (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' 'unsafe-eval'; "
        "connect-src 'self' http://127.0.0.1:9443 ws://127.0.0.1:9443 https: http://127.0.0.1:* "
        "http://localhost:*; worker-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
    # The stream the policy allows is the one the page opens.
    for url in ("https://api.binance.com", "http://127.0.0.1:9443/", "https://proxy.example/binance"):
        assert page_stream_url(url) == WebMarketData(None, url, None).endpoints.stream  # type: ignore[arg-type]
    # Binance's streams are on their own host, for the page as for the worker.
    assert page_stream_url("https://api.binance.com") == "wss://stream.binance.com:9443"
    assert page_stream_url("https://data-api.binance.vision") == "wss://data-stream.binance.vision"


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        (
            {"anon_key": key("service_role")},
            {},
            "--anon-key (SIGNALGUARD_SUPABASE_ANON_KEY) is a service_role key",
        ),
        ({"anon_key": key("authenticated")}, {}, "--anon-key (SIGNALGUARD_SUPABASE_ANON_KEY) has role"),
        (
            {"anon_key": "sb_publishable_x"},
            {},
            "--anon-key (SIGNALGUARD_SUPABASE_ANON_KEY) must be the project",
        ),
        ({"supabase_url": None}, {}, "--supabase-url (SIGNALGUARD_SUPABASE_URL) is required"),
        (
            {"supabase_url": "ftp://x.example"},
            {},
            "--supabase-url (SIGNALGUARD_SUPABASE_URL) must be an absolute",
        ),
        ({"supabase_url": f"{PROJECT}/?x=1"}, {}, "--supabase-url (SIGNALGUARD_SUPABASE_URL) must not carry"),
        (
            {"market_data_url": "wss://x.example"},
            {},
            "--market-data-url (SIGNALGUARD_MARKET_DATA_URL) must be",
        ),
        ({"anon_key": None}, {"SIGNALGUARD_SUPABASE_ANON_KEY": key("service_role")}, "is a service_role key"),
        ({"out": None}, {}, "--out DIR is required"),
    ],
)
def test_bad_settings_are_one_line_naming_them(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: dict[str, str | None],
    env: dict[str, str],
    expected: str,
) -> None:
    settings: dict[str, str | None] = {
        "out": str(tmp_path / "site"),
        "supabase_url": PROJECT,
        "anon_key": ANON,
    }
    assert run(args(**{**settings, **given}), env) == 2
    err = capsys.readouterr().err
    assert err.startswith("signalguard build-site: ") and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "site").exists()


def test_settings_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {
        "SIGNALGUARD_SUPABASE_URL": PROJECT + "/",
        "SIGNALGUARD_SUPABASE_ANON_KEY": ANON,
        "SIGNALGUARD_MARKET_DATA_URL": "https://data-api.binance.vision",
    }
    assert run(args(out=str(tmp_path / "site")), env) == 0, capsys.readouterr()
    config = json.loads((tmp_path / "site" / "config.json").read_text())
    assert (
        config["supabase_url"] == PROJECT and config["market_data_url"] == "https://data-api.binance.vision"
    )


def test_out_is_replaced_only_if_it_is_a_built_site(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert run(args(out=str(mine), supabase_url=PROJECT, anon_key=ANON), {}) == 2
    assert "--out: " in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep"
    again = tmp_path / "again"
    shutil.copytree(site, again)
    (again / "web" / "stale.js").write_text("")
    assert run(args(out=str(again), supabase_url=PROJECT, anon_key=ANON), {}) == 0
    assert files_of(again) == files_of(site)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "mine"]


def test_the_check_finds_what_names_other_hosts(site: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(site, bad)
    index = (bad / "index.html").read_text()
    index = index.replace("</head>", '<script src="https://scripts.example.org/x.js"></script>\n</head>', 1)
    (bad / "index.html").write_text(index)
    css = next((bad / "web").glob("app.*.css"))
    css.write_text(css.read_text() + "\n@import url(//fonts.example.com/a.css);\n")
    boot = next((bad / "web").glob("boot.*.js"))
    boot.write_text(
        boot.read_text() + '\nnew WebSocket("wss://stream.example.com/x"); import("./web/gone.js");\n'
    )
    (bad / "pyscript.toml").write_text(
        (bad / "pyscript.toml").read_text().replace("plugins =", 'packages = ["numpy"]\nplugins =')
    )
    (bad / "web" / "node_modules").mkdir()
    (bad / "web" / "node_modules" / "x.js").write_text("")
    # A vendored bundle's URLs in strings (docs, messages) are not loads: not reported.
    supabase = next((bad / "web" / "vendor").glob("supabase.*")) / "supabase.js"
    supabase.write_text(supabase.read_text() + "\n// see https://supabase.com/docs\n")
    findings, notes = check_site(bad)
    found = "\n".join(str(f) for f in findings)
    assert "https://scripts.example.org/x.js" in found
    assert "//fonts.example.com" in found
    assert "wss://stream.example.com/x" in found
    assert "./web/gone.js is not in the site" in found
    assert "packages would load from outside the site" in found
    assert "web/node_modules/x.js: does not belong" in found
    assert "no rule for /web/node_modules/x.js" in found
    # The edited bundle is one of the files the worker keeps: the page's version no longer names them.
    assert f"/ needs {ASSETS_HEADER}" in found and f"/index.html needs {ASSETS_HEADER}" in found
    assert "supabase.com" not in found and len(findings) == 9, found
    credit = next(n for n, line in enumerate(index.splitlines(), 1) if "https://www.tradingview.com/" in line)
    assert f"index.html:{credit}: https://www.tradingview.com/ is a link" in "\n".join(notes)
    # The project and the market data themselves are fine anywhere in the page's files.
    ok = tmp_path / "ok"
    shutil.copytree(site, ok)
    boot = next((ok / "web").glob("boot.*.js"))
    boot.write_text(boot.read_text() + f"\n// {PROJECT}/rest/v1 and wss://stream.binance.com:9443/stream\n")
    assert check_site(ok)[0] == []


def test_the_check_refuses_a_service_role_config(site: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(site, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "supabase_anon_key": key("service_role")}))
    (finding,) = check_site(bad)[0]
    assert finding.where == "config.json" and "service_role" in finding.what


def test_the_installed_command(tmp_path: Path) -> None:
    out = tmp_path / "site"
    built = subprocess.run(
        [
            str(VENV / "signalguard"),
            "build-site",
            "--out",
            str(out),
            "--supabase-url",
            PROJECT,
            "--anon-key",
            ANON,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert "check: names nothing outside itself" in built.stdout
    checked = subprocess.run(
        [str(VENV / "signalguard"), "build-site", "--check", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0 and "names nothing outside itself" in checked.stdout, checked.stdout
    (out / "index.html").write_text(
        (out / "index.html")
        .read_text()
        .replace("</head>", '<link rel="stylesheet" href="https://x.example/c.css"></head>')
    )
    failed = subprocess.run(
        [str(VENV / "signalguard"), "build-site", "--check", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1 and "FAIL  index.html" in failed.stdout, failed.stdout
