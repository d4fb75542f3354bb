-- Writing signals: the write guard that fences every insert and update on signals, and the two RPCs
-- that write them in batches with one outcome per item (write_signals for inserts,
-- update_signal_statuses for status changes).

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

create trigger signals_guard_write before insert or update on public.signals
  for each row execute function private.guard_signal_write();

-- A candle's open time in write_signals' input: ISO 8601 text or epoch milliseconds.
create or replace function private.signal_open_time(p_item jsonb) returns timestamptz
language sql immutable
set search_path = ''
as $$
  select case jsonb_typeof(p_item -> 'candle_open_time')
           when 'number' then to_timestamp((p_item ->> 'candle_open_time')::numeric / 1000)
           else (p_item ->> 'candle_open_time')::timestamptz end
$$;

-- Batch upsert with one outcome per signal: 'inserted', 'duplicate' (the key already exists), or
-- 'rejected' with the guard's code and message. One bad row does not sink the batch; the caller's
-- outbox acknowledges, retries or drops each entry by its outcome. Runs as the caller, so row level
-- security and the write guard apply exactly as to a direct insert. Input: a JSON array of objects
-- with trader_id, symbol, interval, candle_open_time (ISO 8601 or epoch ms), price,
-- matched_conditions, source, machine_id, epoch (user_id is always the caller); at most 500 per call.
--
-- The whole batch is first tried as one statement (the common case: every row is good); only if that
-- fails is it replayed row by row, each in its own subtransaction, to find which rows are refused.
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

-- ---------------------------------------------------------------------------------------------
-- Status changes in one call, with one outcome per change (as write_signals does for inserts)
-- ---------------------------------------------------------------------------------------------

-- The executor moves its signals' statuses (new -> active -> expired | closed). Every change gets its
-- own outcome and a refusal is an answer, not an error:
--   {"index": i, "signal_key": k, "outcome": "updated"}
--   {"index": i, "signal_key": k, "outcome": "rejected", "code": "SG00x" | "not_found" | SQLSTATE,
--    "message": "..."}
-- The write guard checks each update in the same transaction: the caller must hold the live lease and
-- name its epoch in updated_epoch, and the transition must be one of the lifecycle's. Row level
-- security limits the keys to the caller's own signals.
create or replace function public.update_signal_statuses(p_changes jsonb) returns jsonb
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
  v_done text;
  v_state text;
  v_msg text;
  v_index integer := -1;
begin
  if p_changes is null or jsonb_typeof(p_changes) <> 'array' then
    perform private.raise_guard('SG009', 'invalid_argument: p_changes must be a JSON array');
  end if;
  if jsonb_array_length(p_changes) > 500 then
    perform private.raise_guard('SG009', 'invalid_argument: at most 500 changes per call');
  end if;

  -- Fast path: one statement, when every change is well-formed and names a different signal (one
  -- UPDATE changes a row once, so two steps of one signal go the slow way, in order).
  if not exists (
       select 1 from jsonb_array_elements(p_changes) e(value)
        where jsonb_typeof(e.value) <> 'object'
           or jsonb_typeof(e.value -> 'signal_key') is distinct from 'string'
           or jsonb_typeof(e.value -> 'status') is distinct from 'string'
           or jsonb_typeof(e.value -> 'updated_epoch') is distinct from 'number')
     and (select count(distinct e.value ->> 'signal_key') = count(*)
            from jsonb_array_elements(p_changes) e(value)) then
    begin
      with input as (
        select (e.ord - 1)::integer as idx, e.value ->> 'signal_key' as key, e.value ->> 'status' as status,
               (e.value ->> 'updated_epoch')::bigint as epoch
          from jsonb_array_elements(p_changes) with ordinality as e(value, ord)
      ), upd as (
        update public.signals s
           set status = i.status, updated_epoch = i.epoch
          from input i
         where s.signal_key = i.key and s.user_id = v_uid
        returning s.signal_key
      )
      select jsonb_agg(
               case when upd.signal_key is not null
                    then jsonb_build_object('index', i.idx, 'signal_key', i.key, 'outcome', 'updated')
                    else jsonb_build_object('index', i.idx, 'signal_key', i.key, 'outcome', 'rejected',
                                            'code', 'not_found', 'message', 'no such signal') end
               order by i.idx)
        into v_out
        from input i left join upd on upd.signal_key = i.key;
      return coalesce(v_out, '[]'::jsonb);
    exception when others then
      null;  -- some change is refused: find which, one by one
    end;
  end if;

  for v_item in select value from jsonb_array_elements(p_changes) loop
    v_index := v_index + 1;
    v_key := null;
    begin
      if jsonb_typeof(v_item) <> 'object'
         or jsonb_typeof(v_item -> 'signal_key') is distinct from 'string'
         or jsonb_typeof(v_item -> 'status') is distinct from 'string'
         or jsonb_typeof(v_item -> 'updated_epoch') is distinct from 'number' then
        perform private.raise_guard('SG009',
          'invalid_argument: each change is {signal_key: text, status: text, updated_epoch: number}');
      end if;
      v_key := v_item ->> 'signal_key';
      v_done := null;
      update public.signals s
         set status = v_item ->> 'status', updated_epoch = (v_item ->> 'updated_epoch')::bigint
       where s.signal_key = v_key and s.user_id = v_uid
      returning s.signal_key into v_done;
      if v_done is null then
        v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
          'outcome', 'rejected', 'code', 'not_found', 'message', 'no such signal');
      else
        v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
          'outcome', 'updated');
      end if;
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
      v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
        'outcome', 'rejected', 'code', v_state, 'message', v_msg);
    end;
  end loop;
  return to_jsonb(v_results);
end;
$$;
comment on function public.update_signal_statuses(jsonb) is
  'Move signals'' statuses under the caller''s lease: one outcome per change (updated | rejected)';
