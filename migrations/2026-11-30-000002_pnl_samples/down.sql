DROP TABLE pnl_samples;
