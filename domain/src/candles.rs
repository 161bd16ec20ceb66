//! OHLCV candles over fixed time buckets (1 s and 1 min), built from trades.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Micros;
use super::checked::OrRefuse;
use super::events::ValidationError;

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

    /// Start of the bucket holding `ts` (`ts` itself at the very bottom of the range, where
    /// the bucket would start before `i64::MIN`).
    pub fn bucket_start(self, ts: Micros) -> Micros {
        ts.checked_rem_euclid(self.micros()).and_then(|into| ts.checked_sub(into)).unwrap_or(ts)
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

    /// Applies a trade. All or nothing: on a refusal nothing changed.
    pub fn apply_trade(
        &mut self,
        symbol: &str,
        interval: Interval,
        price: Decimal,
        qty: i64,
        ts: Micros,
    ) -> Result<CandleOutcome, ValidationError> {
        let start = interval.bucket_start(ts);
        let seq = self.seq.checked_add(1).or_refuse("instrument", "the candle seq")?;
        let mut candle = match &self.current {
            Some(c) if c.start > start => return Ok(CandleOutcome::Late),
            Some(c) if c.start == start => Candle {
                high: c.high.max(price),
                low: c.low.min(price),
                close: price,
                volume: c.volume.checked_add(qty).or_refuse("qty", "the candle's volume")?,
                trades: c.trades.checked_add(1).or_refuse("instrument", "the candle's trade count")?,
                ..c.clone()
            },
            _ => Candle {
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
            },
        };
        candle.seq = seq;
        candle.updated_at = ts;
        self.seq = seq;
        self.current = Some(candle);
        Ok(CandleOutcome::Updated)
    }
}

impl Default for CandleBook {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
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
        assert_eq!(Interval::OneMinute.bucket_start(i64::MAX), i64::MAX - i64::MAX % 60_000_000);
        assert_eq!(Interval::OneMinute.bucket_start(i64::MIN), i64::MIN);
    }

    #[test]
    fn ohlcv_within_and_across_buckets() {
        let mut book = CandleBook::new();
        let s = Interval::OneSecond;
        assert_eq!(book.apply_trade("ESZ6", s, d("100"), 1, 1_000_100), Ok(CandleOutcome::Updated));
        book.apply_trade("ESZ6", s, d("102"), 2, 1_200_000).unwrap();
        book.apply_trade("ESZ6", s, d("99"), 3, 1_500_000).unwrap();
        book.apply_trade("ESZ6", s, d("101"), 1, 1_999_999).unwrap();
        let c = book.current.clone().unwrap();
        assert_eq!((c.start, c.open, c.high, c.low, c.close), (1_000_000, d("100"), d("102"), d("99"), d("101")));
        assert_eq!((c.volume, c.trades, c.seq, c.updated_at), (7, 4, 4, 1_999_999));

        book.apply_trade("ESZ6", s, d("103"), 5, 2_000_000).unwrap();
        let c = book.current.clone().unwrap();
        assert_eq!(
            (c.start, c.open, c.high, c.low, c.close, c.volume, c.trades),
            (2_000_000, d("103"), d("103"), d("103"), d("103"), 5, 1)
        );
        assert_eq!(c.seq, 5);

        assert_eq!(book.apply_trade("ESZ6", s, d("90"), 1, 1_900_000), Ok(CandleOutcome::Late));
        assert_eq!(book.current.as_ref().unwrap().low, d("103"));
        assert_eq!(book.seq, 5);
    }

    #[test]
    fn overflowing_candle_volume_is_refused() {
        let mut book = CandleBook::new();
        let s = Interval::OneSecond;
        book.apply_trade("ESZ6", s, d("100"), i64::MAX, 1_000_000).unwrap();
        let before = book.clone();
        let err = book.apply_trade("ESZ6", s, d("100"), 1, 1_000_001).unwrap_err();
        assert_eq!(err.field, "qty");
        assert_eq!(book, before);
    }
}
