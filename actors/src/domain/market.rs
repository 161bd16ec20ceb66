//! Per-instrument market state: top of book, last trade, session range, volume and VWAP.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Micros;
use super::events::{Quote, Trade};

/// Decimal places kept for VWAP.
pub const VWAP_DP: u32 = 6;
/// Decimal places kept for the change in percent.
pub const CHANGE_PCT_DP: u32 = 4;

/// The published state of one instrument. `open` is the first trade the system saw (ttpulse
/// has no session calendar yet), so `change` is `last - open`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstrumentState {
    pub symbol: String,
    /// Grows by one with every change of this instrument.
    pub seq: u64,
    pub bid: Option<Decimal>,
    pub ask: Option<Decimal>,
    pub mid: Option<Decimal>,
    pub spread: Option<Decimal>,
    pub last: Option<Decimal>,
    pub open: Option<Decimal>,
    pub high: Option<Decimal>,
    pub low: Option<Decimal>,
    pub change: Option<Decimal>,
    pub change_pct: Option<Decimal>,
    pub volume: i64,
    pub vwap: Option<Decimal>,
    pub trades: u64,
    /// Exchange time of the event that last changed this instrument (Unix micros).
    pub updated_at: Micros,
}

impl InstrumentState {
    pub fn empty(symbol: &str) -> Self {
        Self {
            symbol: symbol.to_owned(),
            seq: 0,
            bid: None,
            ask: None,
            mid: None,
            spread: None,
            last: None,
            open: None,
            high: None,
            low: None,
            change: None,
            change_pct: None,
            volume: 0,
            vwap: None,
            trades: 0,
            updated_at: 0,
        }
    }
}

/// The published state plus what is needed to keep computing it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentBook {
    pub state: InstrumentState,
    /// Sum of price x qty over all trades: VWAP = notional / volume.
    pub notional: Decimal,
}

impl InstrumentBook {
    pub fn new(symbol: &str) -> Self {
        Self { state: InstrumentState::empty(symbol), notional: Decimal::ZERO }
    }

    pub fn apply_quote(&mut self, quote: &Quote, ts: Micros) {
        let s = &mut self.state;
        s.bid = Some(quote.bid);
        s.ask = Some(quote.ask);
        s.mid = Some(((quote.bid + quote.ask) / Decimal::TWO).normalize());
        s.spread = Some(quote.ask - quote.bid);
        s.seq += 1;
        s.updated_at = ts;
    }

    pub fn apply_trade(&mut self, trade: &Trade, ts: Micros) {
        let s = &mut self.state;
        let price = trade.price;
        let open = *s.open.get_or_insert(price);
        s.last = Some(price);
        s.high = Some(s.high.map_or(price, |h| h.max(price)));
        s.low = Some(s.low.map_or(price, |l| l.min(price)));
        s.change = Some(price - open);
        s.change_pct = Some(((price - open) * Decimal::ONE_HUNDRED / open).round_dp(CHANGE_PCT_DP).normalize());
        s.volume += trade.qty;
        s.trades += 1;
        self.notional += price * Decimal::from(trade.qty);
        s.vwap = Some((self.notional / Decimal::from(s.volume)).round_dp(VWAP_DP).normalize());
        s.seq += 1;
        s.updated_at = ts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Side;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn trade(price: &str, qty: i64) -> Trade {
        Trade { instrument: "ESZ6".into(), price: d(price), qty, aggressor: Side::Buy }
    }

    #[test]
    fn quote_sets_mid_and_spread() {
        let mut book = InstrumentBook::new("ESZ6");
        let quote = Quote { instrument: "ESZ6".into(), bid: d("6850.00"), bid_qty: 5, ask: d("6850.25"), ask_qty: 7 };
        book.apply_quote(&quote, 10);
        let s = &book.state;
        assert_eq!(s.mid, Some(d("6850.125")));
        assert_eq!(s.spread, Some(d("0.25")));
        assert_eq!((s.seq, s.updated_at), (1, 10));
        assert_eq!(s.last, None);
    }

    #[test]
    fn trades_build_range_volume_and_vwap() {
        let mut book = InstrumentBook::new("ESZ6");
        book.apply_trade(&trade("6850.00", 2), 1);
        book.apply_trade(&trade("6852.00", 1), 2);
        book.apply_trade(&trade("6849.00", 1), 3);
        let s = &book.state;
        assert_eq!(s.open, Some(d("6850")));
        assert_eq!(s.high, Some(d("6852")));
        assert_eq!(s.low, Some(d("6849")));
        assert_eq!(s.last, Some(d("6849")));
        assert_eq!(s.change, Some(d("-1")));
        // -1 / 6850 * 100 = -0.014598... -> 4 dp
        assert_eq!(s.change_pct, Some(d("-0.0146")));
        assert_eq!(s.volume, 4);
        assert_eq!(s.trades, 3);
        // (6850*2 + 6852 + 6849) / 4 = 27401 / 4 = 6850.25
        assert_eq!(s.vwap, Some(d("6850.25")));
        assert_eq!(book.notional, d("27401"));
        assert_eq!(s.seq, 3);
    }

    #[test]
    fn vwap_is_rounded_not_floated() {
        let mut book = InstrumentBook::new("CLF7");
        book.apply_trade(&trade("61.50", 1), 1);
        book.apply_trade(&trade("61.51", 2), 1);
        // (61.50 + 123.02) / 3 = 61.50666...
        assert_eq!(book.state.vwap, Some(d("61.506667")));
    }
}
