"""Configuration and secrets of the local stack.

Ports default to the gateway on 8000, PostgreSQL on 54322 and PostgREST on 54330 (admin 54331); the
environment moves them: ``SIGNALGUARD_PORT``, ``SIGNALGUARD_PG_PORT``, ``SIGNALGUARD_REST_PORT``,
``SIGNALGUARD_REST_ADMIN_PORT``.

The gateway's guards are settings too, each with a variable: ``SIGNALGUARD_CORS_ORIGINS``
(comma-separated origins allowed to call the API from a browser besides the gateway's own),
``SIGNALGUARD_SIGNIN_ACCOUNT_FAILURES`` and ``SIGNALGUARD_SIGNIN_ADDRESS_FAILURES`` (failed sign-ins
allowed per account and per client address before further attempts wait), ``SIGNALGUARD_SIGNIN_WINDOW``
(seconds over which that allowance refills) and ``SIGNALGUARD_REFRESH_REUSE_INTERVAL`` (seconds in which a
just-rotated refresh token may be presented again).

Everything the stack keeps lives in one state folder (``.devstack/`` at the top of the checkout by
default, ignored by git; ``SIGNALGUARD_STATE_DIR`` moves it): the PostgreSQL cluster, its logs, and
``secrets.json`` with the JWT secret and database passwords, made at first start. Deleting the folder
(``signalguard reset``) wipes the stack.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from signalguard.devstack import tokens

#: Loopback only: the local stack is for development and tests and must never listen elsewhere.
HOST = "127.0.0.1"

#: The checkout's top folder (this file is src/signalguard/devstack/config.py).
REPO_ROOT = Path(__file__).resolve().parents[3]


def default_state_dir() -> Path:
    """Return the state folder: ``$SIGNALGUARD_STATE_DIR`` or ``.devstack/`` in the checkout."""
    env = os.environ.get("SIGNALGUARD_STATE_DIR")
    return Path(env).resolve() if env else REPO_ROOT / ".devstack"


def _env_port(name: str, default: int) -> int:
    """A port from the environment (``SIGNALGUARD_<NAME>``), or the default."""
    raw = os.environ.get(f"SIGNALGUARD_{name}")
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"SIGNALGUARD_{name} must be a TCP port number, not {raw!r}")
    return int(raw)


def _env_number(name: str, default: float, *, integer: bool = False) -> float:
    """A number of at least 0 from the environment (``SIGNALGUARD_<NAME>``), or the default."""
    raw = os.environ.get(f"SIGNALGUARD_{name}")
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if not 0 <= value < 10**9 or value != value:
        kind = "a whole number" if integer else "a number of seconds"
        raise ValueError(f"SIGNALGUARD_{name} must be {kind} of at least 0, not {raw!r}")
    return value


def parse_origin(text: str) -> str:
    """One browser origin (``scheme://host[:port]``) in the form browsers send it; ``ValueError`` if not one.

    A trailing slash and a default port are dropped and the scheme and host are lower-cased, so
    ``HTTP://Example.test:80/`` and ``http://example.test`` name the same origin.
    """
    value = text.strip().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if rest.startswith("["):  # an IPv6 literal: its colons are not the port's
        inside, bracket, after = rest.partition("]")
        host, port = inside + bracket, after.removeprefix(":")
        if after and not after.startswith(":"):
            port = "invalid"
    else:
        host, _, port = rest.partition(":")
    if (
        not sep
        or scheme.lower() not in ("http", "https")
        or not host
        or any(c in rest for c in "/?#@ \t")
        or (port and (not port.isdigit() or not 0 < int(port) < 65536))
    ):
        raise ValueError(f"{text!r} is not an origin such as http://127.0.0.1:5173")
    scheme = scheme.lower()
    # Browsers leave a scheme's default port out of the Origin they send.
    shown = "" if not port or int(port) == {"http": 80, "https": 443}[scheme] else f":{int(port)}"
    return f"{scheme}://{host.lower()}{shown}"


def _env_origins() -> tuple[str, ...]:
    """``SIGNALGUARD_CORS_ORIGINS``: comma-separated origins, or none."""
    raw = os.environ.get("SIGNALGUARD_CORS_ORIGINS", "")
    try:
        return tuple(parse_origin(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"SIGNALGUARD_CORS_ORIGINS: {exc}") from None


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Secrets:
    """Values made at first start and kept in ``secrets.json`` (mode 0600)."""

    jwt_secret: str
    postgres_password: str
    authenticator_password: str

    @classmethod
    def load_or_create(cls, state_dir: Path) -> Secrets:
        """Read the state folder's secrets, making them on first use."""
        path = state_dir / "secrets.json"
        if path.exists():
            data = json.loads(path.read_text())
            return cls(**data)
        made = cls(
            # 48 random bytes: well above the 32 characters PostgREST requires of an HS256 secret.
            jwt_secret=secrets.token_urlsafe(48),
            postgres_password=secrets.token_urlsafe(24),
            authenticator_password=secrets.token_urlsafe(24),
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(made.__dict__, fh, indent=2)
        tmp.replace(path)
        return made


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack keeps its state and which loopback ports it listens on."""

    state_dir: Path = field(default_factory=default_state_dir)
    pg_port: int = field(default_factory=lambda: _env_port("PG_PORT", 54322))
    rest_port: int = field(default_factory=lambda: _env_port("REST_PORT", 54330))
    rest_admin_port: int = field(default_factory=lambda: _env_port("REST_ADMIN_PORT", 54331))
    gateway_port: int = field(default_factory=lambda: _env_port("PORT", 8000))
    #: The folder whose allow-listed files the gateway serves as the app.
    app_root: Path = REPO_ROOT
    #: The port of the demo replay ``signalguard dev`` serves when no market data URL is set.
    replay_port: int = field(default_factory=lambda: _env_port("REPLAY_PORT", 9443))
    #: Where the app fetches market data (Binance's REST and WebSocket API shape): the local replay
    #: by default (``signalguard dev`` serves it, see ``devstack.demo_market``), or
    #: ``$SIGNALGUARD_MARKET_DATA_URL``, e.g. ``https://api.binance.com``.
    market_data_url: str = field(
        default_factory=lambda: os.environ.get(
            "SIGNALGUARD_MARKET_DATA_URL", f"http://{HOST}:{_env_port('REPLAY_PORT', 9443)}"
        )
    )
    #: Whether ``signalguard dev`` serves the demo replay: unless a market data URL is configured.
    demo_market: bool = field(default_factory=lambda: not os.environ.get("SIGNALGUARD_MARKET_DATA_URL"))
    migrations_dir: Path = REPO_ROOT / "supabase" / "migrations"
    #: Seed the demo users, traders and machines when the database is first made.
    seed: bool = True
    #: Trade durability for speed (fsync off): for throwaway test clusters only.
    ephemeral: bool = False
    #: Browser origins besides the gateway's own (``http://127.0.0.1:PORT``, ``http://localhost:PORT``)
    #: that may call ``/rest/v1`` and ``/auth/v1`` (CORS). Any other origin's page gets no
    #: ``Access-Control-Allow-Origin``, so its scripts cannot read the answers.
    cors_origins: tuple[str, ...] = field(default_factory=_env_origins)
    #: Failed password sign-ins allowed per account (the lower-cased e-mail, known or not) before further
    #: attempts at it are answered 429; the allowance refills evenly over ``signin_window_seconds``.
    signin_account_failures: int = field(
        default_factory=lambda: int(_env_number("SIGNIN_ACCOUNT_FAILURES", 5, integer=True))
    )
    #: The same, per client address (the connection's peer, whatever the request's headers claim).
    signin_address_failures: int = field(
        default_factory=lambda: int(_env_number("SIGNIN_ADDRESS_FAILURES", 30, integer=True))
    )
    #: Seconds over which a sign-in failure allowance refills from empty to full.
    signin_window_seconds: float = field(default_factory=lambda: _env_number("SIGNIN_WINDOW", 300.0))
    #: Seconds after its rotation in which a refresh token presented again answers with its session's
    #: current token instead of revoking the session (a client that lost the answer, a second tab), as
    #: Supabase Auth's ``GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL``.
    refresh_reuse_seconds: float = field(default_factory=lambda: _env_number("REFRESH_REUSE_INTERVAL", 10.0))

    def __post_init__(self) -> None:
        """Refuse guard settings that would switch a guard off by accident."""
        if self.signin_account_failures < 1 or self.signin_address_failures < 1:
            raise ValueError("sign-in failure allowances must be at least 1")
        if not self.signin_window_seconds > 0:
            raise ValueError("signin_window_seconds must be above 0")
        if not self.refresh_reuse_seconds >= 0:
            raise ValueError("refresh_reuse_seconds must be at least 0")
        # Stored in the form browsers send, so the gateway compares them with ``==``.
        object.__setattr__(self, "cors_origins", tuple(parse_origin(o) for o in self.cors_origins))

    @classmethod
    def for_tests(cls, state_dir: Path) -> StackConfig:
        """Return a configuration on free ports with a throwaway, fast cluster in ``state_dir``."""
        return cls(
            state_dir=state_dir,
            pg_port=free_port(),
            rest_port=free_port(),
            rest_admin_port=free_port(),
            gateway_port=free_port(),
            ephemeral=True,
        )

    @property
    def pg_dir(self) -> Path:
        """Folder owned by the database's system user: cluster data, socket and log."""
        return self.state_dir / "pg"

    @property
    def log_dir(self) -> Path:
        """Logs of the processes the stack starts."""
        return self.state_dir / "logs"

    @property
    def gateway_url(self) -> str:
        """The one origin of the app, the REST API (``/rest/v1``) and sign-in (``/auth/v1``)."""
        return f"http://{HOST}:{self.gateway_port}"

    @property
    def allowed_origins(self) -> frozenset[str]:
        """Browser origins whose pages may read the API's answers: the gateway's own and ``cors_origins``."""
        own = {f"http://{HOST}:{self.gateway_port}", f"http://localhost:{self.gateway_port}"}
        return frozenset(own | set(self.cors_origins))

    @property
    def rest_url(self) -> str:
        """PostgREST itself, behind the gateway."""
        return f"http://{HOST}:{self.rest_port}"

    def secrets(self) -> Secrets:
        """The state folder's secrets, made on first use."""
        return Secrets.load_or_create(self.state_dir)

    def superuser_dsn(self) -> str:
        """Connection string of the cluster's superuser, for maintenance and tests."""
        pw = self.secrets().postgres_password
        return f"postgresql://postgres:{pw}@{HOST}:{self.pg_port}/postgres"

    def anon_key(self) -> str:
        """The public (anon) API key the browser is configured with."""
        return tokens.anon_key(self.secrets().jwt_secret)

    def service_key(self) -> str:
        """The service-role key: bypasses row level security; never handed to a browser."""
        return tokens.service_key(self.secrets().jwt_secret)
