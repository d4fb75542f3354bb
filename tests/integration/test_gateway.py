"""The gateway: one origin for the static app, /rest/v1 and the local sign-in endpoints."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from stackkit import Actors, Api, serving

from signalguard.devstack import tokens
from signalguard.devstack.config import free_port
from signalguard.devstack.gateway import Gateway
from signalguard.devstack.stack import DEMO_PASSWORD, LocalStack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def app_gateway(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second gateway over the same stack, serving a made-up app folder."""
    root = tmp_path_factory.mktemp("app")
    (root / "index.html").write_text("<!doctype html><title>app</title>")
    (root / "pyscript.toml").write_text('name = "x"\n')
    (root / "web" / "vendor").mkdir(parents=True)
    (root / "web" / "vendor" / "pyodide.asm.wasm").write_bytes(b"\0asm\1\0\0\0")
    (root / "web" / "vendor" / "pyodide.mjs").write_text("export const x = 1;\n")
    (root / "web" / "app.zip").write_bytes(b"PK\5\6" + b"\0" * 18)
    (root / "web" / "node_modules").mkdir()
    (root / "web" / "node_modules" / "secret.js").write_text("nope")
    (root / "web" / ".hidden").write_text("nope")
    (root / "src").mkdir()
    (root / "src" / "code.py").write_text("nope")
    (root / ".devstack").mkdir()
    (root / ".devstack" / "secrets.json").write_text("{}")
    config = dataclasses.replace(stack.config, app_root=root, gateway_port=free_port())
    with serving(Gateway(config)):
        yield config.gateway_url


@pytest.mark.parametrize(
    ("path", "mime"),
    [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/pyscript.toml", "application/toml"),
        ("/web/vendor/pyodide.asm.wasm", "application/wasm"),
        ("/web/vendor/pyodide.mjs", "text/javascript"),
        ("/web/app.zip", "application/zip"),
    ],
)
def test_static_files_have_correct_mime_types(app_gateway: str, path: str, mime: str) -> None:
    r = httpx.get(app_gateway + path)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == mime
    assert r.headers["x-signalguard-stack"] == "local-dev"


@pytest.mark.parametrize(
    "path",
    [
        "/web/node_modules/secret.js",
        "/web/.hidden",
        "/src/code.py",
        "/.devstack/secrets.json",
        "/web/../.devstack/secrets.json",
        "/web/%2e%2e/.devstack/secrets.json",
        "/web/vendor/missing.js",
    ],
)
def test_only_the_app_is_served(app_gateway: str, path: str) -> None:
    r = httpx.get(app_gateway + path)
    assert r.status_code == 404
    assert b"nope" not in r.content and r.content != b"{}"


def test_rest_is_forwarded_with_prefix_stripped(api: Api, actors: Actors) -> None:
    a = actors.make()
    r = api.select("traders", a.token, f"select=id,name&id=eq.{a.trader_id}")
    assert r.status == 200 and r.body[0]["id"] == a.trader_id
    # The query string, Prefer and Range headers reach PostgREST unchanged.
    h = {
        "apikey": api.anon,
        "Authorization": f"Bearer {a.token}",
        "Prefer": "count=exact",
        "Range": "0-0",
    }
    resp = httpx.get(f"{api.base}/rest/v1/traders?select=id", headers=h)
    assert resp.status_code in (200, 206) and resp.headers["content-range"].endswith("/1")


def test_api_key_is_required_and_checked(api: Api, stack: LocalStack) -> None:
    r = httpx.get(f"{api.base}/rest/v1/traders")
    assert r.status_code == 401 and r.json()["message"] == "No API key found in request"
    forged = tokens.anon_key("y" * 64)
    r = httpx.get(f"{api.base}/rest/v1/traders", headers={"apikey": forged})
    assert r.status_code == 401
    # A user token is not an API key.
    user = tokens.user_token(
        stack.config.secrets().jwt_secret,
        "00000000-0000-4000-8000-000000000000",
        "x@signalguard.test",
    )
    assert httpx.get(f"{api.base}/rest/v1/traders", headers={"apikey": user}).status_code == 401


def test_cors_preflight(api: Api, stack: LocalStack) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{api.base}/rest/v1/traders",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "apikey, authorization, content-type",
            },
        )

    own = f"http://localhost:{stack.config.gateway_port}"
    r = preflight(own)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == own
    assert "access-control-allow-credentials" not in r.headers
    # Another origin (here another local port) is not one of the configured ones: no CORS answer.
    r = preflight("http://127.0.0.1:9999")
    assert r.status_code == 204 and "access-control-allow-origin" not in r.headers


def test_password_sign_in_refresh_user_logout(api: Api) -> None:
    h = {"apikey": api.anon}
    bad = httpx.post(
        f"{api.base}/auth/v1/token?grant_type=password",
        headers=h,
        json={"email": "alice@signalguard.test", "password": "wrong"},
    )
    assert bad.status_code == 400 and bad.json()["error_code"] == "invalid_credentials"
    ok = httpx.post(
        f"{api.base}/auth/v1/token?grant_type=password",
        headers=h,
        json={"email": "Alice@signalguard.test", "password": DEMO_PASSWORD},
    )
    assert ok.status_code == 200
    session = ok.json()
    assert session["token_type"] == "bearer" and session["user"]["email"] == "alice@signalguard.test"
    auth = {**h, "Authorization": f"Bearer {session['access_token']}"}
    me = httpx.get(f"{api.base}/auth/v1/user", headers=auth)
    assert me.status_code == 200 and me.json()["id"] == session["user"]["id"]
    # The access token works against the database, as that user.
    traders = httpx.get(f"{api.base}/rest/v1/traders?select=user_id", headers=auth).json()
    assert traders and {t["user_id"] for t in traders} == {session["user"]["id"]}
    # Refresh rotates: the old refresh token is spent. Presented again at once (within the reuse
    # interval), it answers the session's current token rather than a new one.
    new = httpx.post(
        f"{api.base}/auth/v1/token?grant_type=refresh_token",
        headers=h,
        json={"refresh_token": session["refresh_token"]},
    )
    assert new.status_code == 200 and new.json()["refresh_token"] != session["refresh_token"]
    reuse = httpx.post(
        f"{api.base}/auth/v1/token?grant_type=refresh_token",
        headers=h,
        json={"refresh_token": session["refresh_token"]},
    )
    assert reuse.status_code == 200 and reuse.json()["refresh_token"] == new.json()["refresh_token"]
    out = httpx.post(
        f"{api.base}/auth/v1/logout?scope=global",
        headers={**h, "Authorization": f"Bearer {new.json()['access_token']}"},
    )
    assert out.status_code == 204
    after = httpx.post(
        f"{api.base}/auth/v1/token?grant_type=refresh_token",
        headers=h,
        json={"refresh_token": new.json()["refresh_token"]},
    )
    assert after.status_code == 400


def test_unknown_auth_endpoint_says_so(api: Api) -> None:
    r = httpx.post(f"{api.base}/auth/v1/otp", headers={"apikey": api.anon}, json={})
    assert r.status_code == 404 and "local development stack" in r.json()["msg"]


def test_postgrest_down_gives_503_then_recovers(api: Api, actors: Actors, stack: LocalStack) -> None:
    a = actors.make()
    stack.postgrest.stop()
    try:
        r = api.select("traders", a.token)
        assert r.status == 503 and r.body["code"] == "PGRST_UNAVAILABLE"
    finally:
        stack.postgrest.start()
    assert api.select("traders", a.token).status == 200


def test_supabase_py_client_end_to_end(stack: LocalStack) -> None:
    """supabase-py, as the cloud worker uses it, against the local stack."""
    from supabase import create_client

    client = create_client(stack.url, stack.config.anon_key())
    res = client.auth.sign_in_with_password({"email": "carol@signalguard.test", "password": DEMO_PASSWORD})
    assert res.user is not None and res.user.email == "carol@signalguard.test"
    traders = client.table("traders").select("name, enabled").order("name").execute()
    assert [t["name"] for t in traders.data] == ["Oversold bounce", "Volume spike"]
    status: Any = client.rpc("execution_status", {"p_holder_id": "carol-tab-0001"}).execute()
    assert status.data["machine"] is None and status.data["may_claim"] is True
    version: Any = client.rpc("schema_version").execute()
    assert set(version.data["components"]) >= {"core", "execution_lease"}
    client.auth.sign_out()


def test_config_json_is_the_apps_one_place_of_configuration(api: Api, stack: LocalStack) -> None:
    r = httpx.get(f"{api.base}/config.json")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    config = r.json()
    assert config == {
        "supabase_url": stack.url,
        "supabase_anon_key": stack.config.anon_key(),
        "market_data_url": stack.config.market_data_url,
        "stack": "local-dev",
    }
    # Only the public key: never the service key.
    assert tokens.decode(stack.config.secrets().jwt_secret, config["supabase_anon_key"])["role"] == "anon"


def test_pages_carry_a_content_security_policy(app_gateway: str) -> None:
    csp = httpx.get(app_gateway + "/").headers["content-security-policy"]
    assert "default-src 'self'" in csp and "object-src 'none'" in csp
    assert "connect-src 'self' http://127.0.0.1:9443 ws://127.0.0.1:9443 https: http://127.0.0.1:*" in csp
    assert "content-security-policy" not in httpx.get(app_gateway + "/web/app.zip").headers


def test_every_file_the_page_names_is_served(stack: LocalStack) -> None:
    """index.html's scripts, styles and preloads (PyScript's chunks by their pinned names) all exist:
    a preload of a file that is not there would cost a request and log an error on every start."""

    class Refs(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.refs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            named = dict(attrs)
            ref = named.get("src") if tag == "script" else named.get("href") if tag == "link" else None
            if ref and ref.startswith("./"):
                self.refs.append(ref[2:])

    page = httpx.get(stack.url + "/index.html")
    assert page.status_code == 200
    refs = Refs()
    refs.feed(page.text)
    preloads = [r for r in refs.refs if "vendor/pyscript/" in r and r.endswith(".js") and "-" in r]
    assert len(preloads) >= 3, "PyScript's chunks are preloaded"
    missing = [r for r in refs.refs if httpx.get(f"{stack.url}/{r}").status_code != 200]
    assert missing == []
