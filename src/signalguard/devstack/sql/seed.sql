-- Local stack only: demo users, their traders and cloud machines. Applied once, when the database is
-- first made. All demo users share the password printed by `make dev` (signalguard-demo).
--
--   alice@signalguard.test  traders + cloud machine vyx-63eea370 (stopped)
--   bob@signalguard.test    traders + cloud machine vyx-b0b5e7a1 (stopped)
--   carol@signalguard.test  traders, no cloud machine (the browser-only plan)

insert into auth.users (id, email, encrypted_password, raw_user_meta_data) values
  ('a11ce000-0000-4000-8000-000000000001', 'alice@signalguard.test',
   extensions.crypt('signalguard-demo', extensions.gen_salt('bf', 8)), '{"name": "Alice"}'),
  ('b0b00000-0000-4000-8000-000000000002', 'bob@signalguard.test',
   extensions.crypt('signalguard-demo', extensions.gen_salt('bf', 8)), '{"name": "Bob"}'),
  ('ca201000-0000-4000-8000-000000000003', 'carol@signalguard.test',
   extensions.crypt('signalguard-demo', extensions.gen_salt('bf', 8)), '{"name": "Carol"}');

insert into public.cloud_machines (id, user_id, machine_id, region, status) values
  ('a11ce000-0000-4000-8000-0000000000c1', 'a11ce000-0000-4000-8000-000000000001',
   'vyx-63eea370', 'ams', 'stopped'),
  ('b0b00000-0000-4000-8000-0000000000c2', 'b0b00000-0000-4000-8000-000000000002',
   'vyx-b0b5e7a1', 'fra', 'stopped');

insert into public.traders (id, user_id, name, definition, enabled) values
  ('a11ce000-0000-4000-8000-0000000000a1', 'a11ce000-0000-4000-8000-000000000001',
   'Oversold bounce',
   '{"version": 1, "symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "interval": "1m",
     "match": "all", "cooldown_candles": 5,
     "conditions": [{"indicator": "rsi", "period": 14, "op": "<", "value": 30}],
     "trade": {"side": "long", "notional": 100, "take_profit_pct": 1.5, "stop_loss_pct": 1,
               "max_hold_candles": 60}}', true),
  ('a11ce000-0000-4000-8000-0000000000a2', 'a11ce000-0000-4000-8000-000000000001',
   'Volume spike',
   '{"version": 1, "symbols": ["BTCUSDT", "ETHUSDT"], "interval": "1m",
     "match": "all", "cooldown_candles": 10,
     "conditions": [{"indicator": "volume_spike", "period": 20, "op": ">", "value": 2.0}]}', true),
  ('a11ce000-0000-4000-8000-0000000000a3', 'a11ce000-0000-4000-8000-000000000001',
   'EMA cross up',
   '{"version": 1, "symbols": ["BTCUSDT"], "interval": "1m",
     "match": "all", "cooldown_candles": 3,
     "conditions": [{"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"}]}', false),
  ('b0b00000-0000-4000-8000-0000000000b1', 'b0b00000-0000-4000-8000-000000000002',
   'Sharp drop',
   '{"version": 1, "symbols": ["BTCUSDT", "BNBUSDT"], "interval": "1m",
     "match": "any", "cooldown_candles": 5,
     "conditions": [{"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -3},
                    {"indicator": "rsi", "period": 14, "op": "<", "value": 25}]}', true),
  ('b0b00000-0000-4000-8000-0000000000b2', 'b0b00000-0000-4000-8000-000000000002',
   'Oversold on volume',
   '{"version": 1, "symbols": ["ETHUSDT"], "interval": "1m",
     "match": "all", "cooldown_candles": 5,
     "conditions": [{"indicator": "rsi", "period": 14, "op": "<", "value": 30},
                    {"indicator": "volume_spike", "period": 20, "op": ">", "value": 2.0}]}', true),
  ('ca201000-0000-4000-8000-0000000000d1', 'ca201000-0000-4000-8000-000000000003',
   'Oversold bounce',
   '{"version": 1, "symbols": ["BTCUSDT", "ETHUSDT"], "interval": "1m",
     "match": "all", "cooldown_candles": 5,
     "conditions": [{"indicator": "rsi", "period": 14, "op": "<", "value": 30}],
     "trade": {"side": "long", "notional": 100, "take_profit_pct": 1.5, "stop_loss_pct": 1,
               "max_hold_candles": 60}}', true),
  ('ca201000-0000-4000-8000-0000000000d2', 'ca201000-0000-4000-8000-000000000003',
   'Volume spike',
   '{"version": 1, "symbols": ["SOLUSDT"], "interval": "1m",
     "match": "all", "cooldown_candles": 10,
     "conditions": [{"indicator": "volume_spike", "period": 20, "op": ">", "value": 3.0}]}', true);
