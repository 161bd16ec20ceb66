DROP INDEX fills_account_ts;
DROP INDEX pnl_samples_period_start;
DROP INDEX candles_period_start;
DROP INDEX trades_ts;
