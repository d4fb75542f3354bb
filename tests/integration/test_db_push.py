"""``supabase db push`` of supabase/migrations, unchanged, with the pinned Supabase CLI.

The target is a fresh database in the test cluster prepared as a hosted Supabase project is before
its first push: the roles and the ``auth`` schema (devstack's compat SQL, the same file the local stack
applies first), no migration history (the CLI makes its own ``supabase_migrations.schema_migrations``),
and a project owner that is *not* a superuser, as a hosted project's ``postgres`` role is not. The CLI
logs in as that owner, so a migration that needs more than a hosted project grants fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from signalguard.core.codes import OPTIONAL_SCHEMA, has_component, missing_schema
from signalguard.devstack import schema
from signalguard.devstack.config import HOST, REPO_ROOT
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

MIGRATIONS = REPO_ROOT / "supabase" / "migrations"
#: Installed by scripts/bootstrap from package-lock.json (the pinned CLI, as `npx supabase` runs it).
CLI = REPO_ROOT / "node_modules" / ".bin" / "supabase"

#: A hosted project's `postgres` role as the migrations meet it: no superuser, but it may create roles
#: and databases, bypasses row level security, is a member of the API roles, owns the database (so the
#: `public` schema, owned by pg_database_owner, and new schemas), may use and reference `auth`'s tables
#: (`references auth.users`), and Supabase's default grants on `public` apply to what it creates. It
#: may set PostgREST's settings (`pgrst.*`) on the API's login role, as Supabase's supautils extension
#: lets a hosted project's `postgres` do (`privileged_role_allowed_configs`); plain PostgreSQL says
#: that with a grant on the one parameter the migrations set.
HOSTED_OWNER_SQL = """
create role {owner} login password {password} nosuperuser createrole createdb replication bypassrls;
grant anon, authenticated, service_role to {owner};
alter database {db} owner to {owner};
grant usage on schema auth, extensions to {owner};
grant all on all tables in schema auth to {owner};
grant execute on all functions in schema auth to {owner};
alter default privileges for role {owner} in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role {owner} in schema public
  grant all on sequences to anon, authenticated, service_role;
alter default privileges for role {owner} in schema public
  grant all on functions to anon, authenticated, service_role;
grant set on parameter pgrst.db_pre_request to {owner};
"""


@dataclass(frozen=True)
class HostedDb:
    """A fresh database prepared like a hosted project, and the owner's URL for the CLI."""

    url: str
    owner: str


@pytest.fixture()
def hosted_db(stack: LocalStack) -> Iterator[HostedDb]:
    suffix = uuid.uuid4().hex[:8]
    name, owner, password = f"hosted_{suffix}", f"project_owner_{suffix}", uuid.uuid4().hex
    with stack.connect() as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    superuser = stack.config.superuser_dsn().rsplit("/", 1)[0] + f"/{name}"
    try:
        with psycopg.connect(superuser, autocommit=True) as conn:
            # What a hosted project has before anything is pushed: roles, auth, Supabase's grants.
            schema.bootstrap(conn, stack.config.secrets().authenticator_password)
            # The compat SQL also makes the migration history for the local stack; a hosted project
            # has none before its first push, and the CLI must create (and fill) its own.
            conn.execute("drop schema supabase_migrations cascade")
            conn.execute(
                sql.SQL(HOSTED_OWNER_SQL).format(
                    owner=sql.Identifier(owner), password=sql.Literal(password), db=sql.Identifier(name)
                )
            )
        # sslmode=disable: the CLI insists on TLS unless the URL turns it off (it fails with "tls error
        # (The server does not support SSL connections)" otherwise), and the test cluster serves none.
        # A hosted project does serve TLS, so the URL in docs/deploy.md goes without it.
        url = f"postgresql://{owner}:{password}@{HOST}:{stack.config.pg_port}/{name}?sslmode=disable"
        yield HostedDb(url, owner)
    finally:
        with stack.connect() as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            admin.execute(
                sql.SQL("revoke set on parameter pgrst.db_pre_request from {}").format(sql.Identifier(owner))
            )
            admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(owner)))


def push(url: str, *flags: str) -> str:
    """Run ``supabase db push --db-url URL`` with the pinned CLI in the checkout; its whole output."""
    assert CLI.exists(), f"{CLI} is missing: scripts/bootstrap installs it (package-lock.json)"
    with tempfile.TemporaryDirectory(prefix="supabase-home-") as home:
        env = {
            **os.environ,
            # The CLI keeps telemetry and traces under $HOME/.supabase and asks the network for a newer
            # release; a test run does neither (CI has no internet and leaves no files behind).
            "HOME": home,
            "SUPABASE_TELEMETRY_DISABLED": "1",
            "DO_NOT_TRACK": "1",
            "SUPABASE_NO_UPDATE_NOTIFIER": "1",
        }
        done = subprocess.run(
            # --yes: answer the "push these migrations?" prompt (stdin is not a terminal here).
            [str(CLI), "--workdir", str(REPO_ROOT), "db", "push", "--db-url", url, "--yes", *flags],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


def components(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    row = conn.execute("select public.schema_version()").fetchone()
    assert row is not None
    return dict(row[0]["components"])


def test_db_push_applies_every_migration_unchanged_once(hosted_db: HostedDb) -> None:
    files = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    pattern = re.compile(r"\d{14}_\w+\.sql")

    dry = push(hosted_db.url, "--dry-run")
    assert pattern.findall(dry) == files, dry
    with psycopg.connect(hosted_db.url, autocommit=True) as conn:
        # A dry run changes nothing: no schema of the app, no history.
        assert conn.execute("select to_regnamespace('private')").fetchone() == (None,)

    applied = push(hosted_db.url)
    assert re.findall(r"Applying migration (\S+)\.\.\.", applied) == files, applied

    again = push(hosted_db.url)
    assert "Applying migration" not in again and "up to date" in again, again

    with psycopg.connect(hosted_db.url, autocommit=True) as conn:
        # The CLI's own history: every migration by version and name, with the statements it ran.
        history = conn.execute(
            "select version, name, cardinality(statements) from supabase_migrations.schema_migrations "
            "order by version"
        ).fetchall()
        assert [f"{v}_{n}.sql" for v, n, _ in history] == files
        assert all(count > 0 for _, _, count in history)
        # The local stack reads the same table: it would apply nothing more to this database.
        assert schema.applied_versions(conn) == {Path(f).stem.split("_", 1)[0] for f in files}
        # Pushed by the (non-superuser) owner, as on a hosted project.
        owners = conn.execute(
            "select distinct tableowner from pg_tables where schemaname in ('public', 'private')"
        ).fetchall()
        assert owners == [(hosted_db.owner,)]
        # What the clients require, and every optional component too.
        reported = components(conn)
        assert missing_schema(reported) == []
        assert all(has_component(reported, c) for c in OPTIONAL_SCHEMA)
