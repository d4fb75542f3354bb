-- What a client may not decide, and input no row may hold: judged before any lease logic runs.
--
-- Found by probing the API with the tokens of three users and two machines:
--   1. The signal write guard checked the lease before it checked who was writing, so a row naming
--      another user's user_id answered SG001 or SG002 (with the window's times) depending on that
--      user's lease: a leak of whether they hold one and which epochs were theirs. Now a row naming
--      any user but the caller is refused first, with one error (42501), one message and the same
--      work whether that user exists, holds a lease or not.
--   2. A direct POST kept the client's id, created_at, status and updated_epoch; the summaries count
--      by created_at, so a client could rewrite history. The database sets them now.
--   3. matched_conditions took 32 labels of 200 kB each, and a price of 100,001 digits was stored
--      (and then broke Python's json.loads on the way back). Every text and JSON column has a size
--      limit, every price and quantity a sane range; write_signals and write_trades refuse such an
--      item with one clear outcome and keep the rest of the batch.
--   4. A trade could be closed with exit_time in 2099. Exit times lie between the entry (the signal
--      candle's close) and the database clock.
--   5. authenticated (and the other API roles) held TRUNCATE, REFERENCES and TRIGGER on every table,
--      and DELETE where no policy uses it. Each role keeps only what a policy or RPC needs.
--
-- How: for signals, the write guard itself checks the owner, sets what the database owns and checks
-- the bounds before its lease logic (one trigger: the hottest write pays no second trigger call). For
-- trades and traders, a BEFORE trigger named to fire before the guard (PostgreSQL fires a table's
-- triggers of one kind in name order: *_api_input < *_guard_write < *_touch_updated_at). The rules on
-- values live in functions used by both the triggers (which name the field in a plain SG009 message)
-- and CHECK constraints (the backstop for every session, maintenance included).
--
-- What it costs: `python -m bench.guard_cost` measures the guard per signal write against the
-- guard before this migration, in the same run; the helpers the guard calls on every row are now
-- inlined by the planner, so the guard costs less than before, not more.

-- ---------------------------------------------------------------------------------------------
-- Shared helpers
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

-- Three helpers of earlier migrations that every signal write calls (in the guard, the CHECK
-- constraints and row level security), redefined the same way so the planner inlines them: the same
-- results, without a function call each.
create or replace function private.jwt_machine_id() returns uuid
language sql stable
as $$
  select nullif(auth.jwt() operator(pg_catalog.->>) 'machine_id', '')::pg_catalog.uuid
$$;

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

create or replace function private.close_skew() returns interval
language sql immutable parallel safe
as $$ select '5 seconds'::pg_catalog.interval $$;

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

grant execute on function private.is_api_session(), private.is_amount(numeric),
  private.amount_rule(), private.labels_fit(text[])
  to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Bounds on every stored value (CHECK constraints: every session, every path)
-- ---------------------------------------------------------------------------------------------

alter table public.signals drop constraint signals_price_finite;
alter table public.signals add constraint signals_price_amount check (private.is_amount(price));
alter table public.signals add constraint signals_matched_conditions_fit
  check (private.labels_fit(matched_conditions));
-- Generated from bounded parts (two uuids, a symbol of 20, an interval, 13 digits): at most 112.
alter table public.signals add constraint signals_signal_key_length
  check (char_length(signal_key) <= 200);

alter table public.trades drop constraint trades_numbers_finite;
alter table public.trades add constraint trades_amounts check (
  private.is_amount(size)
  and private.is_amount(entry_price)
  and (take_profit_price is null or private.is_amount(take_profit_price))
  and (stop_loss_price is null or private.is_amount(stop_loss_price))
  and (exit_price is null or private.is_amount(exit_price))
);
-- Copied from the trade's signal by the guard, bounded there; bounded here too for every path.
alter table public.trades add constraint trades_copied_fields check (
  char_length(signal_key) <= 200
  and symbol ~ '^[A-Z0-9]{2,20}$'
  and private.interval_length("interval") is not null
);

-- Lease holders are written only by the lease functions, which check the id's shape; the tables say
-- so too (a browser tab's 8-64 characters, or a machine's uuid).
alter table public.execution_leases add constraint execution_leases_holder_id_shape
  check (holder_id is null or holder_id ~ '^[A-Za-z0-9_-]{8,64}$');
alter table public.lease_epochs add constraint lease_epochs_holder_id_shape
  check (holder_id ~ '^[A-Za-z0-9_-]{8,64}$');

-- ---------------------------------------------------------------------------------------------
-- signals: the write guard, now the owner first, then what the database sets, then the bounds
-- ---------------------------------------------------------------------------------------------

-- The guard of the execution lease migration, with the checks above in front of its lease logic
-- (in the same trigger: a second trigger on the hottest write would cost more than the checks). The
-- lease logic below the new part is unchanged, but that it reads the token's claims once.
-- Updates are judged as before (only the status may change, under the live lease).
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
  v_lease public.execution_leases;
  v_close timestamptz;
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

-- ---------------------------------------------------------------------------------------------
-- trades: the same, and exit times that have happened
-- ---------------------------------------------------------------------------------------------

-- Insert through the API: the owner first (as the guard also does), id and timestamps are the
-- database's, amounts within bounds. Update through the API: amounts within bounds, and an exit time
-- no later than the database clock (plus the skew allowed for a candle's close): the guard already
-- refuses one before the entry, so the exit lies between the signal's candle and now.
create or replace function private.check_trade_input() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not private.is_api_session() then
    return new;
  end if;
  if tg_op = 'INSERT' then
    if new.user_id is distinct from auth.uid() then
      raise exception using errcode = '42501',
        message = 'permission denied: a trade is opened for the signed-in user only';
    end if;
    new.id := gen_random_uuid();
    new.created_at := now();
    new.updated_at := now();
  end if;
  if new.size is null or not private.is_amount(new.size) then
    perform private.raise_guard('SG009', 'invalid_argument: size must be ' || private.amount_rule());
  end if;
  if new.take_profit_price is not null and not private.is_amount(new.take_profit_price) then
    perform private.raise_guard('SG009',
      'invalid_argument: take_profit_price must be null or ' || private.amount_rule());
  end if;
  if new.stop_loss_price is not null and not private.is_amount(new.stop_loss_price) then
    perform private.raise_guard('SG009',
      'invalid_argument: stop_loss_price must be null or ' || private.amount_rule());
  end if;
  if new.exit_price is not null and not private.is_amount(new.exit_price) then
    perform private.raise_guard('SG009',
      'invalid_argument: exit_price must be ' || private.amount_rule());
  end if;
  if new.exit_time is not null and new.exit_time > clock_timestamp() + private.close_skew() then
    perform private.raise_guard('SG009', format(
      'invalid_argument: exit_time %s is after the database time %s: a trade exits at a candle '
      'that has closed', new.exit_time, clock_timestamp()));
  end if;
  return new;
end;
$$;

create trigger trades_api_input before insert or update on public.trades
  for each row execute function private.check_trade_input();

-- ---------------------------------------------------------------------------------------------
-- traders: created_at is the database's, and stays; name and definition within their bounds
-- ---------------------------------------------------------------------------------------------

-- The table's CHECK constraints bound the name and the definition; refused here first, a too-large
-- value gets a one-line answer naming the field instead of PostgreSQL's, which echoes the whole row.
create or replace function private.check_trader_input() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if not private.is_api_session() then
    return new;
  end if;
  if new.name is null or char_length(new.name) not between 1 and 100 then
    perform private.raise_guard('SG009', 'invalid_argument: a trader''s name is 1 to 100 characters');
  end if;
  if new.definition is null or jsonb_typeof(new.definition) <> 'object'
     or pg_column_size(new.definition) > 65536 then
    perform private.raise_guard('SG009',
      'invalid_argument: a trader''s definition is a JSON object of at most 64 kB');
  end if;
  if tg_op = 'INSERT' then
    new.created_at := now();
    new.updated_at := now();
  else
    new.id := old.id;
    new.user_id := old.user_id;
    new.created_at := old.created_at;
  end if;
  return new;
end;
$$;

create trigger traders_api_input before insert or update on public.traders
  for each row execute function private.check_trader_input();

-- ---------------------------------------------------------------------------------------------
-- Privileges: each API role keeps what a policy or an RPC needs
-- ---------------------------------------------------------------------------------------------

-- Nothing here truncates, references or triggers on the app's tables, and nothing deletes a signal,
-- a trade or a lease through the API (signals and trades are history; leases change only through the
-- lease functions). Users delete their own traders (a policy says which).
revoke truncate, references, trigger on public.traders, public.cloud_machines, public.signals,
  public.execution_leases, public.lease_epochs, public.trades
  from anon, authenticated, service_role;
revoke delete on public.signals, public.trades from authenticated;
-- Machines change only through the machine functions (security definer); leases and epochs only
-- through the lease functions.
revoke insert, update, delete on public.cloud_machines, public.execution_leases, public.lease_epochs
  from authenticated;
-- Functions: PostgreSQL grants EXECUTE to PUBLIC on every new function, and a per-schema default
-- cannot take a global default back (the first migration's attempt for `private` had no effect), so
-- any role with the schema's usage (authenticated, service_role) could call every helper here. Only
-- those granted by name stay callable: the ones
-- row level security, check constraints and the security-invoker RPCs call as the requesting role.
-- Trigger functions need no grant, and security-definer RPCs call the rest as their owner.
revoke execute on all functions in schema private from public;
-- The anonymous key reaches no table (as since the first migration); said again for completeness.
revoke all on public.traders, public.cloud_machines, public.signals, public.execution_leases,
  public.lease_epochs, public.trades from anon;

select private.register_component('write_hardening', 1, '20251003060800_write_hardening');
