"""The local stack as one object: PostgreSQL, PostgREST and the gateway, started and stopped together."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from signalguard.devstack import schema, tokens
from signalguard.devstack.config import StackConfig
from signalguard.devstack.gateway import Gateway, Mail
from signalguard.devstack.postgres import Postgres, StackError
from signalguard.devstack.postgrest import PostgREST

DEMO_PASSWORD = "signalguard-demo"
DEMO_USERS = (
    ("alice@signalguard.test", "traders + cloud machine vyx-63eea370"),
    ("bob@signalguard.test", "traders + cloud machine vyx-b0b5e7a1"),
    ("carol@signalguard.test", "traders, no cloud machine (browser-only plan)"),
)


@dataclass
class StartReport:
    """What a start did and how long each step took (seconds)."""

    created_cluster: bool = False
    migrations_applied: list[str] = field(default_factory=list)
    seeded: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """Seconds from the start call until the gateway listened."""
        return sum(self.timings.values())


class LocalStack:
    """PostgreSQL + PostgREST + gateway for one state folder.

    The gateway runs on its own event loop in a background thread, so the stack can be driven from
    synchronous code (the CLI, pytest fixtures) as well as awaited.
    """

    def __init__(
        self, config: StackConfig | None = None, *, on_mail: Callable[[Mail], None] | None = None
    ) -> None:
        """Prepare a stack for ``config`` (the defaults: ``.devstack/`` and port 8000).

        The gateway sends no mail: each one (a sign-up's confirmation link, a password reset's link) is
        kept in :attr:`mails` and handed to ``on_mail`` (``signalguard dev`` prints it).
        """
        self.config = config or StackConfig()
        #: Every mail the gateway would have sent, oldest first (kept across gateway restarts).
        self.mails: list[Mail] = []
        self.on_mail = on_mail
        self.postgres = Postgres(self.config)
        self.postgrest = PostgREST(self.config)
        self.gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- start / stop ----------------------------------------------------------------------------

    def start(self, *, migrate_upto: str | None = None) -> StartReport:
        """Start every component, applying pending migrations; return what was done and how fast.

        ``migrate_upto`` stops the migrations at a version (tests of a database missing a newer one).
        """
        report = StartReport()
        t = time.monotonic()

        def lap(name: str) -> None:
            nonlocal t
            now = time.monotonic()
            report.timings[name] = now - t
            t = now

        report.created_cluster = not self.postgres.exists
        try:
            self.postgres.init()
            lap("initdb")
            self.postgres.start()
            lap("postgres")
            with self.postgres.connect() as conn:
                schema.bootstrap(conn, self.config.secrets().authenticator_password)
                applied = schema.migrate(conn, self.config.migrations_dir, upto=migrate_upto)
                report.migrations_applied = [m.path.name for m in applied]
                if report.created_cluster and self.config.seed:
                    schema.seed(conn)
                    report.seeded = True
            lap("migrations")
            self.postgrest.start()
            lap("postgrest")
            self._start_gateway()
            lap("gateway")
        except BaseException:
            self.stop()
            raise
        return report

    def _start_gateway(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        gateway = Gateway(self.config, mails=self.mails, on_mail=self.on_mail)

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(gateway.start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(gateway.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="signalguard-gateway", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise StackError(f"the gateway could not listen on port {self.config.gateway_port}: {failure[0]}")
        self.gateway = gateway
        self._loop = loop

    def stop(self) -> None:
        """Stop every component this stack started (gateway, PostgREST, PostgreSQL)."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
            self._loop = None
            self._thread = None
            self.gateway = None
        self.postgrest.stop()
        self.postgres.stop()

    def __enter__(self) -> LocalStack:
        """Start the stack."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the stack."""
        self.stop()

    def reset(self) -> None:
        """Stop the stack and delete its state folder (cluster, secrets, logs)."""
        self.stop()
        if self.config.state_dir.exists():
            shutil.rmtree(self.config.state_dir)

    # -- helpers for tools and tests -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The gateway's origin (the app, ``/rest/v1``, ``/auth/v1``)."""
        return self.config.gateway_url

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A superuser connection (autocommit) for maintenance and tests."""
        return self.postgres.connect()

    def user_id(self, email: str) -> str:
        """The id of the user with this email; :class:`StackError` if there is none."""
        with self.connect() as conn:
            row = conn.execute(
                "select id from auth.users where lower(email) = lower(%s)", (email,)
            ).fetchone()
        if row is None:
            raise StackError(f"no user {email!r} in this stack")
        return str(row[0])

    def user_token(self, email: str) -> str:
        """An access token for the user with this email."""
        return tokens.user_token(self.config.secrets().jwt_secret, self.user_id(email), email)

    def machine_token(self, email: str) -> str:
        """A machine token for the cloud machine of the user with this email."""
        owner = self.user_id(email)
        with self.connect() as conn:
            row = conn.execute("select id from public.cloud_machines where user_id = %s", (owner,)).fetchone()
        if row is None:
            raise StackError(f"{email} has no cloud machine")
        return tokens.machine_token(self.config.secrets().jwt_secret, owner, str(row[0]))
