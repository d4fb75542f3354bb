"""Hostile HTTP against the real stack: oversized bodies and headers, and tokens that must not work.

An oversized body is refused by the gateway before it reaches PostgREST (413), quickly, and the stack
answers normally afterwards. Expired, forged, unsigned, wrong-role and garbage tokens are refused on RPCs,
table reads and table writes with a 401/403 and a JSON body, and nothing is written: each attempt carries
a request that the right token turns into a row (checked last, so the refusals are not vacuous).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from stackkit import DEFINITION, Actor, Actors, Api

from signalguard.devstack import tokens
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

MB = 2**20
#: The gateway refuses request bodies beyond this (aiohttp's client_max_size).
GATEWAY_BODY_LIMIT = 8 * MB
#: How long refusing an oversized body may take (it is never read to the end).
QUICKLY = 5.0


def snapshot(stack: LocalStack, user_id: str) -> tuple[Any, ...]:
    with stack.connect() as conn:
        row = conn.execute(
            "select (select count(*) from public.signals), (select count(*) from public.traders),"
            " (select count(*) from public.lease_epochs),"
            " (select row(holder_kind, holder_id, epoch, expires_at)::text from public.execution_leases"
            "   where user_id = %(u)s),"
            " (select row(status, last_health_check, error_message)::text from public.cloud_machines"
            "   where user_id = %(u)s)",
            {"u": user_id},
        ).fetchone()
    assert row is not None
    return tuple(row)


def held_lease(api: Api, stack: LocalStack, actor: Actor) -> int:
    """Hold the actor's browser lease for a day, with a window over the last two days; its epoch."""
    r = api.rpc("claim_local_lease", {"p_holder_id": "hostile-holder-1"}, actor.token)
    assert r.status == 200 and r.body["granted"], r.body
    epoch = int(r.body["lease"]["epoch"])
    with stack.connect() as conn:
        conn.execute(
            "update public.lease_epochs set started_at = now() - interval '2 days', "
            "valid_until = now() + interval '1 day' where user_id = %s and epoch = %s",
            (actor.user_id, epoch),
        )
        conn.execute(
            "update public.execution_leases set expires_at = now() + interval '1 day' where user_id = %s",
            (actor.user_id,),
        )
    return epoch


def a_signal(actor: Actor, epoch: int) -> dict[str, Any]:
    """A signal the actor's own token writes: a 1m candle that closed an hour ago."""
    now_ms = int(time.time() * 1000)
    return {
        "trader_id": actor.trader_id,
        "symbol": "BTCUSDT",
        "interval": "1m",
        "candle_open_time": now_ms - 3_600_000 - now_ms % 60_000,
        "price": 101.5,
        "matched_conditions": ["RSI(14) < 30"],
        "source": "local",
        "machine_id": None,
        "epoch": epoch,
    }


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


# -- oversized requests --------------------------------------------------------------------------


def _stack_answers(api: Api, actor: Actor) -> None:
    health = httpx.get(f"{api.base}/_stack/health", timeout=10)
    assert health.status_code == 200
    assert api.rpc("execution_status", {}, actor.token).status == 200


def _chunks(total: int, size: int = MB) -> Iterator[bytes]:
    yield b'{"p_signals": [{"symbol": "'
    for _ in range(total // size):
        yield b"A" * size
    yield b'"}]}'


@pytest.mark.parametrize(
    ("path", "framing"),
    [
        ("rest/v1/rpc/write_signals", "content-length"),
        ("rest/v1/rpc/write_signals", "chunked"),
        ("rest/v1/traders", "content-length"),
        ("auth/v1/token?grant_type=password", "content-length"),
    ],
)
def test_an_oversized_body_is_refused_quickly(
    stack: LocalStack, api: Api, actors: Actors, http: httpx.Client, path: str, framing: str
) -> None:
    actor = actors.make()
    epoch = held_lease(api, stack, actor)
    before = snapshot(stack, actor.user_id)
    headers = {
        "apikey": api.anon,
        "Authorization": f"Bearer {actor.token}",
        "Content-Type": "application/json",
    }
    size = 20 * MB
    if framing == "chunked":
        content: Any = _chunks(size)
    else:
        # A real batch, padded past the limit with a long label: refused as a whole, not in part.
        item = a_signal(actor, epoch) | {"matched_conditions": ["x" * size]}
        content = json.dumps({"p_signals": [item]}).encode()
        assert len(content) > GATEWAY_BODY_LIMIT
    started = time.monotonic()
    r = http.post(f"{stack.url}/{path}", content=content, headers=headers)
    took = time.monotonic() - started
    assert r.status_code == 413, f"HTTP {r.status_code}: {r.text[:300]}"
    assert "exceeded" in r.text or "too large" in r.text.lower(), r.text[:300]
    assert took < QUICKLY, f"refusing {size} bytes took {took:.1f} s"
    assert snapshot(stack, actor.user_id) == before
    _stack_answers(api, actor)


def test_a_body_under_the_limit_is_served(
    stack: LocalStack, api: Api, actors: Actors, http: httpx.Client
) -> None:
    # The other side of the limit: a large batch (7 MiB) reaches the database and is judged there, item by
    # item: the oversized label is refused with its field named, the good signal beside it is kept.
    actor = actors.make()
    epoch = held_lease(api, stack, actor)
    good = a_signal(actor, epoch)
    big = good | {
        "candle_open_time": good["candle_open_time"] - 60_000,
        "matched_conditions": ["y" * (7 * MB)],
    }
    headers = {
        "apikey": api.anon,
        "Authorization": f"Bearer {actor.token}",
        "Content-Type": "application/json",
    }
    r = http.post(
        f"{stack.url}/rest/v1/rpc/write_signals",
        content=json.dumps({"p_signals": [big, good]}),
        headers=headers,
    )
    assert r.status_code == 200, r.text[:300]
    refused, kept = r.json()
    assert refused["outcome"] == "rejected" and refused["code"] == "SG009", refused
    assert "matched_conditions" in refused["message"] and len(refused["message"]) < 200
    assert kept["outcome"] == "inserted", kept


def test_an_oversized_header_is_refused_and_the_server_still_answers(
    stack: LocalStack, api: Api, actors: Actors, http: httpx.Client
) -> None:
    actor = actors.make()
    r = http.post(
        f"{stack.url}/rest/v1/rpc/execution_status",
        json={},
        headers={"apikey": api.anon, "Authorization": "Bearer " + "a" * 100_000},
    )
    assert 400 <= r.status_code < 500, f"HTTP {r.status_code}: {r.text[:300]}"
    _stack_answers(api, actor)


# -- tokens that must not work -------------------------------------------------------------------


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def bad_tokens(secret: str, actor: Actor) -> dict[str, str]:
    """Tokens that name ``actor`` but must be refused, by why."""
    claims = jwt.decode(actor.token, options={"verify_signature": False})
    header, _, signature = actor.token.split(".")
    now = int(time.time())

    def sign(c: dict[str, Any]) -> str:
        return jwt.encode(c, secret, algorithm="HS256")

    return {
        "expired": tokens.user_token(
            secret, actor.user_id, actor.email, now=now - 2 * tokens.USER_TOKEN_SECONDS
        ),
        "expired machine": tokens.machine_token(
            secret, actor.user_id, str(actor.machine_uuid), now=now - 10**8
        ),
        "not yet valid": sign({**claims, "nbf": now + 3600}),
        "other secret": tokens.user_token(
            "another-secret-of-the-same-length-0123456789", actor.user_id, actor.email
        ),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "alg none, signature kept": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.{signature}",
        "claims swapped": f"{header}.{_b64({**claims, 'sub': str(actor.machine_uuid)})}.{signature}",
        "role anon": sign({**claims, "role": "anon"}),
        "role postgres": sign({**claims, "role": "postgres"}),
        "role authenticator": sign({**claims, "role": "authenticator"}),
        "role that does not exist": sign({**claims, "role": "admin"}),
        "garbage": "garbage",
        "three dots": "...",
        "not base64": "a.b.c",
    }


#: (method, path, JSON body or None): every one writes or reads the actor's data with the actor's token.
def requests_for(actor: Actor, epoch: int) -> list[tuple[str, str, Any]]:
    return [
        ("POST", "rpc/write_signals", {"p_signals": [a_signal(actor, epoch)]}),
        ("POST", "rpc/claim_local_lease", {"p_holder_id": "hostile-holder-2"}),
        ("POST", "rpc/update_signal_statuses", {"p_changes": []}),
        ("POST", "rpc/execution_status", {}),
        ("POST", "rpc/machine_heartbeat", {"p_status": "running"}),
        ("POST", "traders", {"name": "forged", "definition": DEFINITION}),
        ("GET", "traders?select=*", None),
        ("GET", "signals?select=*", None),
        ("GET", "cloud_machines?select=*", None),
        ("PATCH", f"traders?id=eq.{actor.trader_id}", {"name": "renamed"}),
        ("DELETE", f"traders?id=eq.{actor.trader_id}", None),
    ]


def test_bad_tokens_are_refused_everywhere_and_write_nothing(
    stack: LocalStack, api: Api, actors: Actors, http: httpx.Client
) -> None:
    actor = actors.make()
    epoch = held_lease(api, stack, actor)
    secret = stack.config.secrets().jwt_secret
    before = snapshot(stack, actor.user_id)
    failures = []
    for why, token in bad_tokens(secret, actor).items():
        for method, path, body in requests_for(actor, epoch):
            headers = {
                "apikey": api.anon,
                "Authorization": f"Bearer {token}",
                "Prefer": "return=representation",
            }
            r = http.request(method, f"{stack.url}/rest/v1/{path}", json=body, headers=headers)
            allowed = (400, 401, 403) if why == "role that does not exist" else (401, 403)
            try:
                payload = r.json()
            except ValueError:
                payload = None
            if r.status_code not in allowed or not isinstance(payload, dict) or not payload.get("message"):
                failures.append(f"{why}: {method} {path} -> HTTP {r.status_code} {r.text[:160]}")
        # The gateway's own endpoints judge tokens too.
        r = http.get(
            f"{stack.url}/auth/v1/user", headers={"apikey": api.anon, "Authorization": f"Bearer {token}"}
        )
        if r.status_code != 401 or "msg" not in r.json():
            failures.append(f"{why}: GET /auth/v1/user -> HTTP {r.status_code} {r.text[:160]}")
        # As the API key, any of them is refused by the gateway before PostgREST.
        r = http.get(f"{stack.url}/rest/v1/traders?select=*", headers={"apikey": token})
        if r.status_code != 401 or not r.json().get("message"):
            failures.append(f"{why}: as apikey -> HTTP {r.status_code} {r.text[:160]}")
    assert not failures, "\n".join(failures)
    assert snapshot(stack, actor.user_id) == before, "a refused request changed the database"
    # The same requests with the right token do write: the refusals above were not vacuous.
    r = api.rpc("write_signals", {"p_signals": [a_signal(actor, epoch)]}, actor.token)
    assert r.status == 200 and r.body[0]["outcome"] == "inserted", r.body
    r = api.insert("traders", {"name": "real", "definition": DEFINITION}, actor.token)
    assert r.status == 201, r.body
    assert snapshot(stack, actor.user_id) != before


def test_a_token_of_one_kind_is_refused_where_the_other_is_needed(
    stack: LocalStack, api: Api, actors: Actors
) -> None:
    # Signed correctly, but a browser token where a machine token is needed, and the other way round.
    actor = actors.make()
    before = snapshot(stack, actor.user_id)
    for rpc, args, token, code in [
        ("machine_heartbeat", {"p_status": "running"}, actor.token, "SG007"),
        ("claim_cloud_lease", {}, actor.token, "SG007"),
        ("claim_local_lease", {"p_holder_id": "hostile-holder-3"}, actor.machine_token, "SG008"),
        ("release_local_lease", {"p_holder_id": "hostile-holder-3"}, actor.machine_token, "SG008"),
    ]:
        r = api.rpc(rpc, args, token)
        assert (r.status, r.code) == (400, code), f"{rpc}: {r.status} {r.body}"
    assert snapshot(stack, actor.user_id) == before
