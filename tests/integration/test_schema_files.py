"""The declarative schema files (supabase/schemas/) describe exactly what the migrations build.

The check (``signalguard.devstack.schemacheck``) builds one database from the migrations and one from
the schema files in the test cluster and compares their catalogs. These tests run it on the checkout,
and on altered copies of the schema files to show that it sees each kind of difference and names the
object.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from signalguard.devstack import schemacheck
from signalguard.devstack.config import REPO_ROOT
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

SUPABASE = REPO_ROOT / "supabase"
SCHEMAS = SUPABASE / "schemas"


def run_check(stack: LocalStack, supabase_dir: Path = SUPABASE) -> schemacheck.Result:
    return schemacheck.check(
        stack.config.superuser_dsn(), stack.config.secrets().authenticator_password, supabase_dir
    )


def altered_copy(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of supabase/ whose schema file ``file`` has ``old`` (which must occur once) replaced."""
    copy = tmp_path / "supabase"
    shutil.copytree(SUPABASE, copy)
    path = copy / "schemas" / file
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {file}"
    path.write_text(text.replace(old, new))
    return copy


def test_schema_files_describe_what_the_migrations_build(stack: LocalStack) -> None:
    result = run_check(stack)
    assert result.agree, result.report()
    assert result.schema_files == len(list(SCHEMAS.glob("*.sql")))
    assert result.migrations == len(list((SUPABASE / "migrations").glob("*.sql")))
    assert result.objects > 250


# Each alteration is of another kind; the check must name exactly the object it changes.
ALTERATIONS = [
    pytest.param(
        "30_execution_lease.sql",
        "  epoch bigint not null default 0,",
        "  epoch bigint not null default 1,",
        {"column public.execution_leases.epoch"},
        id="column default",
    ),
    pytest.param(
        "20_signals.sql",
        "create index idx_signals_source on public.signals (source);\n",
        "",
        {"index public.idx_signals_source"},
        id="missing index",
    ),
    pytest.param(
        "50_trades.sql",
        "  constraint trades_exit_after_entry check (exit_time is null or exit_time >= entry_time),",
        "  constraint trades_exit_after_entry check (exit_time is null or exit_time > entry_time),",
        {"constraint public.trades.trades_exit_after_entry"},
        id="constraint",
    ),
    pytest.param(
        "60_trader_problems.sql",
        "create or replace function public.report_trader_problems(p_epoch bigint, p_problems jsonb)\n"
        "returns jsonb\nlanguage plpgsql\nsecurity definer\n",
        "create or replace function public.report_trader_problems(p_epoch bigint, p_problems jsonb)\n"
        "returns jsonb\nlanguage plpgsql\n",
        {"function public.report_trader_problems(bigint,jsonb)"},
        id="security definer",
    ),
    pytest.param(
        "50_trades.sql",
        "  v_api boolean := private.is_api_session();",
        "  v_api boolean := private.is_api_session() or auth.uid() is not null;",
        {"function private.guard_trade_write()"},
        id="function body",
    ),
    pytest.param(
        "90_privileges.sql",
        "  private.trade_op_shape(text),\n",
        "",
        {"function private.trade_op_shape(text)"},
        id="grant",
    ),
    pytest.param(
        "90_privileges.sql",
        "  for delete to authenticated\n"
        "  using (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null);\n"
        "\n-- cloud_machines",
        "  for delete to authenticated\n  using (user_id = (select auth.uid()));\n\n-- cloud_machines",
        {"policy public.traders.traders_delete_own"},
        id="policy",
    ),
    pytest.param(
        "60_trader_problems.sql",
        "alter table public.trader_problems enable row level security;",
        "",
        {"relation public.trader_problems"},
        id="row level security",
    ),
    pytest.param(
        "10_traders.sql",
        "create trigger traders_api_input before insert or update on public.traders",
        "create trigger traders_api_input before insert on public.traders",
        {"trigger public.traders.traders_api_input"},
        id="trigger",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "named"), ALTERATIONS)
def test_the_check_names_what_an_altered_schema_file_changes(
    stack: LocalStack, tmp_path: Path, file: str, old: str, new: str, named: set[str]
) -> None:
    result = run_check(stack, altered_copy(tmp_path, file, old, new))
    assert not result.agree
    differing = {entry.splitlines()[0].split(": ", 1)[1] for entry in result.differences}
    assert differing == named, result.report()
    assert "('-' migrations, '+' schema files)" in result.report()


def test_a_column_out_of_order_is_a_difference(stack: LocalStack, tmp_path: Path) -> None:
    """Row types follow column order, so the schema files keep the order the migrations made."""
    copy = altered_copy(
        tmp_path,
        "20_signals.sql",
        "  epoch bigint not null,\n  updated_epoch bigint,\n",
        "  updated_epoch bigint,\n  epoch bigint not null,\n",
    )
    report = run_check(stack, copy).report()
    assert "differs: relation public.signals" in report
    assert "-columns id, trader_id, user_id" in report


def test_schema_files_apply_in_the_order_config_toml_lists_them() -> None:
    files = schemacheck.schema_files(SUPABASE)
    assert {p.name for p in files} == {p.name for p in SCHEMAS.glob("*.sql")}
    # Tables before what references them, privileges and policies last.
    assert files[0].name == "00_private.sql"
    assert files[-1].name == "90_privileges.sql"
    assert [p.name for p in files] == sorted(p.name for p in files)


def test_a_schema_file_config_toml_leaves_out_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "supabase"
    shutil.copytree(SUPABASE, copy)
    (copy / "schemas" / "55_forgotten.sql").write_text("create table public.forgotten (id int);\n")
    with pytest.raises(schemacheck.SchemaFilesError, match=r"does not list schemas/55_forgotten\.sql"):
        schemacheck.schema_files(copy)


def test_a_schema_file_that_fails_names_itself(stack: LocalStack, tmp_path: Path) -> None:
    copy = altered_copy(tmp_path, "70_summaries.sql", "comment on function public.signal_summary", "oops")
    with pytest.raises(RuntimeError, match=r"schema file 70_summaries\.sql failed"):
        run_check(stack, copy)


def test_every_function_asks_one_helper_whether_a_write_comes_through_the_api(
    db: psycopg.Connection[Any],
) -> None:
    """private.is_api_session() is the one place that knows how PostgREST sessions look."""
    spelled_out = db.execute(
        "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
        "where n.nspname in ('public', 'private') and p.proname <> 'is_api_session' "
        "and (p.prosrc ilike '%%session_user%%' or p.prosrc ilike '%%current_setting(''role''%%')"
    ).fetchall()
    assert spelled_out == []
    callers = {
        r[0]
        for r in db.execute(
            "select p.oid::regprocedure::text from pg_proc p "
            "where p.prosrc like '%%private.is_api_session()%%'"
        ).fetchall()
    }
    assert {
        "private.guard_signal_write()",
        "private.guard_trade_write()",
        "private.check_trade_input()",
        "private.check_trader_input()",
    } <= callers
