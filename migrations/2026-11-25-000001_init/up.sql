-- Prices and money are stored as canonical decimal strings (TEXT), never binary floats, so
-- SQLite and PostgreSQL store exactly the same values (cast with ::numeric to compute in SQL).
-- Quantities are whole contracts; times are Unix microseconds.

CREATE TABLE instruments (
    symbol      TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    tick_size   TEXT NOT NULL,
    multiplier  TEXT NOT NULL
);

CREATE TABLE trades (
    event_id  TEXT PRIMARY KEY NOT NULL,
    symbol    TEXT NOT NULL,
    price     TEXT NOT NULL,
    qty       BIGINT NOT NULL,
    aggressor TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    ingest_ts BIGINT NOT NULL
);
CREATE INDEX trades_symbol_ts ON trades (symbol, ts);

CREATE TABLE fills (
    fill_id     TEXT PRIMARY KEY NOT NULL,
    event_id    TEXT NOT NULL,
    account     TEXT NOT NULL,
    -- Position of this fill in its account's fill lane for this instrument (1, 2, 3, ...).
    account_seq BIGINT NOT NULL,
    order_id    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL,
    price       TEXT NOT NULL,
    qty         BIGINT NOT NULL,
    ts          BIGINT NOT NULL
);
CREATE UNIQUE INDEX fills_account_symbol_seq ON fills (account, symbol, account_seq);

CREATE TABLE candles (
    symbol     TEXT NOT NULL,
    period     TEXT NOT NULL,
    start_ts   BIGINT NOT NULL,
    open       TEXT NOT NULL,
    high       TEXT NOT NULL,
    low        TEXT NOT NULL,
    close      TEXT NOT NULL,
    volume     BIGINT NOT NULL,
    trades     BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (symbol, period, start_ts)
);

CREATE TABLE instrument_states (
    symbol     TEXT PRIMARY KEY NOT NULL,
    seq        BIGINT NOT NULL,
    bid        TEXT,
    ask        TEXT,
    last       TEXT,
    open       TEXT,
    high       TEXT,
    low        TEXT,
    volume     BIGINT NOT NULL,
    notional   TEXT NOT NULL,
    trades     BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE positions (
    account      TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    net_qty      BIGINT NOT NULL,
    avg_price    TEXT NOT NULL,
    realized_pnl TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (account, symbol)
);

-- The highest event sequence applied per (source, instrument): what makes reprocessing a no-op.
CREATE TABLE event_watermarks (
    source     TEXT NOT NULL,
    instrument TEXT NOT NULL,
    last_seq   BIGINT NOT NULL,
    PRIMARY KEY (source, instrument)
);
