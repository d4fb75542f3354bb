-- The read-only summaries by source: the seed's analysis queries as reads the app can show.
--
-- Both are security invoker: the caller's row level security applies, so a user sees the counts of
-- their own signals, trades and machines only. The window is counted by the database clock, like
-- everything else.

-- The "by source" summary (optional: the app generates without it): signals by source, and cloud
-- signals by machine.
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

-- security invoker: the caller's row level security applies. The seed's query
--   SELECT s.source, COUNT(*) as total_signals, COUNT(t.id) as trades_executed,
--          AVG(t.profit_loss) as avg_profit
--   FROM signals s LEFT JOIN trades t ON s.id = t.signal_id GROUP BY s.source;
-- for the signals created in the last p_days days (by the database clock), with the realised P&L,
-- open trades, wins and losses beside it. Both sources are always listed, zero included.
create or replace function public.trade_summary(p_days integer default 7)
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
    'by_source', (
      select coalesce(jsonb_agg(jsonb_build_object(
               'source', k.source,
               'total_signals', coalesce(c.total_signals, 0),
               'trades_executed', coalesce(c.trades_executed, 0),
               'avg_profit', c.avg_profit,
               'realised_pnl', coalesce(c.realised_pnl, 0),
               'open_trades', coalesce(c.open_trades, 0),
               'wins', coalesce(c.wins, 0),
               'losses', coalesce(c.losses, 0)) order by k.source), '[]'::jsonb)
      from (values ('cloud'), ('local')) as k (source)
      left join (
        select s.source,
               count(*) as total_signals,
               count(t.id) as trades_executed,
               avg(t.profit_loss) as avg_profit,
               sum(t.profit_loss) as realised_pnl,
               count(*) filter (where t.status = 'open') as open_trades,
               count(*) filter (where t.profit_loss > 0) as wins,
               count(*) filter (where t.profit_loss < 0) as losses
        from public.signals s
        left join public.trades t on s.id = t.signal_id
        where s.created_at > v_since
        group by s.source
      ) c on c.source = k.source
    )
  );
end;
$$;
comment on function public.trade_summary(integer) is
  'Signals of the last p_days days (1..366) by source with their trades: count, average and realised P&L, open, wins, losses';
