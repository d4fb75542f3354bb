"""The app's runtime settings, from one place: ``/config.json`` on the page's own origin.

The page fetches ``./config.json`` before anything else. The document is::

    {
      "supabase_anon_key": "eyJ…",                  required: the project's public (anon) API key
      "supabase_url": "https://xyz.supabase.co",    optional: defaults to the page's own origin
      "market_data_url": "http://127.0.0.1:9000"    optional: Binance-compatible REST/WebSocket base
      "stack": "local-dev"                           optional: set by the local stack only (its mails
                                                     are printed by make dev, not sent)
    }

Locally the gateway of the dev stack answers it (its anon key is made per stack, in the state folder,
so it cannot be a file in the checkout); a hosted deployment ships it as a static file next to
``index.html``. Nothing else configures the page: ``pyscript.toml`` only says where the interpreter
and the app's Python are. Keys not listed here are ignored, so a newer server can add settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from signalguard.core import safejson

#: Where the page reads its settings (relative to the page).
CONFIG_PATH: Final = "./config.json"

# scheme://[userinfo@]host[:port][path][?query][#fragment], printable ASCII only (a control character
# or a space in a URL is a broken setting, not something to pass on to fetch); a regular expression
# rather than urllib.parse, whose import (with ipaddress) costs the page tens of milliseconds at start.
_URL: Final = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:[^/?#@\s]*@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^/?#:@\[\]\s]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:/[^?#\s]*)?(?P<query>\?[^#\s]*)?(?P<fragment>#\S*)?"
)
_JWT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
#: The longest value quoted back in an error message.
_SHOWN: Final = 80


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[: _SHOWN - 3] + "...")


class ConfigError(ValueError):
    """The settings are missing or malformed; the message names the key and what is wrong."""


def _url(value: object, key: str, schemes: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{CONFIG_PATH}: {key} must be a URL string")
    parts = _URL.fullmatch(value) if value.isascii() and value.isprintable() else None
    port = parts["port"] if parts is not None else None
    if (
        parts is None
        or parts["scheme"].lower() not in schemes
        or (port is not None and not 1 <= int(port) <= 65535)
    ):
        kinds = " or ".join(schemes)
        raise ConfigError(
            f"{CONFIG_PATH}: {key} must be an absolute {kinds} URL with a host, not {_shown(value)}"
        )
    if parts["query"] or parts["fragment"]:
        raise ConfigError(f"{CONFIG_PATH}: {key} must not carry a query or fragment")
    return value.rstrip("/")


@dataclass(frozen=True, slots=True)
class AppConfig:
    """Validated settings of the page."""

    #: The Supabase project (REST at ``/rest/v1``, sign-in at ``/auth/v1``).
    supabase_url: str
    #: The public API key every request carries.
    supabase_anon_key: str
    #: Base URL of the market-data service (REST ``/api/v3/klines`` and the kline streams), if any.
    market_data_url: str | None
    #: ``local-dev`` on the local stack (its sign-up and reset mails are printed, not sent); else None.
    stack: str | None = None

    @classmethod
    def from_json(cls, text: str, *, origin: str) -> AppConfig:
        """Parse ``config.json``; ``origin`` (the page's) stands in for a missing ``supabase_url``."""
        try:
            # Bounded nesting: absurdly deep JSON would exhaust the interpreter's stack in Pyodide.
            data = safejson.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{CONFIG_PATH} is not JSON ({str(exc)[:200]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{CONFIG_PATH} must hold a JSON object")
        key = data.get("supabase_anon_key")
        if not isinstance(key, str) or not _JWT.fullmatch(key):
            raise ConfigError(f"{CONFIG_PATH}: supabase_anon_key must be the project's anon key (a JWT)")
        market = data.get("market_data_url")
        # Only an absent or empty value means "this origin"; a wrong type is an error, not a default.
        url = data.get("supabase_url")
        return cls(
            supabase_url=_url(origin if url is None or url == "" else url, "supabase_url", ("http", "https")),
            supabase_anon_key=key,
            market_data_url=(
                _url(market, "market_data_url", ("http", "https")) if market is not None else None
            ),
            stack="local-dev" if data.get("stack") == "local-dev" else None,
        )
