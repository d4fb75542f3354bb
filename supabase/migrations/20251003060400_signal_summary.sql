-- The "by source" summary: the seed's analysis queries (signals by source; cloud signals by machine)
-- as one read the app can show.
--
-- security invoker: the caller's row level security applies, so a user sees the counts of their own
-- signals and machines only. The window is counted by the database clock, like everything else.

create or replace function public.signal_summary(p_days integer default 7)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_since timestamptz;
begin
  if p_days is null or p_days < 1 or p_days > 366 then
    raise exception 'p_days must be between 1 and 366, not %', p_days
      using errcode = '22023', hint = 'Ask for the last 1 to 366 days.';
  end if;
  v_since := now() - make_interval(days => p_days);
  return jsonb_build_object(
    'days', p_days,
    'since', v_since,
    -- Compare signal counts by source (both sources always listed, zero included).
    'by_source', (
      select coalesce(jsonb_agg(jsonb_build_object(
               'source', k.source,
               'signals', coalesce(c.signals, 0),
               'traders', coalesce(c.traders, 0),
               'last_signal_at', c.last_signal_at) order by k.source), '[]'::jsonb)
      from (values ('cloud'), ('local')) as k (source)
      left join (
        select s.source, count(*) as signals, count(distinct s.trader_id) as traders,
               max(s.created_at) as last_signal_at
        from public.signals s
        where s.created_at > v_since
        group by s.source
      ) c on c.source = k.source
    ),
    -- Which machine generated the signals (the seed's machine attribution).
    'by_machine', (
      select coalesce(jsonb_agg(jsonb_build_object(
               'machine_id', m.machine_id,
               'region', m.region,
               'signals', m.signals,
               'traders', m.traders,
               'last_signal_at', m.last_signal_at) order by m.signals desc, m.machine_id), '[]'::jsonb)
      from (
        select cm.machine_id, cm.region, count(*) as signals, count(distinct s.trader_id) as traders,
               max(s.created_at) as last_signal_at
        from public.signals s
        join public.cloud_machines cm on cm.id = s.machine_id
        where s.source = 'cloud' and s.created_at > v_since
        group by cm.machine_id, cm.region
      ) m
    )
  );
end;
$$;

comment on function public.signal_summary(integer) is
  'Signals of the last p_days days (1..366) by source, and cloud signals by machine, for the caller';

revoke execute on function public.signal_summary(integer) from public, anon;
grant execute on function public.signal_summary(integer) to authenticated, service_role;

select private.register_component('signal_summary', 1, '20251003060400_signal_summary');
