-- Each account's P&L over time: sampled every second into 1 s buckets, and into 1 min buckets
-- (the latest sample of the minute). Money as decimal strings, times in Unix micros.
CREATE TABLE pnl_samples (
    account    TEXT NOT NULL,
    period     TEXT NOT NULL,
    start_ts   BIGINT NOT NULL,
    realized   TEXT NOT NULL,
    unrealized TEXT NOT NULL,
    sampled_at BIGINT NOT NULL,
    PRIMARY KEY (account, period, start_ts)
);
