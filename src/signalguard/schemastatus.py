"""``signalguard schema``: whether a database has the schema this version of the clients needs.

It asks ``public.schema_version()`` — directly with ``--db-url`` (any PostgreSQL: a hosted project's
direct connection, the local stack), or through the API with ``--api URL --anon-key KEY``, as the page
does (``POST /rest/v1/rpc/schema_version``) — and prints one line per component the clients know:
present, outdated, or missing with the migration that adds it. The verdict is the clients' own
(:func:`signalguard.core.codes.missing_schema`): the page and the worker refuse to generate on exactly
the databases this command fails.

Exit codes: 0 the clients can run (every required component present and current; optional ones may
be missing), 1 they cannot (or the database could not be asked), 2 bad input (one line naming the
setting).

``schema_version()`` answers signed-in users and the service role, not the anonymous key; with
``--api`` the bearer token comes from ``SIGNALGUARD_ACCESS_TOKEN`` (a user's access token or the
project's service_role key; an environment variable so that it stays out of the process list).

psycopg and httpx are imported only by the mode that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from signalguard.core.codes import OPTIONAL_SCHEMA, REQUIRED_SCHEMA, Component, missing_schema

__all__ = ["ComponentStatus", "SchemaInputError", "add_commands", "assess", "run"]

PROG = "signalguard schema"
#: The bearer token for ``--api`` (``schema_version()`` is not granted to the anonymous role).
TOKEN_VARIABLE = "SIGNALGUARD_ACCESS_TOKEN"

_EPILOG = f"""\
environment:
  {TOKEN_VARIABLE}   with --api: the bearer token, a user's access token or the
                             project's service_role key (default: the anon key, which
                             schema_version() refuses)

exit codes: 0 the clients can run on this database, 1 they cannot (or it could not be
asked), 2 bad input
"""


class SchemaInputError(ValueError):
    """A setting of the check is wrong; the message names it (exit 2)."""


class SchemaUnavailable(RuntimeError):
    """The database or API could not be asked (exit 1); the message says why."""


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One known component as the database reports it."""

    component: Component
    required: bool
    #: The version the database reports, or None when it lacks the component.
    have: int | None

    @property
    def ok(self) -> bool:
        """Present at the version the clients need, or later."""
        return self.have is not None and self.have >= self.component.version

    def line(self) -> str:
        """The component's line of the report."""
        name = f"{self.component.name:<20}"
        kind = "" if self.required else " (optional: the app runs without it)"
        apply = f"apply supabase/migrations/{self.component.migration}"
        if self.have is None:
            return f"{name} missing{kind}: {apply}"
        if self.have < self.component.version:
            return (
                f"{name} outdated{kind}: version {self.have}, the clients need "
                f"{self.component.version}: {apply}"
            )
        if self.have > self.component.version:
            return f"{name} present: version {self.have} (newer than the {self.component.version} needed)"
        return f"{name} present and current: version {self.have}"


def assess(components: Mapping[str, object]) -> list[ComponentStatus]:
    """Every component the clients know (required first, in migration order) against ``components``.

    ``components`` is ``schema_version()``'s ``components`` object.
    """
    statuses: list[ComponentStatus] = []
    for required, known in ((True, REQUIRED_SCHEMA), (False, OPTIONAL_SCHEMA)):
        for comp in known:
            entry = components.get(comp.name)
            have = entry.get("version") if isinstance(entry, Mapping) else None
            # As the clients read it (core.codes.missing_schema): anything but an int is no version.
            version = have if isinstance(have, int) else None
            statuses.append(ComponentStatus(comp, required, version))
    return statuses


# -- asking the database -------------------------------------------------------------------------


def check_db_url(url: str) -> str:
    """``url`` if it is a PostgreSQL connection URL; :class:`SchemaInputError` naming --db-url if not."""
    example = "postgresql://postgres:PASSWORD@db.REF.supabase.co:5432/postgres"
    if "[" in url and "]" in url and any(p in url for p in ("[PASSWORD]", "[REF]", "[YOUR-PASSWORD]")):
        raise SchemaInputError("--db-url still has a placeholder: put the password and project ref in")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise SchemaInputError(f"--db-url is not a URL such as {example} ({exc})") from None
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise SchemaInputError(f"--db-url must be a PostgreSQL URL such as {example}")
    return url.strip()


def shown_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for the report."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def components_from_db(url: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """``schema_version()``'s components, asked over a database connection.

    A database without the function (no migration pushed yet) has no component: ``{}``.
    """
    try:
        import psycopg
        from psycopg import errors
    except ImportError:  # an installation without the devstack extra (the cloud image)
        raise SchemaInputError(
            "--db-url needs psycopg (install 'signalguard[devstack]'), or ask the API: --api, --anon-key"
        ) from None
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout)), autocommit=True) as conn:
            try:
                row = conn.execute("select public.schema_version()").fetchone()
            except (errors.UndefinedFunction, errors.InvalidSchemaName):
                return {}
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise SchemaUnavailable(f"cannot connect to {shown_url(url)}: {first}") from None
    except psycopg.Error as exc:
        raise SchemaUnavailable(f"schema_version() failed: {str(exc).strip().splitlines()[0]}") from None
    return _components(row[0] if row else None)


def check_api_url(url: str) -> str:
    """The project URL (``https://REF.supabase.co``) without a trailing ``/`` or ``/rest/v1``."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SchemaInputError("--api must be the project's URL, such as https://REF.supabase.co")
    return url.strip().rstrip("/").removesuffix("/rest/v1").rstrip("/")


def components_from_api(
    api: str, anon_key: str, token: str | None, *, timeout: float = 15.0
) -> dict[str, Any]:
    """``schema_version()``'s components, asked through the API as the page asks them.

    An API that does not know the function (PostgREST's ``PGRST202``: no migration pushed yet) has no
    component: ``{}``.
    """
    try:
        import httpx
    except ImportError:  # an installation with neither extra
        raise SchemaInputError("--api needs httpx (install 'signalguard[cloud]')") from None
    headers = {
        "apikey": anon_key,
        "Authorization": f"Bearer {token or anon_key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    try:
        answer = httpx.post(f"{api}/rest/v1/rpc/schema_version", json={}, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise SchemaUnavailable(f"cannot reach {api}: {exc.__class__.__name__}: {exc}") from None
    try:
        body: Any = answer.json()
    except ValueError:
        body = None
    error = body if isinstance(body, dict) else {}
    code = str(error.get("code") or "")
    said = str(error.get("message") or error.get("msg") or answer.reason_phrase)
    if answer.status_code == 200:
        return _components(body)
    if code == "PGRST202" or (answer.status_code == 404 and not code):
        return {}
    if code == "42501":
        raise SchemaInputError(
            f"{TOKEN_VARIABLE}: schema_version() answers signed-in users and the service role only "
            f"(HTTP {answer.status_code}: {said}); set it to a user's access token or the service_role key"
        )
    if answer.status_code in (401, 403):
        # The gateway judges the apikey header first ("Invalid API key"); PostgREST then the bearer.
        which = TOKEN_VARIABLE if token and "api key" not in said.lower() else "--anon-key"
        raise SchemaInputError(f"{which}: the API refused the key (HTTP {answer.status_code}: {said})")
    raise SchemaUnavailable(f"schema_version() through {api}: HTTP {answer.status_code}: {said}")


def _components(answer: object) -> dict[str, Any]:
    if isinstance(answer, str):  # a json column read as text
        answer = json.loads(answer)
    components = answer.get("components") if isinstance(answer, dict) else None
    if not isinstance(components, dict):
        raise SchemaUnavailable("schema_version() answered without components")
    return components


# -- the command ---------------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Register ``schema`` on the ``signalguard`` command's subparsers."""
    parser = sub.add_parser(
        "schema",
        help="check that a database has the schema the clients need",
        description=(
            "Ask a database (or its API) for schema_version() and print each schema component the "
            "clients know: present, outdated, or missing with the migration that adds it."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--db-url",
        metavar="URL",
        help="a PostgreSQL URL, e.g. postgresql://postgres:PASSWORD@db.REF.supabase.co:5432/postgres",
    )
    parser.add_argument("--api", metavar="URL", help="the project's URL (https://REF.supabase.co) instead")
    parser.add_argument("--anon-key", metavar="KEY", help="with --api: the project's anon key")
    parser.set_defaults(func=run)


def _inputs(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str | None, str | None]:
    """(the database URL or API URL, the anon key, the token) from the arguments; or why not."""
    db_url, api, anon_key = args.db_url, args.api, args.anon_key
    if db_url is not None and api is not None:
        raise SchemaInputError("give --db-url or --api, not both")
    if db_url is not None:
        if anon_key is not None:
            raise SchemaInputError("--anon-key goes with --api, not --db-url")
        return check_db_url(db_url), None, None
    if api is None:
        raise SchemaInputError("give --db-url URL (the database) or --api URL --anon-key KEY (its API)")
    if not anon_key or not anon_key.strip():
        raise SchemaInputError("--api needs --anon-key KEY (the project's anon key)")
    token = environ.get(TOKEN_VARIABLE, "").strip() or None
    return check_api_url(api), anon_key.strip(), token


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run the check; print the report; return the exit code (see the module docstring)."""
    env = os.environ if environ is None else environ
    try:
        target, anon_key, token = _inputs(args, env)
        if anon_key is None:
            components = components_from_db(target)
            where = shown_url(target)
        else:
            components = components_from_api(target, anon_key, token)
            where = f"{target} (API)"
    except SchemaInputError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except SchemaUnavailable as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(f"schema of {where}:")
    for status in assess(components):
        print(f"  {status.line()}")
    problems = missing_schema(components)
    if problems:
        print(
            f"The clients cannot run on this database: {len(problems)} required component(s) missing or "
            "outdated; push the migrations (docs/deploy.md, 'The database')."
        )
        return 1
    print("The clients can run on this database.")
    return 0
