//! Per-instrument market state: top of book, last trade, session range, volume and VWAP.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Micros;
use super::checked::OrRefuse;
use super::events::{Quote, Trade, ValidationError};

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
    /// Size of the best bid the state shows (contracts); 0 when there is none. Absent from
    /// state stored before sizes were kept (Redis, snapshots): read as 0.
    #[serde(default)]
    pub bid_qty: i64,
    pub ask: Option<Decimal>,
    /// Size of the best ask the state shows (contracts); 0 when there is none.
    #[serde(default)]
    pub ask_qty: i64,
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
            bid_qty: 0,
            ask: None,
            ask_qty: 0,
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
    /// Exchange time of the quote behind bid/ask, and of the trade behind `last`: an older
    /// event (a late feed, a replayed hour) never replaces them.
    pub quote_ts: Micros,
    pub trade_ts: Micros,
}

impl InstrumentBook {
    pub fn new(symbol: &str) -> Self {
        Self { state: InstrumentState::empty(symbol), notional: Decimal::ZERO, quote_ts: 0, trade_ts: 0 }
    }

    /// A book read back from storage, which keeps one time (`updated_at`) for both.
    pub fn restored(state: InstrumentState, notional: Decimal) -> Self {
        let at = state.updated_at;
        Self { state, notional, quote_ts: at, trade_ts: at }
    }

    /// Applies a quote (prices and sizes); `Ok(false)` when it is older than the quote the book
    /// shows (stale: nothing changed, sizes included). All or nothing: on a refusal nothing
    /// changed.
    pub fn apply_quote(&mut self, quote: &Quote, ts: Micros) -> Result<bool, ValidationError> {
        if ts < self.quote_ts {
            return Ok(false);
        }
        let mid = quote
            .bid
            .checked_add(quote.ask)
            .and_then(|sum| sum.checked_div(Decimal::TWO))
            .or_refuse("bid", "the mid")?;
        let spread = quote.ask.checked_sub(quote.bid).or_refuse("ask", "the spread")?;
        let seq = self.state.seq.checked_add(1).or_refuse("instrument", "the instrument's seq")?;
        let s = &mut self.state;
        s.bid = Some(quote.bid);
        s.bid_qty = quote.bid_qty;
        s.ask = Some(quote.ask);
        s.ask_qty = quote.ask_qty;
        s.mid = Some(mid.normalize());
        s.spread = Some(spread);
        s.seq = seq;
        s.updated_at = s.updated_at.max(ts);
        self.quote_ts = ts;
        Ok(true)
    }

    /// Applies a trade. A trade older than the one behind `last` counts in volume, VWAP and the
    /// session range, but leaves `last` and the change as they are. All or nothing: on a refusal
    /// nothing changed.
    pub fn apply_trade(&mut self, trade: &Trade, ts: Micros) -> Result<(), ValidationError> {
        let s = &self.state;
        let latest = ts >= self.trade_ts;
        let price = if latest { trade.price } else { s.last.unwrap_or(trade.price) };
        let open = s.open.unwrap_or(trade.price);
        let change = price.checked_sub(open).or_refuse("price", "the change")?;
        let change_pct = change
            .checked_mul(Decimal::ONE_HUNDRED)
            .and_then(|c| c.checked_div(open))
            .or_refuse("price", "the change in percent")?;
        let volume = s.volume.checked_add(trade.qty).or_refuse("qty", "the instrument's volume")?;
        let trades = s.trades.checked_add(1).or_refuse("instrument", "the trade count")?;
        let notional = trade
            .price
            .checked_mul(Decimal::from(trade.qty))
            .and_then(|value| self.notional.checked_add(value))
            .or_refuse("qty", "the traded notional")?;
        let vwap = notional.checked_div(Decimal::from(volume)).or_refuse("qty", "the VWAP")?;
        let seq = s.seq.checked_add(1).or_refuse("instrument", "the instrument's seq")?;
        let s = &mut self.state;
        s.open = Some(open);
        s.last = Some(price);
        s.high = Some(s.high.map_or(trade.price, |h| h.max(trade.price)));
        s.low = Some(s.low.map_or(trade.price, |l| l.min(trade.price)));
        s.change = Some(change);
        s.change_pct = Some(change_pct.round_dp(CHANGE_PCT_DP).normalize());
        s.volume = volume;
        s.trades = trades;
        self.notional = notional;
        s.vwap = Some(vwap.round_dp(VWAP_DP).normalize());
        s.seq = seq;
        s.updated_at = s.updated_at.max(ts);
        if latest {
            self.trade_ts = ts;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::Side;

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
        assert_eq!(book.apply_quote(&quote, 10), Ok(true));
        let s = &book.state;
        assert_eq!(s.mid, Some(d("6850.125")));
        assert_eq!(s.spread, Some(d("0.25")));
        assert_eq!((s.bid_qty, s.ask_qty), (5, 7));
        assert_eq!((s.seq, s.updated_at), (1, 10));
        assert_eq!(s.last, None);
    }

    #[test]
    fn sizes_follow_the_quote_the_state_shows() {
        let mut book = InstrumentBook::new("ESZ6");
        assert_eq!((book.state.bid_qty, book.state.ask_qty), (0, 0), "no quote, no size");
        let quote = |bid_qty, ask_qty| Quote {
            instrument: "ESZ6".into(),
            bid: d("6850.00"),
            bid_qty,
            ask: d("6850.25"),
            ask_qty,
        };
        assert_eq!(book.apply_quote(&quote(5, 7), 10), Ok(true));
        // Same prices, new sizes: the sizes move (a quote of the same time is not stale).
        assert_eq!(book.apply_quote(&quote(12, 0), 10), Ok(true));
        assert_eq!((book.state.bid_qty, book.state.ask_qty, book.state.seq), (12, 0, 2));
        // A stale quote with other sizes changes nothing, sizes included.
        let before = book.clone();
        assert_eq!(book.apply_quote(&quote(99, 98), 9), Ok(false));
        assert_eq!((book.state.bid_qty, book.state.ask_qty), (12, 0));
        assert_eq!(book, before);
        // Trades leave the sizes alone.
        book.apply_trade(&trade("6850.25", 3), 11).unwrap();
        assert_eq!((book.state.bid_qty, book.state.ask_qty), (12, 0));
        // A refused quote leaves them too.
        let top = Quote { instrument: "ESZ6".into(), bid: Decimal::MAX, bid_qty: 1, ask: Decimal::MAX, ask_qty: 1 };
        book.apply_quote(&top, 12).unwrap_err();
        assert_eq!((book.state.bid_qty, book.state.ask_qty), (12, 0));
    }

    #[test]
    fn state_stored_without_sizes_reads_as_zero() {
        let mut state = InstrumentState::empty("ESZ6");
        state.bid = Some(d("6850.00"));
        state.bid_qty = 4;
        let mut json = serde_json::to_value(&state).unwrap();
        assert_eq!((json["bid_qty"].as_i64(), json["ask_qty"].as_i64()), (Some(4), Some(0)));
        let object = json.as_object_mut().unwrap();
        object.remove("bid_qty");
        object.remove("ask_qty");
        let old: InstrumentState = serde_json::from_value(json).unwrap();
        assert_eq!((old.bid, old.bid_qty, old.ask_qty), (Some(d("6850.00")), 0, 0));
    }

    #[test]
    fn trades_build_range_volume_and_vwap() {
        let mut book = InstrumentBook::new("ESZ6");
        book.apply_trade(&trade("6850.00", 2), 1).unwrap();
        book.apply_trade(&trade("6852.00", 1), 2).unwrap();
        book.apply_trade(&trade("6849.00", 1), 3).unwrap();
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
        book.apply_trade(&trade("61.50", 1), 1).unwrap();
        book.apply_trade(&trade("61.51", 2), 1).unwrap();
        // (61.50 + 123.02) / 3 = 61.50666...
        assert_eq!(book.state.vwap, Some(d("61.506667")));
    }

    #[test]
    fn overflowing_volume_is_refused_and_changes_nothing() {
        let mut book = InstrumentBook::new("ESZ6");
        book.apply_trade(&trade("6850", i64::MAX), 1).unwrap();
        let before = book.clone();
        // Two fills of i64::MAX contracts once left the volume at -2.
        let err = book.apply_trade(&trade("6850", i64::MAX), 2).unwrap_err();
        assert_eq!(err.field, "qty");
        assert!(err.reason.contains("volume"), "{err}");
        assert_eq!(book, before, "a refused trade leaves no trace");
        book.apply_trade(&trade("6851", 1), 3).unwrap_err();
        assert_eq!(book.state.volume, i64::MAX);
    }

    #[test]
    fn extreme_quotes_are_refused_not_panicked_on() {
        let mut book = InstrumentBook::new("ESZ6");
        let top = Decimal::MAX;
        let quote = Quote { instrument: "ESZ6".into(), bid: top, bid_qty: 1, ask: top, ask_qty: 1 };
        let err = book.apply_quote(&quote, 1).unwrap_err();
        assert_eq!(err.field, "bid");
        assert_eq!(book, InstrumentBook::new("ESZ6"));
    }

    #[test]
    fn late_events_never_replace_the_newer_state() {
        let mut book = InstrumentBook::new("ZCH7");
        let quote = |bid: &str, ask: &str| Quote {
            instrument: "ZCH7".into(),
            bid: d(bid),
            bid_qty: 1,
            ask: d(ask),
            ask_qty: 1,
        };
        assert_eq!(book.apply_quote(&quote("445.00", "445.25"), 100), Ok(true));
        book.apply_trade(&trade("445.25", 2), 100).unwrap();
        let before = book.clone();
        // A quote from 23 hours earlier once moved the mid and every position's P&L.
        assert_eq!(book.apply_quote(&quote("440.00", "450.00"), 50), Ok(false));
        assert_eq!(book, before, "a stale quote changes nothing");
        // A late trade happened: it counts in volume and range, not as the last price.
        book.apply_trade(&trade("446.00", 1), 60).unwrap();
        let s = &book.state;
        assert_eq!((s.last, s.high, s.volume, s.trades), (Some(d("445.25")), Some(d("446")), 3, 2));
        assert_eq!(s.change, Some(d("0")));
        assert_eq!(s.updated_at, 100, "the state's time never goes back");
        // A newer trade moves `last` again.
        book.apply_trade(&trade("445.50", 1), 101).unwrap();
        assert_eq!(book.state.last, Some(d("445.50")));
    }
}
