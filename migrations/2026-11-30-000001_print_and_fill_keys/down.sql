-- Back to one key per event id and per fill id (rows that now share one keep the first).
CREATE TABLE trades_by_event (
    event_id  TEXT PRIMARY KEY NOT NULL,
    symbol    TEXT NOT NULL,
    price     TEXT NOT NULL,
    qty       BIGINT NOT NULL,
    aggressor TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    ingest_ts BIGINT NOT NULL
);
INSERT INTO trades_by_event SELECT event_id, symbol, price, qty, aggressor, ts, ingest_ts FROM trades
    ON CONFLICT DO NOTHING;
DROP TABLE trades;
ALTER TABLE trades_by_event RENAME TO trades;
CREATE INDEX trades_symbol_ts ON trades (symbol, ts);

CREATE TABLE fills_by_id (
    fill_id     TEXT PRIMARY KEY NOT NULL,
    event_id    TEXT NOT NULL,
    account     TEXT NOT NULL,
    account_seq BIGINT NOT NULL,
    order_id    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL,
    price       TEXT NOT NULL,
    qty         BIGINT NOT NULL,
    ts          BIGINT NOT NULL
);
INSERT INTO fills_by_id SELECT fill_id, event_id, account, account_seq, order_id, symbol, side, price, qty, ts FROM fills
    ON CONFLICT DO NOTHING;
DROP TABLE fills;
ALTER TABLE fills_by_id RENAME TO fills;
CREATE UNIQUE INDEX fills_account_symbol_seq ON fills (account, symbol, account_seq);
