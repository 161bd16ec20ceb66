-- SQLite drops columns since 3.35 (the bundled SQLite is newer).
ALTER TABLE instrument_states DROP COLUMN ask_qty;
ALTER TABLE instrument_states DROP COLUMN bid_qty;
