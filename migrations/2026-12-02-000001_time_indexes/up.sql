-- Indexes that start with the time column, so that retention and the blotter read a range
-- instead of the whole table: the prune's oldest-row lookup and its delete (trades by `ts`;
-- 1 s candles and 1 s P&L samples by period and bucket start), and an account's fills of a day,
-- newest first (`GET /api/fills`), in the order the page is read. Portable SQL.
CREATE INDEX trades_ts ON trades (ts);
CREATE INDEX candles_period_start ON candles (period, start_ts);
CREATE INDEX pnl_samples_period_start ON pnl_samples (period, start_ts);
CREATE INDEX fills_account_ts ON fills (account, ts, symbol, account_seq);
