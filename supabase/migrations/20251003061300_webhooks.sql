-- signalguard: webhooks. Each stored signal is posted once to the user's own HTTP endpoint, and the
-- delivery is recorded here, so that a handoff between browser and cloud neither repeats nor drops it.
--
--   1. public.webhooks: one per user (a URL and an optional secret), checked on input with one-line
--      refusals (SG009, e.g. 'invalid_argument: webhook url: must start with http:// or https://').
--   2. public.webhook_deliveries: one row per stored signal while the user has an enabled webhook,
--      made by a trigger on public.signals in the transaction that stores the signal (nothing is
--      dropped); signals stored while none is set get none. Users read their own; only the RPCs
--      below change them.
--   3. claim_webhook_deliveries(p_epoch, p_limit): the executor claims the due rows under its live
--      lease epoch (SG001 otherwise); each claimed row is in flight for 30 s (private.webhook_in_flight),
--      so that neither a concurrent caller nor the next holder posts it again meanwhile.
--   4. record_webhook_deliveries(p_epoch, p_results): the outcomes, under the same fence and only for
--      rows claimed under p_epoch; failed after 10 attempts (private.webhook_max_attempts) or at once
--      when the client says not to retry. A holder that lost the lease records nothing: the rows come
--      due again when their in-flight window ends and the new holder posts them.
--   5. retry_webhook_delivery(p_signal_key): the user puts a failed delivery back to pending.
--
-- Exactly-once delivery to an outside endpoint is impossible (a post may land and its answer be lost):
-- every post carries the signal key as its Idempotency-Key header, and receivers drop a key they have
-- seen. Schema: supabase/schemas/80_webhooks.sql. Registered as the optional component webhooks: the
-- app generates without it, and delivers no webhooks.

-- The numbers, in one place (mirrored by signalguard.core.webhooks: IN_FLIGHT_SECONDS, MAX_ATTEMPTS).
-- In flight: how long a claimed delivery is left to its claimer before it is due again. Well above a
-- post's own time limit (10 s in both clients), so that the attempt has ended, one way or the other,
-- before anyone else may post.
create or replace function private.webhook_in_flight() returns interval
language sql immutable set search_path = '' as $$ select interval '30 seconds' $$;
-- Attempts before a delivery that keeps failing on a transient error (a 5xx, 408, 429, a network
-- error) is given up as failed.
create or replace function private.webhook_max_attempts() returns integer
language sql immutable set search_path = '' as $$ select 10 $$;

-- ---------------------------------------------------------------------------------------------
-- The user's webhook
-- ---------------------------------------------------------------------------------------------

create table public.webhooks (
  user_id uuid primary key default auth.uid() references auth.users (id) on delete cascade,
  -- Where signals are posted: an http(s) URL naming a host. A URL pointing at the stack itself (the
  -- Supabase URL the clients use) is refused by the clients (signalguard.core.webhooks), which know it.
  url text not null,
  -- Signs each post (X-Signalguard-Signature: sha256=HMAC-SHA256 of the body); none: unsigned.
  secret text,
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- The input check (private.check_webhook_input) refuses a bad value first, in one line; these keep
  -- every stored row in bounds whoever writes it.
  constraint webhooks_url_shape check (
    char_length(url) <= 2048 and url ~* '^https?://[^/?#]' and url !~ '[[:space:][:cntrl:]]'
  ),
  constraint webhooks_secret_length check (secret is null or char_length(secret) between 1 and 200)
);
alter table public.webhooks enable row level security;
comment on table public.webhooks is
  'The user''s webhook: every stored signal is posted there once (Idempotency-Key: the signal key)';

-- What a client sends is checked here, so that a refusal is one line (SG009) instead of PostgreSQL's
-- check message, which echoes the row (secret included): 'invalid_argument: webhook url: must start
-- with http:// or https://', and so on. An empty secret means none. The database owns user_id on an
-- update and the times.
create or replace function private.check_webhook_input() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_authority text;
begin
  if new.url is null or new.url !~* '^https?://' then
    perform private.raise_guard('SG009',
      'invalid_argument: webhook url: must start with http:// or https://');
  end if;
  if char_length(new.url) > 2048 then
    perform private.raise_guard('SG009', 'invalid_argument: webhook url: at most 2048 characters');
  end if;
  if new.url ~ '[[:space:][:cntrl:]]' then
    perform private.raise_guard('SG009',
      'invalid_argument: webhook url: no spaces or control characters (percent-encode them)');
  end if;
  v_authority := substring(new.url from '^[A-Za-z]+://([^/?#]*)');
  if v_authority ~ '@' then
    perform private.raise_guard('SG009',
      'invalid_argument: webhook url: no user name or password in the URL (use the secret)');
  end if;
  if v_authority = '' or v_authority ~ '^:' then
    perform private.raise_guard('SG009', 'invalid_argument: webhook url: names no host');
  end if;
  if new.secret = '' then
    new.secret := null;
  end if;
  if char_length(new.secret) > 200 then
    perform private.raise_guard('SG009', 'invalid_argument: webhook secret: at most 200 characters');
  end if;
  if not private.is_api_session() then
    return new;
  end if;
  if tg_op = 'INSERT' then
    new.created_at := now();
    new.updated_at := now();
  else
    new.user_id := old.user_id;
    new.created_at := old.created_at;
  end if;
  return new;
end;
$$;

-- BEFORE triggers fire in name order: the input check before *_touch_updated_at.
create trigger webhooks_api_input before insert or update on public.webhooks
  for each row execute function private.check_webhook_input();
create trigger webhooks_touch_updated_at before update on public.webhooks
  for each row execute function private.touch_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Deliveries
-- ---------------------------------------------------------------------------------------------

-- One row per (user, signal): made with the signal, changed only by the RPCs below (their owner's
-- security definer), read by the user (the page shows the failures).
create table public.webhook_deliveries (
  user_id uuid not null references auth.users (id) on delete cascade,
  signal_key text not null references public.signals (signal_key) on delete cascade,
  -- pending (due at next_attempt_at, or in flight until then) -> delivered | failed
  -- (retry_webhook_delivery: failed -> pending).
  status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
  -- Claims so far (each claim is one post).
  attempts integer not null default 0 check (attempts >= 0),
  -- When the row is next due: now for a new row, the end of the in-flight window after a claim, the
  -- retry time after a failed attempt.
  next_attempt_at timestamptz not null default now(),
  last_error text check (char_length(last_error) <= 500),
  last_http_status integer check (last_http_status between 100 and 599),
  delivered_at timestamptz,
  -- The lease epoch of the last claim: only that epoch's holder records the outcome.
  claimed_epoch bigint,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (user_id, signal_key),
  constraint webhook_deliveries_signal_key_length check (char_length(signal_key) <= 200),
  constraint webhook_deliveries_delivered_at check ((status = 'delivered') = (delivered_at is not null))
);
-- The claim's scan: the user's due pending rows, oldest first.
create index webhook_deliveries_due_idx on public.webhook_deliveries (user_id, next_attempt_at)
  where status = 'pending';
-- The foreign key's: deleting a signal (with its trader or user) finds its delivery.
create index webhook_deliveries_signal_key_idx on public.webhook_deliveries (signal_key);
alter table public.webhook_deliveries enable row level security;
comment on table public.webhook_deliveries is
  'Each stored signal''s webhook delivery: pending (due or in flight), delivered or failed, with the last error';

-- A stored signal gets its delivery row in the same transaction, if the user has an enabled webhook
-- then. Per statement, over the rows inserted (a duplicate that ON CONFLICT skipped is not among
-- them): one insert for a whole write_signals batch.
create or replace function private.queue_webhook_deliveries() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.webhook_deliveries (user_id, signal_key)
  select n.user_id, n.signal_key
    from new_signals n
    join public.webhooks w on w.user_id = n.user_id and w.enabled
  on conflict do nothing;
  return null;
end;
$$;

create trigger signals_queue_webhook_deliveries after insert on public.signals
  referencing new table as new_signals
  for each statement execute function private.queue_webhook_deliveries();

-- ---------------------------------------------------------------------------------------------
-- The executor's RPCs: claim, then record
-- ---------------------------------------------------------------------------------------------

-- The caller's due deliveries, claimed: up to p_limit (1 to 100) pending rows whose next_attempt_at
-- has come, of an enabled webhook, oldest first. Each is marked in flight: attempts + 1, due again
-- only after private.webhook_in_flight(), claimed under p_epoch. The caller must hold the user's live
-- lease under p_epoch (SG001 otherwise: nothing is claimed). Answers
--   {"epoch": e, "in_flight_seconds": 30, "max_attempts": 10,
--    "deliveries": [{"signal_key", "attempts" (this one included), "url", "secret" (or null),
--                    "trader_id", "trader_name", "symbol", "interval", "candle_open_time", "price",
--                    "matched_conditions", "status", "source", "caught_up"}, ...]}
create or replace function public.claim_webhook_deliveries(p_epoch bigint, p_limit integer default 20)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_user();
  v_kind text := case when private.jwt_machine_id() is null then 'local' else 'cloud' end;
  v_now timestamptz;
  v_out jsonb;
begin
  if p_limit is null or p_limit not between 1 and 100 then
    perform private.raise_guard('SG009', 'invalid_argument: p_limit must be between 1 and 100');
  end if;
  -- Serialises with lease changes (as the write guards do), so a claim cannot outlive its epoch.
  perform 1 from public.execution_leases l where l.user_id = v_uid for share;
  if not private.holds_live_lease(v_uid, p_epoch) then
    perform private.raise_guard('SG001', format(
      'lease_not_held: claiming webhook deliveries needs the live lease of this %s writer; epoch %s is not it',
      v_kind, coalesce(p_epoch::text, 'null')),
      'Re-poll the execution status; the holder of the live lease delivers the webhooks.');
  end if;
  v_now := clock_timestamp();
  with due as (
    select d.user_id, d.signal_key
      from public.webhook_deliveries d
      join public.webhooks w on w.user_id = d.user_id and w.enabled
     where d.user_id = v_uid and d.status = 'pending' and d.next_attempt_at <= v_now
     order by d.next_attempt_at, d.signal_key
     limit p_limit
       for update of d skip locked
  ), claimed as (
    update public.webhook_deliveries d
       set attempts = d.attempts + 1,
           next_attempt_at = v_now + private.webhook_in_flight(),
           claimed_epoch = p_epoch,
           updated_at = v_now
      from due
     where d.user_id = due.user_id and d.signal_key = due.signal_key
    returning d.signal_key, d.attempts
  )
  select coalesce(jsonb_agg(jsonb_build_object(
           'signal_key', c.signal_key,
           'attempts', c.attempts,
           'url', w.url,
           'secret', w.secret,
           'trader_id', s.trader_id,
           'trader_name', t.name,
           'symbol', s.symbol,
           'interval', s."interval",
           'candle_open_time', s.candle_open_time,
           'price', s.price,
           'matched_conditions', to_jsonb(s.matched_conditions),
           'status', s.status,
           'source', s.source,
           'caught_up', s.caught_up)
           order by s.candle_open_time, c.signal_key), '[]'::jsonb)
    into v_out
    from claimed c
    join public.signals s on s.signal_key = c.signal_key
    join public.traders t on t.id = s.trader_id
    join public.webhooks w on w.user_id = v_uid;
  return jsonb_build_object(
    'epoch', p_epoch,
    'in_flight_seconds', private.seconds(private.webhook_in_flight()),
    'max_attempts', private.webhook_max_attempts(),
    'deliveries', v_out);
end;
$$;
comment on function public.claim_webhook_deliveries(bigint, integer) is
  'Claim the caller''s due webhook deliveries under the live lease: each in flight for 30 s';

-- Why one item of record_webhook_deliveries is malformed, or null.
create or replace function private.webhook_result_problem(p_item jsonb) returns text
language sql immutable
set search_path = ''
as $$
  select case
    when jsonb_typeof(p_item) is distinct from 'object' then 'each result must be an object'
    when jsonb_typeof(p_item -> 'signal_key') is distinct from 'string'
         or char_length(p_item ->> 'signal_key') not between 1 and 200
      then 'signal_key must be a text of 1 to 200 characters'
    when jsonb_typeof(p_item -> 'delivered') is distinct from 'boolean'
      then 'delivered must be true or false'
    when coalesce(jsonb_typeof(p_item -> 'http_status'), 'null') <> 'null'
         and not (private.json_is_integer(p_item -> 'http_status')
                  and (p_item ->> 'http_status')::numeric between 100 and 599)
      then 'http_status must be an integer from 100 to 599, or null'
    when coalesce(jsonb_typeof(p_item -> 'error'), 'null') not in ('null', 'string')
      then 'error must be a text or null'
    when coalesce(jsonb_typeof(p_item -> 'retry_in'), 'null') <> 'null'
         and not (jsonb_typeof(p_item -> 'retry_in') = 'number'
                  and (p_item ->> 'retry_in')::numeric between 0 and 86400)
      then 'retry_in must be a number of seconds from 0 to 86400, or null'
  end
$$;

-- The outcomes of the caller's posts, each applied to the delivery it claimed under p_epoch. The
-- caller must hold the user's live lease under p_epoch (SG001 otherwise: nothing is recorded, and the
-- new holder posts the rows again when their in-flight window ends). p_results: a JSON array of at most
-- 100 {"signal_key", "delivered": bool, "http_status"?: int, "error"?: text, "retry_in"?: seconds}.
-- Not delivered with retry_in: due again after retry_in seconds, unless the delivery has had
-- private.webhook_max_attempts() attempts; without retry_in (the receiver refused it for good): failed.
-- Answers one outcome per item, in order ({"index", "signal_key", "outcome", ...}):
--   delivered                           stored as delivered
--   retry (+ next_attempt_at)           due again then
--   failed (+ attempts)                 given up: the page shows it, retry_webhook_delivery revives it
--   already_delivered                   nothing changes (a late second outcome)
--   not_claimed                         the row is not in flight under p_epoch (a later claim took it,
--                                       or it was failed or retried meanwhile): nothing changes
--   not_found                           no such delivery of the caller's
--   rejected (+ code SG009, message)    the item is malformed
-- The error text is kept to its first 500 characters.
create or replace function public.record_webhook_deliveries(p_epoch bigint, p_results jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_user();
  v_kind text := case when private.jwt_machine_id() is null then 'local' else 'cloud' end;
  v_now timestamptz;
  v_item jsonb;
  v_index integer := -1;
  v_key text;
  v_problem text;
  v_seen text[] := '{}';
  v_row public.webhook_deliveries;
  v_status integer;
  v_error text;
  v_retry numeric;
  v_results jsonb[] := '{}';
begin
  if p_results is null or jsonb_typeof(p_results) <> 'array' then
    perform private.raise_guard('SG009', 'invalid_argument: p_results must be a JSON array');
  end if;
  if jsonb_array_length(p_results) > 100 then
    perform private.raise_guard('SG009', 'invalid_argument: at most 100 results per call');
  end if;
  perform 1 from public.execution_leases l where l.user_id = v_uid for share;
  if not private.holds_live_lease(v_uid, p_epoch) then
    perform private.raise_guard('SG001', format(
      'lease_not_held: recording webhook deliveries needs the live lease of this %s writer; epoch %s is not it',
      v_kind, coalesce(p_epoch::text, 'null')),
      'Nothing was recorded: the holder of the live lease posts these deliveries again.');
  end if;
  v_now := clock_timestamp();
  for v_item in select value from jsonb_array_elements(p_results) loop
    v_index := v_index + 1;
    v_problem := private.webhook_result_problem(v_item);
    v_key := case when jsonb_typeof(v_item) = 'object' and jsonb_typeof(v_item -> 'signal_key') = 'string'
                  then v_item ->> 'signal_key' end;
    if v_problem is null and v_key = any (v_seen) then
      v_problem := 'signal_key is named twice in one call';
    end if;
    if v_problem is not null then
      v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
        'outcome', 'rejected', 'code', 'SG009', 'message', 'invalid_argument: ' || v_problem);
      continue;
    end if;
    v_seen := v_seen || v_key;
    select * into v_row from public.webhook_deliveries d
     where d.user_id = v_uid and d.signal_key = v_key
       for update;
    if v_row.signal_key is null then
      v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
        'outcome', 'not_found');
      continue;
    end if;
    if v_row.status = 'delivered' then
      v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
        'outcome', 'already_delivered');
      continue;
    end if;
    if v_row.status <> 'pending' or v_row.claimed_epoch is distinct from p_epoch then
      v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
        'outcome', 'not_claimed');
      continue;
    end if;
    v_status := (v_item ->> 'http_status')::numeric::integer;
    if (v_item ->> 'delivered')::boolean then
      update public.webhook_deliveries d
         set status = 'delivered', delivered_at = v_now, last_http_status = v_status, last_error = null,
             updated_at = v_now
       where d.user_id = v_uid and d.signal_key = v_key;
      v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
        'outcome', 'delivered');
      continue;
    end if;
    v_error := left(coalesce(nullif(v_item ->> 'error', ''), 'HTTP ' || v_status, 'not delivered'), 500);
    v_retry := (v_item ->> 'retry_in')::numeric;
    if v_retry is null or v_row.attempts >= private.webhook_max_attempts() then
      update public.webhook_deliveries d
         set status = 'failed', last_http_status = v_status, last_error = v_error, updated_at = v_now
       where d.user_id = v_uid and d.signal_key = v_key;
      v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
        'outcome', 'failed', 'attempts', v_row.attempts);
    else
      update public.webhook_deliveries d
         set next_attempt_at = v_now + make_interval(secs => v_retry::double precision),
             last_http_status = v_status, last_error = v_error, updated_at = v_now
       where d.user_id = v_uid and d.signal_key = v_key
      returning * into v_row;
      v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
        'outcome', 'retry', 'next_attempt_at', v_row.next_attempt_at);
    end if;
  end loop;
  return to_jsonb(v_results);
end;
$$;
comment on function public.record_webhook_deliveries(bigint, jsonb) is
  'Record the outcomes of the caller''s webhook posts under the live lease: one outcome per item';

-- ---------------------------------------------------------------------------------------------
-- The user's RPC: try a failed delivery again
-- ---------------------------------------------------------------------------------------------

-- A failed delivery of the caller's goes back to pending, due now, with its attempts reset (its last
-- error stays until the next attempt). Changing the webhook (URL, secret, enabled) leaves failed
-- deliveries failed: this is how one is tried again. Answers {"signal_key", "retried": bool,
-- "status": the delivery's status now, or null when the caller has no such delivery}.
create or replace function public.retry_webhook_delivery(p_signal_key text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_user();
  v_status text;
begin
  if p_signal_key is null or char_length(p_signal_key) not between 1 and 200 then
    perform private.raise_guard('SG009',
      'invalid_argument: p_signal_key must be a signal key of 1 to 200 characters');
  end if;
  update public.webhook_deliveries d
     set status = 'pending', attempts = 0, next_attempt_at = clock_timestamp(), claimed_epoch = null,
         updated_at = clock_timestamp()
   where d.user_id = v_uid and d.signal_key = p_signal_key and d.status = 'failed';
  if found then
    return jsonb_build_object('signal_key', p_signal_key, 'retried', true, 'status', 'pending');
  end if;
  select d.status into v_status from public.webhook_deliveries d
   where d.user_id = v_uid and d.signal_key = p_signal_key;
  return jsonb_build_object('signal_key', p_signal_key, 'retried', false, 'status', v_status);
end;
$$;
comment on function public.retry_webhook_delivery(text) is
  'Put one of the caller''s failed webhook deliveries back to pending, due now';

-- ---------------------------------------------------------------------------------------------
-- Privileges and row level security (as in supabase/schemas/90_privileges.sql)
-- ---------------------------------------------------------------------------------------------

revoke all on public.webhooks, public.webhook_deliveries from anon, authenticated, service_role;
grant select, insert, update, delete on public.webhooks to authenticated, service_role;
grant select on public.webhook_deliveries to authenticated, service_role;

revoke execute on function
  public.claim_webhook_deliveries(bigint, integer),
  public.record_webhook_deliveries(bigint, jsonb),
  public.retry_webhook_delivery(text)
  from public, anon;
grant execute on function
  public.claim_webhook_deliveries(bigint, integer),
  public.record_webhook_deliveries(bigint, jsonb),
  public.retry_webhook_delivery(text)
  to authenticated, service_role;

-- The helpers run as their callers' owner (the security definer RPCs and the signals' trigger), or as
-- trigger functions, which need no grant.
revoke execute on function
  private.webhook_in_flight(),
  private.webhook_max_attempts(),
  private.check_webhook_input(),
  private.queue_webhook_deliveries(),
  private.webhook_result_problem(jsonb)
  from public;

create policy webhooks_select_own on public.webhooks
  for select to authenticated
  using (user_id = (select auth.uid()));
create policy webhooks_insert_own on public.webhooks
  for insert to authenticated
  with check (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null);
create policy webhooks_update_own on public.webhooks
  for update to authenticated
  using (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null)
  with check (user_id = (select auth.uid()));
create policy webhooks_delete_own on public.webhooks
  for delete to authenticated
  using (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null);

create policy webhook_deliveries_select_own on public.webhook_deliveries
  for select to authenticated
  using (user_id = (select auth.uid()));

select private.register_component('webhooks', 1, '20251003061300_webhooks');
