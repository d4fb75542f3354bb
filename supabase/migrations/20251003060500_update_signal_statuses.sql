-- Status changes in one call, with one outcome per change (as write_signals does for inserts).
--
-- The executor moves its signals' statuses (new -> active -> expired | closed). A PATCH per group of
-- keys answered a refusal with an HTTP error for the whole group, and the client could not tell which
-- change was refused; here every change gets its own outcome and a refusal is an answer, not an error:
--   {"index": i, "signal_key": k, "outcome": "updated"}
--   {"index": i, "signal_key": k, "outcome": "rejected", "code": "SG00x" | "not_found" | SQLSTATE,
--    "message": "..."}
-- The write guard (private.guard_signal_write) checks each update in the same transaction as before:
-- the caller must hold the live lease and name its epoch in updated_epoch, and the transition must be
-- one of the lifecycle's. Row level security limits the keys to the caller's own signals.

create or replace function public.update_signal_statuses(p_changes jsonb) returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_uid uuid := private.require_user();
  v_item jsonb;
  v_results jsonb[] := '{}';
  v_out jsonb;
  v_key text;
  v_done text;
  v_state text;
  v_msg text;
  v_index integer := -1;
begin
  if p_changes is null or jsonb_typeof(p_changes) <> 'array' then
    perform private.raise_guard('SG009', 'invalid_argument: p_changes must be a JSON array');
  end if;
  if jsonb_array_length(p_changes) > 500 then
    perform private.raise_guard('SG009', 'invalid_argument: at most 500 changes per call');
  end if;

  -- Fast path: one statement, when every change is well-formed and names a different signal (one
  -- UPDATE changes a row once, so two steps of one signal go the slow way, in order).
  if not exists (
       select 1 from jsonb_array_elements(p_changes) e(value)
        where jsonb_typeof(e.value) <> 'object'
           or jsonb_typeof(e.value -> 'signal_key') is distinct from 'string'
           or jsonb_typeof(e.value -> 'status') is distinct from 'string'
           or jsonb_typeof(e.value -> 'updated_epoch') is distinct from 'number')
     and (select count(distinct e.value ->> 'signal_key') = count(*)
            from jsonb_array_elements(p_changes) e(value)) then
    begin
      with input as (
        select (e.ord - 1)::integer as idx, e.value ->> 'signal_key' as key, e.value ->> 'status' as status,
               (e.value ->> 'updated_epoch')::bigint as epoch
          from jsonb_array_elements(p_changes) with ordinality as e(value, ord)
      ), upd as (
        update public.signals s
           set status = i.status, updated_epoch = i.epoch
          from input i
         where s.signal_key = i.key and s.user_id = v_uid
        returning s.signal_key
      )
      select jsonb_agg(
               case when upd.signal_key is not null
                    then jsonb_build_object('index', i.idx, 'signal_key', i.key, 'outcome', 'updated')
                    else jsonb_build_object('index', i.idx, 'signal_key', i.key, 'outcome', 'rejected',
                                            'code', 'not_found', 'message', 'no such signal') end
               order by i.idx)
        into v_out
        from input i left join upd on upd.signal_key = i.key;
      return coalesce(v_out, '[]'::jsonb);
    exception when others then
      null;  -- some change is refused: find which, one by one
    end;
  end if;

  for v_item in select value from jsonb_array_elements(p_changes) loop
    v_index := v_index + 1;
    v_key := null;
    begin
      if jsonb_typeof(v_item) <> 'object'
         or jsonb_typeof(v_item -> 'signal_key') is distinct from 'string'
         or jsonb_typeof(v_item -> 'status') is distinct from 'string'
         or jsonb_typeof(v_item -> 'updated_epoch') is distinct from 'number' then
        perform private.raise_guard('SG009',
          'invalid_argument: each change is {signal_key: text, status: text, updated_epoch: number}');
      end if;
      v_key := v_item ->> 'signal_key';
      v_done := null;
      update public.signals s
         set status = v_item ->> 'status', updated_epoch = (v_item ->> 'updated_epoch')::bigint
       where s.signal_key = v_key and s.user_id = v_uid
      returning s.signal_key into v_done;
      if v_done is null then
        v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
          'outcome', 'rejected', 'code', 'not_found', 'message', 'no such signal');
      else
        v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
          'outcome', 'updated');
      end if;
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
      v_results := v_results || jsonb_build_object('index', v_index, 'signal_key', v_key,
        'outcome', 'rejected', 'code', v_state, 'message', v_msg);
    end;
  end loop;
  return to_jsonb(v_results);
end;
$$;

comment on function public.update_signal_statuses(jsonb) is
  'Move signals'' statuses under the caller''s lease: one outcome per change (updated | rejected)';

revoke execute on function public.update_signal_statuses(jsonb) from public, anon;
grant execute on function public.update_signal_statuses(jsonb) to authenticated, service_role;

select private.register_component('status_updates', 1, '20251003060500_update_signal_statuses');
