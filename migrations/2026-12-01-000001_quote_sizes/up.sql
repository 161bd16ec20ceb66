-- The sizes of the best bid and ask an instrument's state shows (whole contracts; 0 when there
-- is none). Rows stored before have no sizes: 0 until the next quote. Portable SQL: SQLite
-- adds one column per statement.
ALTER TABLE instrument_states ADD COLUMN bid_qty BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instrument_states ADD COLUMN ask_qty BIGINT NOT NULL DEFAULT 0;
