-- signalguard core tables: traders, cloud machines, signals.
--
-- Every table has row level security enabled in the same migration that creates it, so there is no
-- moment in which a table is exposed through the API without it. Policies that depend on columns
-- added by later migrations are created by those migrations.

create schema if not exists private;
comment on schema private is
  'signalguard internals (trigger functions, helpers, schema registry); never exposed through the API';
-- Functions are executable by PUBLIC by default; in this schema each grant is explicit instead.
alter default privileges in schema private revoke execute on functions from public;
grant usage on schema private to authenticated, service_role;

-- Which signalguard schema components this database has. Each migration registers what it adds, and
-- public.schema_version() reports it, so a client facing an older database can name what is missing.
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

create or replace function private.touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;

-- The identity of the caller's cloud machine, from the `machine_id` claim of a machine token; null for
-- a browser (user) token. Machine tokens are minted for one `cloud_machines.id` of the token's owner.
create or replace function private.jwt_machine_id() returns uuid
language sql stable
set search_path = ''
as $$
  select nullif(auth.jwt() ->> 'machine_id', '')::uuid
$$;

-- Binance kline intervals and their lengths; a signal's candle closes at open time + this.
create or replace function private.interval_length(p_interval text) returns interval
language sql immutable parallel safe
set search_path = ''
as $$
  select case p_interval
    when '1s' then interval '1 second'
    when '1m' then interval '1 minute'
    when '3m' then interval '3 minutes'
    when '5m' then interval '5 minutes'
    when '15m' then interval '15 minutes'
    when '30m' then interval '30 minutes'
    when '1h' then interval '1 hour'
    when '2h' then interval '2 hours'
    when '4h' then interval '4 hours'
    when '6h' then interval '6 hours'
    when '8h' then interval '8 hours'
    when '12h' then interval '12 hours'
    when '1d' then interval '1 day'
    when '3d' then interval '3 days'
    when '1w' then interval '7 days'
    when '1M' then interval '1 month'
  end
$$;

-- traders: a user's screening strategies. `definition` is validated by the engine (it is user input
-- and is never evaluated as code); the database only bounds its shape and size.
create table public.traders (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 100),
  definition jsonb not null default '{}'::jsonb
    check (jsonb_typeof(definition) = 'object' and pg_column_size(definition) <= 65536),
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Lets signals reference (trader, owner) as one foreign key, so a signal's trader always belongs
  -- to the signal's user.
  constraint traders_id_user_id_key unique (id, user_id)
);
create index traders_user_id_idx on public.traders (user_id);
create trigger traders_touch_updated_at before update on public.traders
  for each row execute function private.touch_updated_at();
alter table public.traders enable row level security;

-- cloud_machines: at most one per user (the plan's cloud machine). Status and heartbeat are written
-- only through the machine RPCs (see the execution lease migration), never directly by a client.
create table public.cloud_machines (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null unique references auth.users (id) on delete cascade,
  machine_id text not null unique check (machine_id ~ '^[a-z0-9][a-z0-9-]{2,62}$'),
  region text check (region is null or region ~ '^[a-z0-9-]{1,32}$'),
  status text not null default 'stopped'
    check (status in ('provisioning', 'starting', 'running', 'stopping', 'stopped', 'error')),
  -- When `status` last changed, by the database clock: the 2-minute error rule and the
  -- "starting younger than 30 s" rule measure from here.
  status_changed_at timestamptz not null default now(),
  last_health_check timestamptz,
  started_at timestamptz,
  stopped_at timestamptz,
  error_message text check (error_message is null or char_length(error_message) <= 2000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on column public.cloud_machines.machine_id is 'The Fly.io machine name, e.g. vyx-63eea370';
comment on column public.cloud_machines.last_health_check is
  'Set by the database clock on every machine heartbeat (every 10 s while the machine lives)';

create or replace function private.cloud_machines_track_status() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' or new.status is distinct from old.status then
    new.status_changed_at := clock_timestamp();
  end if;
  new.updated_at := now();
  return new;
end;
$$;
create trigger cloud_machines_track_status before insert or update on public.cloud_machines
  for each row execute function private.cloud_machines_track_status();
alter table public.cloud_machines enable row level security;

-- signals: one row per (user, trader, symbol, interval, candle); see the signal key migration.
-- Lifecycle: new -> active -> expired | closed (transitions checked by the write guard).
create table public.signals (
  id uuid primary key default gen_random_uuid(),
  trader_id uuid not null,
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  symbol text not null check (symbol ~ '^[A-Z0-9]{2,20}$'),
  "interval" text not null check (private.interval_length("interval") is not null),
  candle_open_time timestamptz not null
    check (date_trunc('milliseconds', candle_open_time) = candle_open_time),
  price numeric not null check (price > 0),
  matched_conditions text[] not null default '{}'
    check (cardinality(matched_conditions) <= 32),
  status text not null default 'new' check (status in ('new', 'active', 'expired', 'closed')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint signals_trader_owner_fkey foreign key (trader_id, user_id)
    references public.traders (id, user_id) on delete cascade
);
create index signals_user_id_created_at_idx on public.signals (user_id, created_at desc);
create trigger signals_touch_updated_at before update on public.signals
  for each row execute function private.touch_updated_at();
alter table public.signals enable row level security;

-- Row level security policies and check constraints call these as the requesting role.
grant execute on function private.jwt_machine_id(), private.interval_length(text)
  to authenticated, service_role;

-- The browser's anonymous key reaches nothing: every table needs a signed-in user.
revoke all on public.traders, public.cloud_machines, public.signals from anon;

create policy traders_select_own on public.traders
  for select to authenticated
  using (user_id = (select auth.uid()));

-- A machine token may read its owner's traders (it runs them) but never edit them.
create policy traders_insert_own on public.traders
  for insert to authenticated
  with check (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null);
create policy traders_update_own on public.traders
  for update to authenticated
  using (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null)
  with check (user_id = (select auth.uid()));
create policy traders_delete_own on public.traders
  for delete to authenticated
  using (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null);

-- Users read their own machine; a machine token reads only its own machine. There are no write
-- policies: status and heartbeat change only through the machine RPCs.
create policy cloud_machines_select_own on public.cloud_machines
  for select to authenticated
  using (
    user_id = (select auth.uid())
    and ((select private.jwt_machine_id()) is null or id = (select private.jwt_machine_id()))
  );

-- Users (and their machine) read their own signals; write policies come with source tracking.
create policy signals_select_own on public.signals
  for select to authenticated
  using (user_id = (select auth.uid()));

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
revoke execute on function public.schema_version() from public, anon;
grant execute on function public.schema_version() to authenticated, service_role;

select private.register_component('core', 1, '20251003060000_core_tables');
