-- signalguard's database, declared: what all of supabase/migrations/ together build, one concern a
-- file. These files are read, reviewed and edited; the migrations are what a hosted project replays.
--
--   00_private.sql         the private schema, the component registry, helpers every concern uses
--   10_traders.sql         traders: the user's strategies, and the input check on them
--   11_cloud_machines.sql  the user's cloud machine and its status clock
--   20_signals.sql         signals: columns, constraints, indexes
--   30_execution_lease.sql the lease, its epoch history, the rules' numbers and the lease RPCs
--   40_signal_writes.sql   the fence on signals (the write guard) and the signal RPCs
--   50_trades.sql          paper trades: the table, its input check and guard, write_trades
--   60_trader_problems.sql why a trader does not generate, as its executor reports it
--   70_summaries.sql       the read-only summaries by source
--   80_webhooks.sql        the user's webhook, each signal's delivery, the claim and record RPCs
--   85_machine_keys.sql    the cloud machine's keys, made in the page, and PostgREST's pre-request
--   90_privileges.sql      who may do what: grants, revokes and row level security policies
--
-- They run in the order supabase/config.toml lists them ([db.migrations] schema_paths), after what a
-- hosted project already has (Supabase's roles, `auth`, default grants; locally
-- src/signalguard/devstack/sql/00_supabase_compat.sql). A table's columns are in the order the
-- table has them (columns added later come last), so a database built from these files and one built
-- by the migrations have the same row types.
--
-- Making the next migration:
--   1. edit the schema file of the concern (the state you want);
--   2. write supabase/migrations/<timestamp>_<name>.sql that takes a database from the previous
--      state to that one: by hand, or `supabase db diff -f <name>` where Docker runs (then read it:
--      the diff knows no data, so backfills, renames and private.register_component calls are
--      written by hand);
--   3. run the check, which builds one database from these files and one from the migrations and
--      compares their catalogs: `scripts/schema-check` (also a test:
--      tests/integration/test_schema_files.py). It prints each object that differs.
--
-- This file: the private schema (never exposed through the API), the component registry behind
-- public.schema_version(), and the helpers that more than one concern calls.

create schema if not exists private;
comment on schema private is
  'signalguard internals (trigger functions, helpers, schema registry); never exposed through the API';

-- Which signalguard schema components this database has. Each migration registers what it adds, and
-- public.schema_version() reports it, so a client facing an older database can name what is missing.
-- (Its rows are data, written by the migrations; these files declare only the table.)
create table private.schema_components (
  component text primary key,
  version integer not null,
  migration text not null,
  applied_at timestamptz not null default now()
);

create or replace function private.register_component(p_component text, p_version integer, p_migration text)
returns void
language sql
set search_path = ''
as $$
  insert into private.schema_components (component, version, migration)
  values (p_component, p_version, p_migration)
  on conflict (component) do update
    set version = excluded.version, migration = excluded.migration, applied_at = now();
$$;

-- Clients call this at start and compare the components they need with what is here; a missing
-- component names the migration that adds it.
create or replace function public.schema_version() returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'components', coalesce(jsonb_object_agg(c.component, jsonb_build_object(
      'version', c.version, 'migration', c.migration)), '{}'::jsonb),
    'server_time', clock_timestamp())
  from private.schema_components c
$$;

create or replace function private.touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Helpers inlined into every write
-- ---------------------------------------------------------------------------------------------

-- These run on every write, so they are written to be inlined by the planner into the expressions
-- that call them: plain SQL, one expression, and no `set search_path` (a function with a SET clause is
-- never inlined). Every operator, function and type in them is schema-qualified instead, so no search
-- path can redirect them.

-- Whether the current statement comes through the API: PostgREST logs in as `authenticator` and
-- switches to an API role. Anything else (migrations, the database owner, the local stack's seed)
-- is maintenance and is not judged as a client.
create or replace function private.is_api_session() returns boolean
language sql stable
as $$
  select session_user operator(pg_catalog.=) 'authenticator'::pg_catalog.name
      or coalesce(pg_catalog.current_setting('role', true), '')
           operator(pg_catalog.=) any ('{anon,authenticated,service_role}'::pg_catalog.text[])
$$;

-- The identity of the caller's cloud machine, from the `machine_id` claim of a machine token; null for
-- a browser (user) token. Machine tokens are minted for one `cloud_machines.id` of the token's owner.
create or replace function private.jwt_machine_id() returns uuid
language sql stable
as $$
  select nullif(auth.jwt() operator(pg_catalog.->>) 'machine_id', '')::pg_catalog.uuid
$$;

-- Binance kline intervals and their lengths; a signal's candle closes at open time + this.
create or replace function private.interval_length(p_interval text) returns interval
language sql immutable parallel safe
as $$
  select case p_interval
    when '1s' then '1 second'::pg_catalog.interval
    when '1m' then '1 minute'::pg_catalog.interval
    when '3m' then '3 minutes'::pg_catalog.interval
    when '5m' then '5 minutes'::pg_catalog.interval
    when '15m' then '15 minutes'::pg_catalog.interval
    when '30m' then '30 minutes'::pg_catalog.interval
    when '1h' then '1 hour'::pg_catalog.interval
    when '2h' then '2 hours'::pg_catalog.interval
    when '4h' then '4 hours'::pg_catalog.interval
    when '6h' then '6 hours'::pg_catalog.interval
    when '8h' then '8 hours'::pg_catalog.interval
    when '12h' then '12 hours'::pg_catalog.interval
    when '1d' then '1 day'::pg_catalog.interval
    when '3d' then '3 days'::pg_catalog.interval
    when '1w' then '7 days'::pg_catalog.interval
    when '1M' then '1 month'::pg_catalog.interval
  end
$$;

-- A price or a quantity: finite, positive, below 10^15 and with at most 30 decimal places. Covers
-- every market (prices from 1e-8 to 1e9, quantities of any asset) and every float a client prints
-- (17 significant digits reach 24 decimals at 1e-8), and keeps a stored value short enough for any
-- JSON reader: the 100,001-digit price that broke Python's int parsing is refused. (NaN and Infinity
-- are not below 1e15.)
create or replace function private.is_amount(p_value pg_catalog.numeric) returns boolean
language sql immutable parallel safe
as $$
  select p_value operator(pg_catalog.>) 0::pg_catalog.numeric
     and p_value operator(pg_catalog.<) 1e15::pg_catalog.numeric
     and pg_catalog.scale(p_value) operator(pg_catalog.<=) 30
$$;

create or replace function private.amount_rule() returns text
language sql immutable parallel safe
set search_path = ''
as $$ select 'a number > 0 and < 1e15 with at most 30 decimal places' $$;

-- A signal's matched conditions, as stored: at most 32 labels and 8 kB. (The API's writes are held to
-- the finer rule of the write guard: 1 to 200 characters a label; the engine's labels, such as
-- "RSI(14) < 30", are well under 100.)
create or replace function private.labels_fit(p_labels pg_catalog.text[]) returns boolean
language sql immutable parallel safe
as $$
  select pg_catalog.cardinality(p_labels) operator(pg_catalog.<=) 32
     and pg_catalog.pg_column_size(p_labels) operator(pg_catalog.<=) 8192
$$;

-- ---------------------------------------------------------------------------------------------
-- The signal key, errors, the caller
-- ---------------------------------------------------------------------------------------------

-- The deterministic signal key: one row per (user, trader, symbol, interval, candle open time),
-- whichever side, tab or retry writes it. Format:
-- '<user uuid>:<trader uuid>:<SYMBOL>:<interval>:<candle open time, epoch milliseconds>'. The engine
-- computes the same string (signalguard.core), so a client knows a signal's key before the database
-- has seen it.
-- Immutable: the epoch of a timestamptz does not depend on the session's time zone.
create or replace function private.signal_key(
  p_user_id uuid, p_trader_id uuid, p_symbol text, p_interval text, p_open_time timestamptz
) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select p_user_id::text || ':' || p_trader_id::text || ':' || p_symbol || ':' || p_interval || ':'
    || (extract(epoch from p_open_time) * 1000)::bigint::text
$$;

-- Errors carry the codes listed in supabase/ERROR_CODES.md (SQLSTATE, returned by PostgREST as
-- `code`), mirrored by signalguard.core.codes.
create or replace function private.raise_guard(p_code text, p_message text, p_hint text default null)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using errcode = p_code, message = p_message, hint = coalesce(p_hint, '');
end;
$$;

create or replace function private.require_user() returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
  v_uid uuid := auth.uid();
begin
  if v_uid is null then
    perform private.raise_guard('SG010', 'not_authenticated: sign in first');
  end if;
  return v_uid;
end;
$$;
