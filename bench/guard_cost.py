"""What the write guard costs per signal, before and after the write hardening, in the same run.

Two databases in one throwaway cluster: ``before`` has the migrations up to the one before the write
hardening (the lease guard and the finite-number checks), ``after`` has them all (the owner check, the
server-owned columns and the bounds in front of the same guard). In each, one statement inserts
``N_ROWS`` signals as the ``authenticated`` role with a user's claims, as PostgREST does, and is rolled
back; the same statement with the table's triggers switched off is the baseline of that database. The
guard's cost per write is the difference, divided by the rows. Runs alternate between the two databases
and the median of ``ROUNDS`` is printed with the ratio after/before (the target: at most 1.10), then the
whole insert per row (constraints, row level security and guard) before and after.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from signalguard.devstack import schema
from signalguard.devstack.config import REPO_ROOT, StackConfig
from signalguard.devstack.postgres import Postgres

MIGRATIONS = REPO_ROOT / "supabase" / "migrations"
#: The last migration before the write hardening.
BEFORE_UPTO = "20251003060700"
N_ROWS = 5000
ROUNDS = 7

INSERT = """
insert into public.signals
  (trader_id, user_id, symbol, "interval", candle_open_time, price, matched_conditions, source, epoch)
select %(trader)s, %(user)s, 'S' || lpad((g %% 500)::text, 3, '0') || 'USDT', '1s',
       date_trunc('second', now()) - interval '50 minutes' + make_interval(secs => g / 500),
       100 + g * 0.01, array['RSI(14) < 30', 'Volume spike x2.5'], 'local', 1
  from generate_series(1, %(n)s) g
"""


def prepare(admin: psycopg.Connection[Any], dsn_base: str, name: str, upto: str | None, password: str) -> str:
    """A database migrated up to ``upto`` with one user holding a lease over the last hour; its DSN."""
    admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = f"{dsn_base}/{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema.bootstrap(conn, password)
        schema.migrate(conn, MIGRATIONS, upto=upto)
    return dsn


def seed_user(dsn: str) -> tuple[str, str]:
    user, trader = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("insert into auth.users (id, email) values (%s, 'bench@signalguard.test')", (user,))
        conn.execute(
            "insert into public.traders (id, user_id, name) values (%s, %s, 'bench')", (trader, user)
        )
        conn.execute(
            "insert into public.execution_leases (user_id, holder_kind, holder_id, epoch, acquired_at,"
            " expires_at) values (%s, 'local', 'bench-holder-1', 1, now() - interval '1 hour',"
            " now() + interval '1 hour')",
            (user,),
        )
        conn.execute(
            "insert into public.lease_epochs (user_id, epoch, holder_kind, holder_id, started_at,"
            " valid_until) values (%s, 1, 'local', 'bench-holder-1', now() - interval '1 hour',"
            " now() + interval '1 hour')",
            (user,),
        )
    return user, trader


def timed_insert(dsn: str, user: str, trader: str, *, triggers: bool) -> float:
    """Seconds one statement takes to insert N_ROWS as the signed-in user (rolled back)."""
    with psycopg.connect(dsn) as conn:
        if not triggers:
            conn.execute("alter table public.signals disable trigger user")
        conn.execute("set local role authenticated")
        claims = json.dumps({"sub": user, "role": "authenticated"})
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        t = time.perf_counter()
        conn.execute(INSERT, {"trader": trader, "user": user, "n": N_ROWS})
        elapsed = time.perf_counter() - t
        conn.rollback()
    return elapsed


def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="signalguard-bench-guard-"))
    config = StackConfig.for_tests(state)
    pg = Postgres(config)
    pg.init()
    pg.start()
    try:
        run(config)
    finally:
        pg.stop()
        shutil.rmtree(state, ignore_errors=True)


def run(config: StackConfig) -> None:
    password = config.secrets().authenticator_password
    dsn_base = config.superuser_dsn().rsplit("/", 1)[0]
    with psycopg.connect(config.superuser_dsn(), autocommit=True) as admin:
        dbs = {
            "before": prepare(admin, dsn_base, "bench_before", BEFORE_UPTO, password),
            "after": prepare(admin, dsn_base, "bench_after", None, password),
        }
    users = {name: seed_user(dsn) for name, dsn in dbs.items()}
    for name, dsn in dbs.items():  # warm caches and plans once, unmeasured
        timed_insert(dsn, *users[name], triggers=True)
        timed_insert(dsn, *users[name], triggers=False)

    cost: dict[str, list[float]] = {"before": [], "after": []}
    whole: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(ROUNDS):
        for name, dsn in dbs.items():
            guarded = timed_insert(dsn, *users[name], triggers=True)
            plain = timed_insert(dsn, *users[name], triggers=False)
            cost[name].append((guarded - plain) / N_ROWS * 1e6)
            whole[name].append(guarded / N_ROWS * 1e6)
    before, after = statistics.median(cost["before"]), statistics.median(cost["after"])
    w_before, w_after = statistics.median(whole["before"]), statistics.median(whole["after"])
    print(
        f"guard cost per signal write ({N_ROWS} rows per statement, median of {ROUNDS}): "
        f"before the write hardening {before:.2f} µs, after {after:.2f} µs, "
        f"ratio {after / before:.2f}x (target <= 1.10)"
    )
    print(
        f"whole insert per signal (constraints, row level security and guard): before {w_before:.2f} µs, "
        f"after {w_after:.2f} µs, ratio {w_after / w_before:.2f}x"
    )


if __name__ == "__main__":
    main()
