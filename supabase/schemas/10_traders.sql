-- traders: a user's screening strategies. `definition` is validated by the engine (it is user input
-- and is never evaluated as code); the database only bounds its shape and size. Row level security is
-- on from the start; the policies are in 90_privileges.sql.

create table public.traders (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 100),
  definition jsonb not null default '{}'::jsonb
    check (jsonb_typeof(definition) = 'object' and pg_column_size(definition) <= 65536),
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Lets signals reference (trader, owner) as one foreign key, so a signal's trader always belongs
  -- to the signal's user.
  constraint traders_id_user_id_key unique (id, user_id)
);
create index traders_user_id_idx on public.traders (user_id);
alter table public.traders enable row level security;

-- The table's CHECK constraints bound the name and the definition; refused here first, a too-large
-- value gets a one-line answer naming the field instead of PostgreSQL's, which echoes the whole row.
-- created_at is the database's, and stays; so do id and user_id.
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

-- BEFORE triggers fire in name order: the input check (*_api_input) before *_touch_updated_at. The
-- AFTER trigger that clears a trader's reported problem is in 60_trader_problems.sql.
create trigger traders_api_input before insert or update on public.traders
  for each row execute function private.check_trader_input();
create trigger traders_touch_updated_at before update on public.traders
  for each row execute function private.touch_updated_at();
