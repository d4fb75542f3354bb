"""HS256 tokens in Supabase's shape, signed with the local stack's secret.

PostgREST switches to the role in a token's ``role`` claim and exposes the claims to SQL
(``auth.uid()``, ``auth.jwt()``). Four kinds are minted here:

- the **anon key** and the **service key**: long-lived API keys (roles ``anon`` and ``service_role``);
- a **user token**: what sign-in returns for a user (role ``authenticated``, ``sub`` = the user);
- a **machine token**: what the user's cloud machine runs with (role ``authenticated``, ``sub`` = the
  owner, ``machine_id`` = the owner's ``cloud_machines.id``). The database's row level security and
  RPCs tell the two apart by the ``machine_id`` claim.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

ISSUER = "signalguard-local"
#: API keys are stable for a given secret (the browser's configuration can be written once): they
#: carry a fixed issue time and do not expire in practice, as with Supabase's.
API_KEY_ISSUED_AT = 1759449600  # 2025-10-03T00:00:00Z
API_KEY_SECONDS = 20 * 365 * 24 * 3600
USER_TOKEN_SECONDS = 3600
MACHINE_TOKEN_SECONDS = 30 * 24 * 3600


def _encode(secret: str, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


#: The longest token :func:`decode` reads; the ones minted here are under 1 KB.
TOKEN_MAX_CHARS = 16 * 1024
#: A JWT's alphabet: base64url and the dots between its parts.
_JWT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=")


def decode(secret: str, token: str) -> dict[str, Any]:
    """Verify a token's signature and expiry; raise :class:`jwt.InvalidTokenError` if it fails.

    Whatever the string (a header's garbage, undecodable bytes, a number claim no clock can hold), the
    only error is :class:`jwt.InvalidTokenError`.
    """
    if len(token) > TOKEN_MAX_CHARS or not set(token) <= _JWT_CHARS:
        raise jwt.DecodeError("not a compact JWT")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], options={"verify_aud": False}
        )
    except (OverflowError, TypeError) as exc:
        # PyJWT converts exp/nbf/iat with int(): infinity overflows, and a list or object is a TypeError.
        raise jwt.DecodeError(f"unusable time claim: {exc}") from None
    return claims


def anon_key(secret: str) -> str:
    """Return the anon API key (the browser's public key)."""
    iat = API_KEY_ISSUED_AT
    return _encode(secret, {"iss": ISSUER, "role": "anon", "iat": iat, "exp": iat + API_KEY_SECONDS})


def service_key(secret: str) -> str:
    """Return the service-role key (bypasses row level security; server-side tools only)."""
    iat = API_KEY_ISSUED_AT
    return _encode(secret, {"iss": ISSUER, "role": "service_role", "iat": iat, "exp": iat + API_KEY_SECONDS})


def user_token(
    secret: str,
    user_id: str,
    email: str,
    *,
    session_id: str | None = None,
    seconds: int = USER_TOKEN_SECONDS,
    now: float | None = None,
) -> str:
    """Return an access token for a signed-in user, with the claims Supabase Auth puts in one."""
    iat = int(now if now is not None else time.time())
    return _encode(
        secret,
        {
            "iss": ISSUER,
            "aud": "authenticated",
            "sub": user_id,
            "email": email,
            "phone": "",
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": iat}],
            "session_id": session_id or str(uuid.uuid4()),
            "is_anonymous": False,
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {},
            "iat": iat,
            "exp": iat + seconds,
        },
    )


def machine_token(
    secret: str,
    owner_id: str,
    machine_uuid: str,
    *,
    seconds: int = MACHINE_TOKEN_SECONDS,
    now: float | None = None,
) -> str:
    """Return the token a cloud machine runs with: its owner's identity plus its machine id."""
    iat = int(now if now is not None else time.time())
    return _encode(
        secret,
        {
            "iss": ISSUER,
            "aud": "authenticated",
            "sub": owner_id,
            "role": "authenticated",
            "machine_id": machine_uuid,
            "iat": iat,
            "exp": iat + seconds,
        },
    )
