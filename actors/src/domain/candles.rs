//! OHLCV candles over fixed time buckets (1 s and 1 min), built from trades.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Micros;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Interval {
    #[serde(rename = "1s")]
    OneSecond,
    #[serde(rename = "1m")]
    OneMinute,
}

impl Interval {
    pub const ALL: [Interval; 2] = [Interval::OneSecond, Interval::OneMinute];

    pub fn micros(self) -> Micros {
        match self {
            Interval::OneSecond => 1_000_000,
            Interval::OneMinute => 60_000_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::OneSecond => "1s",
            Interval::OneMinute => "1m",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1s" => Some(Interval::OneSecond),
            "1m" => Some(Interval::OneMinute),
            _ => None,
        }
    }

    /// Start of the bucket holding `ts`.
    pub fn bucket_start(self, ts: Micros) -> Micros {
        ts - ts.rem_euclid(self.micros())
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub symbol: String,
    pub interval: Interval,
    /// Start of the bucket (Unix micros).
    pub start: Micros,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: i64,
    pub trades: u64,
    /// Grows by one with every change of this symbol's candles of this interval.
    pub seq: u64,
    pub updated_at: Micros,
}

/// What a trade did to a candle series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandleOutcome {
    /// The current candle changed (or a new one opened).
    Updated,
    /// The trade belongs to a bucket older than the current candle; it is counted in the
    /// instrument's volume but cannot reopen a closed candle.
    Late,
}

/// The current candle of one symbol and interval.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleBook {
    pub current: Option<Candle>,
    pub seq: u64,
}

impl CandleBook {
    pub fn new() -> Self {
        Self { current: None, seq: 0 }
    }

    pub fn apply_trade(
        &mut self,
        symbol: &str,
        interval: Interval,
        price: Decimal,
        qty: i64,
        ts: Micros,
    ) -> CandleOutcome {
        let start = interval.bucket_start(ts);
        match &mut self.current {
            Some(c) if c.start == start => {
                c.high = c.high.max(price);
                c.low = c.low.min(price);
                c.close = price;
                c.volume += qty;
                c.trades += 1;
            }
            Some(c) if c.start > start => return CandleOutcome::Late,
            _ => {
                self.current = Some(Candle {
                    symbol: symbol.to_owned(),
                    interval,
                    start,
                    open: price,
                    high: price,
                    low: price,
                    close: price,
                    volume: qty,
                    trades: 1,
                    seq: 0,
                    updated_at: ts,
                })
            }
        }
        self.seq += 1;
        if let Some(c) = &mut self.current {
            c.seq = self.seq;
            c.updated_at = ts;
        }
        CandleOutcome::Updated
    }
}

impl Default for CandleBook {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn buckets() {
        assert_eq!(Interval::OneSecond.bucket_start(1_700_000_123_456), 1_700_000_000_000);
        assert_eq!(Interval::OneMinute.bucket_start(125_000_000), 120_000_000);
        assert_eq!(Interval::OneSecond.bucket_start(-1), -1_000_000);
    }

    #[test]
    fn ohlcv_within_and_across_buckets() {
        let mut book = CandleBook::new();
        let s = Interval::OneSecond;
        assert_eq!(book.apply_trade("ESZ6", s, d("100"), 1, 1_000_100), CandleOutcome::Updated);
        book.apply_trade("ESZ6", s, d("102"), 2, 1_200_000);
        book.apply_trade("ESZ6", s, d("99"), 3, 1_500_000);
        book.apply_trade("ESZ6", s, d("101"), 1, 1_999_999);
        let c = book.current.clone().unwrap();
        assert_eq!((c.start, c.open, c.high, c.low, c.close), (1_000_000, d("100"), d("102"), d("99"), d("101")));
        assert_eq!((c.volume, c.trades, c.seq, c.updated_at), (7, 4, 4, 1_999_999));

        book.apply_trade("ESZ6", s, d("103"), 5, 2_000_000);
        let c = book.current.clone().unwrap();
        assert_eq!(
            (c.start, c.open, c.high, c.low, c.close, c.volume, c.trades),
            (2_000_000, d("103"), d("103"), d("103"), d("103"), 5, 1)
        );
        assert_eq!(c.seq, 5);

        assert_eq!(book.apply_trade("ESZ6", s, d("90"), 1, 1_900_000), CandleOutcome::Late);
        assert_eq!(book.current.as_ref().unwrap().low, d("103"));
        assert_eq!(book.seq, 5);
    }
}
