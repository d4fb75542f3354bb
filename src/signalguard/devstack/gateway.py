"""The local stack's one origin: the static app, ``/rest/v1`` and ``/auth/v1``.

DEVELOPMENT ONLY. It listens on 127.0.0.1, marks every response with ``X-Signalguard-Stack: local-dev``
and signs tokens with the local secret. It stands in for what Supabase's API gateway does in front of a
hosted project:

- ``/rest/v1/*`` is forwarded to PostgREST with the prefix stripped. As with Supabase, every API request
  must carry an ``apikey`` (the anon or service key; a header, or an ``apikey`` query parameter, which is
  not forwarded); a request without an ``Authorization`` header is made with the API key as its bearer
  token. The root (PostgREST's OpenAPI description of everything exposed) answers only the service key,
  as hosted Supabase does since 2026.
- ``/auth/v1/*`` answers the few endpoints supabase-js calls to sign in with a password, refresh the
  session, read the user and sign out, for the users in ``auth.users``. Failed sign-ins are throttled per
  account and per client address (429 with ``Retry-After``); a refresh token is good for one use, and one
  presented again after :attr:`StackConfig.refresh_reuse_seconds` revokes its whole session.
- Accounts, as Supabase Auth with e-mail confirmations on: ``POST /signup`` makes an unconfirmed user
  (an address already registered gets the same answer, so a sign-up reveals nothing), ``POST /recover``
  always answers 200, ``GET /verify`` spends a one-time link (``auth.one_time_tokens``: a hash of it, its
  type and expiry) and redirects to ``redirect_to`` with the session in the fragment (GoTrue's implicit
  flow), and ``PUT /user`` changes the password. ``redirect_to`` must be one of the gateway's origins (or
  a configured ``cors_origins`` one): anything else is refused, there is no open redirect. Nothing is
  e-mailed: each mail is a :class:`Mail`, kept in :attr:`Gateway.mails` and handed to ``on_mail``
  (``signalguard dev`` prints it). Sign-ups and reset requests are throttled like failed sign-ins.
- Everything else is the app's static files, from an allow-list, with correct MIME types.

Input is judged at the edge: a path or query that is not UTF-8 or carries control characters, a body
that cannot be read or parsed, fields too long or holding NUL are refused with a 400 and a JSON body
before anything reaches the database. Only the gateway's own origins and ``cors_origins`` get CORS
headers.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import mimetypes
import secrets
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus, unquote_to_bytes, urlencode

import aiohttp
import jwt
import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from yarl import URL

from signalguard.devstack import tokens
from signalguard.devstack.assets import ASSETS_HEADER, SERVICE_WORKER, assets_version, worker_files
from signalguard.devstack.config import HOST, StackConfig
from signalguard.devstack.site import page_csp

#: Top-level entries of the app root that may be served. Anything else (the state folder, sources,
#: tests, dotfiles) is never served, whatever the path.
STATIC_ALLOW = frozenset({"index.html", "pyscript.toml", "favicon.ico", "web"})
#: Never served, at any depth.
STATIC_DENY_SEGMENTS = frozenset({"node_modules", "package.json", "package-lock.json"})

MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".toml": "application/toml",
    ".py": "text/x-python; charset=utf-8",
    ".zip": "application/zip",
    ".whl": "application/zip",
    ".tar": "application/x-tar",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

#: Hop-by-hop headers (RFC 9110 section 7.6.1) and those the proxy recomputes.
_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)

#: Where the page may post the user's webhook: any https receiver and, this stack being local, a
#: receiver on this machine (the page refuses a webhook on this stack's own port).
WEBHOOK_CONNECT = "https: http://127.0.0.1:* http://localhost:*"
STACK_HEADER = ("X-Signalguard-Stack", "local-dev")
API_VERSION_HEADER = ("X-Supabase-Api-Version", "2024-01-01")
API_PREFIXES = ("/rest/v1/", "/auth/v1/")
REFRESH_TOKEN_BYTES = 24

#: The answer to a body whose chunked framing breaks off.
_UNREADABLE_BODY = "The request body could not be read: its framing is broken"
#: The longest e-mail address accepted (RFC 5321's limit on a forward path).
EMAIL_MAX_CHARS = 254
#: The longest password accepted, in UTF-8 bytes: bcrypt reads no further, so a longer one would sign in
#: on its first 72 bytes alone (Supabase Auth refuses longer ones too).
PASSWORD_MAX_BYTES = 72
#: Refresh tokens are ``secrets.token_urlsafe`` strings; anything else longer or outside that alphabet
#: cannot be one and is answered without a database round trip.
REFRESH_TOKEN_MAX_CHARS = 128
#: Characters a path segment may carry unescaped (RFC 3986 ``pchar`` less ``%``) and ``/``.
_PATH_SAFE = "/:@!$&'()*+,;=~"
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

#: A bcrypt hash of a random secret nobody knows, at the cost the stack hashes passwords with
#: (``gen_salt('bf', 8)`` in ``sql/seed.sql``). A sign-in for an e-mail without a usable hash is checked
#: against it, so a wrong password costs one bcrypt whether or not the account exists.
DUMMY_BCRYPT = "$2a$08$tDkZR0XMK8gyQgpfnu6bvuphHyI0WQuoaB9SZbDUf6KAH/eLqY5De"
BCRYPT_COST = 8

#: How long a link in a sign-up or password-reset mail stays good, in seconds (Supabase Auth's default
#: e-mail OTP expiry), and the kinds of link there are.
LINK_SECONDS = 3600
LINK_TYPES = ("signup", "recovery")
#: One-time link tokens are ``secrets.token_urlsafe`` strings of this many bytes.
LINK_TOKEN_BYTES = 32
#: Supabase Auth's default minimum password length.
PASSWORD_MIN_CHARS = 6
#: The longest ``redirect_to`` accepted.
REDIRECT_MAX_CHARS = 2048
#: What Supabase Auth puts in the fragment of a redirect whose link was spent, expired or never made.
LINK_REFUSED = {
    "error": "access_denied",
    "error_code": "otp_expired",
    "error_description": "Email link is invalid or has expired",
}

#: What hosted Supabase answers for its OpenAPI root without a secret key.
SCHEMA_FORBIDDEN = {
    "message": "Access to schema is forbidden",
    "hint": "Accessing the schema via the Data API is only allowed using a secret API key.",
}

#: The password check: the account (by lower-cased e-mail, the exact spelling first) and one bcrypt of
#: the given password against its hash, or against the dummy hash when there is no account or no bcrypt
#: hash. ``attempt`` is a selected column, so the bcrypt runs on every path; the comparison is made by the
#: caller in constant time.
_PASSWORD_CHECK = """
select u.*, c.usable, c.attempt
from (values (1)) as one (x)
left join lateral (
  select * from auth.users where lower(email) = lower(%(email)s)
  order by email = %(email)s desc limit 1
) u on true
cross join lateral (
  select h.usable, extensions.crypt(%(password)s, case when h.usable then u.encrypted_password
                                                       else %(dummy)s end) as attempt
  from (select coalesce(u.encrypted_password ~ '^\\$2[abxy]\\$[0-9]{2}\\$[./A-Za-z0-9]{53}$', false)
        as usable) h
) c
"""


def _json(status: int, body: Any, **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers or None)


def _auth_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    """An error in Supabase Auth's format, which supabase-js turns into an ``AuthApiError``."""
    return web.json_response(
        {"code": status, "error_code": code, "msg": message},
        status=status,
        headers={**dict([API_VERSION_HEADER]), **headers},
    )


def _refusal(request: web.Request, status: int, message: str) -> web.Response:
    """A refusal made by the gateway itself, in the JSON shape of the part of the origin asked."""
    if request.path.startswith("/auth/v1/"):
        return _auth_error(status, "not_found" if status == 404 else "validation_failed", message)
    # Supabase's API gateway (Kong) answers with a bare message; the static app uses the same shape.
    return _json(status, {"message": message})


def _request_problem(request: web.Request) -> str | None:
    """Why the request's path or query cannot be served as sent, or ``None``.

    Both must percent-decode to UTF-8 (PostgREST answers a 500 to a query that does not), the path must
    hold no control characters (no file or API name has one; a NUL breaks file-system calls) and the
    query no NUL (PostgreSQL's text cannot hold one).
    """
    url = request.rel_url
    try:
        path = unquote_to_bytes(url.raw_path.encode("utf-8", "surrogateescape")).decode("utf-8")
        query = unquote_to_bytes(url.raw_query_string.encode("utf-8", "surrogateescape")).decode("utf-8")
    except UnicodeError:
        return "The request's URL is not valid percent-encoded UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "The request's path holds a control character"
    if "\0" in query:
        return "The request's query holds a NUL character"
    return None


def _without_apikey(raw_query: str) -> str:
    """The raw query string minus its ``apikey`` parameters (Supabase reads them; PostgREST must not)."""
    kept = [p for p in raw_query.split("&") if unquote_plus(p.partition("=")[0]) != "apikey"]
    return "&".join(kept)


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def email_problem(email: object) -> str | None:
    """Why ``email`` cannot be an account's e-mail address, or ``None``."""
    if not isinstance(email, str) or not email:
        return "Email and password are required"
    if len(email) > EMAIL_MAX_CHARS:
        return f"Email cannot be longer than {EMAIL_MAX_CHARS} characters"
    # Control characters (NUL among them) and lone surrogates: never part of an address, and PostgreSQL
    # refuses both.
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in email):
        return "Email holds a control character"
    return None


def password_problem(password: object) -> str | None:
    """Why ``password`` cannot be checked, or ``None``."""
    if not isinstance(password, str) or not password:
        return "Email and password are required"
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        return "Password is not valid Unicode text"
    if len(encoded) > PASSWORD_MAX_BYTES:
        return f"Password cannot be longer than {PASSWORD_MAX_BYTES} bytes"
    if "\0" in password:
        return "Password holds a NUL character"
    return None


def email_format_problem(email: str) -> str | None:
    """Why ``email`` (past :func:`email_problem`) is not an address a mail could reach, or ``None``."""
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain.strip(".") or any(c.isspace() for c in email):
        return "Unable to validate email address: invalid format"
    return None


@dataclass(frozen=True)
class Mail:
    """A mail the local stack would send (it prints it instead): to whom, what for, and its link."""

    to: str
    #: ``signup`` (confirm the account), ``recovery`` (reset the password) or ``existing`` (someone
    #: signed up again with an address that has a confirmed account: no link).
    kind: str
    link: str | None

    @property
    def line(self) -> str:
        """The one line ``signalguard dev`` prints for it."""
        if self.kind == "signup":
            return f"Mail to {self.to}: confirm your account: {self.link}"
        if self.kind == "recovery":
            return f"Mail to {self.to}: reset your password: {self.link}"
        return (
            f"Mail to {self.to}: someone signed up again with this address; the account exists "
            "(sign in, or reset the password)"
        )


class FailureBuckets:
    """Token buckets of allowed failures, one per key, on an injectable clock.

    A key starts with ``capacity`` tokens; each failure spends one; tokens come back evenly, all of them
    in ``window`` seconds. A key without a token must wait: :meth:`wait` says how long. Keys whose bucket
    is full again are forgotten, so the table holds only keys that failed recently.
    """

    def __init__(self, capacity: int, window: float, clock: Callable[[], float]) -> None:
        """Allow ``capacity`` failures, refilled over ``window`` seconds of ``clock``."""
        self.capacity = float(capacity)
        self.rate = capacity / window
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._sweep_at = 1024

    def level(self, key: str) -> float:
        """Tokens ``key`` has now (``capacity`` for a key never seen)."""
        held = self._buckets.get(key)
        if held is None:
            return self.capacity
        tokens, at = held
        return min(self.capacity, tokens + max(0.0, self.clock() - at) * self.rate)

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may make an attempt; 0 if it may now."""
        tokens = self.level(key)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def spend(self, key: str) -> None:
        """Take one token from ``key`` (an attempt that may fail)."""
        self._set(key, self.level(key) - 1)

    def refund(self, key: str) -> None:
        """Give ``key`` back the token of an attempt that did not fail."""
        self._set(key, self.level(key) + 1)

    def __len__(self) -> int:
        return len(self._buckets)

    def _set(self, key: str, tokens: float) -> None:
        if tokens >= self.capacity:
            self._buckets.pop(key, None)
            return
        self._buckets[key] = (tokens, self.clock())
        if len(self._buckets) > self._sweep_at:
            for old in [k for k in self._buckets if self.level(k) >= self.capacity]:
                del self._buckets[old]
            self._sweep_at = max(1024, 2 * len(self._buckets))


class SignInThrottle:
    """Failed password sign-ins, per account and per client address, as hosted Supabase Auth limits them.

    An attempt is allowed only while both its account's and its address's buckets hold a token. It takes
    one from each before the password is checked (so a burst of concurrent attempts cannot all pass), and
    a sign-in that did not fail gives them back: only failures count.
    """

    def __init__(self, config: StackConfig, clock: Callable[[], float] = time.monotonic) -> None:
        """Use ``config``'s allowances and window, on ``clock`` (monotonic seconds)."""
        window = config.signin_window_seconds
        self.accounts = FailureBuckets(config.signin_account_failures, window, clock)
        self.addresses = FailureBuckets(config.signin_address_failures, window, clock)

    def retry_after(self, account: str, address: str) -> int:
        """Whole seconds to wait before this account may be tried from this address; 0 if it may now."""
        wait = max(self.accounts.wait(account), self.addresses.wait(address))
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def spend(self, account: str, address: str) -> None:
        """Take a token from both buckets (an attempt is being checked)."""
        self.accounts.spend(account)
        self.addresses.spend(address)

    def refund(self, account: str, address: str) -> None:
        """Give both tokens back (the attempt signed in, or could not be judged)."""
        self.accounts.refund(account)
        self.addresses.refund(address)


class Gateway:
    """The aiohttp application behind the local origin."""

    def __init__(
        self,
        config: StackConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        mails: list[Mail] | None = None,
        on_mail: Callable[[Mail], None] | None = None,
    ) -> None:
        """Build the gateway for ``config`` (nothing listens until :meth:`start`).

        ``clock`` (monotonic seconds) drives the sign-in and mail throttles; tests pass their own. Every
        mail is appended to ``mails`` (a list of the gateway's own unless given) and passed to
        ``on_mail``.
        """
        self.config = config
        self.secret = config.secrets().jwt_secret
        self.throttle = SignInThrottle(config, clock)
        #: Sign-ups and reset requests, per address asked for and per client address.
        self.mail_throttle = SignInThrottle(config, clock)
        #: Every mail the stack would have sent, oldest first.
        self.mails: list[Mail] = [] if mails is None else mails
        self.on_mail = on_mail
        self._origins = config.allowed_origins
        self.app = web.Application(middlewares=[self._edge], client_max_size=8 * 2**20)
        self.app.router.add_route("*", "/rest/v1/{tail:.*}", self._rest)
        self.app.router.add_route("*", "/auth/v1/{tail:.*}", self._auth)
        self.app.router.add_get("/_stack/health", self._health)
        self.app.router.add_get("/config.json", self._config)
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/{path:.+}", self._static)
        self.app.on_startup.append(self._open_client)
        self.app.on_cleanup.append(self._close_client)
        self._client: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def _open_client(self, _app: web.Application) -> None:
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60, connect=5), auto_decompress=False
        )

    async def _close_client(self, _app: web.Application) -> None:
        if self._client is not None:
            await self._client.close()

    async def start(self) -> None:
        """Listen on 127.0.0.1 at the configured port."""
        # Request bodies are taken as sent: a compressed one is refused by the handlers (415, in the API's
        # JSON shape) rather than failing inside aiohttp's parser with a bare text answer.
        self._runner = web.AppRunner(self.app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.config.gateway_port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        """Stop listening and close the upstream connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middleware ------------------------------------------------------------------------------

    @web.middleware
    async def _edge(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        api = request.path.startswith(API_PREFIXES)
        problem = _request_problem(request)
        if problem is not None:
            response: web.StreamResponse = _refusal(request, 400, problem)
        elif api and request.method == "OPTIONS":
            response = web.Response(status=204)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                # Answer with an ordinary response so the marks below apply to errors too; the gateway's
                # own refusals (404, 405, 413, an unreadable body) carry a JSON body like the rest.
                if exc.status >= 400:
                    text = exc.text or ""
                    message = exc.reason if not text or text.startswith(f"{exc.status}:") else text
                    response = _refusal(request, exc.status, message)
                else:
                    response = web.Response(status=exc.status, headers=exc.headers)
        response.headers[STACK_HEADER[0]] = STACK_HEADER[1]
        if api:
            response.headers["Vary"] = "Origin"
            origin = request.headers.get("Origin")
            # Only the configured origins' pages may read the answers. No credentials are allowed: the API
            # authenticates by headers, never by cookies.
            if origin is not None and origin in self._origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, PUT, DELETE, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                    "Access-Control-Request-Headers", "authorization, apikey, content-type, prefer"
                )
                response.headers["Access-Control-Expose-Headers"] = "Content-Range, X-Supabase-Api-Version"
        return response

    @staticmethod
    async def _read_body(request: web.Request) -> bytes:
        """The request's body: a 400 if it cannot be read, a 415 if it is compressed.

        No Supabase client compresses what it sends, and PostgREST would not read it.
        """
        try:
            body = await request.read()
        except web.RequestPayloadError:
            raise web.HTTPBadRequest(text=_UNREADABLE_BODY) from None
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if body and encoding not in ("", "identity"):
            raise web.HTTPUnsupportedMediaType(
                text=f"A request body with Content-Encoding {encoding[:20]!r} is not accepted"
            )
        return body

    # -- API keys --------------------------------------------------------------------------------

    def _api_key(self, request: web.Request) -> tuple[str, str] | web.Response:
        """The request's verified API key and its role, or the error response Supabase's gateway gives."""
        key = request.headers.get("apikey") or request.query.get("apikey")
        if not key:
            return _json(401, {"message": "No API key found in request"})
        try:
            claims = tokens.decode(self.secret, key)
        except jwt.InvalidTokenError:
            return _json(401, {"message": "Invalid API key"})
        role = claims.get("role")
        if role not in ("anon", "service_role"):
            return _json(401, {"message": "Invalid API key"})
        return key, str(role)

    # -- /rest/v1 --------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        verified = self._api_key(request)
        if isinstance(verified, web.Response):
            return verified
        key, role = verified
        tail = request.match_info["tail"]
        if not tail.strip("/") and role != "service_role":
            # The root is PostgREST's description of every table, view and function exposed; hosted
            # Supabase gives it only to a secret key, whatever the bearer.
            return _json(403, SCHEMA_FORBIDDEN)
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        if "Authorization" not in request.headers:
            headers["Authorization"] = f"Bearer {key}"
        # The decoded tail is quoted again, so an encoded "?" or "#" stays part of the path upstream; the
        # query goes on as sent, less the API key (a filter to PostgREST).
        query = _without_apikey(request.rel_url.raw_query_string)
        path = quote(tail, safe=_PATH_SAFE)
        url = URL(f"{self.config.rest_url}/{path}" + (f"?{query}" if query else ""), encoded=True)
        body = await self._read_body(request)
        try:
            async with self._client.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
                if "Content-Encoding" in upstream.headers:
                    out["Content-Encoding"] = upstream.headers["Content-Encoding"]
                return web.Response(status=upstream.status, body=payload, headers=out)
        except (TimeoutError, aiohttp.ClientConnectionError):
            # As a gateway would: the API is unavailable, the client should retry later.
            return _json(
                503,
                {
                    "code": "PGRST_UNAVAILABLE",
                    "message": "The database API is not reachable",
                    "details": None,
                    "hint": "Retry later",
                },
            )

    # -- /auth/v1 --------------------------------------------------------------------------------

    async def _auth(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if tail == "verify" and request.method == "GET":
            # The link in a mail, opened by a browser: no API key, as Supabase's gateway lets it through.
            try:
                return await self._verify(request)
            except psycopg.OperationalError:
                return _auth_error(503, "unavailable", "The database is not reachable; retry later")
        verified = self._api_key(request)
        if isinstance(verified, web.Response):
            return verified
        try:
            if tail == "token" and request.method == "POST":
                grant = request.query.get("grant_type")
                body = await self._json_body(request)
                if isinstance(body, web.Response):
                    return body
                if grant == "password":
                    return await self._password_grant(request, body)
                if grant == "refresh_token":
                    return await self._refresh_grant(body)
                shown = grant if grant is None or len(grant) <= 40 else grant[:40] + "…"
                return _auth_error(400, "unsupported_grant_type", f"Unsupported grant type {shown!r}")
            if tail == "user" and request.method == "GET":
                return await self._user(request)
            if tail == "user" and request.method == "PUT":
                return await self._update_user(request)
            if tail in ("signup", "recover") and request.method == "POST":
                body = await self._json_body(request)
                if isinstance(body, web.Response):
                    return body
                if tail == "signup":
                    return await self._signup(request, body)
                return await self._recover(request, body)
            if tail == "logout" and request.method == "POST":
                return await self._logout(request)
            if tail == "settings" and request.method == "GET":
                return _json(
                    200,
                    {
                        "external": {"email": True},
                        "disable_signup": False,
                        "mailer_autoconfirm": False,
                        "phone_autoconfirm": False,
                        "sms_provider": "",
                        "saml_enabled": False,
                    },
                )
        except psycopg.OperationalError:
            return _auth_error(503, "unavailable", "The database is not reachable; retry later")
        return _auth_error(
            404,
            "not_found",
            f"/auth/v1/{tail[:80]} is not provided by the local development stack "
            "(it answers password sign-in, refresh, user, logout, signup, recover and verify)",
        )

    async def _json_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The body as a JSON object (an empty body is an empty object), or Supabase Auth's ``bad_json``."""
        raw = await self._read_body(request)
        if not raw:
            return {}
        try:
            # JSON is UTF-8 (RFC 8259), whatever charset the Content-Type names.
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _auth_error(400, "bad_json", "Could not parse request body as JSON")
        if not isinstance(body, dict):
            return _auth_error(400, "bad_json", "The request body must be a JSON object")
        return body

    async def _db(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        return await psycopg.AsyncConnection.connect(
            self.config.superuser_dsn(), autocommit=True, row_factory=dict_row, connect_timeout=5
        )

    async def _session(
        self,
        conn: psycopg.AsyncConnection[dict[str, Any]],
        user: dict[str, Any],
        session_id: str,
        *,
        parent: str | None = None,
        refresh: str | None = None,
    ) -> dict[str, Any]:
        """A new access token for ``user``'s session, with ``refresh`` or else a new refresh token.

        A new refresh token records ``parent``, the token it was rotated from.
        """
        if refresh is None:
            refresh = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
            await conn.execute(
                "insert into auth.refresh_tokens (token, user_id, session_id, parent) "
                "values (%s, %s, %s, %s)",
                (refresh, user["id"], session_id, parent),
            )
        now = int(time.time())
        access = tokens.user_token(
            self.secret, str(user["id"]), user["email"], session_id=session_id, now=now
        )
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": tokens.USER_TOKEN_SECONDS,
            "expires_at": now + tokens.USER_TOKEN_SECONDS,
            "refresh_token": refresh,
            "user": _user_json(user),
        }

    async def _session_response(
        self,
        conn: psycopg.AsyncConnection[dict[str, Any]],
        user: dict[str, Any],
        session_id: str,
        *,
        parent: str | None = None,
        refresh: str | None = None,
    ) -> web.Response:
        """:meth:`_session` as Supabase Auth's answer."""
        body = await self._session(conn, user, session_id, parent=parent, refresh=refresh)
        return _json(200, body, **dict([API_VERSION_HEADER]))

    async def _password_grant(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        email, password = body.get("email"), body.get("password")
        problem = email_problem(email) or password_problem(password)
        if problem is not None:
            return _auth_error(400, "validation_failed", problem)
        assert isinstance(email, str) and isinstance(password, str)
        # Judged before the password is: a throttled attempt learns nothing, and the account's key is
        # the same whether it exists or not. The address is the connection's peer; the gateway is the
        # edge, so a forwarding header would only be the client's claim.
        account, address = email.lower(), request.remote or "unknown"
        wait = self.throttle.retry_after(account, address)
        if wait:
            return _auth_error(
                429, "over_request_rate_limit", "Request rate limit reached", **{"Retry-After": str(wait)}
            )
        self.throttle.spend(account, address)
        failed = False
        try:
            async with await self._db() as conn:
                cur = await conn.execute(
                    _PASSWORD_CHECK, {"email": email, "password": password, "dummy": DUMMY_BCRYPT}
                )
                row = await cur.fetchone()
                assert row is not None  # the left join always yields its one row
                if not (
                    row["id"] is not None
                    and row["usable"]
                    and hmac.compare_digest(row["attempt"], row["encrypted_password"])
                ):
                    failed = True
                    return _auth_error(400, "invalid_credentials", "Invalid login credentials")
                if row["email_confirmed_at"] is None:
                    # Judged after the password, as Supabase Auth does: only the account's owner learns
                    # that it waits for its confirmation link.
                    return _auth_error(400, "email_not_confirmed", "Email not confirmed")
                await conn.execute(
                    "update auth.users set last_sign_in_at = now() where id = %s", (row["id"],)
                )
                return await self._session_response(conn, row, str(uuid.uuid4()))
        finally:
            # Only a wrong password counts; a sign-in, or a database that could not judge, gives back.
            if not failed:
                self.throttle.refund(account, address)

    async def _refresh_grant(self, body: dict[str, Any]) -> web.Response:
        token = body.get("refresh_token")
        if not isinstance(token, str) or not token:
            return _auth_error(400, "validation_failed", "refresh_token is required")
        not_found = "Invalid Refresh Token: Refresh Token Not Found"
        if len(token) > REFRESH_TOKEN_MAX_CHARS or not set(token) <= _URLSAFE:
            return _auth_error(400, "refresh_token_not_found", not_found)
        async with await self._db() as conn, conn.transaction():
            # Rotation with reuse detection, as Supabase Auth does: a refresh token is good for one use.
            # Its row is locked, so two refreshes with one token are judged one after the other.
            cur = await conn.execute(
                "select user_id, session_id, revoked, coalesce(revoked and revoked_at > "
                "now() - make_interval(secs => %s), false) as reusable "
                "from auth.refresh_tokens where token = %s for update",
                (self.config.refresh_reuse_seconds, token),
            )
            row = await cur.fetchone()
            if row is None:
                return _auth_error(400, "refresh_token_not_found", not_found)
            session_id = str(row["session_id"])
            current: str | None = None
            if row["revoked"]:
                if row["reusable"]:
                    # Presented again soon after its rotation (the answer was lost, two tabs refreshed at
                    # once): the session's current token, not a new one, so the family stays one line.
                    cur = await conn.execute(
                        "select token from auth.refresh_tokens where session_id = %s and not revoked "
                        "order by created_at desc limit 1",
                        (session_id,),
                    )
                    active = await cur.fetchone()
                    current = None if active is None else str(active["token"])
                if current is None:
                    # A spent token from an older rotation, or of a session already ended: whoever holds
                    # it may have stolen it, so the whole session (its token family) is revoked.
                    await conn.execute(
                        "update auth.refresh_tokens set revoked = true, revoked_at = now() "
                        "where session_id = %s and not revoked",
                        (session_id,),
                    )
                    return _auth_error(
                        400, "refresh_token_already_used", "Invalid Refresh Token: Already Used"
                    )
            else:
                await conn.execute(
                    "update auth.refresh_tokens set revoked = true, revoked_at = now() where token = %s",
                    (token,),
                )
            cur = await conn.execute("select * from auth.users where id = %s", (row["user_id"],))
            user = await cur.fetchone()
            if user is None:
                return _auth_error(400, "user_not_found", "User from refresh token not found")
            if current is not None:
                return await self._session_response(conn, user, session_id, refresh=current)
            return await self._session_response(conn, user, session_id, parent=token)

    # -- accounts: sign-up, password reset, the mails' links ----------------------------------------

    def _redirect_target(self, value: str | None) -> str | None:
        """Where a mail's link may send the browser: ``value`` if it is on an allowed origin, else None.

        No value is the stack's own page. The test is on the text, before any URL parser sees it: the
        value must start with an allowed origin followed by its end, ``/`` or ``?``, and hold nothing a
        browser could read as another host (a backslash, whitespace, control characters) nor a fragment
        (the session goes there).
        """
        if value is None or value == "":
            return self.config.gateway_url + "/"
        if (
            len(value) > REDIRECT_MAX_CHARS
            or not value.isascii()
            or not value.isprintable()
            or any(c in value for c in "\\# ")
        ):
            return None
        for origin in self._origins:
            if value == origin or value.startswith((origin + "/", origin + "?")):
                return value
        return None

    def _refused_redirect(self) -> web.Response:
        shown = " or ".join(sorted(self._origins))
        return _auth_error(
            400, "validation_failed", f"redirect_to must be a page of this stack's origin ({shown})"
        )

    def _mail_wait(self, request: web.Request, account: str) -> web.Response | None:
        """Spend one of the mail allowances of ``account`` and the client, or the 429 to answer."""
        address = request.remote or "unknown"
        wait = self.mail_throttle.retry_after(account, address)
        if wait:
            return _auth_error(
                429,
                "over_email_send_rate_limit",
                "Email rate limit exceeded",
                **{"Retry-After": str(wait)},
            )
        self.mail_throttle.spend(account, address)
        return None

    def _send(self, mail: Mail) -> None:
        self.mails.append(mail)
        if self.on_mail is not None:
            self.on_mail(mail)

    async def _link(
        self, conn: psycopg.AsyncConnection[dict[str, Any]], user_id: Any, kind: str, redirect: str
    ) -> str:
        """A new one-time link of ``kind`` for the user; it replaces the user's earlier one of that kind."""
        token = secrets.token_urlsafe(LINK_TOKEN_BYTES)
        await conn.execute(
            "delete from auth.one_time_tokens where user_id = %s and token_type = %s", (user_id, kind)
        )
        await conn.execute(
            "insert into auth.one_time_tokens (token_hash, user_id, token_type, expires_at) "
            "values (%s, %s, %s, now() + make_interval(secs => %s))",
            (_token_hash(token), user_id, kind, LINK_SECONDS),
        )
        query = urlencode({"token": token, "type": kind, "redirect_to": redirect})
        return f"{self.config.gateway_url}/auth/v1/verify?{query}"

    @staticmethod
    def _email_and_password(body: dict[str, Any]) -> tuple[str, str] | web.Response:
        email, password = body.get("email"), body.get("password")
        problem = email_problem(email) or password_problem(password)
        if problem is None:
            assert isinstance(email, str) and isinstance(password, str)
            problem = email_format_problem(email)
            if problem is None and len(password) < PASSWORD_MIN_CHARS:
                return _weak_password()
        if problem is not None:
            return _auth_error(400, "validation_failed", problem)
        assert isinstance(email, str) and isinstance(password, str)
        return email, password

    async def _signup(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        fields = self._email_and_password(body)
        if isinstance(fields, web.Response):
            return fields
        # Addresses are kept lower-cased, as Supabase Auth keeps them.
        email, password = fields[0].lower(), fields[1]
        redirect = self._redirect_target(request.query.get("redirect_to"))
        if redirect is None:
            return self._refused_redirect()
        refused = self._mail_wait(request, email)
        if refused is not None:
            return refused
        async with await self._db() as conn, conn.transaction():
            await conn.execute("select pg_advisory_xact_lock(hashtext(%s))", ("signup:" + email,))
            cur = await conn.execute(
                "select id, email, email_confirmed_at from auth.users where lower(email) = %s "
                "order by email = %s desc limit 1",
                (email, email),
            )
            known = await cur.fetchone()
            if known is None:
                cur = await conn.execute(
                    "insert into auth.users (email, encrypted_password, email_confirmed_at) values "
                    "(%s, extensions.crypt(%s, extensions.gen_salt('bf', %s)), null) returning id",
                    (email, password, BCRYPT_COST),
                )
                made = await cur.fetchone()
                assert made is not None
                user_id = str(made["id"])
                mail = Mail(email, "signup", await self._link(conn, made["id"], "signup", redirect))
            else:
                # The same work as a new account (one bcrypt), and the same answer with a made-up
                # id: whoever signs up learns nothing of the address. Its owner gets the mail.
                await conn.execute("select extensions.crypt(%s, %s)", (password, DUMMY_BCRYPT))
                user_id = str(uuid.uuid4())
                if known["email_confirmed_at"] is None:
                    link = await self._link(conn, known["id"], "signup", redirect)
                    mail = Mail(known["email"], "signup", link)
                else:
                    mail = Mail(known["email"], "existing", None)
        self._send(mail)
        return _json(200, _pending_user_json(user_id, email), **dict([API_VERSION_HEADER]))

    async def _recover(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        email = body.get("email")
        problem = email_problem(email)
        if problem is None:
            assert isinstance(email, str)
            problem = email_format_problem(email)
        if problem is not None:
            return _auth_error(400, "validation_failed", problem)
        assert isinstance(email, str)
        redirect = self._redirect_target(request.query.get("redirect_to"))
        if redirect is None:
            return self._refused_redirect()
        account = email.lower()
        refused = self._mail_wait(request, account)
        if refused is not None:
            return refused
        mail: Mail | None = None
        async with await self._db() as conn, conn.transaction():
            cur = await conn.execute(
                "select id, email from auth.users where lower(email) = %s order by email = %s desc limit 1",
                (account, email),
            )
            user = await cur.fetchone()
            if user is not None:
                mail = Mail(
                    user["email"], "recovery", await self._link(conn, user["id"], "recovery", redirect)
                )
        if mail is not None:
            self._send(mail)
        # The same answer whether the address has an account or not.
        return _json(200, {}, **dict([API_VERSION_HEADER]))

    async def _verify(self, request: web.Request) -> web.Response:
        redirect = self._redirect_target(request.query.get("redirect_to"))
        if redirect is None:
            return self._refused_redirect()
        token, kind = request.query.get("token", ""), request.query.get("type", "")
        session: dict[str, Any] | None = None
        if kind in LINK_TYPES and 0 < len(token) <= REFRESH_TOKEN_MAX_CHARS and set(token) <= _URLSAFE:
            async with await self._db() as conn, conn.transaction():
                # Spent in the same statement that finds it: a link opened twice at once signs in once.
                cur = await conn.execute(
                    "update auth.one_time_tokens set used_at = now() where token_hash = %s "
                    "and token_type = %s and used_at is null and expires_at > now() returning user_id",
                    (_token_hash(token), kind),
                )
                spent = await cur.fetchone()
                if spent is not None:
                    # Either link proves the address: a recovery confirms an unconfirmed account too.
                    cur = await conn.execute(
                        "update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()), "
                        "last_sign_in_at = now(), updated_at = now() where id = %s returning *",
                        (spent["user_id"],),
                    )
                    user = await cur.fetchone()
                    if user is not None:
                        session = await self._session(conn, user, str(uuid.uuid4()))
        if session is None:
            return _see_other(redirect + "#" + urlencode(LINK_REFUSED))
        fragment = {
            "access_token": session["access_token"],
            "expires_at": session["expires_at"],
            "expires_in": session["expires_in"],
            "refresh_token": session["refresh_token"],
            "token_type": "bearer",
            "type": kind,
        }
        return _see_other(redirect + "#" + urlencode(fragment))

    async def _update_user(self, request: web.Request) -> web.Response:
        claims = self._user_claims(request)
        if isinstance(claims, web.Response):
            return claims
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        password = body.get("password")
        if password is not None:
            problem = password_problem(password)
            if problem is not None:
                return _auth_error(400, "validation_failed", problem)
            assert isinstance(password, str)
            if len(password) < PASSWORD_MIN_CHARS:
                return _weak_password()
        email = body.get("email")
        async with await self._db() as conn, conn.transaction():
            cur = await conn.execute("select * from auth.users where id = %s for update", (claims["sub"],))
            user = await cur.fetchone()
            if user is None:
                return _auth_error(403, "user_not_found", "User from sub claim in JWT does not exist")
            if email is not None and (
                not isinstance(email, str) or email.lower() != str(user["email"]).lower()
            ):
                return _auth_error(
                    422,
                    "email_change_not_supported",
                    "Changing the e-mail address is not provided by the local development stack",
                )
            if password is None:
                return _json(200, _user_json(user), **dict([API_VERSION_HEADER]))
            cur = await conn.execute(
                "select coalesce(extensions.crypt(%s, encrypted_password) = encrypted_password, false) "
                "as same from auth.users where id = %s",
                (password, user["id"]),
            )
            same = await cur.fetchone()
            if same is not None and same["same"]:
                return _auth_error(
                    422, "same_password", "New password should be different from the old password."
                )
            cur = await conn.execute(
                "update auth.users set updated_at = now(), "
                "encrypted_password = extensions.crypt(%s, extensions.gen_salt('bf', %s)) "
                "where id = %s returning *",
                (password, BCRYPT_COST, user["id"]),
            )
            user = await cur.fetchone()
            assert user is not None
            # A new password ends the account's other sessions and any reset link still out.
            await conn.execute(
                "update auth.refresh_tokens set revoked = true, revoked_at = now() "
                "where user_id = %s and not revoked and session_id is distinct from %s",
                (user["id"], claims.get("session_id")),
            )
            await conn.execute(
                "delete from auth.one_time_tokens where user_id = %s and token_type = 'recovery'",
                (user["id"],),
            )
        return _json(200, _user_json(user), **dict([API_VERSION_HEADER]))

    def _user_claims(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The claims of a signed-in user's access token, or Supabase Auth's refusal.

        A machine token is signed by the same secret with the owner's ``sub``, but it is no user session:
        it may not read the account or end its sessions.
        """
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _auth_error(401, "no_authorization", "This endpoint requires a Bearer token")
        try:
            claims = tokens.decode(self.secret, token.strip())
        except jwt.InvalidTokenError:
            return _auth_error(401, "bad_jwt", "invalid JWT: unable to parse or verify signature")
        if claims.get("role") != "authenticated" or not claims.get("sub"):
            return _auth_error(401, "bad_jwt", "invalid JWT: not a signed-in user's token")
        if "machine_id" in claims:
            return _auth_error(403, "bad_jwt", "A machine token is not a user session")
        if not _is_uuid(claims["sub"]):
            return _auth_error(403, "bad_jwt", "invalid claim: sub claim must be a UUID")
        if "session_id" in claims and not _is_uuid(claims["session_id"]):
            return _auth_error(403, "bad_jwt", "invalid claim: session_id claim must be a UUID")
        return claims

    async def _user(self, request: web.Request) -> web.Response:
        claims = self._user_claims(request)
        if isinstance(claims, web.Response):
            return claims
        async with await self._db() as conn:
            cur = await conn.execute("select * from auth.users where id = %s", (claims["sub"],))
            user = await cur.fetchone()
        if user is None:
            return _auth_error(403, "user_not_found", "User from sub claim in JWT does not exist")
        return _json(200, _user_json(user), **dict([API_VERSION_HEADER]))

    async def _logout(self, request: web.Request) -> web.Response:
        claims = self._user_claims(request)
        if isinstance(claims, web.Response):
            return claims
        scope = request.query.get("scope", "global")
        if scope not in ("global", "local", "others"):
            return _auth_error(400, "validation_failed", "scope must be global, local or others")
        revoke = "update auth.refresh_tokens set revoked = true, revoked_at = now() where not revoked and "
        async with await self._db() as conn:
            if scope == "global":
                await conn.execute(revoke + "user_id = %s", (claims["sub"],))
            elif scope == "local":
                await conn.execute(revoke + "session_id = %s", (claims.get("session_id"),))
            else:
                await conn.execute(
                    revoke + "user_id = %s and session_id is distinct from %s",
                    (claims["sub"], claims.get("session_id")),
                )
        return web.Response(status=204)

    # -- static app ------------------------------------------------------------------------------

    async def _health(self, _request: web.Request) -> web.Response:
        return _json(200, {"gateway": "ok", "stack": "local-dev"})

    async def _config(self, _request: web.Request) -> web.Response:
        # The browser app's configuration, in its one place: a hosted deployment serves a static
        # config.json with the same keys. Only public values: the anon key is meant for browsers.
        return _json(
            200,
            {
                "supabase_url": self.config.gateway_url,
                "supabase_anon_key": self.config.anon_key(),
                "market_data_url": self.config.market_data_url,
                "stack": "local-dev",
            },
            **{"Cache-Control": "no-store"},
        )

    def _csp(self) -> str:
        """The page's Content-Security-Policy, as a static host's ``_headers`` gets it too.

        :func:`~signalguard.devstack.site.page_csp` with the API on this origin and webhooks allowed to
        :data:`WEBHOOK_CONNECT`.
        """
        return page_csp(
            supabase_url=None,
            market_data_url=self.config.market_data_url,
            webhook_connect=WEBHOOK_CONNECT,
        )

    async def _index(self, request: web.Request) -> web.StreamResponse:
        index = self.config.app_root / "index.html"
        if index.is_file():
            return self._page(index)
        return web.Response(
            text=_NO_APP_PAGE.format(url=self.config.gateway_url),
            content_type="text/html",
        )

    async def _static(self, request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        if rel == SERVICE_WORKER:
            # The service worker, from web/: at the root it may control the whole origin ("/").
            worker = self.config.app_root / "web" / SERVICE_WORKER
            if not worker.is_file():
                raise web.HTTPNotFound()
            response = self._file(worker)
            response.headers["Content-Security-Policy"] = self._csp()
            return response
        parts = Path(rel).parts
        if (
            not parts
            or parts[0] not in STATIC_ALLOW
            or any(p.startswith(".") or p in STATIC_DENY_SEGMENTS for p in parts)
        ):
            raise web.HTTPNotFound()
        root = self.config.app_root.resolve()
        try:
            path = (root / rel).resolve()
            found = path.is_relative_to(root) and path.is_file()
        except OSError:
            # A name the file system refuses (too long, too deep) names no file of the app.
            found = False
        if not found:
            raise web.HTTPNotFound()
        return self._page(path) if path.suffix == ".html" else self._file(path)

    def _page(self, path: Path) -> web.FileResponse:
        response = self._file(path)
        response.headers["Content-Security-Policy"] = self._csp()
        # The version of the files the service worker may keep for this page (see web/sw.js).
        response.headers[ASSETS_HEADER] = self._assets_version(self.config.app_root)
        return response

    @staticmethod
    def _assets_version(root: Path) -> str:
        """The version of the served files the service worker keeps (``assets_version``).

        Hashed again only when one of them changed size or time (``web/app.zip`` is rebuilt in place).
        """
        try:
            files = worker_files(root)
            signature = tuple((rel, p.stat().st_size, p.stat().st_mtime_ns) for rel, p in files)
            return _hashed_assets(root, signature)
        except OSError:
            # A file replaced while it was read: no version, so the worker keeps nothing this time.
            return ""

    @staticmethod
    def _file(path: Path) -> web.FileResponse:
        content_type = MIME_TYPES.get(path.suffix.lower()) or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        # Served fresh on every load during development; the app's own cache-busting comes with it.
        return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})


@functools.lru_cache(maxsize=8)
def _hashed_assets(root: Path, signature: tuple[tuple[str, int, int], ...]) -> str:
    return assets_version((rel, (root / rel).read_bytes()) for rel, _size, _mtime in signature)


def _token_hash(token: str) -> str:
    """What the database keeps of a one-time link's token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _weak_password() -> web.Response:
    """Supabase Auth's refusal of a password too short, with its reasons (supabase-js reads them)."""
    message = f"Password should be at least {PASSWORD_MIN_CHARS} characters."
    return web.json_response(
        {
            "code": 422,
            "error_code": "weak_password",
            "msg": message,
            "weak_password": {"reasons": ["length"]},
        },
        status=422,
        headers=dict([API_VERSION_HEADER]),
    )


def _pending_user_json(user_id: str, email: str) -> dict[str, Any]:
    """What Supabase Auth answers a sign-up with while the address waits for its confirmation."""
    now = datetime.now(UTC).isoformat()
    return {
        "id": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "email": email,
        "phone": "",
        "confirmation_sent_at": now,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "identities": [],
        "created_at": now,
        "updated_at": now,
        "is_anonymous": False,
    }


def _user_json(user: dict[str, Any]) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": str(user["id"]),
        "aud": user["aud"],
        "role": user["role"],
        "email": user["email"],
        "phone": "",
        "email_confirmed_at": iso(user["email_confirmed_at"]),
        "confirmed_at": iso(user["email_confirmed_at"]),
        "last_sign_in_at": iso(user["last_sign_in_at"]),
        "app_metadata": user["raw_app_meta_data"],
        "user_metadata": user["raw_user_meta_data"],
        "identities": [],
        "created_at": iso(user["created_at"]),
        "updated_at": iso(user["updated_at"]),
        "is_anonymous": False,
    }


_NO_APP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>signalguard local stack</title></head>
<body>
<h1>signalguard local stack (development only)</h1>
<p>The database API is at <code>{url}/rest/v1</code> and sign-in at <code>{url}/auth/v1</code>.</p>
<p>No <code>index.html</code> is present in this checkout, so there is no app page to serve.</p>
</body></html>
"""
