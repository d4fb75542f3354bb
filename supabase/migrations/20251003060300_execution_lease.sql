-- Execution arbitration: for one user, only one side (a browser holder or the cloud machine)
-- generates signals and manages trades at a time. The database decides, with its own clock, and
-- checks every signal write against that decision in the same transaction.
--
-- Pieces:
--   public.execution_leases   one row per user: the current holder, its epoch and expiry
--   public.lease_epochs       history: every epoch ever granted and the window it was valid in
--   public.execution_status() the browser's 5 s poll: machine, health, lease, what the caller may do
--   public.claim_local_lease() / release_local_lease()         for browser holders
--   public.machine_heartbeat() / claim_cloud_lease() / release_cloud_lease()   for machine tokens
--   public.write_signals()    batch upsert with one outcome per signal
--   private.guard_signal_write()  the trigger that fences every insert and update on signals
--
-- Error codes raised here (SQLSTATE, returned by PostgREST as `code`) are listed in
-- supabase/ERROR_CODES.md and mirrored by signalguard.core.codes.
--
-- Time rules (all by the database clock, clock_timestamp() taken after the lease row is locked):
--   healthy cloud        status = 'running' and last_health_check younger than 30 s
--   cloud's last sign    greatest(last_health_check, stopped_at)
--   grace                a browser may take a new lease only when that is at least 30 s old
--   starting             'starting'/'provisioning' younger than 30 s (status change or heartbeat)
--                        blocks browsers; older than that it is treated as dead
--   error takeover       'error' for at least 2 minutes, and the user confirms; clears the error
--   lease length         30 s, renewed by the holder (browsers poll every 5 s, machines every 10 s)

-- The rules' numbers, in one place.
create or replace function private.lease_ttl() returns interval
language sql immutable set search_path = '' as $$ select interval '30 seconds' $$;
create or replace function private.heartbeat_fresh_for() returns interval
language sql immutable set search_path = '' as $$ select interval '30 seconds' $$;
create or replace function private.cloud_grace() returns interval
language sql immutable set search_path = '' as $$ select interval '30 seconds' $$;
create or replace function private.starting_window() returns interval
language sql immutable set search_path = '' as $$ select interval '30 seconds' $$;
create or replace function private.error_takeover_after() returns interval
language sql immutable set search_path = '' as $$ select interval '2 minutes' $$;
-- A candle may be reported closed this much before the database clock says so (clock skew between
-- the exchange and the database); beyond it the signal is for a candle that has not closed.
create or replace function private.close_skew() returns interval
language sql immutable set search_path = '' as $$ select interval '5 seconds' $$;

create table public.execution_leases (
  user_id uuid primary key references auth.users (id) on delete cascade,
  holder_kind text check (holder_kind in ('local', 'cloud')),
  -- A browser holder's id (one per tab, kept across reloads) or, for the cloud, the machine's uuid.
  holder_id text,
  machine_id uuid references public.cloud_machines (id) on delete set null,
  -- Rises by one on every grant of a new lease (a change of holder, or the same holder coming back
  -- after its lease expired). Never reused; writes carry it as their fencing token.
  epoch bigint not null default 0,
  acquired_at timestamptz,
  expires_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint execution_leases_holder_complete check (
    (holder_kind is null and holder_id is null and expires_at is null)
    or (holder_kind is not null and holder_id is not null and expires_at is not null)
  ),
  constraint execution_leases_cloud_names_machine check (
    holder_kind is distinct from 'cloud' or machine_id is not null
  )
);
comment on table public.execution_leases is
  'The execution lease: who may generate signals and manage trades for the user right now';

create table public.lease_epochs (
  user_id uuid not null references auth.users (id) on delete cascade,
  epoch bigint not null check (epoch > 0),
  holder_kind text not null check (holder_kind in ('local', 'cloud')),
  holder_id text not null,
  machine_id uuid references public.cloud_machines (id) on delete set null,
  started_at timestamptz not null,
  -- The end of the window in which this epoch's holder legitimately held the lease: its latest
  -- expiry, moved forward by each renewal, or the moment it was released.
  valid_until timestamptz not null,
  ended_reason text check (ended_reason in ('released', 'yielded_to_cloud', 'machine_stopped')),
  primary key (user_id, epoch),
  check (valid_until >= started_at)
);
comment on table public.lease_epochs is
  'Every epoch granted and its validity window; a signal is accepted if its candle closed inside the window of the epoch its writer held';

alter table public.execution_leases enable row level security;
alter table public.lease_epochs enable row level security;
revoke all on public.execution_leases, public.lease_epochs from anon;
-- Read-only for their owner (the UI shows them); they change only through the functions below.
revoke insert, update, delete, truncate on public.execution_leases, public.lease_epochs
  from authenticated;
create policy execution_leases_select_own on public.execution_leases
  for select to authenticated using (user_id = (select auth.uid()));
create policy lease_epochs_select_own on public.lease_epochs
  for select to authenticated using (user_id = (select auth.uid()));

alter table public.signals add column epoch bigint not null;
alter table public.signals add column updated_epoch bigint;
comment on column public.signals.epoch is
  'The lease epoch its writer held when the candle closed (the fencing token checked on insert)';
comment on column public.signals.updated_epoch is
  'The live lease epoch of whoever last changed the status';

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------

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

create or replace function private.check_holder_id(p_holder_id text) returns void
language plpgsql immutable
set search_path = ''
as $$
begin
  if p_holder_id is null or p_holder_id !~ '^[A-Za-z0-9_-]{8,64}$' then
    perform private.raise_guard('SG009',
      'invalid_argument: holder_id must be 8 to 64 characters of [A-Za-z0-9_-]');
  end if;
end;
$$;

-- The caller's machine row: the token must carry a machine_id claim naming a machine of its owner.
create or replace function private.require_machine() returns public.cloud_machines
language plpgsql stable
set search_path = ''
as $$
declare
  v_uid uuid := private.require_user();
  v_mid uuid := private.jwt_machine_id();
  v_machine public.cloud_machines;
begin
  if v_mid is not null then
    select * into v_machine from public.cloud_machines m where m.id = v_mid and m.user_id = v_uid;
  end if;
  if v_machine.id is null then
    perform private.raise_guard('SG007',
      'not_a_machine: this call needs a machine token for one of the caller''s cloud machines');
  end if;
  return v_machine;
end;
$$;

create or replace function private.require_browser() returns uuid
language plpgsql stable
set search_path = ''
as $$
begin
  if private.jwt_machine_id() is not null then
    perform private.raise_guard('SG008',
      'not_a_browser: a machine token cannot hold or release a browser lease');
  end if;
  return private.require_user();
end;
$$;

-- The lease row of a user, created on first use and locked for the rest of the transaction, so
-- that claims, renewals and releases for one user are serialised.
create or replace function private.lock_lease(p_user_id uuid) returns public.execution_leases
language plpgsql
set search_path = ''
as $$
declare
  v_lease public.execution_leases;
begin
  insert into public.execution_leases (user_id) values (p_user_id) on conflict do nothing;
  select * into v_lease from public.execution_leases l where l.user_id = p_user_id for update;
  return v_lease;
end;
$$;

create or replace function private.seconds(p_interval interval) returns double precision
language sql immutable set search_path = ''
as $$ select extract(epoch from p_interval)::double precision $$;

-- The browser claim rules, as a pure decision over the machine row and the lease at p_now.
-- Returns the reason a claim by p_holder_id would be refused (null: it would be granted), when it
-- could next succeed, and whether a grant would renew the holder's lease or clear a machine error.
create or replace function private.local_claim_decision(
  p_machine public.cloud_machines,
  p_lease public.execution_leases,
  p_holder_id text,
  p_confirm_takeover boolean,
  p_now timestamptz,
  out reason text,
  out retry_in_seconds double precision,
  out is_renewal boolean,
  out clears_error boolean
)
language plpgsql stable
set search_path = ''
as $$
declare
  v_live boolean := p_lease.holder_kind is not null and p_lease.expires_at > p_now;
  v_last_seen timestamptz := greatest(p_machine.last_health_check, p_machine.stopped_at);
  v_active_since timestamptz := greatest(p_machine.status_changed_at, p_machine.last_health_check);
begin
  is_renewal := v_live and p_lease.holder_kind = 'local' and p_lease.holder_id = p_holder_id;
  clears_error := false;

  -- Rules that stop even the current holder: the cloud is, or is becoming, the executor.
  if v_live and p_lease.holder_kind = 'cloud' then
    reason := 'held_by_cloud';
    retry_in_seconds := private.seconds(p_lease.expires_at - p_now);
    return;
  end if;
  if p_machine.status = 'running'
     and p_machine.last_health_check > p_now - private.heartbeat_fresh_for() then
    reason := 'cloud_healthy';
    retry_in_seconds := private.seconds(
      p_machine.last_health_check + private.heartbeat_fresh_for() - p_now);
    return;
  end if;
  if p_machine.status in ('starting', 'provisioning')
     and v_active_since > p_now - private.starting_window() then
    reason := 'cloud_starting';
    retry_in_seconds := private.seconds(v_active_since + private.starting_window() - p_now);
    return;
  end if;
  if is_renewal then
    return;
  end if;

  -- Rules for a new lease.
  if p_machine.status = 'error' then
    if p_machine.status_changed_at > p_now - private.error_takeover_after() then
      reason := 'cloud_error_wait';
      retry_in_seconds := private.seconds(
        p_machine.status_changed_at + private.error_takeover_after() - p_now);
      return;
    end if;
    if not coalesce(p_confirm_takeover, false) then
      reason := 'takeover_needs_confirmation';
      return;
    end if;
    clears_error := true;
  end if;
  if v_last_seen > p_now - private.cloud_grace() then
    reason := 'cloud_grace';
    retry_in_seconds := private.seconds(v_last_seen + private.cloud_grace() - p_now);
    clears_error := false;
    return;
  end if;
  if v_live and p_lease.holder_kind = 'local' then
    reason := 'held_by_other_local';
    retry_in_seconds := private.seconds(p_lease.expires_at - p_now);
    clears_error := false;
    return;
  end if;
end;
$$;

-- Grant or renew the lease on the locked row; returns the updated row.
create or replace function private.grant_lease(
  p_lease public.execution_leases,
  p_kind text,
  p_holder_id text,
  p_machine_id uuid,
  p_now timestamptz
) returns public.execution_leases
language plpgsql
set search_path = ''
as $$
declare
  v_expires timestamptz := p_now + private.lease_ttl();
  v_lease public.execution_leases;
begin
  if p_lease.holder_kind = p_kind and p_lease.holder_id = p_holder_id
     and p_lease.expires_at > p_now then
    update public.execution_leases l
       set expires_at = v_expires, updated_at = p_now
     where l.user_id = p_lease.user_id
     returning * into v_lease;
    update public.lease_epochs e
       set valid_until = v_expires
     where e.user_id = p_lease.user_id and e.epoch = p_lease.epoch;
  else
    update public.execution_leases l
       set holder_kind = p_kind, holder_id = p_holder_id, machine_id = p_machine_id,
           epoch = l.epoch + 1, acquired_at = p_now, expires_at = v_expires, updated_at = p_now
     where l.user_id = p_lease.user_id
     returning * into v_lease;
    insert into public.lease_epochs
      (user_id, epoch, holder_kind, holder_id, machine_id, started_at, valid_until)
    values
      (v_lease.user_id, v_lease.epoch, p_kind, p_holder_id, p_machine_id, p_now, v_expires);
  end if;
  return v_lease;
end;
$$;

-- End the current lease now (release, yield or stop); its epoch's window closes at p_now.
create or replace function private.end_lease(
  p_lease public.execution_leases, p_now timestamptz, p_reason text
) returns public.execution_leases
language plpgsql
set search_path = ''
as $$
declare
  v_lease public.execution_leases;
begin
  update public.lease_epochs e
     set valid_until = least(e.valid_until, greatest(p_now, e.started_at)), ended_reason = p_reason
   where e.user_id = p_lease.user_id and e.epoch = p_lease.epoch;
  update public.execution_leases l
     set holder_kind = null, holder_id = null, machine_id = null, expires_at = null,
         updated_at = p_now
   where l.user_id = p_lease.user_id
   returning * into v_lease;
  return v_lease;
end;
$$;

create or replace function private.lease_json(p_lease public.execution_leases, p_now timestamptz)
returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object(
    'holder_kind', p_lease.holder_kind,
    'holder_id', p_lease.holder_id,
    'machine_id', p_lease.machine_id,
    'epoch', coalesce(p_lease.epoch, 0),
    'acquired_at', p_lease.acquired_at,
    'expires_at', p_lease.expires_at,
    'live', coalesce(p_lease.holder_kind is not null and p_lease.expires_at > p_now, false),
    'expires_in_seconds', case when p_lease.expires_at is not null
                               then greatest(private.seconds(p_lease.expires_at - p_now), 0) end
  )
$$;

create or replace function private.machine_json(p_machine public.cloud_machines) returns jsonb
language sql stable
set search_path = ''
as $$
  select case when p_machine.id is null then null else jsonb_build_object(
    'id', p_machine.id,
    'machine_id', p_machine.machine_id,
    'region', p_machine.region,
    'status', p_machine.status,
    'status_changed_at', p_machine.status_changed_at,
    'last_health_check', p_machine.last_health_check,
    'started_at', p_machine.started_at,
    'stopped_at', p_machine.stopped_at,
    'error_message', p_machine.error_message
  ) end
$$;

-- The whole picture for one user at p_now, as every RPC returns it.
create or replace function private.status_json(
  p_user_id uuid,
  p_machine public.cloud_machines,
  p_lease public.execution_leases,
  p_holder_kind text,
  p_holder_id text,
  p_now timestamptz
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_last_seen timestamptz := greatest(p_machine.last_health_check, p_machine.stopped_at);
  v_live boolean := p_lease.holder_kind is not null and p_lease.expires_at > p_now;
  v_you_hold boolean := v_live and p_lease.holder_kind = p_holder_kind
                        and p_lease.holder_id = p_holder_id;
  v_reason text;
  v_retry double precision;
  v_clears boolean;
  v_error_for double precision;
begin
  if p_machine.status = 'error' then
    v_error_for := private.seconds(p_now - p_machine.status_changed_at);
  end if;
  if p_holder_kind = 'local' then
    select d.reason, d.retry_in_seconds, d.clears_error into v_reason, v_retry, v_clears
      from private.local_claim_decision(p_machine, p_lease, p_holder_id, true, p_now) d;
  end if;
  return jsonb_build_object(
    'server_time', p_now,
    'schema_version', (select max(c.version) from private.schema_components c
                       where c.component = 'execution_lease'),
    'machine', private.machine_json(p_machine),
    'healthy', coalesce(p_machine.status = 'running'
                        and p_machine.last_health_check > p_now - private.heartbeat_fresh_for(),
                        false),
    'cloud_last_seen_at', v_last_seen,
    'cloud_last_seen_seconds', private.seconds(p_now - v_last_seen),
    'grace_seconds_left', greatest(
      coalesce(private.seconds(v_last_seen + private.cloud_grace() - p_now), 0), 0),
    'error_seconds', v_error_for,
    'takeover_available', coalesce(v_error_for >= private.seconds(private.error_takeover_after()),
                                   false),
    'lease', private.lease_json(p_lease, p_now),
    'you_hold', coalesce(v_you_hold, false),
    'may_generate', coalesce(v_you_hold, false),
    -- For a browser caller: whether a claim would be granted now (with confirmation, where the
    -- rules ask for one), why not, and when to try again.
    'may_claim', case when p_holder_kind = 'local' then v_reason is null end,
    'reason', v_reason,
    'retry_in_seconds', v_retry,
    'needs_confirmation', case when p_holder_kind = 'local' then coalesce(v_clears, false) end
  );
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Browser RPCs
-- ---------------------------------------------------------------------------------------------

-- The 5 s poll. p_holder_id (the tab's holder id) makes `you_hold` and `may_claim` about the caller.
-- A machine token may call it too (without a holder id) and sees its own lease as `you_hold`.
create or replace function public.execution_status(p_holder_id text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_user();
  v_mid uuid := private.jwt_machine_id();
  v_now timestamptz := clock_timestamp();
  v_machine public.cloud_machines;
  v_lease public.execution_leases;
begin
  if p_holder_id is not null then
    perform private.check_holder_id(p_holder_id);
  end if;
  select * into v_machine from public.cloud_machines m where m.user_id = v_uid;
  select * into v_lease from public.execution_leases l where l.user_id = v_uid;
  if v_lease.user_id is null then
    v_lease.user_id := v_uid;
    v_lease.epoch := 0;
  end if;
  if v_mid is not null then
    return private.status_json(v_uid, v_machine, v_lease, 'cloud', v_mid::text, v_now);
  end if;
  return private.status_json(v_uid, v_machine, v_lease,
                             case when p_holder_id is not null then 'local' end,
                             p_holder_id, v_now);
end;
$$;

-- Claim or renew the browser lease for a holder id. Never raises for a refusal: the result says
-- `granted` and, if not, `reason` and `retry_in_seconds`. A renewal refused because the cloud is
-- healthy or starting gives the lease up at once, so the machine can take over without waiting for
-- it to expire.
create or replace function public.claim_local_lease(
  p_holder_id text, p_confirm_takeover boolean default false
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_browser();
  v_lease public.execution_leases;
  v_machine public.cloud_machines;
  v_now timestamptz;
  v_reason text;
  v_retry double precision;
  v_renewal boolean;
  v_clears boolean;
  v_yielded boolean := false;
begin
  perform private.check_holder_id(p_holder_id);
  v_lease := private.lock_lease(v_uid);
  -- The machine row is locked too: a takeover may clear its error, and a concurrent heartbeat must
  -- not slip in between the decision and the grant.
  select * into v_machine from public.cloud_machines m where m.user_id = v_uid for update;
  v_now := clock_timestamp();
  select d.reason, d.retry_in_seconds, d.is_renewal, d.clears_error
    into v_reason, v_retry, v_renewal, v_clears
    from private.local_claim_decision(v_machine, v_lease, p_holder_id, p_confirm_takeover, v_now) d;
  if v_reason is null then
    if v_clears then
      update public.cloud_machines m
         set status = 'stopped', error_message = null
       where m.id = v_machine.id
       returning * into v_machine;
    end if;
    v_lease := private.grant_lease(v_lease, 'local', p_holder_id, null, v_now);
  elsif v_renewal then
    v_lease := private.end_lease(v_lease, v_now, 'yielded_to_cloud');
    v_yielded := true;
  end if;
  return private.status_json(v_uid, v_machine, v_lease, 'local', p_holder_id, v_now)
    || jsonb_build_object(
         'granted', v_reason is null,
         'renewed', v_reason is null and coalesce(v_renewal, false),
         'cleared_error', v_reason is null and coalesce(v_clears, false),
         'yielded', v_yielded,
         'reason', v_reason,
         'retry_in_seconds', v_retry);
end;
$$;

create or replace function public.release_local_lease(p_holder_id text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_browser();
  v_lease public.execution_leases;
  v_machine public.cloud_machines;
  v_now timestamptz;
  v_released boolean := false;
begin
  perform private.check_holder_id(p_holder_id);
  v_lease := private.lock_lease(v_uid);
  v_now := clock_timestamp();
  if v_lease.holder_kind = 'local' and v_lease.holder_id = p_holder_id
     and v_lease.expires_at > v_now then
    v_lease := private.end_lease(v_lease, v_now, 'released');
    v_released := true;
  end if;
  select * into v_machine from public.cloud_machines m where m.user_id = v_uid;
  return private.status_json(v_uid, v_machine, v_lease, 'local', p_holder_id, v_now)
    || jsonb_build_object('released', v_released);
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Machine RPCs (machine tokens only)
-- ---------------------------------------------------------------------------------------------

-- The machine's heartbeat (every 10 s): last_health_check by the database clock and, optionally, a
-- status change. Reaching 'stopped' or 'error' ends the machine's lease: it can no longer execute.
create or replace function public.machine_heartbeat(
  p_status text default null, p_error_message text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_machine public.cloud_machines := private.require_machine();
  v_lease public.execution_leases;
  v_now timestamptz;
begin
  if p_status is not null
     and p_status not in ('starting', 'running', 'stopping', 'stopped', 'error') then
    perform private.raise_guard('SG009',
      'invalid_argument: status must be one of starting, running, stopping, stopped, error');
  end if;
  v_lease := private.lock_lease(v_machine.user_id);
  select * into v_machine from public.cloud_machines m where m.id = v_machine.id for update;
  v_now := clock_timestamp();
  update public.cloud_machines m
     set last_health_check = v_now,
         status = coalesce(p_status, m.status),
         started_at = case when p_status = 'starting' and m.status is distinct from 'starting'
                           then v_now else m.started_at end,
         stopped_at = case when p_status = 'stopped' then v_now
                           when p_status = 'starting' then null
                           else m.stopped_at end,
         error_message = case when p_status = 'error' then left(p_error_message, 2000)
                              when p_status is not null then null
                              else m.error_message end
   where m.id = v_machine.id
   returning * into v_machine;
  if p_status in ('stopped', 'error') and v_lease.holder_kind = 'cloud'
     and v_lease.machine_id = v_machine.id and v_lease.expires_at > v_now then
    v_lease := private.end_lease(v_lease, v_now, 'machine_stopped');
  end if;
  return private.status_json(v_machine.user_id, v_machine, v_lease, 'cloud', v_machine.id::text,
                             v_now);
end;
$$;

-- Claim or renew the cloud lease. Granted only to a machine that is 'starting' or 'running' with a
-- fresh heartbeat, and only once no live browser lease remains.
create or replace function public.claim_cloud_lease() returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_machine public.cloud_machines := private.require_machine();
  v_lease public.execution_leases;
  v_now timestamptz;
  v_reason text;
  v_retry double precision;
begin
  v_lease := private.lock_lease(v_machine.user_id);
  select * into v_machine from public.cloud_machines m where m.id = v_machine.id for update;
  v_now := clock_timestamp();
  if v_machine.status not in ('starting', 'running') then
    v_reason := 'machine_not_active';
  elsif v_machine.last_health_check is null
        or v_machine.last_health_check <= v_now - private.heartbeat_fresh_for() then
    v_reason := 'heartbeat_stale';
  elsif v_lease.holder_kind = 'local' and v_lease.expires_at > v_now then
    v_reason := 'local_lease_live';
    v_retry := private.seconds(v_lease.expires_at - v_now);
  end if;
  if v_reason is null then
    v_lease := private.grant_lease(v_lease, 'cloud', v_machine.id::text, v_machine.id, v_now);
  end if;
  return private.status_json(v_machine.user_id, v_machine, v_lease, 'cloud', v_machine.id::text,
                             v_now)
    || jsonb_build_object('granted', v_reason is null, 'reason', v_reason,
                          'retry_in_seconds', v_retry);
end;
$$;

create or replace function public.release_cloud_lease() returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_machine public.cloud_machines := private.require_machine();
  v_lease public.execution_leases;
  v_now timestamptz;
  v_released boolean := false;
begin
  v_lease := private.lock_lease(v_machine.user_id);
  v_now := clock_timestamp();
  if v_lease.holder_kind = 'cloud' and v_lease.machine_id = v_machine.id
     and v_lease.expires_at > v_now then
    v_lease := private.end_lease(v_lease, v_now, 'released');
    v_released := true;
  end if;
  return private.status_json(v_machine.user_id, v_machine, v_lease, 'cloud', v_machine.id::text,
                             v_now)
    || jsonb_build_object('released', v_released);
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- The write guard on signals
-- ---------------------------------------------------------------------------------------------

-- Fences every insert and update that comes through the API roles, in the writing transaction.
-- Insert: the row's source and machine must be the token's; its epoch must be one this kind of
-- writer (and, for the cloud, this machine) was granted; and the candle must have closed inside that
-- epoch's window. A signal generated under a lease its writer held is accepted even after the lease
-- moved on (the window is history); the unique signal key absorbs any overlap.
-- Update: only the status may change, along the lifecycle, by the holder of the live lease.
-- Maintenance sessions that are not API roles (migrations, the database owner) are not fenced.
create or replace function private.guard_signal_write() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_machine uuid := private.jwt_machine_id();
  v_kind text := case when private.jwt_machine_id() is null then 'local' else 'cloud' end;
  v_now timestamptz := clock_timestamp();
  v_epoch public.lease_epochs;
  v_lease public.execution_leases;
  v_close timestamptz;
begin
  -- PostgREST logs in as `authenticator` and switches to an API role; anything else is maintenance.
  if session_user <> 'authenticator'
     and coalesce(current_setting('role', true), '') not in ('anon', 'authenticated', 'service_role')
  then
    return new;
  end if;

  if tg_op = 'INSERT' then
    if new.source is distinct from v_kind then
      perform private.raise_guard('SG004', format(
        'source_mismatch: a %s token writes source=%L signals, not %L', v_kind, v_kind, new.source));
    end if;
    if new.machine_id is distinct from v_machine then
      perform private.raise_guard('SG004', case v_kind
        when 'cloud' then 'source_mismatch: a machine token writes signals for its own machine_id only'
        else 'source_mismatch: a browser signal has no machine_id' end);
    end if;
    select * into v_epoch from public.lease_epochs e
     where e.user_id = new.user_id and e.epoch = new.epoch;
    if v_epoch.epoch is null or v_epoch.holder_kind <> v_kind
       or (v_kind = 'cloud' and v_epoch.machine_id is distinct from v_machine) then
      perform private.raise_guard('SG001', format(
        'lease_not_held: epoch %s was never held by this %s writer', new.epoch, v_kind));
    end if;
    v_close := new.candle_open_time + private.interval_length(new."interval");
    if v_close > v_now + private.close_skew() then
      perform private.raise_guard('SG003', format(
        'candle_not_closed: the %s candle opening %s closes at %s, after the database time %s',
        new."interval", new.candle_open_time, v_close, v_now));
    end if;
    if v_close < v_epoch.started_at or v_close >= v_epoch.valid_until then
      perform private.raise_guard('SG002', format(
        'outside_lease_window: the candle closed at %s, outside epoch %s''s lease [%s, %s)',
        v_close, new.epoch, v_epoch.started_at, v_epoch.valid_until));
    end if;
    new.updated_epoch := new.epoch;
    return new;
  end if;

  -- UPDATE
  if (new.id, new.trader_id, new.user_id, new.symbol, new."interval", new.candle_open_time,
      new.price, new.matched_conditions, new.source, new.machine_id, new.epoch, new.created_at)
     is distinct from
     (old.id, old.trader_id, old.user_id, old.symbol, old."interval", old.candle_open_time,
      old.price, old.matched_conditions, old.source, old.machine_id, old.epoch, old.created_at)
  then
    perform private.raise_guard('SG005',
      'immutable_field: only status (with updated_epoch) may change on a signal');
  end if;
  if new.status is distinct from old.status and not (
       (old.status = 'new' and new.status in ('active', 'expired', 'closed'))
       or (old.status = 'active' and new.status in ('expired', 'closed'))) then
    perform private.raise_guard('SG006', format(
      'invalid_transition: a signal cannot go from %s to %s', old.status, new.status));
  end if;
  select * into v_lease from public.execution_leases l where l.user_id = new.user_id;
  if v_lease.holder_kind is distinct from v_kind
     or v_lease.expires_at <= v_now
     or new.updated_epoch is distinct from v_lease.epoch
     or (v_kind = 'cloud' and v_lease.machine_id is distinct from v_machine) then
    perform private.raise_guard('SG001', format(
      'lease_not_held: changing a signal needs the live lease; updated_epoch %s is not it',
      coalesce(new.updated_epoch::text, 'null')));
  end if;
  return new;
end;
$$;

create trigger signals_guard_write before insert or update on public.signals
  for each row execute function private.guard_signal_write();

-- Write policies: a browser token writes local signals, a machine token its machine's cloud signals,
-- both for the token's user only. The trigger above checks the lease.
create policy signals_insert_own on public.signals
  for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and (
      (source = 'local' and machine_id is null and (select private.jwt_machine_id()) is null)
      or (source = 'cloud' and machine_id = (select private.jwt_machine_id()))
    )
  );
create policy signals_update_own on public.signals
  for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

-- Batch upsert with one outcome per signal: 'inserted', 'duplicate' (the key already exists), or
-- 'rejected' with the guard's code and message. One bad row does not sink the batch; the caller's
-- outbox acknowledges, retries or drops each entry by its outcome. Runs as the caller, so row level
-- security and the write guard apply exactly as to a direct insert. Input: a JSON array of objects
-- with trader_id, symbol, interval, candle_open_time (ISO 8601 or epoch ms), price,
-- matched_conditions, source, machine_id, epoch (user_id is always the caller); at most 500 per call.
--
-- The whole batch is first tried as one statement (the common case: every row is good); only if that
-- fails is it replayed row by row, each in its own subtransaction, to find which rows are refused.
create or replace function private.signal_open_time(p_item jsonb) returns timestamptz
language sql immutable
set search_path = ''
as $$
  select case jsonb_typeof(p_item -> 'candle_open_time')
           when 'number' then to_timestamp((p_item ->> 'candle_open_time')::numeric / 1000)
           else (p_item ->> 'candle_open_time')::timestamptz end
$$;

create or replace function public.write_signals(p_signals jsonb) returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_uid uuid := private.require_user();
  v_item jsonb;
  v_results jsonb[] := '{}';
  v_out jsonb;
  v_key text;
  v_id uuid;
  v_open timestamptz;
  v_state text;
  v_msg text;
  v_index integer := -1;
begin
  if p_signals is null or jsonb_typeof(p_signals) <> 'array' then
    perform private.raise_guard('SG009', 'invalid_argument: p_signals must be a JSON array');
  end if;
  if jsonb_array_length(p_signals) > 500 then
    perform private.raise_guard('SG009', 'invalid_argument: at most 500 signals per call');
  end if;

  -- Fast path: one statement for the whole batch.
  begin
    with input as (
      select (e.ord - 1)::integer as idx, e.value as item,
             private.signal_open_time(e.value) as open_time
        from jsonb_array_elements(p_signals) with ordinality as e(value, ord)
    ), keyed as (
      select i.idx, i.item, i.open_time,
             private.signal_key(v_uid, (i.item ->> 'trader_id')::uuid, i.item ->> 'symbol',
                                i.item ->> 'interval', i.open_time) as key
        from input i
    ), ranked as (
      select k.*, row_number() over (partition by k.key order by k.idx) as nth from keyed k
    ), ins as (
      insert into public.signals as s
        (trader_id, user_id, symbol, "interval", candle_open_time, price, matched_conditions,
         status, source, machine_id, epoch)
      select (r.item ->> 'trader_id')::uuid, v_uid, r.item ->> 'symbol', r.item ->> 'interval',
             r.open_time, (r.item ->> 'price')::numeric,
             coalesce(array(select jsonb_array_elements_text(r.item -> 'matched_conditions')), '{}'),
             coalesce(r.item ->> 'status', 'new'), r.item ->> 'source',
             (r.item ->> 'machine_id')::uuid, (r.item ->> 'epoch')::bigint
        from ranked r
       order by r.idx
      on conflict (signal_key) do nothing
      returning s.signal_key, s.id
    )
    select jsonb_agg(
             case when ins.signal_key is not null and r.nth = 1
                  then jsonb_build_object('index', r.idx, 'signal_key', r.key, 'id', ins.id,
                                          'outcome', 'inserted')
                  else jsonb_build_object('index', r.idx, 'signal_key', r.key,
                                          'outcome', 'duplicate') end
             order by r.idx)
      into v_out
      from ranked r left join ins on ins.signal_key = r.key;
    return coalesce(v_out, '[]'::jsonb);
  exception when others then
    null;  -- some row is refused or malformed: find which, row by row
  end;

  for v_item in select value from jsonb_array_elements(p_signals) loop
    v_index := v_index + 1;
    v_key := null;
    begin
      if jsonb_typeof(v_item) <> 'object' then
        perform private.raise_guard('SG009', 'invalid_argument: each signal must be an object');
      end if;
      v_open := private.signal_open_time(v_item);
      insert into public.signals as s
        (trader_id, user_id, symbol, "interval", candle_open_time, price, matched_conditions,
         status, source, machine_id, epoch)
      values (
        (v_item ->> 'trader_id')::uuid,
        v_uid,
        v_item ->> 'symbol',
        v_item ->> 'interval',
        v_open,
        (v_item ->> 'price')::numeric,
        coalesce(array(select jsonb_array_elements_text(v_item -> 'matched_conditions')), '{}'),
        coalesce(v_item ->> 'status', 'new'),
        v_item ->> 'source',
        (v_item ->> 'machine_id')::uuid,
        (v_item ->> 'epoch')::bigint
      )
      on conflict (signal_key) do nothing
      returning s.signal_key, s.id into v_key, v_id;
      if v_key is null then
        v_results := v_results || jsonb_build_object(
          'index', v_index,
          'signal_key', private.signal_key(v_uid, (v_item ->> 'trader_id')::uuid,
                                           v_item ->> 'symbol', v_item ->> 'interval', v_open),
          'outcome', 'duplicate');
      else
        v_results := v_results || jsonb_build_object(
          'index', v_index, 'signal_key', v_key, 'id', v_id, 'outcome', 'inserted');
      end if;
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
      v_results := v_results || jsonb_build_object(
        'index', v_index, 'outcome', 'rejected', 'code', v_state, 'message', v_msg);
    end;
  end loop;
  return to_jsonb(v_results);
end;
$$;

-- Only signed-in callers reach the RPCs; the anonymous key reaches none of them.
revoke execute on function
  public.execution_status(text),
  public.claim_local_lease(text, boolean),
  public.release_local_lease(text),
  public.machine_heartbeat(text, text),
  public.claim_cloud_lease(),
  public.release_cloud_lease(),
  public.write_signals(jsonb)
  from public, anon;
grant execute on function
  public.execution_status(text),
  public.claim_local_lease(text, boolean),
  public.release_local_lease(text),
  public.machine_heartbeat(text, text),
  public.claim_cloud_lease(),
  public.release_cloud_lease(),
  public.write_signals(jsonb)
  to authenticated, service_role;
-- write_signals runs as the caller; the helper it uses to require a signed-in user must be callable.
grant execute on function private.require_user(), private.raise_guard(text, text, text),
  private.signal_key(uuid, uuid, text, text, timestamptz), private.signal_open_time(jsonb)
  to authenticated, service_role;

select private.register_component('execution_lease', 1, '20251003060300_execution_lease');
