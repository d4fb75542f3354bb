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
-- How: one BEFORE trigger per table, named to fire before the lease guard (PostgreSQL fires a table's
-- triggers of one kind in name order: *_api_input < *_guard_write < *_touch_updated_at). The rules on
-- values live in immutable functions used by both the triggers (which name the field in a plain
-- SG009 message) and CHECK constraints (the backstop for every session, maintenance included).

-- ---------------------------------------------------------------------------------------------
-- Shared helpers
-- ---------------------------------------------------------------------------------------------

-- Whether the current statement comes through the API: PostgREST logs in as `authenticator` and
-- switches to an API role. Anything else (migrations, the database owner, the local stack's seed)
-- is maintenance and is not judged as a client.
create or replace function private.is_api_session() returns boolean
language sql stable
set search_path = ''
as $$
  select session_user = 'authenticator'
      or coalesce(current_setting('role', true), '') in ('anon', 'authenticated', 'service_role')
$$;

-- A price or a quantity: finite, positive, below 10^15 and with at most 30 decimal places. Covers
-- every market (prices from 1e-8 to 1e9, quantities of any asset) and every float a client prints
-- (17 significant digits reach 24 decimals at 1e-8), and keeps a stored value short enough for any
-- JSON reader: the 100,001-digit price that broke Python's int parsing is refused.
create or replace function private.is_amount(p_value numeric) returns boolean
language sql immutable parallel safe
set search_path = ''
as $$
  select p_value > 0 and p_value < 1e15 and scale(p_value) <= 30
$$;

create or replace function private.amount_rule() returns text
language sql immutable parallel safe
set search_path = ''
as $$ select 'a number > 0 and < 1e15 with at most 30 decimal places' $$;

-- A signal's matched conditions: at most 32 labels of 1 to 200 characters (the engine's labels,
-- such as "RSI(14) < 30", are well under 100).
create or replace function private.labels_fit(p_labels text[]) returns boolean
language sql immutable parallel safe
set search_path = ''
as $$
  select cardinality(p_labels) <= 32
     and coalesce((select bool_and(char_length(l) between 1 and 200) from unnest(p_labels) l), true)
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
-- signals: the owner first, then what the database sets, then the bounds
-- ---------------------------------------------------------------------------------------------

-- Insert through the API:
--   - a row naming any user but the caller is refused at once, before the lease guard looks at that
--     user's epochs: one answer for every other user, existing or not;
--   - id, created_at, updated_at are the database's; updated_epoch is the write's epoch (set again by
--     the guard); a signal starts 'new' (its status moves only through update_signal_statuses, under
--     the live lease);
--   - price and labels within their bounds, refused with the field's name.
-- Updates are judged by the guard (only the status may change, under the live lease).
create or replace function private.check_signal_input() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not private.is_api_session() then
    return new;
  end if;
  if new.user_id is distinct from auth.uid() then
    raise exception using errcode = '42501',
      message = 'permission denied: a signal is written for the signed-in user only';
  end if;
  if new.status is distinct from 'new' then
    perform private.raise_guard('SG006',
      'invalid_transition: a signal is created with status new; update_signal_statuses moves it');
  end if;
  if new.price is null or not private.is_amount(new.price) then
    perform private.raise_guard('SG009', 'invalid_argument: price must be ' || private.amount_rule());
  end if;
  if new.matched_conditions is null or not private.labels_fit(new.matched_conditions) then
    perform private.raise_guard('SG009',
      'invalid_argument: matched_conditions must be at most 32 labels of 1 to 200 characters');
  end if;
  new.id := gen_random_uuid();
  new.created_at := now();
  new.updated_at := now();
  new.updated_epoch := new.epoch;
  return new;
end;
$$;

create trigger signals_api_input before insert on public.signals
  for each row execute function private.check_signal_input();

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
-- traders: created_at is the database's, and stays
-- ---------------------------------------------------------------------------------------------

create or replace function private.check_trader_input() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if not private.is_api_session() then
    return new;
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
-- every API role could call every helper here. Only those granted by name stay callable: the ones
-- row level security, check constraints and the security-invoker RPCs call as the requesting role.
-- Trigger functions need no grant, and security-definer RPCs call the rest as their owner.
revoke execute on all functions in schema private from public;
-- The anonymous key reaches no table (as since the first migration); said again for completeness.
revoke all on public.traders, public.cloud_machines, public.signals, public.execution_leases,
  public.lease_epochs, public.trades from anon;

select private.register_component('write_hardening', 1, '20251003060800_write_hardening');
