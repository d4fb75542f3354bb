"""``signalguard schema``: a database's schema against what the clients need, on the local stack.

Directly (``--db-url``) and through the API as the page asks (``--api --anon-key``): a complete
database, one without the last migration (an optional component: the clients run), one without a
required component, one with an outdated component, and bad input (exit 2, one line naming it).
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from signalguard import cli
from signalguard.core.codes import OPTIONAL_SCHEMA, REQUIRED_SCHEMA
from signalguard.devstack import schema
from signalguard.devstack.config import REPO_ROOT, StackConfig
from signalguard.devstack.schema import list_migrations
from signalguard.devstack.stack import LocalStack
from signalguard.schemastatus import TOKEN_VARIABLE

pytestmark = pytest.mark.stack

MIGRATIONS = REPO_ROOT / "supabase" / "migrations"
LAST = list_migrations(MIGRATIONS)[-1]
#: The version before the last migration's.
BEFORE_LAST = list_migrations(MIGRATIONS)[-2].version


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["schema", *args])
    out, err = capsys.readouterr()
    return code, out, err


def line_of(out: str, component: str) -> str:
    """The component's line, its column padding collapsed."""
    (line,) = [" ".join(ln.split()) for ln in out.splitlines() if ln.split()[:1] == [component]]
    return line


@pytest.fixture()
def database(stack: LocalStack) -> Iterator[tuple[str, psycopg.Connection[tuple[object, ...]]]]:
    """A fresh database in the session's cluster (bootstrapped, no migration): its URL and a connection."""
    name = f"schema_cmd_{uuid.uuid4().hex[:8]}"
    with stack.connect() as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = stack.config.superuser_dsn().rsplit("/", 1)[0] + f"/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            schema.bootstrap(conn, stack.config.secrets().authenticator_password)
            yield url, conn
    finally:
        with stack.connect() as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def test_complete_database(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--db-url", stack.config.superuser_dsn())
    assert code == 0, out + err
    for comp in (*REQUIRED_SCHEMA, *OPTIONAL_SCHEMA):
        assert line_of(out, comp.name).endswith("present and current: version 1"), out
    assert out.rstrip().endswith("The clients can run on this database.")
    # The password is not printed.
    assert stack.config.secrets().postgres_password not in out + err


def test_without_the_last_migration(
    database: tuple[str, psycopg.Connection[tuple[object, ...]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, conn = database
    schema.migrate(conn, MIGRATIONS, upto=BEFORE_LAST)
    code, out, err = run(capsys, "--db-url", url)
    # The last migration adds an optional component: named as missing, but the clients run.
    (missing,) = [c for c in OPTIONAL_SCHEMA if c.migration == LAST.path.name]
    assert line_of(out, missing.name) == (
        f"{missing.name} missing (optional: the app runs without it): "
        f"apply supabase/migrations/{LAST.path.name}"
    )
    assert code == 0, out + err
    assert sum("missing" in ln for ln in out.splitlines()) == 1


def test_without_a_required_component_and_with_an_outdated_one(
    database: tuple[str, psycopg.Connection[tuple[object, ...]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, conn = database
    schema.migrate(conn, MIGRATIONS, upto="20251003060800")  # not 060900_trader_streams
    conn.execute("update private.schema_components set version = 0 where component = 'trades'")
    code, out, err = run(capsys, "--db-url", url)
    assert code == 1, out + err
    assert line_of(out, "trader_streams") == (
        "trader_streams missing: apply supabase/migrations/20251003060900_trader_streams.sql"
    )
    assert line_of(out, "trades") == (
        "trades outdated: version 0, the clients need 1: apply supabase/migrations/20251003060600_trades.sql"
    )
    assert "The clients cannot run on this database: 2 required component(s)" in out


def test_database_without_any_migration(
    database: tuple[str, psycopg.Connection[tuple[object, ...]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = database
    code, out, _ = run(capsys, "--db-url", url)
    assert code == 1
    assert line_of(out, "core") == "core missing: apply supabase/migrations/20251003060000_core_tables.sql"


def test_through_the_api(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, anon = stack.url, stack.config.anon_key()
    # schema_version() is not the anonymous role's: the command says which setting to give.
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    code, out, err = run(capsys, "--api", api, "--anon-key", anon)
    assert code == 2 and out == ""
    assert err.startswith(f"signalguard schema: {TOKEN_VARIABLE}: ") and err.count("\n") == 1, err
    # As the page asks: a signed-in user's token; or the service role's key.
    for token in (stack.user_token("carol@signalguard.test"), stack.config.service_key()):
        monkeypatch.setenv(TOKEN_VARIABLE, token)
        code, out, err = run(capsys, "--api", api + "/rest/v1/", "--anon-key", anon)
        assert code == 0, out + err
        assert f"schema of {api} (API):" in out
        assert line_of(out, "webhooks").endswith("present and current: version 1")
    # A token the API does not accept, and a key it does not accept: each named.
    monkeypatch.setenv(TOKEN_VARIABLE, "not-a-token")
    code, out, err = run(capsys, "--api", api, "--anon-key", anon)
    assert code == 2 and err.startswith(f"signalguard schema: {TOKEN_VARIABLE}: the API refused"), err
    monkeypatch.delenv(TOKEN_VARIABLE)
    code, out, err = run(capsys, "--api", api, "--anon-key", "not-a-key")
    assert code == 2 and err.startswith("signalguard schema: --anon-key: the API refused the key"), err


@pytest.fixture(scope="module")
def older_stack() -> Iterator[LocalStack]:
    """A stack of its own whose database lacks the last migration (no demo seed: it may need it)."""
    config = StackConfig.for_tests(Path(tempfile.mkdtemp(prefix="signalguard-schema-cmd-")))
    s = LocalStack(dataclasses.replace(config, seed=False))
    s.start(migrate_upto=BEFORE_LAST)
    yield s
    s.reset()


def test_through_the_api_without_the_last_migration(
    older_stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, older_stack.config.service_key())
    code, out, err = run(capsys, "--api", older_stack.url, "--anon-key", older_stack.config.anon_key())
    assert code == 0, out + err
    assert f"apply supabase/migrations/{LAST.path.name}" in out
    assert sum("missing" in ln for ln in out.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([], "give --db-url URL"),
        (["--db-url", "http://db.example/postgres"], "--db-url must be a PostgreSQL URL"),
        (["--db-url", "postgresql://postgres:[PASSWORD]@db.[REF].supabase.co:5432/postgres"], "--db-url"),
        (["--db-url", "postgresql://u:p@h:port/postgres"], "--db-url is not a URL"),
        (["--db-url", "postgresql://h/db", "--api", "https://x.supabase.co"], "not both"),
        (["--db-url", "postgresql://h/db", "--anon-key", "k"], "--anon-key goes with --api"),
        (["--api", "https://x.supabase.co"], "--api needs --anon-key"),
        (["--api", "ftp://x", "--anon-key", "k"], "--api must be the project's URL"),
    ],
)
def test_bad_input_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("signalguard schema: ") and named in err and err.count("\n") == 1, err


def test_unreachable_database_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--db-url", "postgresql://postgres:secret@127.0.0.1:1/postgres")
    assert code == 1 and out == ""
    assert err.startswith("signalguard schema: cannot connect to postgresql://postgres:***@127.0.0.1:1/")
    assert "secret" not in err


def test_the_installed_command(stack: LocalStack) -> None:
    done = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "signalguard"),
            "schema",
            "--db-url",
            stack.config.superuser_dsn(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The clients can run on this database." in done.stdout
