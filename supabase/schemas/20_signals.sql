-- signals: one row per (user, trader, symbol, interval, candle), whichever side writes it.
-- Lifecycle: new -> active -> expired | closed (transitions checked by the write guard,
-- 40_signal_writes.sql). Signals are never deleted through the API.

create table public.signals (
  id uuid primary key default gen_random_uuid(),
  trader_id uuid not null,
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  symbol text not null check (symbol ~ '^[A-Z0-9]{2,20}$'),
  "interval" text not null check (private.interval_length("interval") is not null),
  candle_open_time timestamptz not null
    check (date_trunc('milliseconds', candle_open_time) = candle_open_time),
  -- A price is a number > 0 and < 10^15 with at most 30 decimal places (also no NaN or Infinity,
  -- which numeric admits and which compare greater than zero).
  price numeric not null check (price > 0),
  matched_conditions text[] not null default '{}'
    check (cardinality(matched_conditions) <= 32),
  status text not null default 'new' check (status in ('new', 'active', 'expired', 'closed')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Which side generated it (migration 013 of the signal source tracking design): 'local' (the
  -- browser tab) or 'cloud' (the user's Fly.io machine), and for the cloud, which machine. A cloud
  -- signal may lose its machine_id when the machine row is deleted.
  source text not null default 'local',
  machine_id uuid references public.cloud_machines (id) on delete set null,
  -- The deterministic key (private.signal_key): unique, so any duplicate write is one row. Writers
  -- upsert on it and ignore duplicates, so the overlap of a handoff and every retry collapse into the
  -- row that is already there.
  signal_key text not null
    generated always as (
      private.signal_key(user_id, trader_id, symbol, "interval", candle_open_time)
    ) stored,
  -- The fencing token: the lease epoch its writer held when the candle closed.
  epoch bigint not null,
  updated_epoch bigint,
  -- Found late: the candle closed in the gap before its epoch began (the write guard sets it; see
  -- private.gap_start), so the user sees the signal came from a catch-up, not as the candle closed.
  caught_up boolean not null default false,
  constraint signals_trader_owner_fkey foreign key (trader_id, user_id)
    references public.traders (id, user_id) on delete cascade,
  constraint signals_source_check check (source in ('local', 'cloud')),
  -- A browser signal never names a machine.
  constraint signals_local_has_no_machine check (source = 'cloud' or machine_id is null),
  constraint signals_signal_key_key unique (signal_key),
  constraint signals_price_amount check (private.is_amount(price)),
  constraint signals_matched_conditions_fit check (private.labels_fit(matched_conditions)),
  -- Generated from bounded parts (two uuids, a symbol of 20, an interval, 13 digits): at most 112.
  constraint signals_signal_key_length check (char_length(signal_key) <= 200)
);
comment on column public.signals.source is
  'Execution source: local (browser) or cloud (Fly.io machine)';
comment on column public.signals.machine_id is
  'Reference to cloud_machines table for cloud-sourced signals';
comment on column public.signals.signal_key is
  'Deterministic key <user>:<trader>:<symbol>:<interval>:<candle open ms>; unique, so any duplicate write is one row';
comment on column public.signals.epoch is
  'The lease epoch its writer held when the candle closed (the fencing token checked on insert)';
comment on column public.signals.updated_epoch is
  'The live lease epoch of whoever last changed the status';
comment on column public.signals.caught_up is
  'Set by the write guard: the candle closed in the gap before the epoch began, and the signal was found by the new holder''s catch-up';

create index signals_user_id_created_at_idx on public.signals (user_id, created_at desc);
-- The indexes of migration 013, as written there.
create index idx_signals_source on public.signals (source);
create index idx_signals_machine_id on public.signals (machine_id);
create index idx_signals_trader_source on public.signals (trader_id, source);

alter table public.signals enable row level security;

create trigger signals_touch_updated_at before update on public.signals
  for each row execute function private.touch_updated_at();
