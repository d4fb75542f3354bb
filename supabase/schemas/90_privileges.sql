-- Who may do what: every grant and revoke, and every row level security policy, in one place.
--
-- A hosted project grants the API roles (anon, authenticated, service_role) everything on each new
-- table and function in `public` (Supabase's default privileges), and PostgreSQL grants EXECUTE on
-- every new function to PUBLIC. So each object here is first stripped of those and then given what a
-- policy or an RPC needs, nothing more:
--   - the anonymous key reaches no table and can call no function; it runs one private function,
--     PostgREST's pre-request (85_machine_keys.sql), which lets a request carrying a valid machine key
--     go on as that machine's token;
--   - nobody truncates, references or triggers on the app's tables, and nothing deletes a signal, a
--     trade or a lease through the API (signals and trades are history); users delete their own
--     traders (a policy says which);
--   - machines change only through the machine functions, leases and epochs only through the lease
--     functions, trader problems only through report_trader_problems() and the traders' trigger,
--     webhook deliveries only through the signals' trigger and the webhook RPCs (all security
--     definer);
--   - of the private helpers, only those that row level security, CHECK constraints and the
--     security-invoker RPCs call as the requesting role are callable by it; trigger functions need no
--     grant, and security-definer functions call the rest as their owner.
-- Row level security is switched on where each table is created; the policies are below.

grant usage on schema private to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

revoke all on public.traders, public.cloud_machines, public.signals, public.execution_leases,
  public.lease_epochs, public.trades, public.trader_problems, public.webhooks,
  public.webhook_deliveries, public.machine_keys
  from anon, authenticated, service_role;
grant select, insert, update, delete on public.traders to authenticated, service_role;
grant select on public.cloud_machines, public.execution_leases, public.lease_epochs
  to authenticated;
grant select, insert, update, delete on public.cloud_machines, public.execution_leases,
  public.lease_epochs to service_role;
grant select, insert, update on public.signals, public.trades to authenticated;
grant select, insert, update, delete on public.signals, public.trades to service_role;
grant select on public.trader_problems to authenticated, service_role;
grant select, insert, update, delete on public.webhooks to authenticated, service_role;
grant select on public.webhook_deliveries to authenticated, service_role;
-- Every column but the hash: it identifies the key to whoever holds the key, and nobody else needs it.
grant select (id, user_id, machine_id, label, key_hint, created_at, last_used_at, revoked_at)
  on public.machine_keys to authenticated;
grant select, update, delete on public.machine_keys to service_role;

-- ---------------------------------------------------------------------------------------------
-- Functions
-- ---------------------------------------------------------------------------------------------

-- The RPCs: signed-in callers (browser and machine tokens) and the service role.
revoke execute on function
  public.schema_version(),
  public.execution_status(text),
  public.claim_local_lease(text, boolean, timestamptz),
  public.release_local_lease(text, timestamptz),
  public.machine_heartbeat(text, text),
  public.claim_cloud_lease(),
  public.release_cloud_lease(timestamptz),
  public.write_signals(jsonb),
  public.update_signal_statuses(jsonb),
  public.write_trades(jsonb),
  public.report_trader_problems(bigint, jsonb),
  public.signal_summary(integer),
  public.trade_summary(integer),
  public.claim_webhook_deliveries(bigint, integer),
  public.record_webhook_deliveries(bigint, jsonb),
  public.retry_webhook_delivery(text),
  public.create_cloud_machine(text, text),
  public.create_machine_key(text),
  public.revoke_machine_key(uuid),
  public.machine_identity()
  from public, anon;
grant execute on function
  public.schema_version(),
  public.execution_status(text),
  public.claim_local_lease(text, boolean, timestamptz),
  public.release_local_lease(text, timestamptz),
  public.machine_heartbeat(text, text),
  public.claim_cloud_lease(),
  public.release_cloud_lease(timestamptz),
  public.write_signals(jsonb),
  public.update_signal_statuses(jsonb),
  public.write_trades(jsonb),
  public.report_trader_problems(bigint, jsonb),
  public.signal_summary(integer),
  public.trade_summary(integer),
  public.claim_webhook_deliveries(bigint, integer),
  public.record_webhook_deliveries(bigint, jsonb),
  public.retry_webhook_delivery(text),
  public.create_cloud_machine(text, text),
  public.create_machine_key(text),
  public.revoke_machine_key(uuid),
  public.machine_identity()
  to authenticated, service_role;

-- The private helpers: none callable but these, which row level security, CHECK constraints, the
-- write guards' inlined expressions and the security-invoker RPCs (write_signals,
-- update_signal_statuses, write_trades) call as the requesting role.
revoke execute on all functions in schema private from public;
grant execute on function
  private.is_api_session(),
  private.jwt_machine_id(),
  private.interval_length(text),
  private.is_amount(numeric),
  private.amount_rule(),
  private.labels_fit(text[]),
  private.signal_key(uuid, uuid, text, text, timestamptz),
  private.raise_guard(text, text, text),
  private.require_user(),
  private.signal_open_time(jsonb),
  private.trade_time(jsonb, text),
  private.trade_op_shape(text),
  private.trade_op_problem(jsonb),
  private.json_is_positive(jsonb),
  private.json_is_integer(jsonb)
  to authenticated, service_role;
-- PostgREST's pre-request runs as each request's role, anon's included, and what it calls with a key
-- as anon.
grant usage on schema private to anon;
grant execute on function private.machine_request() to anon, authenticated, service_role;
grant execute on function private.machine_key_claims(text), private.raise_guard(text, text, text)
  to anon;

-- ---------------------------------------------------------------------------------------------
-- Row level security policies: a user reads and writes only their own rows
-- ---------------------------------------------------------------------------------------------

-- traders: a machine token may read its owner's traders (it runs them) but never edit them.
create policy traders_select_own on public.traders
  for select to authenticated
  using (user_id = (select auth.uid()));
create policy traders_insert_own on public.traders
  for insert to authenticated
  with check (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null);
create policy traders_update_own on public.traders
  for update to authenticated
  using (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null)
  with check (user_id = (select auth.uid()));
create policy traders_delete_own on public.traders
  for delete to authenticated
  using (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null);

-- cloud_machines: users read their own machine; a machine token reads only its own machine. No write
-- policies: status and heartbeat change only through the machine RPCs.
create policy cloud_machines_select_own on public.cloud_machines
  for select to authenticated
  using (
    user_id = (select auth.uid())
    and ((select private.jwt_machine_id()) is null or id = (select private.jwt_machine_id()))
  );

-- signals: users (and their machine) read their own; a browser token writes local signals, a machine
-- token its machine's cloud signals, both for the token's user only. The write guard checks the
-- lease.
create policy signals_select_own on public.signals
  for select to authenticated
  using (user_id = (select auth.uid()));
create policy signals_insert_own on public.signals
  for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and (
      (source = 'local' and machine_id is null and (select private.jwt_machine_id()) is null)
      or (source = 'cloud' and machine_id = (select private.jwt_machine_id()))
    )
  );
create policy signals_update_own on public.signals
  for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

-- The lease and its history: read-only for their owner.
create policy execution_leases_select_own on public.execution_leases
  for select to authenticated using (user_id = (select auth.uid()));
create policy lease_epochs_select_own on public.lease_epochs
  for select to authenticated using (user_id = (select auth.uid()));

-- trades: as signals. The trade guard checks the live lease.
create policy trades_select_own on public.trades
  for select to authenticated
  using (user_id = (select auth.uid()));
create policy trades_insert_own on public.trades
  for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and (
      (source = 'local' and machine_id is null and (select private.jwt_machine_id()) is null)
      or (source = 'cloud' and machine_id = (select private.jwt_machine_id()))
    )
  );
create policy trades_update_own on public.trades
  for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

-- trader_problems: users and their machine read their own.
create policy trader_problems_select_own on public.trader_problems
  for select to authenticated
  using (user_id = (select auth.uid()));

-- webhooks: the user sets their own from the page; a machine token reads it (the claim hands it the URL
-- and secret anyway) but never changes it.
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

-- webhook_deliveries: users and their machine read their own (the page shows the failures).
create policy webhook_deliveries_select_own on public.webhook_deliveries
  for select to authenticated
  using (user_id = (select auth.uid()));

-- machine_keys: users read their own keys (never the hash) in the page; a machine reads none.
create policy machine_keys_select_own on public.machine_keys
  for select to authenticated
  using (user_id = (select auth.uid()) and (select private.jwt_machine_id()) is null);
