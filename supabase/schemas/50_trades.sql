-- Paper trades: one per signal, opened and managed by whoever holds the execution lease.
--
-- Here:
--   public.trades               one row per signal (its key is the signal's key); the exit plan is
--                               stored on the row, so any executor can manage it after a handoff
--   private.check_trade_input() what a client may not decide: the owner, server-owned columns, bounds
--   private.guard_trade_write() the trigger that fences every insert and update on trades
--   public.write_trades()       open / close / cancel in one call, one outcome per operation
--
-- Who may write. Every write reaches the table as the caller (write_trades is security invoker, and
-- direct PostgREST writes go through the same insert/update policies), so row level security and the
-- guard trigger judge both paths alike; there is no path around the lease check.
--   open   the caller holds the LIVE lease (its kind, its machine for the cloud, not expired by the
--          database clock) and names its epoch. Not the epoch window, as signals are judged: an open
--          landing after a handoff would be a position the new executor never adopted (an orphan).
--          A refused open is dropped; the new executor opens missing trades itself from the signal.
--   close  open -> closed | cancelled only, changing only the exit and close fields, by the holder
--   cancel of the live lease naming its epoch as close_epoch (the closer may differ from the opener).
-- The guard locks the user's lease row FOR SHARE (private.require_live_lease): a claim, renewal or
-- handoff (which locks it FOR UPDATE) waits for a trade write in flight to commit and vice versa, so
-- the new executor, reading the trades after its grant, sees every trade the old one opened.
--
-- What the database fills. id, created_at and updated_at; user_id, signal_id, signal_key, trader_id,
-- symbol, interval, entry_price (the signal's price) and entry_time (the signal candle's close) come
-- from the signal, whatever the client sends; source and machine_id (the opener's) and close_source
-- and close_machine_id (the closer's) come from the token. profit_loss is a generated column: the
-- client never sends it.

create table public.trades (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  signal_id uuid not null references public.signals (id) on delete cascade,
  -- One trade per signal: any duplicate open collapses into the existing row.
  signal_key text not null unique,
  trader_id uuid not null,
  symbol text not null,
  "interval" text not null,
  -- The opener.
  source text not null check (source in ('local', 'cloud')),
  machine_id uuid references public.cloud_machines (id) on delete set null,
  epoch bigint not null,
  side text not null check (side in ('long', 'short')),
  size numeric not null check (size > 0),
  entry_price numeric not null check (entry_price > 0),
  entry_time timestamptz not null,
  -- The exit plan.
  take_profit_price numeric check (take_profit_price > 0),
  stop_loss_price numeric check (stop_loss_price > 0),
  expires_at timestamptz,
  status text not null default 'open' check (status in ('open', 'closed', 'cancelled')),
  exit_price numeric check (exit_price > 0),
  exit_time timestamptz,
  exit_reason text check (exit_reason in ('take_profit', 'stop_loss', 'expiry', 'manual')),
  profit_loss numeric generated always as (
    case when status = 'closed' then
      case side when 'long' then size * (exit_price - entry_price)
                else size * (entry_price - exit_price) end
    end
  ) stored,
  -- The closer (or canceller); after a handoff it is not the opener.
  close_source text check (close_source in ('local', 'cloud')),
  close_machine_id uuid references public.cloud_machines (id) on delete set null,
  close_epoch bigint,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint trades_local_has_no_machine check (source = 'cloud' or machine_id is null),
  constraint trades_local_close_has_no_machine check (
    close_source is distinct from 'local' or close_machine_id is null),
  constraint trades_exit_plan check (
    (take_profit_price is null
     or (side = 'long' and take_profit_price > entry_price)
     or (side = 'short' and take_profit_price < entry_price))
    and (stop_loss_price is null
         or (side = 'long' and stop_loss_price < entry_price)
         or (side = 'short' and stop_loss_price > entry_price))
    and (expires_at is null or expires_at > entry_time)
  ),
  constraint trades_exit_after_entry check (exit_time is null or exit_time >= entry_time),
  -- close_machine_id follows close_source (null for a browser closer, or once the machine is gone).
  constraint trades_status_fields check (
    (status = 'open' and exit_price is null and exit_time is null and exit_reason is null
     and close_source is null and close_machine_id is null and close_epoch is null)
    or (status = 'closed' and exit_price is not null and exit_time is not null
        and exit_reason is not null and close_source is not null and close_epoch is not null)
    or (status = 'cancelled' and exit_price is null
        and close_source is not null and close_epoch is not null)
  ),
  -- Prices and quantities: a number > 0 and < 10^15 with at most 30 decimal places (no NaN or
  -- Infinity), for every session and every path.
  constraint trades_amounts check (
    private.is_amount(size)
    and private.is_amount(entry_price)
    and (take_profit_price is null or private.is_amount(take_profit_price))
    and (stop_loss_price is null or private.is_amount(stop_loss_price))
    and (exit_price is null or private.is_amount(exit_price))
  ),
  -- Copied from the trade's signal by the guard, bounded there; bounded here too for every path.
  constraint trades_copied_fields check (
    char_length(signal_key) <= 200
    and symbol ~ '^[A-Z0-9]{2,20}$'
    and private.interval_length("interval") is not null
  )
);
comment on table public.trades is
  'Paper trades, one per signal; opened, closed and cancelled only by the holder of the execution lease';
comment on column public.trades.signal_key is 'The signal''s key: one trade per signal';
comment on column public.trades.source is 'Who opened it: local (browser) or cloud (Fly.io machine)';
comment on column public.trades.epoch is 'The live lease epoch of the opener';
comment on column public.trades.size is 'Quantity of the base asset';
comment on column public.trades.entry_price is 'The signal''s price';
comment on column public.trades.entry_time is 'The close of the signal''s candle';
comment on column public.trades.expires_at is 'The latest moment the plan holds the position';
comment on column public.trades.profit_loss is
  'Computed by the database for closed trades: size x (exit - entry), sign reversed for a short';
comment on column public.trades.close_epoch is 'The live lease epoch of whoever closed or cancelled it';

create index trades_user_id_status_idx on public.trades (user_id, status);
create index trades_user_id_created_at_idx on public.trades (user_id, created_at desc);
create index trades_signal_id_idx on public.trades (signal_id);
alter table public.trades enable row level security;

-- ---------------------------------------------------------------------------------------------
-- The triggers: input first, then the guard (BEFORE triggers fire in name order:
-- trades_api_input < trades_guard_write < trades_touch_updated_at)
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

-- Fences every insert and update that comes through the API roles, in the writing transaction.
-- Insert (every session): the signal is found by signal_key (or signal_id) and must be the row's
-- user's; the fields copied from it are set here, whatever was sent, and the exit plan is checked
-- against the entry. Insert (API roles): the trade starts open; source and machine are the token's;
-- the caller holds the live lease under the trade's epoch.
-- Update (API roles): only open -> closed | cancelled, changing only the exit and close fields, by the
-- holder of the live lease naming its epoch as close_epoch.
-- Maintenance sessions that are not API roles (migrations, the database owner) are not fenced.
create or replace function private.guard_trade_write() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_machine uuid := private.jwt_machine_id();
  v_kind text := case when private.jwt_machine_id() is null then 'local' else 'cloud' end;
  -- Whether the write comes through the API (private.is_api_session); anything else is maintenance.
  v_api boolean := private.is_api_session();
  v_signal public.signals;
begin
  if tg_op = 'INSERT' then
    if v_api and new.user_id is distinct from auth.uid() then
      raise exception using errcode = '42501',
        message = 'permission denied: a trade is opened for the signed-in user only';
    end if;
    if new.signal_key is not null then
      select * into v_signal from public.signals s where s.signal_key = new.signal_key;
    elsif new.signal_id is not null then
      select * into v_signal from public.signals s where s.id = new.signal_id;
    end if;
    if v_signal.id is null
       or v_signal.user_id is distinct from coalesce(new.user_id, v_signal.user_id)
       or new.signal_id <> v_signal.id then
      perform private.raise_guard('SG009',
        'invalid_argument: a trade names one of its user''s signals by signal_key (or signal_id)');
    end if;
    new.user_id := v_signal.user_id;
    new.signal_id := v_signal.id;
    new.signal_key := v_signal.signal_key;
    new.trader_id := v_signal.trader_id;
    new.symbol := v_signal.symbol;
    new."interval" := v_signal."interval";
    new.entry_price := v_signal.price;
    new.entry_time := v_signal.candle_open_time + private.interval_length(v_signal."interval");
    if new.take_profit_price is not null and new.side in ('long', 'short')
       and (new.take_profit_price - new.entry_price) * (case new.side when 'long' then 1 else -1 end)
           <= 0 then
      perform private.raise_guard('SG009', format(
        'invalid_argument: a %s''s take_profit_price must be %s its entry price %s, not %s',
        new.side, case new.side when 'long' then 'above' else 'below' end, new.entry_price,
        new.take_profit_price));
    end if;
    if new.stop_loss_price is not null and new.side in ('long', 'short')
       and (new.entry_price - new.stop_loss_price) * (case new.side when 'long' then 1 else -1 end)
           <= 0 then
      perform private.raise_guard('SG009', format(
        'invalid_argument: a %s''s stop_loss_price must be %s its entry price %s, not %s',
        new.side, case new.side when 'long' then 'below' else 'above' end, new.entry_price,
        new.stop_loss_price));
    end if;
    if new.expires_at is not null and new.expires_at <= new.entry_time then
      perform private.raise_guard('SG009', format(
        'invalid_argument: expires_at %s is not after the entry time %s', new.expires_at,
        new.entry_time));
    end if;
    if not v_api then
      return new;
    end if;

    if new.status is distinct from 'open' or new.exit_price is not null or new.exit_time is not null
       or new.exit_reason is not null or new.close_source is not null
       or new.close_machine_id is not null or new.close_epoch is not null then
      perform private.raise_guard('SG006',
        'invalid_transition: a trade is opened with status open and no exit; close it afterwards');
    end if;
    new.source := coalesce(new.source, v_kind);
    if new.source <> v_kind then
      perform private.raise_guard('SG004', format(
        'source_mismatch: a %s token opens source=%L trades, not %L', v_kind, v_kind, new.source));
    end if;
    if v_kind = 'cloud' then
      new.machine_id := coalesce(new.machine_id, v_machine);
    end if;
    if new.machine_id is distinct from v_machine then
      perform private.raise_guard('SG004', case v_kind
        when 'cloud' then 'source_mismatch: a machine token opens trades for its own machine_id only'
        else 'source_mismatch: a browser trade has no machine_id' end);
    end if;
    perform private.require_live_lease(new.user_id, new.epoch, 'opening');
    return new;
  end if;

  -- UPDATE
  if not v_api then
    return new;
  end if;
  if (new.id, new.user_id, new.signal_id, new.signal_key, new.trader_id, new.symbol, new."interval",
      new.source, new.machine_id, new.epoch, new.side, new.size, new.entry_price, new.entry_time,
      new.take_profit_price, new.stop_loss_price, new.expires_at, new.created_at)
     is distinct from
     (old.id, old.user_id, old.signal_id, old.signal_key, old.trader_id, old.symbol, old."interval",
      old.source, old.machine_id, old.epoch, old.side, old.size, old.entry_price, old.entry_time,
      old.take_profit_price, old.stop_loss_price, old.expires_at, old.created_at)
  then
    perform private.raise_guard('SG005',
      'immutable_field: only status, the exit fields and the close fields may change on a trade');
  end if;
  if not (old.status = 'open' and new.status in ('closed', 'cancelled')) then
    perform private.raise_guard('SG006', format(
      'invalid_transition: a trade cannot go from %s to %s (only open -> closed | cancelled)',
      old.status, new.status));
  end if;
  new.close_source := coalesce(new.close_source, v_kind);
  if new.close_source <> v_kind then
    perform private.raise_guard('SG004', format(
      'source_mismatch: a %s token closes trades as close_source=%L, not %L', v_kind, v_kind,
      new.close_source));
  end if;
  if v_kind = 'cloud' then
    new.close_machine_id := coalesce(new.close_machine_id, v_machine);
  end if;
  if new.close_machine_id is distinct from v_machine then
    perform private.raise_guard('SG004', case v_kind
      when 'cloud' then 'source_mismatch: a machine token closes trades as its own machine_id only'
      else 'source_mismatch: a browser closer has no close_machine_id' end);
  end if;
  if new.status = 'closed' then
    if new.exit_price is null or new.exit_time is null or new.exit_reason is null then
      perform private.raise_guard('SG009',
        'invalid_argument: closing a trade needs exit_price, exit_time and exit_reason');
    end if;
    if new.exit_time < new.entry_time then
      perform private.raise_guard('SG009', format(
        'invalid_argument: exit_time %s is before the entry time %s', new.exit_time, new.entry_time));
    end if;
  elsif new.exit_price is not null then
    perform private.raise_guard('SG009', 'invalid_argument: a cancelled trade has no exit_price');
  end if;
  perform private.require_live_lease(new.user_id, new.close_epoch,
    case new.status when 'closed' then 'closing' else 'cancelling' end);
  return new;
end;
$$;

create trigger trades_api_input before insert or update on public.trades
  for each row execute function private.check_trade_input();
create trigger trades_guard_write before insert or update on public.trades
  for each row execute function private.guard_trade_write();
create trigger trades_touch_updated_at before update on public.trades
  for each row execute function private.touch_updated_at();

-- ---------------------------------------------------------------------------------------------
-- write_trades: open, close and cancel, one outcome per operation
-- ---------------------------------------------------------------------------------------------

-- A timestamp of an operation: ISO 8601 text or epoch milliseconds.
create or replace function private.trade_time(p_value jsonb, p_field text) returns timestamptz
language plpgsql stable
set search_path = ''
as $$
declare
  v_time timestamptz;
begin
  begin
    v_time := case jsonb_typeof(p_value)
                when 'number' then to_timestamp((p_value #>> '{}')::numeric / 1000)
                when 'string' then (p_value #>> '{}')::timestamptz end;
  exception when data_exception then
    v_time := null;
  end;
  if v_time is null or not isfinite(v_time) then
    perform private.raise_guard('SG009', format(
      'invalid_argument: %s must be an ISO 8601 time or epoch milliseconds, not %s', p_field, p_value));
  end if;
  return v_time;
end;
$$;

create or replace function private.trade_op_shape(p_op text) returns text
language sql immutable
set search_path = ''
as $$
  select case p_op
    when 'open' then 'an open is {"op": "open", "signal_key": text, "side": "long" | "short", '
      || '"size": number > 0, "take_profit_price": number > 0 | null, '
      || '"stop_loss_price": number > 0 | null, "expires_at": ISO 8601 | epoch ms | null, '
      || '"epoch": integer}'
    when 'close' then 'a close is {"op": "close", "signal_key": text, "exit_price": number > 0, '
      || '"exit_time": ISO 8601 | epoch ms, '
      || '"exit_reason": "take_profit" | "stop_loss" | "expiry" | "manual", "epoch": integer}'
    when 'cancel' then 'a cancel is {"op": "cancel", "signal_key": text, "epoch": integer}'
    else 'each operation is an object whose "op" is "open", "close" or "cancel"'
  end
$$;

-- What is wrong with an operation's shape (null: nothing). Values the shape cannot judge (a time that
-- does not parse, an exit plan on the wrong side of the entry) are refused later, also as SG009.
create or replace function private.trade_op_problem(p_op jsonb) returns text
language plpgsql immutable
set search_path = ''
as $$
declare
  v_op text;
  v_allowed text[];
  v_extra text;
begin
  if jsonb_typeof(p_op) is distinct from 'object' then
    return 'an operation must be a JSON object';
  end if;
  v_op := case when jsonb_typeof(p_op -> 'op') = 'string' then p_op ->> 'op' end;
  v_allowed := case v_op
    when 'open' then array['op', 'signal_key', 'side', 'size', 'take_profit_price', 'stop_loss_price',
                           'expires_at', 'epoch', 'source', 'machine_id']
    when 'close' then array['op', 'signal_key', 'exit_price', 'exit_time', 'exit_reason', 'epoch']
    when 'cancel' then array['op', 'signal_key', 'epoch'] end;
  if v_allowed is null then
    return 'op must be "open", "close" or "cancel"';
  end if;
  select string_agg(k, ', ' order by k) into v_extra
    from jsonb_object_keys(p_op) k where k <> all (v_allowed);
  if v_extra is not null then
    return format('unexpected field(s) %s (the database fills them)', v_extra);
  end if;
  if jsonb_typeof(p_op -> 'signal_key') is distinct from 'string' or p_op ->> 'signal_key' = '' then
    return 'signal_key must be a non-empty string';
  end if;
  if not private.json_is_integer(p_op -> 'epoch') then
    return 'epoch must be an integer (the live lease epoch)';
  end if;
  if v_op = 'open' then
    if jsonb_typeof(p_op -> 'side') is distinct from 'string'
       or p_op ->> 'side' not in ('long', 'short') then
      return 'side must be "long" or "short"';
    end if;
    if not private.json_is_positive(p_op -> 'size') then
      return 'size must be a number > 0';
    end if;
    if coalesce(jsonb_typeof(p_op -> 'take_profit_price'), 'null') <> 'null'
       and not private.json_is_positive(p_op -> 'take_profit_price') then
      return 'take_profit_price must be a number > 0 or null';
    end if;
    if coalesce(jsonb_typeof(p_op -> 'stop_loss_price'), 'null') <> 'null'
       and not private.json_is_positive(p_op -> 'stop_loss_price') then
      return 'stop_loss_price must be a number > 0 or null';
    end if;
    if coalesce(jsonb_typeof(p_op -> 'expires_at'), 'null') not in ('null', 'string', 'number') then
      return 'expires_at must be an ISO 8601 time, epoch milliseconds or null';
    end if;
    if coalesce(jsonb_typeof(p_op -> 'source'), 'null') not in ('null', 'string') then
      return 'source must be "local" or "cloud" (or left out: the token decides)';
    end if;
    if coalesce(jsonb_typeof(p_op -> 'machine_id'), 'null') <> 'null'
       and (jsonb_typeof(p_op -> 'machine_id') <> 'string'
            or p_op ->> 'machine_id'
               !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$') then
      return 'machine_id must be a uuid or null (or left out: the token decides)';
    end if;
  elsif v_op = 'close' then
    if not private.json_is_positive(p_op -> 'exit_price') then
      return 'exit_price must be a number > 0';
    end if;
    if coalesce(jsonb_typeof(p_op -> 'exit_time'), 'null') not in ('string', 'number') then
      return 'exit_time must be an ISO 8601 time or epoch milliseconds';
    end if;
    if jsonb_typeof(p_op -> 'exit_reason') is distinct from 'string'
       or p_op ->> 'exit_reason' not in ('take_profit', 'stop_loss', 'expiry', 'manual') then
      return 'exit_reason must be "take_profit", "stop_loss", "expiry" or "manual"';
    end if;
  end if;
  return null;
end;
$$;

create or replace function private.json_is_positive(p_value jsonb) returns boolean
language sql immutable
set search_path = ''
as $$
  select case when jsonb_typeof(p_value) = 'number' then (p_value #>> '{}')::numeric > 0 else false end
$$;

create or replace function private.json_is_integer(p_value jsonb) returns boolean
language sql immutable
set search_path = ''
as $$
  select case when jsonb_typeof(p_value) = 'number'
              then (p_value #>> '{}')::numeric = trunc((p_value #>> '{}')::numeric)
                   and abs((p_value #>> '{}')::numeric) <= 9223372036854775807
              else false end
$$;

-- Open, close and cancel trades in one call, with one outcome per operation, in order. A refusal is
-- an outcome, never an error for the batch: each operation runs in its own subtransaction. Runs as
-- the caller, so row level security and the write guard apply exactly as to a direct write.
--   open   -> {"outcome": "opened", "id"} | {"outcome": "duplicate", "id"} (the signal already has
--             its trade; nothing changes, whoever asks)
--   close  -> {"outcome": "closed", "id", "profit_loss"}
--   cancel -> {"outcome": "cancelled", "id"}
--   close or cancel of a trade already closed or cancelled -> {"outcome": "already_closed", "id",
--             "status"}: idempotent, nothing changes, whatever the caller's lease
--   any    -> {"outcome": "rejected", "code": "SG00x" | "not_found" | SQLSTATE, "message"}
-- Every outcome carries "index" and "signal_key" (null when the operation names none). At most 500
-- operations per call.
create or replace function public.write_trades(p_ops jsonb) returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_uid uuid := private.require_user();
  v_op jsonb;
  v_kind text;
  v_key text;
  v_problem text;
  v_found boolean;
  v_signal public.signals;
  v_trade public.trades;
  v_results jsonb[] := '{}';
  v_state text;
  v_msg text;
  v_index integer := -1;
begin
  if p_ops is null or jsonb_typeof(p_ops) <> 'array' then
    perform private.raise_guard('SG009', 'invalid_argument: p_ops must be a JSON array of operations');
  end if;
  if jsonb_array_length(p_ops) > 500 then
    perform private.raise_guard('SG009', 'invalid_argument: at most 500 operations per call');
  end if;

  for v_op in select value from jsonb_array_elements(p_ops) loop
    v_index := v_index + 1;
    v_key := case when jsonb_typeof(v_op) = 'object' and jsonb_typeof(v_op -> 'signal_key') = 'string'
                  then v_op ->> 'signal_key' end;
    begin
      v_problem := private.trade_op_problem(v_op);
      if v_problem is not null then
        perform private.raise_guard('SG009', format('invalid_argument: %s; %s', v_problem,
          private.trade_op_shape(case when jsonb_typeof(v_op) = 'object' then v_op ->> 'op' end)));
      end if;
      v_kind := v_op ->> 'op';
      v_trade := null;

      if v_kind = 'open' then
        select * into v_signal from public.signals s where s.signal_key = v_key;
        v_found := found;
        if not v_found then
          v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
            'outcome', 'rejected', 'code', 'not_found', 'message', 'no such signal');
        else
          select * into v_trade from public.trades t where t.signal_key = v_key;
          if v_trade.id is null then
            insert into public.trades as t
              (signal_id, signal_key, side, size, take_profit_price, stop_loss_price, expires_at,
               epoch, source, machine_id)
            values (
              v_signal.id,
              v_key,
              v_op ->> 'side',
              (v_op ->> 'size')::numeric,
              (v_op ->> 'take_profit_price')::numeric,
              (v_op ->> 'stop_loss_price')::numeric,
              case when coalesce(jsonb_typeof(v_op -> 'expires_at'), 'null') <> 'null'
                   then private.trade_time(v_op -> 'expires_at', 'expires_at') end,
              (v_op ->> 'epoch')::bigint,
              v_op ->> 'source',
              (v_op ->> 'machine_id')::uuid
            )
            on conflict (signal_key) do nothing
            returning * into v_trade;
            if v_trade.id is not null then
              v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
                'outcome', 'opened', 'id', v_trade.id);
              continue;
            end if;
            -- Opened concurrently by another call: that row is the trade.
            select * into v_trade from public.trades t where t.signal_key = v_key;
          end if;
          v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
            'outcome', 'duplicate', 'id', v_trade.id);
        end if;
      else
        update public.trades t
           set status = case v_kind when 'close' then 'closed' else 'cancelled' end,
               exit_price = (v_op ->> 'exit_price')::numeric,
               exit_time = case when v_kind = 'close'
                                then private.trade_time(v_op -> 'exit_time', 'exit_time') end,
               exit_reason = v_op ->> 'exit_reason',
               close_epoch = (v_op ->> 'epoch')::bigint
         where t.signal_key = v_key and t.status = 'open'
        returning * into v_trade;
        if v_trade.id is not null then
          v_results := v_results || case v_kind
            when 'close' then jsonb_build_object('index', v_index, 'signal_key', v_key,
              'outcome', 'closed', 'id', v_trade.id, 'profit_loss', v_trade.profit_loss)
            else jsonb_build_object('index', v_index, 'signal_key', v_key,
              'outcome', 'cancelled', 'id', v_trade.id) end;
          continue;
        end if;
        select * into v_trade from public.trades t where t.signal_key = v_key;
        if v_trade.id is null then
          v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
            'outcome', 'rejected', 'code', 'not_found', 'message', 'no such trade');
        else
          v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
            'outcome', 'already_closed', 'id', v_trade.id, 'status', v_trade.status);
        end if;
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
comment on function public.write_trades(jsonb) is
  'Open, close and cancel paper trades under the caller''s live lease: one outcome per operation';
