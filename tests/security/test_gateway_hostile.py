"""Hostile requests against every route of the gateway: never a 5xx, always a JSON body from the API.

A NUL in a static path or in the sign-in fields used to reach the file system or PostgreSQL and come back
as a 500; the sweep sends those and their relatives (undecodable percent-encoding, bodies that are not
JSON or not UTF-8, broken compressed bodies, garbage tokens and keys, very long paths and values, odd
query strings) to each route, on a gateway of its own over the session's stack with the sign-in throttle
raised, so every case reaches as deep as it can. Nothing may change in the database.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from stackkit import Actors, serving

from signalguard.devstack.config import free_port
from signalguard.devstack.gateway import Gateway
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def gateway(stack: LocalStack) -> Iterator[Gateway]:
    config = dataclasses.replace(
        stack.config,
        gateway_port=free_port(),
        signin_account_failures=10**6,
        signin_address_failures=10**6,
    )
    with serving(Gateway(config)) as gw:
        yield gw


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str | bytes] | None = None,
    body: bytes | None = None,
) -> Answer:
    """One request with exactly these bytes (httpx would normalise the URL and refuse odd headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def snapshot(stack: LocalStack) -> tuple[Any, ...]:
    with stack.connect() as conn:
        row = conn.execute(
            "select (select count(*) from auth.users), (select max(last_sign_in_at) from auth.users),"
            " (select count(*) from auth.refresh_tokens), (select count(*) filter (where revoked)"
            "   from auth.refresh_tokens), (select count(*) from public.traders),"
            " (select count(*) from public.signals), (select count(*) from public.lease_epochs)"
        ).fetchone()
    assert row is not None
    return tuple(row)


# -- the findings --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/web/%00x", "/index.html%00", "/%00", "/web/vendor%00/x.js"])
def test_a_nul_in_a_static_path_is_a_400_with_a_json_body(gateway: Gateway, target: str) -> None:
    r = send(gateway.config.gateway_port, "GET", target)
    assert r.status == 400, r
    assert "control character" in r.json()["message"]


@pytest.mark.parametrize(
    "fields",
    [
        {"email": "alice@signalguard.test\u0000", "password": "signalguard-demo"},
        {"email": "\u0000", "password": "x"},
        {"email": "alice@signalguard.test", "password": "signalguard-demo\u0000"},
        {"email": "alice@signalguard.test", "password": "\u0000"},
    ],
)
def test_a_nul_in_the_sign_in_fields_is_a_400_in_supabase_auth_shape(
    stack: LocalStack, gateway: Gateway, fields: dict[str, str]
) -> None:
    before = snapshot(stack)
    r = send(
        gateway.config.gateway_port,
        "POST",
        "/auth/v1/token?grant_type=password",
        {"apikey": stack.config.anon_key(), "Content-Type": "application/json"},
        json.dumps(fields).encode(),
    )
    assert r.status == 400, r
    body = r.json()
    assert body["code"] == 400 and body["error_code"] == "validation_failed"
    assert "NUL" in body["msg"] or "control character" in body["msg"]
    assert snapshot(stack) == before


def test_a_nul_in_a_refresh_token_is_a_400(stack: LocalStack, gateway: Gateway) -> None:
    r = send(
        gateway.config.gateway_port,
        "POST",
        "/auth/v1/token?grant_type=refresh_token",
        {"apikey": stack.config.anon_key(), "Content-Type": "application/json"},
        b'{"refresh_token": "abc\\u0000def"}',
    )
    assert r.status == 400 and r.json()["error_code"] == "refresh_token_not_found"


# -- the sweep -----------------------------------------------------------------------------------

NOBODY = "00000000-0000-4000-8000-000000000000"

#: (method, path with query, body): every route the gateway has, each with a request that is valid in
#: shape but changes nothing (the sweep's password is wrong, so nothing signs in; the table route names a
#: row that does not exist, so its PATCH and DELETE variants touch none).
ROUTES: list[tuple[str, str, bytes | None]] = [
    ("GET", "/", None),
    ("GET", "/index.html", None),
    ("GET", "/web/app.css", None),
    ("GET", "/config.json", None),
    ("GET", "/_stack/health", None),
    ("GET", f"/rest/v1/traders?select=id&id=eq.{NOBODY}", None),
    ("POST", "/rest/v1/rpc/execution_status", b'{"p_holder_id": "sweep-holder-1"}'),
    ("GET", "/rest/v1/", None),
    ("POST", "/auth/v1/token?grant_type=password", b'{"email": "sweep@signalguard.test", "password": "no"}'),
    ("POST", "/auth/v1/token?grant_type=refresh_token", b'{"refresh_token": "abcdefgh"}'),
    ("GET", "/auth/v1/user", None),
    ("POST", "/auth/v1/logout?scope=local", None),
    ("GET", "/auth/v1/settings", None),
    ("POST", "/auth/v1/signup", b"{}"),
]

PATH_SUFFIXES = [
    "%00",
    "%00x",
    "/%00",
    "%01",
    "%7F",
    "%ff",
    "%ed%a0%80",
    "%c0%af",
    "%zz",
    "%",
    "%3F",
    "%23",
    "%2F..%2F..%2F.devstack%2Fsecrets.json",
    "/../../.devstack/secrets.json",
    "/" + "a" * 300,
    "/a" * 2000,
    ";x=1",
]

QUERIES = [
    "%ff=1",
    "x=%00",
    "%00=x",
    "x=%ed%a0%80",
    "x=%zz&y=%",
    "=&&=&",
    "apikey=%00",
    "apikey=garbage",
    "apikey=a.b.c",
    "grant_type=%00",
    "grant_type=" + "g" * 3000,
    "scope=%ff",
    "scope=nonsense",
    "select=*,%00",
    "a=1&" * 600,
]

HEADERS: list[dict[str, str | bytes]] = [
    {"Authorization": b"Bearer"},
    {"Authorization": b"Bearer "},
    {"Authorization": b"Bearer \xff\xfe"},
    {"Authorization": b"Bearer \xc3\xa9.\xc3\xa9.\xc3\xa9"},
    {"Authorization": b"Basic Zm9vOmJhcg=="},
    {"Authorization": b"Bearer a.b.c"},
    {"Authorization": b"Bearer " + b"." * 5000},
    {"Authorization": b"Bearer " + b"e" * 7000},
    {"apikey": b"garbage"},
    {"apikey": b"\xff\xfe"},
    {"apikey": b"a.b.c"},
    {"apikey": b"e" * 7000},
    {"Content-Type": b"application/json; charset=bogus"},
    {"Content-Type": b"application/json; charset=utf-16"},
    {"Content-Type": b"text/plain"},
    {"Content-Type": b"multipart/form-data; boundary=x"},
    {"Content-Encoding": b"gzip"},
    {"Content-Encoding": b"deflate"},
    {"Content-Encoding": b"br"},
    {"Origin": b"null"},
    {"Origin": b"http://evil.example"},
    {"X-Forwarded-For": b"10.0.0.1, \xff"},
    {"Accept": b"application/openapi+json"},
    {"Accept": b"\xff"},
    {"Range": b"bytes=abc"},
    {"Prefer": b"\xff; count=exact; return=representation"},
    {"X-Junk": b"\xc3\x28\xa0\xa1"},
]

BODIES: list[bytes] = [
    b"",
    b"{",
    b"[",
    b"null",
    b"1e999999",
    b'"x"',
    b"[" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"9" * 5000,
    b"\xff\xfe{}",
    b"\xef\xbb\xbf{}",
    b'{"email": 1, "password": []}',
    b'{"email": "a\\u0000@x.test", "password": "p"}',
    b'{"email": "x@x.test", "password": "p\\u0000"}',
    b'{"email": "\\ud800@x.test", "password": "p"}',
    b'{"email": "x@x.test", "password": "\\udfff"}',
    b'{"email": "' + b"a" * 5000 + b'@x.test", "password": "p"}',
    b'{"email": "x@x.test", "password": "' + b"p" * 100 + b'"}',
    b'{"email": "x\\n@x.test", "password": "p"}',
    b'{"refresh_token": "\\u0000"}',
    b'{"refresh_token": ["x"]}',
    b'{"refresh_token": "' + b"a" * 5000 + b'"}',
    b'{"refresh_token": "\\ud800"}',
    b'{"p_holder_id": "\\u0000"}',
    b'{"p_holder_id": "' + b"h" * 100_000 + b'"}',
]

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def with_suffix(path: str, suffix: str) -> str:
    base, sep, query = path.partition("?")
    return base + suffix + sep + query


def with_query(path: str, query: str) -> str:
    return path + ("&" if "?" in path else "?") + query


def hostile_requests(base_headers: dict[str, str | bytes]) -> Iterator[tuple[str, str, Any, bytes | None]]:
    for method, path, body in ROUTES:
        for suffix in PATH_SUFFIXES:
            yield method, with_suffix(path, suffix), base_headers, body
        for query in QUERIES:
            yield method, with_query(path, query), base_headers, body
        for extra in HEADERS:
            yield method, path, {**base_headers, **extra}, body
        for hostile in BODIES:
            yield method, path, base_headers, hostile
        for other in METHODS:
            yield other, path, base_headers, body


def test_no_hostile_request_gets_a_5xx_and_the_api_always_answers_json(
    stack: LocalStack, gateway: Gateway, actors: Actors
) -> None:
    actor = actors.make()
    base: dict[str, str | bytes] = {
        "apikey": stack.config.anon_key(),
        "Authorization": f"Bearer {actor.token}",
        "Content-Type": "application/json",
    }
    before = snapshot(stack)
    failures: list[str] = []
    count = 0
    for method, target, headers, body in hostile_requests(base):
        count += 1
        r = send(gateway.config.gateway_port, method, target, headers, body)
        what = f"{method} {target[:90]} {str(headers)[-60:]} {(body or b'')[:40]!r}"
        if r.status >= 500:
            failures.append(f"{what} -> {r.status} {r.body[:160]!r}")
            continue
        api = target.startswith(("/rest/v1/", "/auth/v1/"))
        if api and method != "HEAD" and r.status != 204:
            try:
                r.json()
            except ValueError:
                failures.append(f"{what} -> {r.status} not JSON: {r.body[:160]!r}")
    assert count > 1000
    assert not failures, f"{len(failures)} of {count}:\n" + "\n".join(failures[:40])
    assert snapshot(stack) == before, "a hostile request changed the database"
    # The gateway still answers normally.
    r = send(gateway.config.gateway_port, "GET", "/rest/v1/traders?select=id", base)
    assert r.status == 200 and [t["id"] for t in r.json()] == [actor.trader_id]
