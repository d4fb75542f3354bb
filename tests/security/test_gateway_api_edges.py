"""The gateway's edges in front of PostgREST: the API key in the query, CORS, and the OpenAPI root.

- ``?apikey=`` is how Supabase accepts the key where headers cannot be set; the gateway reads it and
  must not pass it on, where PostgREST would take it for a filter on a column named ``apikey``.
- Only the gateway's own origins and the configured ones get CORS answers, and never with credentials:
  any other site's page could otherwise read what a signed-in user's browser fetched.
- PostgREST's root is a description of every table, view and function exposed; hosted Supabase gives it
  only to a secret key (``Access to schema is forbidden``), and so does the gateway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from stackkit import Actors, Api, serving

from signalguard.devstack import postgrest
from signalguard.devstack.config import StackConfig, free_port, parse_origin
from signalguard.devstack.gateway import SCHEMA_FORBIDDEN, Gateway
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


# -- ?apikey= ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "apikey={key}&select=id",
        "select=id&apikey={key}",
        "select=id&apikey={key}&order=id",
        "select=id&api%6Bey={key}",
        "apikey={key}&select=id&apikey={key}",
    ],
)
def test_an_apikey_in_the_query_is_accepted_and_not_forwarded(
    api: Api, actors: Actors, http: httpx.Client, query: str
) -> None:
    actor = actors.make()
    r = http.get(
        f"{api.base}/rest/v1/traders?{query.format(key=api.anon)}",
        headers={"Authorization": f"Bearer {actor.token}"},
    )
    assert r.status_code == 200, r.text
    assert [t["id"] for t in r.json()] == [actor.trader_id]


def test_an_apikey_in_the_query_works_for_rpcs_and_sign_in(
    api: Api, actors: Actors, http: httpx.Client
) -> None:
    actor = actors.make()
    r = http.post(
        f"{api.base}/rest/v1/rpc/execution_status?apikey={api.anon}",
        headers={"Authorization": f"Bearer {actor.token}"},
        json={"p_holder_id": "query-key-holder-1"},
    )
    assert r.status_code == 200, r.text
    r = http.get(f"{api.base}/auth/v1/settings?apikey={api.anon}")
    assert r.status_code == 200


def test_an_apikey_in_the_query_is_still_checked(api: Api, stack: LocalStack, http: httpx.Client) -> None:
    for key in ("garbage", "", stack.user_token("carol@signalguard.test")):
        r = http.get(f"{api.base}/rest/v1/traders?select=id&apikey={key}")
        assert r.status_code == 401 and r.json()["message"], (key[:20], r.text)


def test_other_parameters_reach_postgrest_as_sent(api: Api, actors: Actors, http: httpx.Client) -> None:
    # Stripping the key rewrites nothing else: "%20" and "+" arrive as the client sent them.
    actor = actors.make()
    headers = {"Authorization": f"Bearer {actor.token}"}
    name = http.get(f"{api.base}/rest/v1/traders?apikey={api.anon}&select=name", headers=headers).json()[0][
        "name"
    ]
    assert " " in name
    for spelled in (name.replace(" ", "%20"), name.replace(" ", "+")):
        r = http.get(
            f"{api.base}/rest/v1/traders?select=id&apikey={api.anon}&name=eq.{spelled}", headers=headers
        )
        assert r.status_code == 200 and [t["id"] for t in r.json()] == [actor.trader_id], (spelled, r.text)


# -- the OpenAPI root ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/rest/v1/", "/rest/v1//", "/rest/v1/%2F", "/rest/v1/?select=*"])
def test_the_openapi_root_is_refused_to_the_anon_key(
    api: Api, stack: LocalStack, actors: Actors, http: httpx.Client, path: str
) -> None:
    actor = actors.make()
    for headers in (
        {"apikey": api.anon},
        {"apikey": api.anon, "Authorization": f"Bearer {actor.token}"},
        {"apikey": api.anon, "Authorization": f"Bearer {stack.config.service_key()}"},
        {"apikey": api.anon, "Accept": "application/openapi+json"},
    ):
        r = http.get(f"{api.base}{path}", headers=headers)
        assert r.status_code == 403 and r.json() == SCHEMA_FORBIDDEN, (headers.keys(), r.text[:200])
        assert "paths" not in r.text and "definitions" not in r.text
    sep = "&" if "?" in path else "?"
    assert http.get(f"{api.base}{path}{sep}apikey={api.anon}").status_code == 403
    assert http.head(f"{api.base}{path}", headers={"apikey": api.anon}).status_code == 403


def test_an_encoded_question_mark_does_not_reach_the_root(api: Api, http: httpx.Client) -> None:
    # "/rest/v1/%3F" is a table named "?", not the root with an empty query.
    r = http.get(f"{api.base}/rest/v1/%3F", headers={"apikey": api.anon})
    assert r.status_code == 404 and "paths" not in r.text


def test_the_openapi_root_answers_the_service_key(stack: LocalStack, http: httpx.Client) -> None:
    r = http.get(f"{stack.url}/rest/v1/", headers={"apikey": stack.config.service_key()})
    assert r.status_code == 200, r.text[:200]
    description = r.json()
    assert "/traders" in description["paths"] and "/rpc/claim_local_lease" in description["paths"]


def test_postgrest_describes_only_what_the_role_may_use(stack: LocalStack) -> None:
    env = postgrest.environment(stack.config)
    assert env["PGRST_OPENAPI_MODE"] == "follow-privileges"


# -- CORS ----------------------------------------------------------------------------------------


def preflight(http: httpx.Client, base: str, origin: str, path: str = "/rest/v1/traders") -> httpx.Response:
    return http.options(
        f"{base}{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "apikey, authorization, content-type",
        },
    )


def test_the_gateways_own_origins_get_cors_answers(stack: LocalStack, http: httpx.Client) -> None:
    port = stack.config.gateway_port
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        for path in ("/rest/v1/traders", "/auth/v1/token"):
            r = preflight(http, stack.url, origin, path)
            assert r.status_code == 204
            assert r.headers["access-control-allow-origin"] == origin
            assert "apikey" in r.headers["access-control-allow-headers"]
            assert "access-control-allow-credentials" not in r.headers
        r = http.get(
            f"{stack.url}/auth/v1/settings", headers={"apikey": stack.config.anon_key(), "Origin": origin}
        )
        assert r.headers["access-control-allow-origin"] == origin and r.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "https://127.0.0.1:{port}",
        "http://127.0.0.1:{other}",
        "http://localhost",
        "null",
        "http://127.0.0.1:{port}.evil.example",
        "http://127.0.0.1:{port}/",
    ],
)
def test_other_origins_get_no_cors_answer(stack: LocalStack, http: httpx.Client, origin: str) -> None:
    origin = origin.format(port=stack.config.gateway_port, other=stack.config.gateway_port + 1)
    r = preflight(http, stack.url, origin)
    assert r.status_code == 204
    assert not [h for h in r.headers if h.startswith("access-control-")], dict(r.headers)
    # A simple request is answered (a browser would hide the answer from the page), with no CORS headers.
    r = http.get(
        f"{stack.url}/auth/v1/settings", headers={"apikey": stack.config.anon_key(), "Origin": origin}
    )
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert r.headers["vary"] == "Origin"


def test_configured_origins_get_cors_answers(stack: LocalStack, http: httpx.Client) -> None:
    config = dataclasses.replace(
        stack.config,
        gateway_port=free_port(),
        cors_origins=("http://127.0.0.1:5173", "HTTPS://Tools.Example/"),
    )
    with serving(Gateway(config)):
        for origin in ("http://127.0.0.1:5173", "https://tools.example"):
            r = preflight(http, config.gateway_url, origin)
            assert r.headers["access-control-allow-origin"] == origin
            assert "access-control-allow-credentials" not in r.headers
        r = preflight(http, config.gateway_url, "http://127.0.0.1:5174")
        assert "access-control-allow-origin" not in r.headers


def test_the_static_app_gets_no_cors_headers(stack: LocalStack, http: httpx.Client) -> None:
    r = http.get(
        f"{stack.url}/config.json", headers={"Origin": f"http://localhost:{stack.config.gateway_port}"}
    )
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_origins_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALGUARD_CORS_ORIGINS", " http://127.0.0.1:5173 ,HTTPS://Tools.Example/,")
    config = StackConfig()
    assert config.cors_origins == ("http://127.0.0.1:5173", "https://tools.example")
    assert config.allowed_origins == {
        f"http://127.0.0.1:{config.gateway_port}",
        f"http://localhost:{config.gateway_port}",
        "http://127.0.0.1:5173",
        "https://tools.example",
    }
    for bad in ("*", "127.0.0.1:5173", "http://x.example/path", "ftp://x.example", "http://x.example:99999"):
        monkeypatch.setenv("SIGNALGUARD_CORS_ORIGINS", bad)
        with pytest.raises(ValueError, match="SIGNALGUARD_CORS_ORIGINS"):
            StackConfig()
    assert parse_origin("http://LOCALHOST:8000/") == "http://localhost:8000"
    # As browsers send them: no default port, brackets kept around an IPv6 literal.
    assert parse_origin("http://tools.example:80") == "http://tools.example"
    assert parse_origin("https://tools.example:443/") == "https://tools.example"
    assert parse_origin("http://[::1]:5173") == "http://[::1]:5173"
