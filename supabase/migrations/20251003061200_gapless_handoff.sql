-- signalguard: gapless handoff. Every candle that closes has one executor, not "at most one".
--
-- Until now a signal was accepted only if its candle closed inside the window [started_at,
-- valid_until) of its writer's epoch, so the candles that closed between one holder's end and the
-- next holder's grant (the 30 s grace after a clean cloud stop, an expired tab's lease) were nobody's
-- and were never evaluated. Here:
--
--   1. The rule (private.guard_signal_write). A signal of epoch E may also have its candle close in
--      the gap [gap_start, E.started_at), where gap_start is the end of epoch E-1's window or the
--      catch-up horizon before E began, whichever is later (private.gap_start). The horizon is
--      2 hours, and at most 60 candles of the signal's interval, the executor's catch-up limit
--      (private.catch_up_horizon). Windows and gaps are disjoint, so two holders never both sign one
--      candle (the argument is at the guard). A refusal says why: after the writer's window (SG002,
--      as before), inside another epoch's window (SG002, naming it), or before the gap's start, that
--      is before the epoch before ended or beyond the horizon (SG011, new: a verdict that does not
--      mean the writer lost the lease, so its outbox drops the signal with the reason and it goes on
--      generating).
--   2. signals.caught_up: set by the guard when the candle closed in the gap (found late). Rows written
--      before this migration keep false. Readable like every other column (the table's grants).
--   3. The lease answer of every lease RPC (private.lease_json) gains signs_from: the gap's start for
--      the lease's epoch, with the 2-hour bound; null without a holder.
--   4. A release says where its holder stopped evaluating (release_local_lease and
--      release_cloud_lease take p_evaluated_until, and claim_local_lease for the renewal that yields
--      to the machine): the window ends there when that is before the release, so the candles that
--      closed after it are the next holder's gap, not nobody's.
--
-- Registered as the optional component gapless_handoff: a client without it signs from its own
-- window as before.

-- ---------------------------------------------------------------------------------------------
-- The horizon and the gap
-- ---------------------------------------------------------------------------------------------

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

comment on table public.lease_epochs is
  'Every epoch granted and its validity window; a signal is accepted if its candle closed inside the window of the epoch its writer held, or in the gap before it that no earlier epoch covers (private.gap_start)';

-- The helpers run as their callers' owner (the security definer guard and lease RPCs) only.
revoke execute on function
  private.catch_up_limit(),
  private.catch_up_horizon(text),
  private.gap_start(uuid, bigint, timestamptz, interval)
  from public;

-- ---------------------------------------------------------------------------------------------
-- Signals found late
-- ---------------------------------------------------------------------------------------------

-- Every existing row gets false: it was signed inside its epoch's window.
alter table public.signals add column caught_up boolean not null default false;
comment on column public.signals.caught_up is
  'Set by the write guard: the candle closed in the gap before the epoch began, and the signal was found by the new holder''s catch-up';

-- ---------------------------------------------------------------------------------------------
-- The write guard
-- ---------------------------------------------------------------------------------------------

-- Fences every insert and update that comes through the API roles, in the writing transaction.
-- Insert, in this order: who is writing (a row naming any user but the caller is refused first, with
-- one error and no lease table read, so nothing about another account's lease leaks); what the
-- database owns (id, created_at, updated_at; a signal starts new); the bounds, naming the field; then
-- the lease: the row's source and machine must be the token's, its epoch one this kind of writer
-- (and, for the cloud, this machine) was granted, and the candle must have closed inside that
-- epoch's window or in the gap before it (below). A signal generated under a lease its writer held is
-- accepted even after the lease moved on (the window and the gap are history); the unique signal key
-- absorbs any overlap. All in one trigger: a second trigger on the hottest write would cost more than
-- the checks.
--
-- The gap: the candles that closed after the epoch before ended and before this epoch began were
-- nobody's to sign; the new holder signs them, found late (caught_up), back to the catch-up horizon
-- (private.gap_start, private.catch_up_horizon). Two holders never both sign one candle: with s(E)
-- and v(E) the start and end of epoch E's window, a new epoch is granted only once the one before
-- has ended or expired, under the lease row lock and by the database clock, so
--   s(1) <= v(1) <= s(2) <= v(2) <= s(3) <= ...
-- and E's window [s(E), v(E)) and E's gap, inside [v(E-1), s(E)), each lie between two neighbours of
-- that sequence: every candle close is in one epoch's window or gap at most. (The epoch history of
-- tests/integration/test_concurrency.py checks the sequence under racing claims.) The check needs no
-- lock: the gap is fixed when the epoch is granted (see private.gap_start), and a later grant cannot
-- reach back into it, since the next epoch's gap starts where this epoch's window ends.
-- Refusals say why: the candle closed after the writer's window (SG002, as before), inside another
-- epoch's window (SG002, naming that epoch: its executor signs it), or before the gap's start, that
-- is before the epoch before ended or beyond the horizon (SG011: nobody may sign it any more, and
-- the writer has not lost the lease for it).
-- Update: only the status may change, along the lifecycle, by the holder of the live lease.
-- Maintenance sessions that are not API roles (migrations, the database owner) are not fenced.
create or replace function private.guard_signal_write() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_machine uuid := private.jwt_machine_id();
  v_kind text := case when v_machine is null then 'local' else 'cloud' end;
  v_now timestamptz := clock_timestamp();
  v_label text;
  v_epoch public.lease_epochs;
  v_other public.lease_epochs;
  v_lease public.execution_leases;
  v_close timestamptz;
  v_horizon interval;
  v_from timestamptz;
begin
  if not private.is_api_session() then
    return new;
  end if;

  if tg_op = 'INSERT' then
    -- Who is writing, before anything else: one answer for a row naming any other user, whether
    -- that user exists or holds a lease, and no lease table read to give it.
    if new.user_id is distinct from auth.uid() then
      raise exception using errcode = '42501',
        message = 'permission denied: a signal is written for the signed-in user only';
    end if;
    -- What the database owns: the row's id and times; every signal starts new.
    if new.status is distinct from 'new' then
      perform private.raise_guard('SG006',
        'invalid_transition: a signal is created with status new; update_signal_statuses moves it');
    end if;
    new.id := gen_random_uuid();
    new.created_at := now();
    new.updated_at := now();
    -- Bounds, with the field's name (the CHECK constraints would say less, and echo the row).
    if new.price is null or not private.is_amount(new.price) then
      perform private.raise_guard('SG009', 'invalid_argument: price must be ' || private.amount_rule());
    end if;
    if new.matched_conditions is null or cardinality(new.matched_conditions) > 32 then
      perform private.raise_guard('SG009',
        'invalid_argument: matched_conditions must be at most 32 labels of 1 to 200 characters');
    end if;
    foreach v_label in array new.matched_conditions loop
      if v_label is null or char_length(v_label) not between 1 and 200 then
        perform private.raise_guard('SG009',
          'invalid_argument: matched_conditions must be at most 32 labels of 1 to 200 characters');
      end if;
    end loop;

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
    if v_close >= v_epoch.valid_until then
      perform private.raise_guard('SG002', format(
        'outside_lease_window: the candle closed at %s, outside epoch %s''s lease [%s, %s)',
        v_close, new.epoch, v_epoch.started_at, v_epoch.valid_until));
    end if;
    -- Before the window: the gap's, if it closed after the gap's start.
    new.caught_up := coalesce(v_close < v_epoch.started_at, false);
    if new.caught_up then
      v_horizon := private.catch_up_horizon(new."interval");
      v_from := private.gap_start(new.user_id, new.epoch, v_epoch.started_at, v_horizon);
      if v_close < v_from then
        -- Refused; say whose candle it is, or which bound of the gap it missed.
        select * into v_other from public.lease_epochs e
         where e.user_id = new.user_id and e.epoch < new.epoch and e.started_at <= v_close
         order by e.epoch desc limit 1;
        if v_other.valid_until > v_close then
          perform private.raise_guard('SG002', format(
            'outside_lease_window: the candle closed at %s, inside epoch %s''s lease [%s, %s): '
            'that epoch''s to sign, not epoch %s''s (which began at %s)',
            v_close, v_other.epoch, v_other.started_at, v_other.valid_until, new.epoch,
            v_epoch.started_at));
        end if;
        if v_from > v_epoch.started_at - v_horizon then
          perform private.raise_guard('SG011', format(
            'before_catch_up: the candle closed at %s, before epoch %s''s lease ended at %s: '
            'epoch %s signs the candles that closed from then until it began at %s',
            v_close, new.epoch - 1, v_from, new.epoch, v_epoch.started_at));
        end if;
        perform private.raise_guard('SG011', format(
          'before_catch_up: the %s candle closed at %s, beyond the catch-up horizon of %s '
          '(2 hours, at most 60 candles) before epoch %s began at %s: it signs from %s',
          new."interval", v_close, v_horizon, new.epoch, v_epoch.started_at, v_from));
      end if;
    end if;
    new.updated_epoch := new.epoch;
    return new;
  end if;

  -- UPDATE
  if (new.id, new.trader_id, new.user_id, new.symbol, new."interval", new.candle_open_time,
      new.price, new.matched_conditions, new.source, new.machine_id, new.epoch, new.created_at,
      new.caught_up)
     is distinct from
     (old.id, old.trader_id, old.user_id, old.symbol, old."interval", old.candle_open_time,
      old.price, old.matched_conditions, old.source, old.machine_id, old.epoch, old.created_at,
      old.caught_up)
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

-- ---------------------------------------------------------------------------------------------
-- A release says how far its holder evaluated
-- ---------------------------------------------------------------------------------------------

-- A holder that lets go stops evaluating before the release reaches the database: a tab closes 0.2 s
-- after its grant, before the kline of a candle that has just closed reaches it; a worker stops
-- generating, then drains its outbox for seconds, then releases. The candles that closed in between
-- lay inside its window, so nobody signed them: the next holder's gap starts where that window ends.
-- So a release may say where its holder stopped: p_evaluated_until, the close of the earliest candle
-- it has not evaluated on any of its streams (exchange time). The window then ends there when that is
-- before the release (never before the window's start, as before), and the candles after it fall in
-- the next holder's gap. Null (an older client, or a holder that knows no such candle) ends it at the
-- release, as before. A later time changes nothing: a window never grows.
drop function private.end_lease(public.execution_leases, timestamptz, text);
create function private.end_lease(
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

-- A renewal refused because the machine is ready gives the browser's lease up at once (yields): the
-- renewal says where the tab's evaluation stands too, and the window ends there.
-- Only the lease functions (security definer, as its owner) call it.
revoke execute on function
  private.end_lease(public.execution_leases, timestamptz, text, timestamptz) from public;

drop function public.claim_local_lease(text, boolean);
create function public.claim_local_lease(
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

drop function public.release_local_lease(text);
create function public.release_local_lease(
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

drop function public.release_cloud_lease();
create function public.release_cloud_lease(p_evaluated_until timestamptz default null) returns jsonb
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

revoke execute on function
  public.claim_local_lease(text, boolean, timestamptz),
  public.release_local_lease(text, timestamptz),
  public.release_cloud_lease(timestamptz)
  from public, anon;
grant execute on function
  public.claim_local_lease(text, boolean, timestamptz),
  public.release_local_lease(text, timestamptz),
  public.release_cloud_lease(timestamptz)
  to authenticated, service_role;

select private.register_component('gapless_handoff', 1, '20251003061200_gapless_handoff');
