-- cloud_machines: at most one per user (the plan's cloud machine). Status and heartbeat are written
-- only through the machine RPCs (30_execution_lease.sql), never directly by a client.

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
alter table public.cloud_machines enable row level security;

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
