//! Database rows and their conversion to and from domain values.

use diesel::prelude::*;
use rust_decimal::Decimal;

use super::StoreError;
use super::schema::{candles, event_watermarks, fills, instrument_states, instruments, pnl_samples, positions, trades};
use crate::domain::engine::{FillRecord, TradeRecord};
use crate::domain::{
    Candle, FillReport, InstrumentBook, InstrumentSpec, InstrumentState, Interval, PositionState, Side,
};

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn decimal(column: &str, text: &str) -> Result<Decimal, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("{column} holds `{text}`, not a decimal")))
}

fn opt_decimal(column: &str, text: Option<&str>) -> Result<Option<Decimal>, StoreError> {
    text.map(|t| decimal(column, t)).transpose()
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = instruments)]
pub struct InstrumentRow {
    pub symbol: String,
    pub description: String,
    pub tick_size: String,
    pub multiplier: String,
}

impl From<&InstrumentSpec> for InstrumentRow {
    fn from(spec: &InstrumentSpec) -> Self {
        Self {
            symbol: spec.symbol.clone(),
            description: spec.description.clone(),
            tick_size: spec.tick_size.to_string(),
            multiplier: spec.multiplier.to_string(),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = trades)]
pub struct TradeRow<'a> {
    pub event_id: &'a str,
    pub symbol: &'a str,
    pub price: String,
    pub qty: i64,
    pub aggressor: &'a str,
    pub ts: i64,
    pub ingest_ts: i64,
}

impl<'a> From<&'a TradeRecord> for TradeRow<'a> {
    fn from(r: &'a TradeRecord) -> Self {
        Self {
            event_id: &r.event_id,
            symbol: &r.trade.instrument,
            price: r.trade.price.to_string(),
            qty: r.trade.qty,
            aggressor: r.trade.aggressor.as_str(),
            ts: r.ts,
            ingest_ts: r.ingest_ts,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = fills)]
pub struct FillRow<'a> {
    pub fill_id: &'a str,
    pub event_id: &'a str,
    pub account: &'a str,
    pub account_seq: i64,
    pub order_id: &'a str,
    pub symbol: &'a str,
    pub side: &'a str,
    pub price: String,
    pub qty: i64,
    pub ts: i64,
}

impl<'a> From<&'a FillRecord> for FillRow<'a> {
    fn from(r: &'a FillRecord) -> Self {
        let f = &r.report;
        Self {
            fill_id: &f.fill_id,
            event_id: &r.event_id,
            account: &f.account,
            account_seq: to_i64(f.seq),
            order_id: &f.order_id,
            symbol: &f.symbol,
            side: f.side.as_str(),
            price: f.price.to_string(),
            qty: f.qty,
            ts: f.ts,
        }
    }
}

/// A stored fill, read back (for the account lane's last event after a restart).
#[derive(Queryable, Selectable)]
#[diesel(table_name = fills)]
pub struct FillReadRow {
    pub fill_id: String,
    pub account: String,
    pub account_seq: i64,
    pub order_id: String,
    pub symbol: String,
    pub side: String,
    pub price: String,
    pub qty: i64,
    pub ts: i64,
}

#[derive(Insertable, AsChangeset, Queryable, Selectable)]
#[diesel(table_name = pnl_samples)]
pub struct PnlRow {
    pub account: String,
    pub period: String,
    pub start_ts: i64,
    pub realized: String,
    pub unrealized: String,
    pub sampled_at: i64,
}

impl From<&crate::domain::PnlPoint> for PnlRow {
    fn from(p: &crate::domain::PnlPoint) -> Self {
        Self {
            account: p.account.clone(),
            period: p.interval.as_str().to_owned(),
            start_ts: p.start,
            realized: p.realized.to_string(),
            unrealized: p.unrealized.to_string(),
            sampled_at: to_i64(p.seq),
        }
    }
}

impl TryFrom<PnlRow> for crate::domain::PnlPoint {
    type Error = StoreError;

    fn try_from(r: PnlRow) -> Result<Self, StoreError> {
        let realized = decimal("realized", &r.realized)?;
        let unrealized = decimal("unrealized", &r.unrealized)?;
        Ok(Self {
            interval: crate::domain::Interval::parse(&r.period)
                .ok_or_else(|| StoreError::Corrupt(format!("pnl_samples.period holds `{}`", r.period)))?,
            total: realized
                .checked_add(unrealized)
                .ok_or_else(|| StoreError::Corrupt("a P&L total overflows".into()))?,
            account: r.account,
            start: r.start_ts,
            realized,
            unrealized,
            seq: to_u64(r.sampled_at),
        })
    }
}

/// A stored side (`buy` or `sell`).
pub(crate) fn side_from(text: &str) -> Result<Side, StoreError> {
    match text {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(StoreError::Corrupt(format!("fills.side holds `{other}`"))),
    }
}

impl FillReadRow {
    pub fn into_stored(self, event_id: String) -> Result<crate::store::StoredFill, StoreError> {
        Ok(crate::store::StoredFill {
            side: side_from(&self.side)?,
            price: decimal("price", &self.price)?,
            seq: to_u64(self.account_seq),
            account: self.account,
            symbol: self.symbol,
            fill_id: self.fill_id,
            order_id: self.order_id,
            qty: self.qty,
            ts: self.ts,
            event_id,
        })
    }

    pub fn into_report(self, position: PositionState) -> Result<FillReport, StoreError> {
        let side = side_from(&self.side)?;
        Ok(FillReport {
            account: self.account,
            seq: to_u64(self.account_seq),
            fill_id: self.fill_id,
            order_id: self.order_id,
            symbol: self.symbol,
            side,
            price: decimal("fills.price", &self.price)?,
            qty: self.qty,
            ts: self.ts,
            position,
        })
    }
}

#[derive(Insertable, AsChangeset, Queryable, Selectable)]
#[diesel(table_name = candles)]
pub struct CandleRow {
    pub symbol: String,
    pub period: String,
    pub start_ts: i64,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: i64,
    pub trades: i64,
    pub seq: i64,
    pub updated_at: i64,
}

impl From<&Candle> for CandleRow {
    fn from(c: &Candle) -> Self {
        Self {
            symbol: c.symbol.clone(),
            period: c.interval.as_str().to_owned(),
            start_ts: c.start,
            open: c.open.to_string(),
            high: c.high.to_string(),
            low: c.low.to_string(),
            close: c.close.to_string(),
            volume: c.volume,
            trades: to_i64(c.trades),
            seq: to_i64(c.seq),
            updated_at: c.updated_at,
        }
    }
}

impl TryFrom<CandleRow> for Candle {
    type Error = StoreError;
    fn try_from(r: CandleRow) -> Result<Self, StoreError> {
        Ok(Candle {
            interval: Interval::parse(&r.period)
                .ok_or_else(|| StoreError::Corrupt(format!("candles.period holds `{}`", r.period)))?,
            open: decimal("candles.open", &r.open)?,
            high: decimal("candles.high", &r.high)?,
            low: decimal("candles.low", &r.low)?,
            close: decimal("candles.close", &r.close)?,
            symbol: r.symbol,
            start: r.start_ts,
            volume: r.volume,
            trades: to_u64(r.trades),
            seq: to_u64(r.seq),
            updated_at: r.updated_at,
        })
    }
}

#[derive(Insertable, AsChangeset, Queryable, Selectable)]
#[diesel(table_name = instrument_states)]
#[diesel(treat_none_as_null = true)]
pub struct InstrumentStateRow {
    pub symbol: String,
    pub seq: i64,
    pub bid: Option<String>,
    pub ask: Option<String>,
    pub last: Option<String>,
    pub open: Option<String>,
    pub high: Option<String>,
    pub low: Option<String>,
    pub volume: i64,
    pub notional: String,
    pub trades: i64,
    pub updated_at: i64,
    pub bid_qty: i64,
    pub ask_qty: i64,
}

impl From<&InstrumentBook> for InstrumentStateRow {
    fn from(b: &InstrumentBook) -> Self {
        let s = &b.state;
        let text = |d: Option<Decimal>| d.map(|d| d.to_string());
        Self {
            symbol: s.symbol.clone(),
            seq: to_i64(s.seq),
            bid: text(s.bid),
            ask: text(s.ask),
            last: text(s.last),
            open: text(s.open),
            high: text(s.high),
            low: text(s.low),
            volume: s.volume,
            notional: b.notional.to_string(),
            trades: to_i64(s.trades),
            updated_at: s.updated_at,
            bid_qty: s.bid_qty,
            ask_qty: s.ask_qty,
        }
    }
}

impl TryFrom<InstrumentStateRow> for InstrumentBook {
    type Error = StoreError;
    /// Rebuilds the derived fields (mid, spread, change, VWAP) with the same code that computes
    /// them live, so a restored state equals the one that was published.
    fn try_from(r: InstrumentStateRow) -> Result<Self, StoreError> {
        use crate::domain::market::{CHANGE_PCT_DP, VWAP_DP};
        let mut state = InstrumentState::empty(&r.symbol);
        state.seq = to_u64(r.seq);
        state.bid = opt_decimal("bid", r.bid.as_deref())?;
        state.ask = opt_decimal("ask", r.ask.as_deref())?;
        state.bid_qty = r.bid_qty;
        state.ask_qty = r.ask_qty;
        state.last = opt_decimal("last", r.last.as_deref())?;
        state.open = opt_decimal("open", r.open.as_deref())?;
        state.high = opt_decimal("high", r.high.as_deref())?;
        state.low = opt_decimal("low", r.low.as_deref())?;
        state.volume = r.volume;
        state.trades = to_u64(r.trades);
        state.updated_at = r.updated_at;
        let notional = decimal("notional", &r.notional)?;
        if let (Some(bid), Some(ask)) = (state.bid, state.ask) {
            state.mid = Some(((bid + ask) / Decimal::TWO).normalize());
            state.spread = Some(ask - bid);
        }
        if let (Some(last), Some(open)) = (state.last, state.open) {
            state.change = Some(last - open);
            state.change_pct = Some(((last - open) * Decimal::ONE_HUNDRED / open).round_dp(CHANGE_PCT_DP).normalize());
        }
        if state.volume > 0 {
            state.vwap = Some((notional / Decimal::from(state.volume)).round_dp(VWAP_DP).normalize());
        }
        Ok(InstrumentBook::restored(state, notional))
    }
}

#[derive(Insertable, AsChangeset, Queryable, Selectable)]
#[diesel(table_name = positions)]
pub struct PositionRow {
    pub account: String,
    pub symbol: String,
    pub seq: i64,
    pub net_qty: i64,
    pub avg_price: String,
    pub realized_pnl: String,
    pub updated_at: i64,
}

impl From<&PositionState> for PositionRow {
    fn from(p: &PositionState) -> Self {
        Self {
            account: p.account.clone(),
            symbol: p.symbol.clone(),
            seq: to_i64(p.seq),
            net_qty: p.net_qty,
            avg_price: p.avg_price.to_string(),
            realized_pnl: p.realized_pnl.to_string(),
            updated_at: p.updated_at,
        }
    }
}

impl PositionRow {
    /// The stored position; unrealized P&L is not stored (it is re-marked from the mid).
    pub fn into_state(self, mark: Option<Decimal>, multiplier: Decimal) -> Result<PositionState, StoreError> {
        let mut state = PositionState {
            seq: to_u64(self.seq),
            net_qty: self.net_qty,
            avg_price: decimal("avg_price", &self.avg_price)?,
            realized_pnl: decimal("realized_pnl", &self.realized_pnl)?,
            unrealized_pnl: Decimal::ZERO,
            updated_at: self.updated_at,
            account: self.account,
            symbol: self.symbol,
        };
        state.unrealized_pnl = state.unrealized_at(mark, multiplier).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the unrealized P&L of position {}/{} overflows at the stored mid",
                state.account, state.symbol
            ))
        })?;
        Ok(state)
    }
}

#[derive(Insertable, AsChangeset, Queryable, Selectable)]
#[diesel(table_name = event_watermarks)]
pub struct WatermarkRow {
    pub source: String,
    pub instrument: String,
    pub last_seq: i64,
}
