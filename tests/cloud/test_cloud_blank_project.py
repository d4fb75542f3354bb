"""A project with nothing pushed: the worker names the migrations to apply instead of retrying forever."""

from __future__ import annotations

from typing import Any, cast

import pytest
from postgrest.exceptions import APIError

from signalguard.cloud.database import DatabaseUnavailable, SupabaseDatabase
from signalguard.core.codes import REQUIRED_SCHEMA


class _Call:
    def __init__(self, error: dict[str, str]) -> None:
        self._error = error

    async def execute(self) -> Any:
        raise APIError(self._error)


class _Client:
    """supabase-py's client as far as schema_version() goes: every RPC answers ``error``."""

    def __init__(self, error: dict[str, str]) -> None:
        self.error = error

    def rpc(self, _name: str, _params: dict[str, Any]) -> _Call:
        return _Call(self.error)


def database(error: dict[str, str]) -> SupabaseDatabase:
    return SupabaseDatabase(cast(Any, _Client(error)), owner_id="owner")


async def test_an_api_that_does_not_know_schema_version_names_every_required_migration() -> None:
    blank = database({"code": "PGRST202", "message": "Could not find the function public.schema_version"})
    problems = await blank.schema_problems()
    assert problems[0].startswith("The database API does not know schema_version()")
    for component in REQUIRED_SCHEMA:
        assert any(component.migration in p for p in problems), component


async def test_other_failures_are_still_retried() -> None:
    down = database({"code": "PGRST000", "message": "Could not connect with the database"})
    with pytest.raises(DatabaseUnavailable):
        await down.schema_problems()
