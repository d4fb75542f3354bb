-- One check for "does this write come through the API": private.is_api_session().
--
-- The write hardening migration added private.is_api_session() (PostgREST logs in as `authenticator`
-- and switches to an API role; anything else is maintenance) and the signal guard, the trade input
-- check and the trader input check call it. The trade guard of the trades migration still spelled the
-- same test out inline. Here it calls the helper too, so the rule lives in one place and the
-- declarative schema files (supabase/schemas/) state every function as it is. Behaviour is identical:
-- the helper is the same expression, evaluated once per row at the same point of the trigger; the
-- function's attributes (security definer, search_path), owner and privileges are unchanged
-- (`create or replace` keeps them), and nothing else in its body changes.
--
-- No schema component is registered: a client needs nothing from this migration.

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
