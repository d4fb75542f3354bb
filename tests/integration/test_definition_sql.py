"""The database's definition check is the rules compiled (signalguard.devstack.definition_sql).

It ships verbatim in a migration and in the schema files: these tests fail while either text differs
from what the generator makes now. No database here (tests/integration/test_definition_rules.py runs
the compiled check against the core); they sit beside it because the generator is the local tools'
code, which the core's tests (also run in Pyodide) do not import.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from signalguard.core.traders import DEFINITION_RULES, TraderDefinitionError, parse_trader
from signalguard.core.traders.rules import Conditions, Depends, Number, Shape
from signalguard.devstack import definition_sql
from signalguard.devstack.config import REPO_ROOT

MIGRATIONS = REPO_ROOT / "supabase" / "migrations"
SCHEMA_FILE = REPO_ROOT / "supabase" / "schemas" / "10_traders.sql"


def newest_check() -> Path:
    """The newest migration that (re)defines the check: the one a database ends with."""
    holding = [p for p in sorted(MIGRATIONS.glob("*.sql")) if definition_sql.BEGIN in p.read_text()]
    assert holding, "no migration defines private.trader_definition_problem"
    return holding[-1]


def shapes() -> list[Shape]:
    """Every object the rules describe: the definition, the trade plan, each kind of condition."""
    conditions = DEFINITION_RULES.field("conditions").rule
    trade = DEFINITION_RULES.field("trade").rule
    assert isinstance(conditions, Conditions) and isinstance(trade, Shape)
    return [DEFINITION_RULES, trade, *(shape for _, shape in conditions.variants)]


def core(value: object) -> str | None:
    try:
        parse_trader(value)
    except TraderDefinitionError as exc:
        return str(exc)
    return None


# -- the generator ------------------------------------------------------------------------------------


def test_the_generator_is_deterministic() -> None:
    text = definition_sql.generate()
    assert definition_sql.generate() == text
    assert text.startswith(definition_sql.BEGIN + "\n") and text.endswith(definition_sql.END + "\n")
    # Another process, another hash seed: the same text (nothing depends on set or dict order).
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-m", "signalguard.devstack.definition_sql"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert out.stdout == text


def test_the_shipped_sql_is_the_generators() -> None:
    # When the rules change, a new migration carries the regenerated check (a shipped one is never
    # edited); the newest one and the schema file must hold what the generator makes now.
    text = definition_sql.generate()
    migration = newest_check()
    assert migration.name >= "20251003061100_trader_definitions.sql"
    for path in (migration, SCHEMA_FILE):
        shipped = path.read_text()
        assert shipped.count(definition_sql.BEGIN) == 1 and shipped.count(definition_sql.END) == 1, path
        start = shipped.index(definition_sql.BEGIN)
        end = shipped.index(definition_sql.END) + len(definition_sql.END) + 1
        assert shipped[start:end] == text, (
            f"{path.name} holds another check than the rules make: regenerate it with "
            "`python -m signalguard.devstack.definition_sql` (a shipped migration is never edited: "
            "put it into a new one)"
        )
    # The trigger around it is the same in both, too.
    trigger = re.compile(r"create or replace function private\.check_trader_input\(\).*?\n\$\$;", re.S)
    migration_trigger = trigger.search(migration.read_text())
    schema_trigger = trigger.search(SCHEMA_FILE.read_text())
    assert migration_trigger and schema_trigger
    assert migration_trigger.group() == schema_trigger.group()


def test_every_message_of_the_rules_is_in_the_sql() -> None:
    # Long messages are written as literals joined with ||: join them back.
    text = re.sub(r"'\s*\|\|\s*'", "", definition_sql.generate())
    for shape in shapes():
        assert shape.unknown_problem in text
        for f in shape.fields:
            rules = [c for _, c in f.rule.cases] if isinstance(f.rule, Depends) else [f.rule]
            for rule in rules:
                if not isinstance(rule, Shape):
                    assert rule.problem.replace("'", "''") in text, rule
                if isinstance(rule, Number):
                    assert repr(float(rule.high)) in text


def test_the_integer_limit_is_pythons() -> None:
    assert sys.int_info.default_max_str_digits == definition_sql.INT_MAX_STR_DIGITS
    digits = definition_sql.INT_MAX_STR_DIGITS + 1
    problem = core('{"x": ' + "9" * digits + "}")
    assert problem is not None
    before, after = problem.removeprefix("definition: not valid JSON (").split(str(digits))
    text = definition_sql.generate()
    assert before in text and after.removesuffix(")") in text


def test_main_prints_the_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert definition_sql.main([]) == 0
    assert capsys.readouterr().out == definition_sql.generate()
