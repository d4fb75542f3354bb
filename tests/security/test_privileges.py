"""What each API role may do to each table, read from the catalog, and that every stored value is bounded.

A new table or column must be added here on purpose: Supabase's default grants hand every API role every
privilege on a new table, and this test names what a table kept that no policy or RPC needs.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.stack

ALL = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}
SERVER_SIDE = ALL - {"TRUNCATE", "REFERENCES", "TRIGGER"}

#: table -> role -> the privileges it keeps, and why.
EXPECTED: dict[str, dict[str, set[str]]] = {
    # Users make, edit and delete their own traders (policies say whose); machines only read them.
    "traders": {
        "anon": set(),
        "authenticated": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "service_role": SERVER_SIDE,
    },
    # Status and heartbeat change only through the machine functions (security definer).
    "cloud_machines": {"anon": set(), "authenticated": {"SELECT"}, "service_role": SERVER_SIDE},
    # write_signals and update_signal_statuses run as the caller; signals are never deleted.
    "signals": {"anon": set(), "authenticated": {"SELECT", "INSERT", "UPDATE"}, "service_role": SERVER_SIDE},
    # write_trades runs as the caller; a cancelled trade stays as history.
    "trades": {"anon": set(), "authenticated": {"SELECT", "INSERT", "UPDATE"}, "service_role": SERVER_SIDE},
    # Leases change only through the lease functions (security definer); their owner reads them.
    "execution_leases": {"anon": set(), "authenticated": {"SELECT"}, "service_role": SERVER_SIDE},
    "lease_epochs": {"anon": set(), "authenticated": {"SELECT"}, "service_role": SERVER_SIDE},
    # Problems are set and cleared only by report_trader_problems() and the traders' trigger.
    "trader_problems": {"anon": set(), "authenticated": {"SELECT"}, "service_role": {"SELECT"}},
    # Users set, change and remove their own webhook (policies say whose; a machine only reads it).
    "webhooks": {
        "anon": set(),
        "authenticated": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "service_role": SERVER_SIDE,
    },
    # Deliveries change only through the signals' trigger and the webhook RPCs (security definer).
    "webhook_deliveries": {"anon": set(), "authenticated": {"SELECT"}, "service_role": {"SELECT"}},
    # Keys are made and revoked only through their RPCs (security definer). Users read every column but
    # the hash, a column grant that the table-wide check here does not count (see the test below).
    "machine_keys": {"anon": set(), "authenticated": set(), "service_role": {"SELECT", "UPDATE", "DELETE"}},
}


def test_each_api_role_keeps_only_what_a_policy_or_rpc_needs(db: Any) -> None:
    rows = db.execute(
        """
        select c.relname, r.role, p.priv
          from pg_class c
          join pg_namespace n on n.oid = c.relnamespace
          cross join (values ('anon'), ('authenticated'), ('service_role')) r(role)
          cross join unnest(%s::text[]) p(priv)
         where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm')
           and has_table_privilege(r.role, c.oid, p.priv)
        """,
        (sorted(ALL),),
    ).fetchall()
    tables = {
        t
        for (t,) in db.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm')"
        ).fetchall()
    }
    got: dict[str, dict[str, set[str]]] = {
        t: {"anon": set(), "authenticated": set(), "service_role": set()} for t in tables
    }
    for table, role, priv in rows:
        got[table][role].add(priv)
    assert got == EXPECTED


def test_the_anonymous_key_can_call_only_the_pre_request(db: Any) -> None:
    callable_by_anon = db.execute(
        "select n.nspname || '.' || p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
        "where n.nspname in ('public', 'private') and has_function_privilege('anon', p.oid, 'execute') "
        "order by 1"
    ).fetchall()
    # None in public (the API's), and in private only PostgREST's pre-request, which runs with every
    # request's role, and what it calls to judge a machine key and to refuse one.
    assert [name for (name,) in callable_by_anon] == [
        "private.machine_key_claims",
        "private.machine_request",
        "private.raise_guard",
    ]


def test_users_read_their_keys_but_never_a_key_hash(db: Any) -> None:
    columns = db.execute(
        "select attname from pg_attribute where attrelid = 'public.machine_keys'::regclass and attnum > 0 "
        "and not attisdropped and has_column_privilege('authenticated', attrelid, attnum, 'select') "
        "order by attnum"
    ).fetchall()
    assert [c for (c,) in columns] == [
        "id", "user_id", "machine_id", "label", "key_hint", "created_at", "last_used_at", "revoked_at"
    ]  # fmt: skip


def test_every_text_json_and_array_column_has_a_bound(db: Any) -> None:
    unbounded = db.execute(
        """
        select c.relname || '.' || a.attname
          from pg_attribute a
          join pg_class c on c.oid = a.attrelid
          join pg_namespace n on n.oid = c.relnamespace
          join pg_type t on t.oid = a.atttypid
         where n.nspname = 'public' and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
           and (t.typname in ('text', 'varchar', 'json', 'jsonb') or t.typcategory = 'A')
           and not exists (
             select 1 from pg_constraint k
              where k.conrelid = c.oid and k.contype = 'c' and a.attnum = any (k.conkey))
         order by 1
        """
    ).fetchall()
    assert unbounded == []


def test_every_price_and_quantity_is_a_bounded_amount(db: Any) -> None:
    numeric = db.execute(
        """
        select c.relname || '.' || a.attname,
               exists (select 1 from pg_constraint k
                        where k.conrelid = c.oid and k.contype = 'c' and a.attnum = any (k.conkey)
                          and pg_get_constraintdef(k.oid) like '%%is_amount(' || a.attname || ')%%')
          from pg_attribute a
          join pg_class c on c.oid = a.attrelid
          join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'public' and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
           and a.atttypid = 'numeric'::regtype and a.attgenerated = ''
         order by 1
        """
    ).fetchall()
    assert numeric and all(bounded for _, bounded in numeric), numeric
