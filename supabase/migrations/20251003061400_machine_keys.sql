-- signalguard: machine keys. The user's cloud machine runs with a key made in the page instead of a
-- token signed with the project's JWT secret, which a hosted project does not hand out and which could
-- sign a token for anyone.
--
--   1. public.machine_keys: the keys of the user's machine, as a SHA-256 of each (the key itself is
--      shown once, in the answer that makes it) with a label, a hint and the times it was made, last
--      used and revoked. Users read their own (never the hash); only the RPCs below change them.
--   2. private.machine_request(): PostgREST's pre-request function (set below for this database). A
--      request with the anon key and the header `x-signalguard-machine-key: sgm_…` continues as the
--      key's machine token would: role authenticated, claims {sub: owner, machine_id}. A revoked,
--      unknown or malformed key, or a key sent with any other key or token, is refused with SG012
--      (`machine_key_refused: …`). Requests without the header are not touched.
--   3. create_cloud_machine(p_machine_id, p_region): the user registers their machine (one per user)
--      by its Fly machine name.
--   4. create_machine_key(p_label): a key for it; at most 5 not revoked (private.machine_key_limit).
--   5. revoke_machine_key(p_id): the next request with that key is refused.
--   6. machine_identity(): for a machine caller, its owner and machine (a worker started with a key
--      asks this first, where a token carries both).
--
-- Schema: supabase/schemas/85_machine_keys.sql. Registered as the optional component machine_keys:
-- without it, the page has no machine panel and a worker runs with a machine token only.

-- The numbers, in one place. A machine has at most this many keys that are not revoked: enough to
-- rotate (make the new one, set it, revoke the old) and to run a second copy for a test, few enough
-- that a forgotten key is noticed in the list.
create or replace function private.machine_key_limit() returns integer
language sql immutable set search_path = '' as $$ select 5 $$;

-- ---------------------------------------------------------------------------------------------
-- The keys
-- ---------------------------------------------------------------------------------------------

create table public.machine_keys (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  machine_id uuid not null references public.cloud_machines (id) on delete cascade,
  label text not null check (char_length(label) between 1 and 60 and label !~ '[[:cntrl:]]'),
  -- SHA-256 of the whole key. The key is 256 random bits, so a plain hash is enough: there is nothing
  -- to guess that a slow hash would protect. The key itself is shown once and kept nowhere.
  key_hash bytea not null unique check (octet_length(key_hash) = 32),
  -- The key's first characters, shown in the list so the user can tell which key a machine has.
  key_hint text not null check (key_hint ~ '^sgm_[0-9a-f]{6}$'),
  created_at timestamptz not null default now(),
  -- Set by requests that may write (a heartbeat every 10 s), at most once a minute.
  last_used_at timestamptz,
  revoked_at timestamptz
);
comment on table public.machine_keys is
  'Credentials of the user''s cloud machine: a key stands for a machine token of its machine';
create index machine_keys_machine_id on public.machine_keys (machine_id);
create index machine_keys_user_id on public.machine_keys (user_id);
alter table public.machine_keys enable row level security;

-- What a key stands for: the claims of a machine token of its machine, or {refused: why}. Security
-- definer, because no API role may read the hashes.
create or replace function private.machine_key_claims(p_key text) returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_key public.machine_keys;
begin
  if p_key is null or p_key !~ '^sgm_[0-9a-f]{64}$' then
    return jsonb_build_object('refused',
      'not a machine key (sgm_ and 64 hexadecimal digits; copy it whole from the page)');
  end if;
  select * into v_key from public.machine_keys k
   where k.key_hash = pg_catalog.sha256(pg_catalog.convert_to(p_key, 'UTF8'));
  if v_key.id is null then
    return jsonb_build_object('refused', 'this key is unknown (deleted, or never made for this project)');
  end if;
  if v_key.revoked_at is not null then
    return jsonb_build_object('refused', 'this key was revoked at '
      || pg_catalog.to_char(v_key.revoked_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC');
  end if;
  -- GET requests run read-only; the machine's heartbeat (a POST every 10 s) keeps this fresh.
  if not pg_catalog.current_setting('transaction_read_only')::boolean
     and (v_key.last_used_at is null or v_key.last_used_at < now() - interval '1 minute') then
    update public.machine_keys k set last_used_at = now() where k.id = v_key.id;
  end if;
  return jsonb_build_object(
    'sub', v_key.user_id, 'role', 'authenticated', 'aud', 'authenticated',
    'machine_id', v_key.machine_id, 'machine_key_id', v_key.id);
end;
$$;

-- PostgREST's pre-request (db-pre-request): it runs in each request's transaction, after PostgREST
-- has switched to the request's role and set its claims, before the request's own statement. A request
-- with the header and the anon key leaves here as its machine's token would arrive: role
-- authenticated, claims {sub: owner, machine_id}. From there every grant, policy and RPC treats it as
-- the machine token it stands for, so nothing else in the schema knows keys exist. A request without
-- the header is not touched. Security invoker: PostgreSQL refuses a role change inside a security
-- definer function, and SET ROLE is allowed here because the session user (authenticator) is a member
-- of authenticated.
create or replace function private.machine_request() returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_key text := nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb
                  operator(pg_catalog.->>) 'x-signalguard-machine-key';
  v_claims jsonb;
begin
  if v_key is null then
    return;
  end if;
  -- The request's role, as PostgREST set it from the bearer: only the anon key's may carry a key.
  if current_user operator(pg_catalog.<>) 'anon' then
    perform private.raise_guard('SG012',
      'machine_key_refused: a machine key goes with the project''s anon key alone, not with a '
      || 'signed-in session or another key');
  end if;
  v_claims := private.machine_key_claims(v_key);
  if v_claims ? 'refused' then
    perform private.raise_guard('SG012', 'machine_key_refused: ' || (v_claims ->> 'refused'),
      'make a new key for the machine in the page (Cloud machine) and set it as SIGNALGUARD_MACHINE_KEY');
  end if;
  perform pg_catalog.set_config('request.jwt.claims', v_claims::text, true);
  perform pg_catalog.set_config('request.jwt.claim.sub', v_claims ->> 'sub', true);
  perform pg_catalog.set_config('role', 'authenticated', true);
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- The RPCs
-- ---------------------------------------------------------------------------------------------

-- The signed-in user, for what only the user may do (a machine's key cannot make or revoke keys).
create or replace function private.require_owner(p_what text) returns uuid
language plpgsql stable
set search_path = ''
as $$
begin
  if private.jwt_machine_id() is not null then
    perform private.raise_guard('SG008', 'not_a_browser: a machine cannot ' || p_what);
  end if;
  return private.require_user();
end;
$$;

create or replace function public.create_cloud_machine(p_machine_id text, p_region text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_owner('register a cloud machine');
  v_machine public.cloud_machines;
begin
  if p_machine_id is null or p_machine_id !~ '^[a-z0-9][a-z0-9-]{2,62}$' then
    perform private.raise_guard('SG009', 'invalid_argument: machine name: 3 to 63 characters, '
      || 'lower-case letters, digits and "-", beginning with a letter or a digit (as Fly names machines)');
  end if;
  if p_region is not null and p_region !~ '^[a-z0-9-]{1,32}$' then
    perform private.raise_guard('SG009',
      'invalid_argument: region: 1 to 32 lower-case letters, digits and "-" (a Fly region such as fra)');
  end if;
  select * into v_machine from public.cloud_machines m where m.user_id = v_uid;
  if v_machine.id is not null then
    if v_machine.machine_id = p_machine_id then
      return private.machine_json(v_machine) || jsonb_build_object('created', false);
    end if;
    perform private.raise_guard('SG009', 'invalid_argument: machine name: you already have a cloud '
      || 'machine, ' || v_machine.machine_id || '; one per user');
  end if;
  insert into public.cloud_machines (user_id, machine_id, region)
  values (v_uid, p_machine_id, p_region)
  on conflict do nothing
  returning * into v_machine;
  if v_machine.id is null then
    perform private.raise_guard('SG009',
      'invalid_argument: machine name: ' || p_machine_id || ' is taken; choose another');
  end if;
  return private.machine_json(v_machine) || jsonb_build_object('created', true);
end;
$$;
comment on function public.create_cloud_machine(text, text) is
  'Register the caller''s cloud machine (one per user) by its Fly machine name; stopped until it beats';

create or replace function public.create_machine_key(p_label text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_owner('make machine keys');
  v_label text := btrim(p_label);
  v_machine public.cloud_machines;
  v_key text;
  v_row public.machine_keys;
begin
  if v_label is null or char_length(v_label) not between 1 and 60 or v_label ~ '[[:cntrl:]]' then
    perform private.raise_guard('SG009',
      'invalid_argument: key label: 1 to 60 characters on one line (say where the key goes)');
  end if;
  select * into v_machine from public.cloud_machines m where m.user_id = v_uid for update;
  if v_machine.id is null then
    perform private.raise_guard('SG009',
      'invalid_argument: machine key: register your cloud machine first');
  end if;
  if (select count(*) from public.machine_keys k
       where k.machine_id = v_machine.id and k.revoked_at is null) >= private.machine_key_limit() then
    perform private.raise_guard('SG009', 'invalid_argument: machine key: at most '
      || private.machine_key_limit() || ' keys in use; revoke one first');
  end if;
  -- Two version-4 UUIDs: 244 random bits from the server's strong random source (gen_random_uuid is
  -- built in, where gen_random_bytes needs pgcrypto).
  v_key := 'sgm_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
  insert into public.machine_keys (user_id, machine_id, label, key_hash, key_hint)
  values (v_uid, v_machine.id, v_label, pg_catalog.sha256(pg_catalog.convert_to(v_key, 'UTF8')),
          left(v_key, 10))
  returning * into v_row;
  return jsonb_build_object('id', v_row.id, 'key', v_key, 'key_hint', v_row.key_hint,
    'label', v_row.label, 'machine_id', v_machine.machine_id, 'created_at', v_row.created_at);
end;
$$;
comment on function public.create_machine_key(text) is
  'Make a key for the caller''s cloud machine; the answer is the only place the key is ever shown';

create or replace function public.revoke_machine_key(p_id uuid) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_owner('revoke machine keys');
  v_row public.machine_keys;
  v_lease public.execution_leases;
begin
  update public.machine_keys k set revoked_at = now()
   where k.id = p_id and k.user_id = v_uid and k.revoked_at is null
  returning * into v_row;
  if v_row.id is not null then
    -- Whatever ran with this key can write nothing more, so its machine's live lease ends now (as a
    -- stop does): the candles from here on fall in the next holder's gap instead of a window nobody
    -- may write under until it runs out. A machine running with another of its keys claims again at
    -- its next heartbeat, and its new epoch's gap starts where this one ended.
    v_lease := private.lock_lease(v_uid);
    if v_lease.holder_kind = 'cloud' and v_lease.machine_id = v_row.machine_id
       and v_lease.expires_at > clock_timestamp() then
      perform private.end_lease(v_lease, clock_timestamp(), 'machine_stopped');
    end if;
  else
    select * into v_row from public.machine_keys k where k.id = p_id and k.user_id = v_uid;
  end if;
  if v_row.id is null then
    perform private.raise_guard('SG009', 'invalid_argument: machine key: no such key of yours');
  end if;
  return jsonb_build_object('id', v_row.id, 'revoked_at', v_row.revoked_at);
end;
$$;
comment on function public.revoke_machine_key(uuid) is
  'Revoke one of the caller''s machine keys: the next request made with it is refused (SG012), and its machine''s live lease ends';

create or replace function public.machine_identity() returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_machine public.cloud_machines := private.require_machine();
begin
  return jsonb_build_object('user_id', v_machine.user_id, 'machine', private.machine_json(v_machine),
    'key_id', auth.jwt() ->> 'machine_key_id');
end;
$$;
comment on function public.machine_identity() is
  'Who a machine caller is: its owner and its machine (a worker started with a key asks this first)';

-- ---------------------------------------------------------------------------------------------
-- Privileges and row level security (as in supabase/schemas/90_privileges.sql)
-- ---------------------------------------------------------------------------------------------

revoke all on public.machine_keys from anon, authenticated, service_role;
-- Every column but the hash: it identifies the key to whoever holds the key, and nobody else needs it.
grant select (id, user_id, machine_id, label, key_hint, created_at, last_used_at, revoked_at)
  on public.machine_keys to authenticated;
grant select, update, delete on public.machine_keys to service_role;

revoke execute on function
  public.create_cloud_machine(text, text),
  public.create_machine_key(text),
  public.revoke_machine_key(uuid),
  public.machine_identity()
  from public, anon;
grant execute on function
  public.create_cloud_machine(text, text),
  public.create_machine_key(text),
  public.revoke_machine_key(uuid),
  public.machine_identity()
  to authenticated, service_role;

revoke execute on function
  private.machine_key_limit(),
  private.machine_key_claims(text),
  private.machine_request(),
  private.require_owner(text)
  from public;
-- The pre-request runs as each request's role, anon's included, and what it calls with a key as anon.
grant usage on schema private to anon;
grant execute on function private.machine_request() to anon, authenticated, service_role;
grant execute on function private.machine_key_claims(text), private.raise_guard(text, text, text)
  to anon;

create policy machine_keys_select_own on public.machine_keys
  for select to authenticated
  using (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null);

-- PostgREST reads settings from the authenticator role in the database it serves, as well as from its
-- own configuration (in-database configuration: on by default, and on hosted projects), and reloads
-- them on NOTIFY pgrst 'reload config'. Set for this database only, so that another database of the
-- cluster, which may lack the function, is not affected. A project that already has a pre-request
-- function must call private.machine_request() from it instead (docs/deploy.md).
do $$
begin
  execute pg_catalog.format('alter role authenticator in database %I set pgrst.db_pre_request = %L',
    pg_catalog.current_database(), 'private.machine_request');
end
$$;
notify pgrst, 'reload config';

select private.register_component('machine_keys', 1, '20251003061400_machine_keys');
