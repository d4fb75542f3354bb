-- signalguard: a trader whose market data fails is reported, and only that trader stops.
--
-- The executor (the generating tab or the cloud machine) watches one market-data stream per
-- (symbol, interval) of the enabled traders. A stream the market data does not serve (an unknown
-- symbol, an interval the source lacks, a region block) stops only the traders that watch it; the
-- executor says why here, one plain line per trader, so that every tab and device shows the same
-- reason, whichever side generates. The row goes when the stream recovers, when the executor no
-- longer watches it, or when the user switches the trader off or edits it.

create table public.trader_problems (
  trader_id uuid primary key,
  user_id uuid not null,
  -- One line for the trader's row, e.g. "NOSUCHUSDT 1m: the market data does not serve this symbol".
  problem text not null check (char_length(problem) between 1 and 300),
  -- Which executor saw it: 'local' (a browser tab) or 'cloud' (the user's machine).
  source text not null check (source in ('local', 'cloud')),
  -- The lease epoch it was reported under (a report of an earlier holder is refused).
  epoch bigint not null,
  -- When the executor first saw this problem (kept while the same problem is reported again).
  since timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- A problem belongs to its trader, and to the trader's owner; it goes with the trader.
  constraint trader_problems_trader_fkey foreign key (trader_id, user_id)
    references public.traders (id, user_id) on delete cascade
);
create index trader_problems_user_id_idx on public.trader_problems (user_id);
alter table public.trader_problems enable row level security;

comment on table public.trader_problems is
  'Why an enabled trader does not generate, as its executor reports it (report_trader_problems)';

-- Users and their machine read their own; nobody writes but report_trader_problems() and the
-- trigger below (both security definer).
create policy trader_problems_select_own on public.trader_problems
  for select to authenticated
  using (user_id = (select auth.uid()));
revoke all on public.trader_problems from anon, authenticated, service_role;
grant select on public.trader_problems to authenticated, service_role;

-- Whether the caller holds the user's live lease under p_epoch: the same fence as every write
-- (private.require_live_lease), as a yes/no for a caller that answers instead of raising.
create or replace function private.holds_live_lease(p_user_id uuid, p_epoch bigint) returns boolean
language sql stable
set search_path = ''
as $$
  select exists (
    select 1 from public.execution_leases l
     where l.user_id = p_user_id
       and l.holder_kind = case when private.jwt_machine_id() is null then 'local' else 'cloud' end
       and l.expires_at > clock_timestamp()
       and l.epoch = p_epoch
       and (private.jwt_machine_id() is null or l.machine_id = private.jwt_machine_id()));
$$;

-- Set or clear the problems of the caller's traders, under the caller's live lease.
-- p_problems is an object {trader_id: "one line" | null}: a line sets it (its `since` is kept while
-- the line is the same), null clears it. At most 500 traders a call. Answers
-- {"stored": n, "cleared": n, "unknown": [ids that are not the caller's traders]}.
create or replace function public.report_trader_problems(p_epoch bigint, p_problems jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_uid uuid := private.require_user();
  v_source text := case when private.jwt_machine_id() is null then 'local' else 'cloud' end;
  v_stored integer := 0;
  v_cleared integer := 0;
  v_unknown jsonb;
begin
  if p_problems is null or jsonb_typeof(p_problems) <> 'object' then
    perform private.raise_guard('SG009', 'invalid_argument: p_problems must be a JSON object');
  end if;
  if (select count(*) from jsonb_object_keys(p_problems)) > 500 then
    perform private.raise_guard('SG009', 'invalid_argument: at most 500 traders per call');
  end if;
  if exists (
       select 1 from jsonb_each(p_problems) e
        where e.key !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
           or (jsonb_typeof(e.value) <> 'null'
               and (jsonb_typeof(e.value) <> 'string'
                    or char_length(e.value #>> '{}') not between 1 and 300))) then
    perform private.raise_guard('SG009',
      'invalid_argument: each trader id is a UUID, each problem null or a line of 1 to 300 characters');
  end if;
  -- One trader under two spellings of its id (upper and lower case) would be two orders for one row.
  if (select count(distinct e.key::uuid) from jsonb_each(p_problems) e)
     <> (select count(*) from jsonb_object_keys(p_problems)) then
    perform private.raise_guard('SG009', 'invalid_argument: a trader is named twice');
  end if;
  -- Serialises with lease changes (as the write guards do), so a report cannot outlive its epoch.
  perform 1 from public.execution_leases l where l.user_id = v_uid for share;
  if not private.holds_live_lease(v_uid, p_epoch) then
    perform private.raise_guard('SG001', format(
      'lease_not_held: reporting trader problems needs the live lease of this %s writer; epoch %s is not it',
      v_source, coalesce(p_epoch::text, 'null')),
      'Re-poll the execution status; the holder of the live lease reports them.');
  end if;

  select coalesce(jsonb_agg(e.key order by e.key), '[]'::jsonb) into v_unknown
    from jsonb_each(p_problems) e
   where not exists (select 1 from public.traders t where t.id = e.key::uuid and t.user_id = v_uid);

  with cleared as (
    delete from public.trader_problems p
     using jsonb_each(p_problems) e
     where jsonb_typeof(e.value) = 'null' and p.trader_id = e.key::uuid and p.user_id = v_uid
    returning 1
  )
  select count(*) into v_cleared from cleared;

  with stored as (
    insert into public.trader_problems as p (trader_id, user_id, problem, source, epoch)
    select t.id, v_uid, e.value #>> '{}', v_source, p_epoch
      from jsonb_each(p_problems) e
      -- A trader switched off has no problem: a report racing the switch must not bring it back.
      join public.traders t on t.id = e.key::uuid and t.user_id = v_uid and t.enabled
     where jsonb_typeof(e.value) = 'string'
    on conflict (trader_id) do update
       set problem = excluded.problem,
           source = excluded.source,
           epoch = excluded.epoch,
           since = case when p.problem = excluded.problem and p.source = excluded.source
                        then p.since else now() end,
           updated_at = now()
    returning 1
  )
  select count(*) into v_stored from stored;

  return jsonb_build_object('stored', v_stored, 'cleared', v_cleared, 'unknown', v_unknown);
end;
$$;

comment on function public.report_trader_problems(bigint, jsonb) is
  'Set or clear why the caller''s traders do not generate, under the caller''s live lease';

revoke execute on function public.report_trader_problems(bigint, jsonb) from public, anon;
grant execute on function public.report_trader_problems(bigint, jsonb) to authenticated, service_role;

-- A trader switched off or edited has no problem until its executor sees one again: the reason was
-- about the streams it watched, which it no longer watches (or watches anew).
create or replace function private.clear_trader_problem() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.enabled is distinct from old.enabled and not new.enabled
     or new.definition is distinct from old.definition then
    delete from public.trader_problems p where p.trader_id = new.id;
  end if;
  return new;
end;
$$;
revoke execute on function private.clear_trader_problem(), private.holds_live_lease(uuid, bigint) from public;

create trigger traders_clear_problem after update on public.traders
  for each row execute function private.clear_trader_problem();

select private.register_component('trader_streams', 1, '20251003060900_trader_streams');
