-- A print is unique by (instrument, source, sequence): event ids are sequences per source and
-- instrument, so `feed-x:1` on ESZ6 and `feed-x:1` on NQZ6 are two prints. A fill id is
-- unique per account and instrument (what the processor owning the instrument can check):
-- another account's fill id never hides one's own.
-- Tables are rebuilt (SQLite cannot change a primary key in place); the SQL is portable.

CREATE TABLE trades_keyed (
    event_id  TEXT NOT NULL,
    symbol    TEXT NOT NULL,
    price     TEXT NOT NULL,
    qty       BIGINT NOT NULL,
    aggressor TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    ingest_ts BIGINT NOT NULL,
    PRIMARY KEY (symbol, event_id)
);
INSERT INTO trades_keyed (event_id, symbol, price, qty, aggressor, ts, ingest_ts)
    SELECT event_id, symbol, price, qty, aggressor, ts, ingest_ts FROM trades;
DROP TABLE trades;
ALTER TABLE trades_keyed RENAME TO trades;
CREATE INDEX trades_symbol_ts ON trades (symbol, ts);

CREATE TABLE fills_keyed (
    fill_id     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    account     TEXT NOT NULL,
    account_seq BIGINT NOT NULL,
    order_id    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL,
    price       TEXT NOT NULL,
    qty         BIGINT NOT NULL,
    ts          BIGINT NOT NULL,
    PRIMARY KEY (account, symbol, fill_id)
);
INSERT INTO fills_keyed (fill_id, event_id, account, account_seq, order_id, symbol, side, price, qty, ts)
    SELECT fill_id, event_id, account, account_seq, order_id, symbol, side, price, qty, ts FROM fills;
DROP TABLE fills;
ALTER TABLE fills_keyed RENAME TO fills;
CREATE UNIQUE INDEX fills_account_symbol_seq ON fills (account, symbol, account_seq);
