-- The deterministic signal key: one row per (user, trader, symbol, interval, candle open time),
-- whichever side, tab or retry writes it. Writers upsert on it and ignore duplicates, so the overlap
-- of a handoff and every retry collapse into the row that is already there.
--
-- Format: '<user uuid>:<trader uuid>:<SYMBOL>:<interval>:<candle open time, epoch milliseconds>'.
-- The engine computes the same string (signalguard.core), so a client knows a signal's key before
-- the database has seen it.

-- Immutable: the epoch of a timestamptz does not depend on the session's time zone.
create or replace function private.signal_key(
  p_user_id uuid, p_trader_id uuid, p_symbol text, p_interval text, p_open_time timestamptz
) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select p_user_id::text || ':' || p_trader_id::text || ':' || p_symbol || ':' || p_interval || ':'
    || (extract(epoch from p_open_time) * 1000)::bigint::text
$$;
grant execute on function private.signal_key(uuid, uuid, text, text, timestamptz)
  to authenticated, service_role;

alter table public.signals
  add column signal_key text not null
    generated always as (
      private.signal_key(user_id, trader_id, symbol, "interval", candle_open_time)
    ) stored;
alter table public.signals add constraint signals_signal_key_key unique (signal_key);
comment on column public.signals.signal_key is
  'Deterministic key <user>:<trader>:<symbol>:<interval>:<candle open ms>; unique, so any duplicate write is one row';

select private.register_component('signal_key', 1, '20251003060200_signal_key');
