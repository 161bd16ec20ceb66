//! Positions and P&L by the average-cost method.
//!
//! - A fill that opens or adds to a position moves the average price to the quantity-weighted
//!   average of the old position and the fill.
//! - A fill that reduces a position realizes `(fill price - average) x closed qty x multiplier`
//!   (negated for a short) and leaves the average unchanged.
//! - A fill that crosses zero closes the old position and opens the rest at the fill price.
//! - Unrealized P&L is `(mid - average) x net qty x multiplier`, zero while flat.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Micros;
use super::events::Side;

/// Decimal places kept for the average price (an average of several fills rarely terminates).
pub const AVG_PRICE_DP: u32 = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionState {
    pub account: String,
    pub symbol: String,
    /// Grows by one with every change of this position (fills and re-marks).
    pub seq: u64,
    /// Contracts, positive long, negative short.
    pub net_qty: i64,
    /// Zero while flat.
    pub avg_price: Decimal,
    pub realized_pnl: Decimal,
    pub unrealized_pnl: Decimal,
    pub updated_at: Micros,
}

impl PositionState {
    pub fn flat(account: &str, symbol: &str) -> Self {
        Self {
            account: account.to_owned(),
            symbol: symbol.to_owned(),
            seq: 0,
            net_qty: 0,
            avg_price: Decimal::ZERO,
            realized_pnl: Decimal::ZERO,
            unrealized_pnl: Decimal::ZERO,
            updated_at: 0,
        }
    }

    /// Applies a fill; `mark` is the instrument's current mid, if it has one.
    pub fn apply_fill(
        &mut self,
        side: Side,
        price: Decimal,
        qty: i64,
        multiplier: Decimal,
        mark: Option<Decimal>,
        ts: Micros,
    ) {
        let signed = side.sign() * qty;
        let old = self.net_qty;
        let new = old + signed;
        if old == 0 || old.signum() == signed.signum() {
            let cost = self.avg_price * Decimal::from(old.abs()) + price * Decimal::from(qty);
            self.avg_price = (cost / Decimal::from(new.abs())).round_dp(AVG_PRICE_DP).normalize();
        } else {
            let closed = old.abs().min(qty);
            let realized = (price - self.avg_price) * Decimal::from(closed) * multiplier * Decimal::from(old.signum());
            self.realized_pnl = (self.realized_pnl + realized).normalize();
            if new == 0 {
                self.avg_price = Decimal::ZERO;
            } else if new.signum() != old.signum() {
                self.avg_price = price;
            }
        }
        self.net_qty = new;
        self.seq += 1;
        self.updated_at = ts;
        self.unrealized_pnl = self.unrealized_at(mark, multiplier);
    }

    /// Re-marks the position to a new mid. Returns whether the unrealized P&L changed.
    pub fn mark(&mut self, mid: Decimal, multiplier: Decimal, ts: Micros) -> bool {
        let unrealized = self.unrealized_at(Some(mid), multiplier);
        if unrealized == self.unrealized_pnl {
            return false;
        }
        self.unrealized_pnl = unrealized;
        self.seq += 1;
        self.updated_at = ts;
        true
    }

    /// `(mark - average) x net qty x multiplier`, zero while flat or without a mark.
    pub fn unrealized_at(&self, mark: Option<Decimal>, multiplier: Decimal) -> Decimal {
        match mark {
            Some(mid) if self.net_qty != 0 => {
                ((mid - self.avg_price) * Decimal::from(self.net_qty) * multiplier).normalize()
            }
            _ => Decimal::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    const ES_MULT: i64 = 50;

    #[test]
    fn average_cost_walkthrough() {
        let m = Decimal::from(ES_MULT);
        let mut p = PositionState::flat("ACC1", "ESZ6");
        p.apply_fill(Side::Buy, d("6850"), 2, m, None, 1);
        assert_eq!((p.net_qty, p.avg_price, p.realized_pnl, p.unrealized_pnl), (2, d("6850"), d("0"), d("0")));

        // Adding moves the average: (6850*2 + 6853) / 3 = 6851.
        p.apply_fill(Side::Buy, d("6853"), 1, m, Some(d("6852.5")), 2);
        assert_eq!((p.net_qty, p.avg_price), (3, d("6851")));
        // (6852.5 - 6851) * 3 * 50 = 225
        assert_eq!(p.unrealized_pnl, d("225"));

        // Reducing realizes (6855 - 6851) * 2 * 50 = 400 and keeps the average.
        p.apply_fill(Side::Sell, d("6855"), 2, m, Some(d("6855")), 3);
        assert_eq!((p.net_qty, p.avg_price, p.realized_pnl), (1, d("6851"), d("400")));
        assert_eq!(p.unrealized_pnl, d("200"));

        // Crossing zero: closes 1 at (6849 - 6851) * 50 = -100, opens 2 short at 6849.
        p.apply_fill(Side::Sell, d("6849"), 3, m, Some(d("6848")), 4);
        assert_eq!((p.net_qty, p.avg_price, p.realized_pnl), (-2, d("6849"), d("300")));
        // (6848 - 6849) * -2 * 50 = 100
        assert_eq!(p.unrealized_pnl, d("100"));

        // Covering the short at a loss: (6851 - 6849) * 2 * 50 * -1 = -200, flat.
        p.apply_fill(Side::Buy, d("6851"), 2, m, Some(d("6851")), 5);
        assert_eq!((p.net_qty, p.avg_price, p.realized_pnl, p.unrealized_pnl), (0, d("0"), d("100"), d("0")));
        assert_eq!((p.seq, p.updated_at), (5, 5));
    }

    #[test]
    fn short_from_flat_and_add() {
        let m = Decimal::from(1000); // crude oil
        let mut p = PositionState::flat("ACC2", "CLF7");
        p.apply_fill(Side::Sell, d("61.50"), 1, m, None, 1);
        p.apply_fill(Side::Sell, d("61.53"), 2, m, None, 2);
        // (61.50 + 2 * 61.53) / 3 = 61.52
        assert_eq!((p.net_qty, p.avg_price), (-3, d("61.52")));
        assert!(p.mark(d("61.40"), m, 3));
        // (61.40 - 61.52) * -3 * 1000 = 360
        assert_eq!(p.unrealized_pnl, d("360"));
        assert!(!p.mark(d("61.40"), m, 4), "same mid, no change");
        assert_eq!(p.seq, 3);
    }

    #[test]
    fn non_terminating_average_is_rounded() {
        let m = Decimal::ONE;
        let mut p = PositionState::flat("A", "X");
        p.apply_fill(Side::Buy, d("1"), 1, m, None, 1);
        p.apply_fill(Side::Buy, d("2"), 2, m, None, 1);
        // 5 / 3
        assert_eq!(p.avg_price, d("1.6666666667"));
        p.apply_fill(Side::Sell, d("2"), 3, m, None, 1);
        // (2 - 1.6666666667) * 3 = 0.9999999999
        assert_eq!(p.realized_pnl, d("0.9999999999"));
        assert_eq!(p.net_qty, 0);
    }

    #[test]
    fn flat_position_never_carries_unrealized() {
        let mut p = PositionState::flat("A", "X");
        assert!(!p.mark(d("100"), Decimal::ONE, 1));
        assert_eq!(p.unrealized_pnl, Decimal::ZERO);
    }
}
