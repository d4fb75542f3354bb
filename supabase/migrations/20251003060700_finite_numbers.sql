-- Prices and sizes are finite numbers.
--
-- `numeric` admits 'NaN' and 'Infinity', and both compare greater than zero, so `check (price > 0)`
-- let `write_signals` store a signal priced "NaN" or "Infinity" (JSON strings cast to numeric). No
-- market has such a price; a row like that would poison every average and P&L computed from it.
-- `x < 'Infinity'` excludes both: NaN sorts above Infinity in PostgreSQL.

alter table public.signals
  add constraint signals_price_finite check (price < 'Infinity');

alter table public.trades
  add constraint trades_numbers_finite check (
    size < 'Infinity'
    and entry_price < 'Infinity'
    and (take_profit_price is null or take_profit_price < 'Infinity')
    and (stop_loss_price is null or stop_loss_price < 'Infinity')
    and (exit_price is null or exit_price < 'Infinity')
  );
