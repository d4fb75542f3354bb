"""Migrations: they apply to an empty database, push unchanged to a hosted project, and carry the
analysis queries of the signal source tracking design."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from stackkit import Actors

from signalguard.core.codes import OPTIONAL_SCHEMA, REQUIRED_SCHEMA, ClaimRefusal, GuardError, missing_schema
from signalguard.devstack import schema
from signalguard.devstack.config import REPO_ROOT
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

MIGRATIONS = REPO_ROOT / "supabase" / "migrations"


@pytest.fixture()
def empty_db(stack: LocalStack) -> Iterator[psycopg.Connection[Any]]:
    """A brand-new database in the test cluster, dropped afterwards."""
    name = f"empty_{uuid.uuid4().hex[:8]}"
    with stack.connect() as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = stack.config.superuser_dsn().rsplit("/", 1)[0] + f"/{name}"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.bootstrap(conn, stack.config.secrets().authenticator_password)
            yield conn
    finally:
        with stack.connect() as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def components(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    row = conn.execute("select public.schema_version()").fetchone()
    assert row is not None
    return dict(row[0]["components"])


def test_migrations_apply_to_an_empty_database(empty_db: psycopg.Connection[Any]) -> None:
    applied = schema.migrate(empty_db, MIGRATIONS)
    assert [m.path.name for m in applied] == sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    assert missing_schema(components(empty_db)) == []
    # Recorded as the Supabase CLI records them; a second run applies nothing.
    assert schema.migrate(empty_db, MIGRATIONS) == []
    tables = {
        r[0]
        for r in empty_db.execute("select tablename from pg_tables where schemaname = 'public'").fetchall()
    }
    assert tables == {
        "traders",
        "cloud_machines",
        "signals",
        "execution_leases",
        "lease_epochs",
        "trades",
        "trader_problems",
        "webhooks",
        "webhook_deliveries",
        "machine_keys",
    }
    # Row level security is on for every table of the API.
    no_rls = empty_db.execute(
        "select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'public' and c.relkind = 'r' and not c.relrowsecurity"
    ).fetchall()
    assert no_rls == []


def test_database_missing_the_lease_migration_names_it(empty_db: psycopg.Connection[Any]) -> None:
    schema.migrate(empty_db, MIGRATIONS, upto="20251003060200")
    problems = missing_schema(components(empty_db))
    assert problems == [
        "The database lacks the 'execution_lease' schema: apply "
        "supabase/migrations/20251003060300_execution_lease.sql.",
        "The database lacks the 'status_updates' schema: apply "
        "supabase/migrations/20251003060500_update_signal_statuses.sql.",
        "The database lacks the 'trades' schema: apply supabase/migrations/20251003060600_trades.sql.",
        "The database lacks the 'write_hardening' schema: apply "
        "supabase/migrations/20251003060800_write_hardening.sql.",
        "The database lacks the 'trader_streams' schema: apply "
        "supabase/migrations/20251003060900_trader_streams.sql.",
    ]


def test_migration_013_as_written(empty_db: psycopg.Connection[Any]) -> None:
    schema.migrate(empty_db, MIGRATIONS)
    cols = dict(
        empty_db.execute(
            "select column_name, is_nullable || ':' || coalesce(column_default, '') "
            "from information_schema.columns where table_name = 'signals' "
            "and column_name in ('source', 'machine_id')"
        ).fetchall()
    )
    assert cols == {"source": "NO:'local'::text", "machine_id": "YES:"}
    indexes = {
        r[0]
        for r in empty_db.execute("select indexname from pg_indexes where tablename = 'signals'").fetchall()
    }
    assert {
        "idx_signals_source",
        "idx_signals_machine_id",
        "idx_signals_trader_source",
        "signals_signal_key_key",
    } <= indexes
    fk = empty_db.execute(
        "select confdeltype from pg_constraint where conrelid = 'public.signals'::regclass "
        "and contype = 'f' and confrelid = 'public.cloud_machines'::regclass"
    ).fetchone()
    assert fk == ("n",)  # ON DELETE SET NULL
    comments = dict(
        empty_db.execute(
            "select a.attname, col_description(a.attrelid, a.attnum) from pg_attribute a "
            "where a.attrelid = 'public.signals'::regclass and a.attname in ('source', 'machine_id')"
        ).fetchall()
    )
    assert comments == {
        "source": "Execution source: local (browser) or cloud (Fly.io machine)",
        "machine_id": "Reference to cloud_machines table for cloud-sourced signals",
    }


def test_migrations_push_unchanged_to_a_hosted_project() -> None:
    """Nothing that a hosted Supabase project already has is created by a migration."""
    text = "\n".join(p.read_text() for p in MIGRATIONS.glob("*.sql")).lower()
    # The one role statement allowed: a setting of PostgREST's login role in this database (its
    # pre-request function, migration machine_keys), as Supabase's own guides set the API roles'
    # settings. Roles themselves, their attributes and memberships are the project's.
    setting = "'alter role authenticator in database %i set pgrst.db_pre_request = %l'"
    assert text.count("alter role") == text.count(setting) == 1
    text = text.replace(setting, "")
    for forbidden in (
        "create role",
        "create schema auth",
        "create schema if not exists auth",
        "create table auth.",
        "create table if not exists auth.",
        "create or replace function auth.",
        "alter role",
        "extensions.crypt",
    ):
        assert forbidden not in text, forbidden
    names = [p.name for p in MIGRATIONS.glob("*.sql")]
    assert all(re.fullmatch(r"\d{14}_[a-z0-9_]+\.sql", n) for n in names), names


def test_required_schema_matches_the_migrations() -> None:
    files = {p.name for p in MIGRATIONS.glob("*.sql")}
    registered = {}
    for p in MIGRATIONS.glob("*.sql"):
        for comp, version, mig in re.findall(r"register_component\('(\w+)', (\d+), '(\w+)'\)", p.read_text()):
            assert mig == p.stem
            registered[comp] = (int(version), p.name)
    assert {c.name: (c.version, c.migration) for c in REQUIRED_SCHEMA + OPTIONAL_SCHEMA} == registered
    assert {c.migration for c in REQUIRED_SCHEMA} <= files


def test_error_codes_and_reasons_match_sql_and_docs() -> None:
    text = "\n".join(p.read_text() for p in MIGRATIONS.glob("*.sql"))
    raised = set(re.findall(r"raise_guard\('(SG\d{3})'", text))
    assert raised == {c.value for c in GuardError}
    reasons = set(re.findall(r"reason := '(\w+)'", text))
    assert reasons == {r.value for r in ClaimRefusal}
    doc = (REPO_ROOT / "supabase" / "ERROR_CODES.md").read_text()
    for c in GuardError:
        assert f"| {c.value} | {c.name.lower()}" in doc, c
    for r in ClaimRefusal:
        assert f"| {r.value}" in doc, r


# -- the analysis queries of the signal source tracking design ----------------------------------

SEED_QUERIES = {
    # 1. Performance comparison: as written.
    "by_source": """
        SELECT source, COUNT(*) as signal_count, COUNT(DISTINCT trader_id) as trader_count
        FROM signals
        WHERE created_at > NOW() - INTERVAL '7 days'
        GROUP BY source
        ORDER BY source""",
    # 2. Machine attribution: as written.
    "by_machine": """
        SELECT
          cm.machine_id,
          cm.region,
          COUNT(s.id) as signals_generated,
          COUNT(DISTINCT s.trader_id) as traders_active
        FROM signals s
        JOIN cloud_machines cm ON s.machine_id = cm.id
        WHERE s.source = 'cloud'
          AND s.created_at > NOW() - INTERVAL '24 hours'
        GROUP BY cm.machine_id, cm.region
        ORDER BY signals_generated DESC""",
    # 3. Debugging. Adapted: signals.machine_id is the machine row's uuid (migration 013's foreign
    # key), so the Fly name 'vyx-63eea370' is looked up in cloud_machines.machine_id.
    "one_machine": """
        SELECT *
        FROM signals
        WHERE machine_id = (SELECT id FROM cloud_machines WHERE machine_id = %(name)s)
          AND created_at > NOW() - INTERVAL '1 hour'
        ORDER BY created_at DESC""",
    # 4. Profitability by source: as written. Here a temporary stand-in with the two columns the query
    # reads shadows public.trades; test_trades runs the query against the real table.
    "profit_by_source": """
        SELECT
          s.source,
          COUNT(*) as total_signals,
          COUNT(t.id) as trades_executed,
          AVG(t.profit_loss) as avg_profit
        FROM signals s
        LEFT JOIN trades t ON s.id = t.signal_id
        GROUP BY s.source
        ORDER BY s.source""",
}


def test_seed_analysis_queries_run(empty_db: psycopg.Connection[Any], actors: Actors) -> None:
    conn = empty_db
    schema.migrate(conn, MIGRATIONS)
    uid, trader, machine = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    conn.execute("insert into auth.users (id, email) values (%s, 'q@signalguard.test')", (uid,))
    conn.execute("insert into traders (id, user_id, name) values (%s, %s, 't')", (trader, uid))
    conn.execute(
        "insert into cloud_machines (id, user_id, machine_id, region) values (%s, %s, 'vyx-63eea370', 'ams')",
        (machine, uid),
    )
    insert = (
        'insert into signals (trader_id, user_id, symbol, "interval", candle_open_time, '
        "price, source, machine_id, epoch) values (%s, %s, 'BTCUSDT', '1m', "
        "date_trunc('minute', now()) - make_interval(mins => %s), 100, %s, %s, 1)"
    )
    for i in range(3):
        conn.execute(insert, (trader, uid, i + 1, "cloud", machine))
    for i in range(2):
        conn.execute(insert, (trader, uid, i + 10, "local", None))
    conn.execute("create temporary table trades (id serial, signal_id uuid, profit_loss numeric)")
    conn.execute(
        "insert into trades (signal_id, profit_loss) "
        "select id, case when source = 'cloud' then 2 else -1 end from signals"
    )

    assert conn.execute(SEED_QUERIES["by_source"]).fetchall() == [("cloud", 3, 1), ("local", 2, 1)]
    assert conn.execute(SEED_QUERIES["by_machine"]).fetchall() == [("vyx-63eea370", "ams", 3, 1)]
    assert len(conn.execute(SEED_QUERIES["one_machine"], {"name": "vyx-63eea370"}).fetchall()) == 3
    rows = conn.execute(SEED_QUERIES["profit_by_source"]).fetchall()
    assert [(r[0], r[1], r[2], float(r[3])) for r in rows] == [
        ("cloud", 3, 3, 2.0),
        ("local", 2, 2, -1.0),
    ]


def test_local_signal_cannot_name_a_machine(empty_db: psycopg.Connection[Any]) -> None:
    schema.migrate(empty_db, MIGRATIONS)
    uid, trader, machine = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    empty_db.execute("insert into auth.users (id) values (%s)", (uid,))
    empty_db.execute("insert into traders (id, user_id, name) values (%s, %s, 't')", (trader, uid))
    empty_db.execute(
        "insert into cloud_machines (id, user_id, machine_id) values (%s, %s, 'vyx-1')",
        (machine, uid),
    )
    with pytest.raises(psycopg.errors.CheckViolation, match="signals_local_has_no_machine"):
        empty_db.execute(
            'insert into signals (trader_id, user_id, symbol, "interval", candle_open_time, '
            "price, source, machine_id, epoch) values (%s, %s, 'BTCUSDT', '1m', "
            "date_trunc('minute', now()), 1, "
            "'local', %s, 1)",
            (trader, uid, machine),
        )


def test_seed_has_the_three_demo_plans(stack: LocalStack) -> None:
    with stack.connect() as conn:
        rows = conn.execute(
            "select u.email, count(distinct t.id), min(m.status), count(distinct m.id) "
            "from auth.users u join traders t on t.user_id = u.id "
            "left join cloud_machines m on m.user_id = u.id "
            "where u.email like '%%@signalguard.test' and u.email in "
            "('alice@signalguard.test', 'bob@signalguard.test', 'carol@signalguard.test') "
            "group by u.email order by u.email"
        ).fetchall()
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("alice@signalguard.test", "stopped", 1),
        ("bob@signalguard.test", "stopped", 1),
        ("carol@signalguard.test", None, 0),
    ]
    assert all(r[1] >= 2 for r in rows)


def test_bootstrap_is_outside_the_migrations() -> None:
    local = Path(schema.__file__).parent / "sql" / "00_supabase_compat.sql"
    assert local.is_file() and MIGRATIONS not in local.parents
