"""Apply the local-only bootstrap, the project's migrations and the demo seed to a cluster.

The migrations in ``supabase/migrations/`` are applied in file-name order, each in its own transaction,
and recorded in ``supabase_migrations.schema_migrations`` as the Supabase CLI does; a restart applies
only the new ones. Nothing here edits a migration's text: what runs locally is what a hosted project
gets from ``supabase db push``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

#: Local-only SQL shipped inside the package (roles, ``auth`` schema, demo seed).
_SQL = resources.files("signalguard.devstack") / "sql"


@dataclass(frozen=True)
class Migration:
    """One file of ``supabase/migrations``: ``<version>_<name>.sql``."""

    version: str
    name: str
    path: Path

    @classmethod
    def from_path(cls, path: Path) -> Migration:
        """Split a migration file name into its version (timestamp) and name."""
        version, _, name = path.stem.partition("_")
        if not version.isdigit() or not name:
            raise ValueError(f"{path.name}: migration files are named <timestamp>_<name>.sql")
        return cls(version, name, path)


def list_migrations(migrations_dir: Path) -> list[Migration]:
    """The migrations in ``migrations_dir``, in the order they apply."""
    return sorted((Migration.from_path(p) for p in migrations_dir.glob("*.sql")), key=lambda m: m.version)


def bootstrap(conn: psycopg.Connection[tuple[object, ...]], authenticator_password: str) -> None:
    """Create what a hosted Supabase project already has (roles, ``auth``), idempotently."""
    conn.execute((_SQL / "00_supabase_compat.sql").read_text())
    conn.execute(
        sql.SQL("alter role authenticator with login password {}").format(sql.Literal(authenticator_password))
    )


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    """Versions recorded as applied."""
    rows = conn.execute("select version from supabase_migrations.schema_migrations").fetchall()
    return {str(r[0]) for r in rows}


def migrate(
    conn: psycopg.Connection[tuple[object, ...]],
    migrations_dir: Path,
    *,
    upto: str | None = None,
) -> list[Migration]:
    """Apply the migrations not yet applied (up to and including version ``upto``, if given).

    Returns the migrations applied by this call. Each runs in its own transaction together with its
    record, so a failing migration leaves neither half-applied schema nor a false record.
    """
    done = applied_versions(conn)
    applied: list[Migration] = []
    for m in list_migrations(migrations_dir):
        if upto is not None and m.version > upto:
            break
        if m.version in done:
            continue
        with conn.transaction():
            try:
                conn.execute(m.path.read_text())
            except psycopg.Error as exc:
                raise RuntimeError(f"migration {m.path.name} failed: {exc}") from exc
            conn.execute(
                "insert into supabase_migrations.schema_migrations (version, name) values (%s, %s)",
                (m.version, m.name),
            )
        applied.append(m)
    if applied:
        reload_api_schema(conn)
    return applied


def reload_api_schema(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Ask PostgREST to reload its schema cache (it listens on the `pgrst` channel)."""
    conn.execute("notify pgrst, 'reload schema'")


def seed(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Insert the demo users, their traders and machines (local stack only)."""
    with conn.transaction():
        conn.execute((_SQL / "seed.sql").read_text())
