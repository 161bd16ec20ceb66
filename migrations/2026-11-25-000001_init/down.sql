DROP TABLE event_watermarks;
DROP TABLE positions;
DROP TABLE instrument_states;
DROP TABLE candles;
DROP TABLE fills;
DROP TABLE trades;
DROP TABLE instruments;
