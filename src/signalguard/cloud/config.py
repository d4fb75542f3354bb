"""The worker's configuration: environment variables, checked before anything starts.

==================================  ====================================================================
variable                            meaning
==================================  ====================================================================
``SIGNALGUARD_SUPABASE_URL``        the project's URL (``https://<ref>.supabase.co``; locally the
                                    gateway, ``http://127.0.0.1:8000``)
``SIGNALGUARD_SUPABASE_ANON_KEY``   the API key Supabase requires on every request (``apikey``)
``SIGNALGUARD_MACHINE_KEY``         the machine's key, made in the page (``sgm_`` and 64 hexadecimal
                                    digits); the database says whose machine it is
``SIGNALGUARD_MACHINE_TOKEN``       instead of a key: a machine JWT (``role`` authenticated, ``sub`` the
                                    owner, ``machine_id`` the owner's ``cloud_machines.id``), signed
                                    with the project's JWT secret; the local stack mints them
``SIGNALGUARD_MARKET_DATA_URL``     Binance's REST API, ``https://api.binance.com`` unless set (tests:
                                    the local replay server)
``SIGNALGUARD_MARKET_STREAM_URL``   optional: the kline WebSocket base; derived from the REST URL
                                    unless set (``wss://stream.binance.com:9443`` for Binance,
                                    ``wss://data-stream.binance.vision`` for its market-data-only
                                    ``https://data-api.binance.vision``, the same host with ``ws``/``wss``
                                    otherwise, as the replay server serves both)
``SIGNALGUARD_LOG_LEVEL``           ``DEBUG``, ``INFO`` (default), ``WARNING``, ``ERROR``
``SIGNALGUARD_HEALTH_PORT``         the port of ``GET /health`` (:mod:`.health`), 8080 unless set;
                                    ``0`` or ``off`` serves none
``SIGNALGUARD_HEALTH_HOST``         the address it listens on, ``127.0.0.1`` unless set (the image sets
                                    ``0.0.0.0``: Fly's checks come to the machine's private address)
==================================  ====================================================================

Exactly one of the key and the token is set. The key is checked for its form only: the database judges
it on every call, and :meth:`~signalguard.cloud.database.SupabaseDatabase.identify` asks it whose machine
it is before the worker starts. The machine token is read, not verified: the worker takes the owner and
the machine id from its payload so that it can name them in writes, and the database checks the
signature on every call.
:func:`load_config` raises :class:`ConfigError` for the first problem, naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.webhooks import POST_TIMEOUT
from signalguard.market.limits import (
    BINANCE_REST_URL,
    BINANCE_STREAM_URL,
    MAX_CONNECTION_AGE,
    derive_stream_url,
)

__all__ = [
    "BINANCE_REST_URL",
    "BINANCE_STREAM_URL",
    "DEFAULT_HEALTH_PORT",
    "MACHINE_KEY_HEADER",
    "ConfigError",
    "Timings",
    "WorkerConfig",
    "derive_stream_url",
    "load_config",
    "load_health",
    "load_market_urls",
    "read_machine_key",
    "read_machine_token",
]

_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: ``GET /health``'s port unless ``SIGNALGUARD_HEALTH_PORT`` says otherwise (fly.toml's check uses it).
DEFAULT_HEALTH_PORT: Final = 8080
#: The request header a machine key travels in, with the anon key as the bearer (the database's
#: pre-request function reads it: migration ``20251003061400_machine_keys``).
MACHINE_KEY_HEADER: Final = "x-signalguard-machine-key"
#: A machine key as ``create_machine_key`` makes it.
_MACHINE_KEY: Final = re.compile(r"sgm_[0-9a-f]{64}")


class ConfigError(ValueError):
    """A configuration variable is missing or wrong; ``str()`` is one line naming it."""

    def __init__(self, variable: str, problem: str) -> None:
        """Describe the ``problem`` with ``variable``."""
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Timings:
    """The worker's rhythm, in seconds. The defaults are the product's; tests shorten them in-process.

    ``lease`` must be the database's lease length (``private.lease_ttl()``): the worker stops generating
    ``lease - lease_margin`` after the *send* time of its last successful renewal, which is no later than
    the database's own expiry (it stamps the lease after receiving the call).
    """

    heartbeat: float = 10.0
    claim_retry: float = 2.0
    lease: float = 30.0
    lease_margin: float = 1.0
    flush: float = 10.0
    #: New signals and trades are written this long after the candle that made them (the rest of its
    #: burst joins the same batch), not at the next ``flush``: a crash loses none of them.
    signal_write: float = 0.2
    #: How long a new epoch waits for this machine's earlier windows before generating without them.
    earlier_windows: float = 2.0
    traders_poll: float = 30.0
    stop_flush: float = 10.0
    error_flush: float = 5.0
    #: Bound on each goodbye call ('stopping', release, 'stopped', 'error'): the whole stop stays under
    #: :attr:`stop_deadline` (22 s), inside the platform's kill timeout (fly.toml: 30 s).
    stop_call: float = 4.0
    request_timeout: float = 8.0
    #: After a failure (a call to the database, the market stream): the one schedule; tests scale it.
    backoff: Backoff = BACKOFF
    stream_stall: float = 60.0
    #: A stream connection is made anew after this long, before Binance cuts it at 24 hours.
    stream_max_age: float = MAX_CONNECTION_AGE
    #: The stream client pings this often; a pong later than ``stream_ping_timeout`` means the
    #: connection is dead (Binance pings too, every 20 s, and the client answers by itself).
    stream_ping: float = 20.0
    stream_ping_timeout: float = 20.0
    #: How often the executor re-reads the open trades, so that one whose open landed after its last
    #: read (an outbox replayed late) is managed within this bound rather than left open.
    trades_recheck: float = 30.0
    #: A webhook post's time limit: well inside the database's in-flight window (30 s), so that an
    #: attempt has ended before anyone may post the delivery again.
    webhook_post: float = POST_TIMEOUT

    @property
    def stop_deadline(self) -> float:
        """The longest an orderly stop takes: 'stopping', the bounded flush, the release, 'stopped'."""
        return self.stop_flush + 3 * self.stop_call


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything the worker needs to know before it starts."""

    supabase_url: str
    anon_key: str = field(repr=False)
    #: The machine JWT; empty when the machine runs with a key.
    machine_token: str = field(repr=False)
    #: The owner's user id and the machine's ``cloud_machines.id``: from the token, or, with a key, from
    #: the database (empty until :meth:`~signalguard.cloud.database.SupabaseDatabase.identify`).
    owner_id: str
    machine_id: str
    market_data_url: str = BINANCE_REST_URL
    market_stream_url: str = BINANCE_STREAM_URL
    log_level: str = "INFO"
    #: Where ``GET /health`` is served; ``None``: not at all (the default here; the environment's is 8080).
    health_port: int | None = None
    health_host: str = "127.0.0.1"
    #: The machine key made in the page (``sgm_…``), sent instead of a token; ``None`` with a token.
    machine_key: str | None = field(default=None, repr=False)

    @property
    def log_level_number(self) -> int:
        """The log level as :mod:`logging` numbers it."""
        return int(logging.getLevelName(self.log_level))


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(name, "is not set")
    return value


def _shown(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _http_url(name: str, value: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    problem = f"must be a {' or '.join(schemes)} URL with a host, got {_shown(value)}"
    # urlsplit drops tabs and newlines silently and raises on some malformed hosts and ports: check
    # the characters first, and make its errors this one.
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise ConfigError(name, problem)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(name, problem) from None
    if parts.scheme not in schemes or not parts.hostname or port == 0:
        raise ConfigError(name, problem)
    if parts.query or parts.fragment:
        raise ConfigError(name, "must not have a query or fragment")
    return value.rstrip("/")


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def read_machine_token(token: str, variable: str = "SIGNALGUARD_MACHINE_TOKEN") -> tuple[str, str]:
    """Return ``(owner id, machine id)`` from a machine token's payload, without verifying it."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise ConfigError(variable, "is not a JWT (expected three dot-separated base64url parts)")
    try:
        claims = json.loads(_b64url(parts[1]))
    except (binascii.Error, ValueError, RecursionError):
        raise ConfigError(variable, "has a payload that is not base64url-encoded JSON") from None
    if not isinstance(claims, dict):
        raise ConfigError(variable, "has a payload that is not a JSON object")
    if claims.get("role") != "authenticated":
        raise ConfigError(variable, f"must have role 'authenticated', not {_shown(claims.get('role'))}")
    ids: list[str] = []
    for claim, what in (("sub", "the owner's user id"), ("machine_id", "the cloud_machines.id")):
        value = claims.get(claim)
        if value is None:
            hint = " (is this a user token rather than a machine token?)" if claim == "machine_id" else ""
            raise ConfigError(variable, f"has no '{claim}' claim ({what}){hint}")
        try:
            ids.append(str(uuid.UUID(str(value))))
        except ValueError:
            raise ConfigError(variable, f"has a '{claim}' claim that is not a uuid") from None
    return ids[0], ids[1]


def read_machine_key(key: str, variable: str = "SIGNALGUARD_MACHINE_KEY") -> str:
    """Return ``key`` if it has a machine key's form; raise :class:`ConfigError` naming ``variable``."""
    if not _MACHINE_KEY.fullmatch(key):
        raise ConfigError(
            variable,
            "is not a machine key: 'sgm_' and 64 lower-case hexadecimal digits, as the page shows it once"
            + (
                " (this looks like a JWT: set it as SIGNALGUARD_MACHINE_TOKEN)" if key.count(".") == 2 else ""
            ),
        )
    return key


def load_market_urls(env: Mapping[str, str]) -> tuple[str, str]:
    """The market data's REST and stream URLs from ``env``; raise :class:`ConfigError` naming a bad one.

    What the worker uses, and all that ``signalguard cloud --check`` needs.
    """
    market = _http_url(
        "SIGNALGUARD_MARKET_DATA_URL", env.get("SIGNALGUARD_MARKET_DATA_URL", "").strip() or BINANCE_REST_URL
    )
    stream_value = env.get("SIGNALGUARD_MARKET_STREAM_URL", "").strip()
    stream = (
        _http_url("SIGNALGUARD_MARKET_STREAM_URL", stream_value, ("ws", "wss"))
        if stream_value
        else derive_stream_url(market)
    )
    return market, stream


def load_config(env: Mapping[str, str]) -> WorkerConfig:
    """Read and check the configuration from ``env``; raise :class:`ConfigError` at the first problem."""
    url = _http_url("SIGNALGUARD_SUPABASE_URL", _required(env, "SIGNALGUARD_SUPABASE_URL"))
    anon_key = _required(env, "SIGNALGUARD_SUPABASE_ANON_KEY")
    if any(c.isspace() for c in anon_key):
        raise ConfigError("SIGNALGUARD_SUPABASE_ANON_KEY", "must not contain whitespace")
    key = env.get("SIGNALGUARD_MACHINE_KEY", "").strip()
    token = env.get("SIGNALGUARD_MACHINE_TOKEN", "").strip()
    if key and token:
        raise ConfigError(
            "SIGNALGUARD_MACHINE_KEY",
            "and SIGNALGUARD_MACHINE_TOKEN are both set: set one (the key, from the page)",
        )
    if key:
        read_machine_key(key)
        owner, machine = "", ""
    elif token:
        owner, machine = read_machine_token(token)
    else:
        raise ConfigError(
            "SIGNALGUARD_MACHINE_KEY",
            "is not set: make a key for the machine in the page (Cloud machine), or set "
            "SIGNALGUARD_MACHINE_TOKEN to a machine token",
        )
    market, stream = load_market_urls(env)
    level = env.get("SIGNALGUARD_LOG_LEVEL", "").strip().upper() or "INFO"
    if level == "WARN":
        level = "WARNING"
    if level not in _LOG_LEVELS:
        raise ConfigError(
            "SIGNALGUARD_LOG_LEVEL", f"must be one of {', '.join(_LOG_LEVELS)}, got {_shown(level)}"
        )
    health_port, health_host = load_health(env)
    return WorkerConfig(
        supabase_url=url,
        anon_key=anon_key,
        machine_token=token,
        owner_id=owner,
        machine_id=machine,
        market_data_url=market,
        market_stream_url=stream,
        log_level=level,
        health_port=health_port,
        health_host=health_host,
        machine_key=key or None,
    )


def load_health(env: Mapping[str, str]) -> tuple[int | None, str]:
    """``GET /health``'s port (``None``: off) and host from ``env``; :class:`ConfigError` naming a bad one."""
    raw = env.get("SIGNALGUARD_HEALTH_PORT", "").strip()
    port: int | None = DEFAULT_HEALTH_PORT
    if raw.lower() in ("0", "off"):
        port = None
    elif raw:
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise ConfigError(
                "SIGNALGUARD_HEALTH_PORT", f"must be a port (1-65535), 0 or off, got {_shown(raw)}"
            )
        port = int(raw)
    host = env.get("SIGNALGUARD_HEALTH_HOST", "").strip() or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            "SIGNALGUARD_HEALTH_HOST", f"must be an IP address (0.0.0.0, ::, 127.0.0.1), got {_shown(host)}"
        ) from None
    return port, host
