-- Execution arbitration: for one user, only one side (a browser holder or the cloud machine)
-- generates signals and manages trades at a time. The database decides, with its own clock, and
-- checks every write against that decision in the same transaction (the fences: 40_signal_writes.sql
-- for signals, 50_trades.sql for trades).
--
-- Here:
--   public.execution_leases   one row per user: the current holder, its epoch and expiry
--   public.lease_epochs       history: every epoch ever granted and the window it was valid in
--   public.execution_status() the browser's 5 s poll: machine, health, lease, what the caller may do
--   public.claim_local_lease() / release_local_lease()         for browser holders
--   public.machine_heartbeat() / claim_cloud_lease() / release_cloud_lease()   for machine tokens
--   private.require_live_lease() / holds_live_lease()          the live-lease check of a write
--
-- Time rules (all by the database clock, clock_timestamp() taken after the lease row is locked):
--   healthy cloud        status = 'running' and last_health_check younger than 30 s
--   cloud's last sign    greatest(last_health_check, stopped_at)
--   grace                a browser may take a new lease only when that is at least 30 s old
--   starting             'starting'/'provisioning' younger than 30 s (status change or heartbeat)
--                        blocks browsers; older than that it is treated as dead
--   error takeover       'error' for at least 2 minutes, and the user confirms; clears the error
--   lease length         30 s, renewed by the holder (browsers poll every 5 s, machines every 10 s)
--   catch-up horizon     a new holder also signs the candles that closed in the gap before its grant
--                        that no earlier epoch covers, back to 2 hours (and 60 candles) before it
--                        (private.gap_start; the write guard in 40_signal_writes.sql)

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
-- the exchange and the database); beyond it the signal is for a candle that has not closed. Inlined
-- into the guards like the helpers in 00_private.sql.
create or replace function private.close_skew() returns interval
language sql immutable parallel safe
as $$ select '5 seconds'::pg_catalog.interval $$;
-- How far back before its epoch began a holder may sign the candles that no earlier epoch covers (the
-- gap, private.gap_start): 2 hours, and for a signal no more than 60 of its candles, the executor's
-- catch-up limit (CATCH_UP_CANDLES in signalguard.core.catchup), which only 1s and 1m candles reach
-- within 2 hours. A month counts as 30 days when intervals are compared, so 1M candles, like every
-- interval from 2m up, are bound by the 2 hours alone. Inlined into the guard like close_skew.
create or replace function private.catch_up_limit() returns interval
language sql immutable parallel safe
as $$ select '2 hours'::pg_catalog.interval $$;
create or replace function private.catch_up_horizon(p_interval text) returns interval
language sql immutable parallel safe
as $$
  select least(private.catch_up_limit(),
               60 operator(pg_catalog.*) private.interval_length(p_interval))
$$;

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
  ),
  -- Written only by the lease functions, which check the id's shape: a browser tab's 8-64
  -- characters, or a machine's uuid.
  constraint execution_leases_holder_id_shape
    check (holder_id is null or holder_id ~ '^[A-Za-z0-9_-]{8,64}$')
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
  constraint lease_epochs_check check (valid_until >= started_at),
  constraint lease_epochs_holder_id_shape check (holder_id ~ '^[A-Za-z0-9_-]{8,64}$')
);
comment on table public.lease_epochs is
  'Every epoch granted and its validity window; a signal is accepted if its candle closed inside the window of the epoch its writer held, or in the gap before it that no earlier epoch covers (private.gap_start)';

-- Read-only for their owner (the UI shows them; see 90_privileges.sql); they change only through the
-- functions below.
alter table public.execution_leases enable row level security;
alter table public.lease_epochs enable row level security;

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------

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

-- End the current lease now (release, yield or stop); its epoch's window closes at p_now, or earlier
-- at p_evaluated_until when a releasing holder says it evaluated nothing from then on (the close of the
-- earliest candle it has not evaluated on any of its streams): the candles after it then fall in the
-- next holder's gap. Never before the window's start; a window never grows.
create or replace function private.end_lease(
  p_lease public.execution_leases, p_now timestamptz, p_reason text,
  p_evaluated_until timestamptz default null
) returns public.execution_leases
language plpgsql
set search_path = ''
as $$
declare
  v_lease public.execution_leases;
begin
  update public.lease_epochs e
     set valid_until = least(e.valid_until,
                             greatest(least(p_now, coalesce(p_evaluated_until, p_now)), e.started_at)),
         ended_reason = p_reason
   where e.user_id = p_lease.user_id and e.epoch = p_lease.epoch;
  update public.execution_leases l
     set holder_kind = null, holder_id = null, machine_id = null, expires_at = null,
         updated_at = p_now
   where l.user_id = p_lease.user_id
   returning * into v_lease;
  return v_lease;
end;
$$;

-- The start of epoch p_epoch's gap: the candles that closed from here up to the epoch's start
-- p_started_at are the epoch's to sign, besides those of its own window. It is the end of the epoch
-- before (its window's valid_until) or p_horizon before the start, whichever is later; the first
-- epoch of a user has only the horizon. Fixed once the epoch is granted: its start never changes,
-- and the epoch before it has ended or expired by then and is never written again (renewals and
-- ends touch only the current epoch, and the grant of the next one is made under the lease row
-- lock, after them). A new holder therefore learns it once, from its grant, and the write guard
-- reads only rows that no longer change.
create or replace function private.gap_start(
  p_user_id uuid, p_epoch bigint, p_started_at timestamptz, p_horizon interval
) returns timestamptz
language sql stable
set search_path = ''
as $$
  select greatest(
    (select e.valid_until from public.lease_epochs e
      where e.user_id = p_user_id and e.epoch = p_epoch - 1),
    p_started_at - p_horizon)
$$;

-- signs_from: the earliest candle close the holder of the lease's epoch may sign, the start of its gap
-- with the 2-hour bound (per signal the bound is also 60 candles, which the executor's catch-up keeps
-- to itself); null without a holder.
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
                               then greatest(private.seconds(p_lease.expires_at - p_now), 0) end,
    'signs_from', case when p_lease.holder_kind is not null
                       then private.gap_start(p_lease.user_id, p_lease.epoch, p_lease.acquired_at,
                                              private.catch_up_limit()) end
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
-- it to expire; p_evaluated_until (where the holder's evaluation stands, see private.end_lease) then
-- ends its window there, so the candles after it are the machine's gap.
create or replace function public.claim_local_lease(
  p_holder_id text, p_confirm_takeover boolean default false, p_evaluated_until timestamptz default null
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
    v_lease := private.end_lease(v_lease, v_now, 'yielded_to_cloud', p_evaluated_until);
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

-- p_evaluated_until: see private.end_lease (null: the window ends at the release).
create or replace function public.release_local_lease(
  p_holder_id text, p_evaluated_until timestamptz default null
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
  v_released boolean := false;
begin
  perform private.check_holder_id(p_holder_id);
  v_lease := private.lock_lease(v_uid);
  v_now := clock_timestamp();
  if v_lease.holder_kind = 'local' and v_lease.holder_id = p_holder_id
     and v_lease.expires_at > v_now then
    v_lease := private.end_lease(v_lease, v_now, 'released', p_evaluated_until);
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

-- p_evaluated_until: see private.end_lease (null: the window ends at the release).
create or replace function public.release_cloud_lease(p_evaluated_until timestamptz default null)
returns jsonb
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
    v_lease := private.end_lease(v_lease, v_now, 'released', p_evaluated_until);
    v_released := true;
  end if;
  return private.status_json(v_machine.user_id, v_machine, v_lease, 'cloud', v_machine.id::text,
                             v_now)
    || jsonb_build_object('released', v_released);
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- The live lease, as a write checks it
-- ---------------------------------------------------------------------------------------------

-- The caller must hold the user's live lease under p_epoch: its kind ('cloud' for a machine token,
-- else 'local'), its machine for the cloud, not expired by the database clock. The lease row is
-- locked FOR SHARE until the writing transaction ends, so no grant slips in between check and commit.
create or replace function private.require_live_lease(p_user_id uuid, p_epoch bigint, p_action text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_machine uuid := private.jwt_machine_id();
  v_kind text := case when private.jwt_machine_id() is null then 'local' else 'cloud' end;
  v_lease public.execution_leases;
begin
  select * into v_lease from public.execution_leases l where l.user_id = p_user_id for share;
  if v_lease.holder_kind is distinct from v_kind
     or v_lease.expires_at is null
     or v_lease.expires_at <= clock_timestamp()
     or p_epoch is distinct from v_lease.epoch
     or (v_kind = 'cloud' and v_lease.machine_id is distinct from v_machine) then
    perform private.raise_guard('SG001', format(
      'lease_not_held: %s a trade needs the live lease of this %s writer; epoch %s is not it',
      p_action, v_kind, coalesce(p_epoch::text, 'null')),
      'Re-poll the execution status; the holder of the live lease manages the trades.');
  end if;
end;
$$;

-- Whether the caller holds the user's live lease under p_epoch: the same fence as every write
-- (private.require_live_lease), as a yes/no for a caller that answers instead of raising.
create or replace function private.holds_live_lease(p_user_id uuid, p_epoch bigint) returns boolean
language sql stable
set search_path = ''
as $$
  select exists (
    select 1 from public.execution_leases l
     where l.user_id = p_user_id
       and l.holder_kind = case when private.jwt_machine_id() is null then 'local' else 'cloud' end
       and l.expires_at > clock_timestamp()
       and l.epoch = p_epoch
       and (private.jwt_machine_id() is null or l.machine_id = private.jwt_machine_id()));
$$;
