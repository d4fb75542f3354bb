-- Local stack only: the parts of a hosted Supabase project that the migrations rely on.
--
-- A hosted project already has these roles, the `auth` schema with `auth.users`, the helper functions
-- `auth.uid()`, `auth.jwt()`, `auth.role()`, and Supabase's default grants. The files in
-- supabase/migrations/ assume all of that and therefore push unchanged to a hosted project; this file
-- recreates just enough of it on a bare PostgreSQL cluster. It is applied once, by the superuser,
-- before the migrations. It is idempotent.
--
-- :authenticator_password is bound by the local stack (a random value kept in its state folder).

-- Roles, as in Supabase: PostgREST logs in as `authenticator` and switches to the role named in the
-- JWT. `service_role` bypasses row level security (it is never handed to a browser).
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

grant anon, authenticated, service_role to authenticator;

-- Supabase keeps extensions in their own schema; pgcrypto hashes the demo users' passwords.
create schema if not exists extensions;
create extension if not exists pgcrypto with schema extensions;
grant usage on schema extensions to anon, authenticated, service_role;

-- The auth schema: a minimal `auth.users` with the columns Supabase's has that this project reads,
-- and the refresh tokens the local sign-in endpoints issue.
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  id uuid primary key default gen_random_uuid(),
  aud text not null default 'authenticated',
  role text not null default 'authenticated',
  email text unique,
  encrypted_password text,
  email_confirmed_at timestamptz default now(),
  raw_app_meta_data jsonb not null default '{"provider": "email", "providers": ["email"]}',
  raw_user_meta_data jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  last_sign_in_at timestamptz
);

create table if not exists auth.refresh_tokens (
  token text primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  session_id uuid not null,
  revoked boolean not null default false,
  created_at timestamptz not null default now()
);
create index if not exists refresh_tokens_user_id_idx on auth.refresh_tokens (user_id);
-- Reuse detection, as Supabase Auth's own table has it: the token each one was rotated from (its
-- `parent`), and when it was revoked, which opens the short interval in which it may be presented again.
-- Added to the table of state folders made before these columns existed, hence `if not exists`.
alter table auth.refresh_tokens add column if not exists parent text;
alter table auth.refresh_tokens add column if not exists revoked_at timestamptz;
create index if not exists refresh_tokens_session_id_idx on auth.refresh_tokens (session_id);

-- The one-time links of the local sign-up and password-reset mails (printed by the stack, not sent).
-- Only a hash of each token is kept; a link is good once, for its type, until it expires, and a new link
-- of a type replaces the user's earlier one. Supabase Auth keeps its own in a table of this name.
create table if not exists auth.one_time_tokens (
  token_hash text primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  token_type text not null check (token_type in ('signup', 'recovery')),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at timestamptz
);
create index if not exists one_time_tokens_user_id_idx on auth.one_time_tokens (user_id, token_type);

-- The claim helpers, as Supabase defines them: they read the claims PostgREST puts into the
-- transaction's settings. Both the whole-object and the legacy per-claim settings are honoured.
create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

create or replace function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

grant execute on function auth.jwt(), auth.uid(), auth.role() to anon, authenticated, service_role;

-- Supabase's default grants on `public`: every API role may use every table, sequence and function,
-- and row level security decides what it actually sees. Mirroring this locally means a table that
-- forgets RLS is as exposed here as it would be in production, so the tests catch it.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;

-- The Supabase CLI records applied migrations here; the local stack does the same.
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text primary key,
  name text,
  statements text[],
  applied_at timestamptz not null default now()
);
