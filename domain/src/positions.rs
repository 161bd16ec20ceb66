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
use super::checked::OrRefuse;
use super::events::{Side, ValidationError};

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

    /// Applies a fill; `mark` is the instrument's current mid, if it has one. All or nothing:
    /// on a refusal nothing changed.
    pub fn apply_fill(
        &mut self,
        side: Side,
        price: Decimal,
        qty: i64,
        multiplier: Decimal,
        mark: Option<Decimal>,
        ts: Micros,
    ) -> Result<(), ValidationError> {
        let signed = side.sign().checked_mul(qty).or_refuse("qty", "the fill's signed quantity")?;
        let old = self.net_qty;
        let new = old.checked_add(signed).or_refuse("qty", "the position's net quantity")?;
        let mut next = self.clone();
        if old == 0 || old.signum() == signed.signum() {
            let cost = self
                .avg_price
                .checked_mul(Decimal::from(old.unsigned_abs()))
                .zip(price.checked_mul(Decimal::from(qty)))
                .and_then(|(held, added)| held.checked_add(added))
                .and_then(|cost| cost.checked_div(Decimal::from(new.unsigned_abs())))
                .or_refuse("qty", "the position's average price")?;
            next.avg_price = cost.round_dp(AVG_PRICE_DP).normalize();
        } else {
            let closed = old.unsigned_abs().min(qty.unsigned_abs());
            let realized = price
                .checked_sub(self.avg_price)
                .and_then(|per_contract| per_contract.checked_mul(Decimal::from(closed)))
                .and_then(|points| points.checked_mul(multiplier))
                .and_then(|value| value.checked_mul(Decimal::from(old.signum())))
                .and_then(|realized| self.realized_pnl.checked_add(realized))
                .or_refuse("qty", "the position's realized P&L")?;
            next.realized_pnl = realized.normalize();
            if new == 0 {
                next.avg_price = Decimal::ZERO;
            } else if new.signum() != old.signum() {
                next.avg_price = price;
            }
        }
        next.net_qty = new;
        next.seq = self.seq.checked_add(1).or_refuse("fill", "the position's seq")?;
        next.updated_at = ts;
        next.unrealized_pnl = next.unrealized_at(mark, multiplier).or_refuse("qty", "the position's unrealized P&L")?;
        *self = next;
        Ok(())
    }

    /// Re-marks the position to a new mid. Returns whether the unrealized P&L changed; `None`
    /// when it cannot be computed (it would overflow), in which case nothing changed.
    pub fn mark(&mut self, mid: Decimal, multiplier: Decimal, ts: Micros) -> Option<bool> {
        let unrealized = self.unrealized_at(Some(mid), multiplier)?;
        if unrealized == self.unrealized_pnl {
            return Some(false);
        }
        self.seq = self.seq.checked_add(1)?;
        self.unrealized_pnl = unrealized;
        self.updated_at = ts;
        Some(true)
    }

    /// `(mark - average) x net qty x multiplier`, zero while flat or without a mark; `None`
    /// when it would overflow.
    pub fn unrealized_at(&self, mark: Option<Decimal>, multiplier: Decimal) -> Option<Decimal> {
        match mark {
            Some(mid) if self.net_qty != 0 => mid
                .checked_sub(self.avg_price)?
                .checked_mul(Decimal::from(self.net_qty))?
                .checked_mul(multiplier)
                .map(|value| value.normalize()),
            _ => Some(Decimal::ZERO),
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
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
        p.apply_fill(Side::Buy, d("6850"), 2, m, None, 1).unwrap();
        assert_eq!((p.net_qty, p.avg_price, p.realized_pnl, p.unrealized_pnl), (2, d("6850"), d("0"), d("0")));

        // Adding moves the average: (6850*2 + 6853) / 3 = 6851.
        p.apply_fill(Side::Buy, d("6853"), 1, m, Some(d("6852.5")), 2).unwrap();
        assert_eq!((p.net_qty, p.avg_price), (3, d("6851")));
        // (6852.5 - 6851) * 3 * 50 = 225
        assert_eq!(p.unrealized_pnl, d("225"));

        // Reducing realizes (6855 - 6851) * 2 * 50 = 400 and keeps the average.
        p.apply_fill(Side::Sell, d("6855"), 2, m, Some(d("6855")), 3).unwrap();
        assert_eq!((p.net_qty, p.avg_price, p.realized_pnl), (1, d("6851"), d("400")));
        assert_eq!(p.unrealized_pnl, d("200"));

        // Crossing zero: closes 1 at (6849 - 6851) * 50 = -100, opens 2 short at 6849.
        p.apply_fill(Side::Sell, d("6849"), 3, m, Some(d("6848")), 4).unwrap();
        assert_eq!((p.net_qty, p.avg_price, p.realized_pnl), (-2, d("6849"), d("300")));
        // (6848 - 6849) * -2 * 50 = 100
        assert_eq!(p.unrealized_pnl, d("100"));

        // Covering the short at a loss: (6851 - 6849) * 2 * 50 * -1 = -200, flat.
        p.apply_fill(Side::Buy, d("6851"), 2, m, Some(d("6851")), 5).unwrap();
        assert_eq!((p.net_qty, p.avg_price, p.realized_pnl, p.unrealized_pnl), (0, d("0"), d("100"), d("0")));
        assert_eq!((p.seq, p.updated_at), (5, 5));
    }

    #[test]
    fn short_from_flat_and_add() {
        let m = Decimal::from(1000); // crude oil
        let mut p = PositionState::flat("ACC2", "CLF7");
        p.apply_fill(Side::Sell, d("61.50"), 1, m, None, 1).unwrap();
        p.apply_fill(Side::Sell, d("61.53"), 2, m, None, 2).unwrap();
        // (61.50 + 2 * 61.53) / 3 = 61.52
        assert_eq!((p.net_qty, p.avg_price), (-3, d("61.52")));
        assert_eq!(p.mark(d("61.40"), m, 3), Some(true));
        // (61.40 - 61.52) * -3 * 1000 = 360
        assert_eq!(p.unrealized_pnl, d("360"));
        assert_eq!(p.mark(d("61.40"), m, 4), Some(false), "same mid, no change");
        assert_eq!(p.seq, 3);
    }

    #[test]
    fn non_terminating_average_is_rounded() {
        let m = Decimal::ONE;
        let mut p = PositionState::flat("A", "X");
        p.apply_fill(Side::Buy, d("1"), 1, m, None, 1).unwrap();
        p.apply_fill(Side::Buy, d("2"), 2, m, None, 1).unwrap();
        // 5 / 3
        assert_eq!(p.avg_price, d("1.6666666667"));
        p.apply_fill(Side::Sell, d("2"), 3, m, None, 1).unwrap();
        // (2 - 1.6666666667) * 3 = 0.9999999999
        assert_eq!(p.realized_pnl, d("0.9999999999"));
        assert_eq!(p.net_qty, 0);
    }

    #[test]
    fn flat_position_never_carries_unrealized() {
        let mut p = PositionState::flat("A", "X");
        assert_eq!(p.mark(d("100"), Decimal::ONE, 1), Some(false));
        assert_eq!(p.unrealized_pnl, Decimal::ZERO);
    }

    #[test]
    fn overflowing_positions_are_refused_and_change_nothing() {
        let m = Decimal::from(ES_MULT);
        let mut p = PositionState::flat("A", "ESZ6");
        p.apply_fill(Side::Buy, d("6850"), i64::MAX, m, None, 1).unwrap();
        let before = p.clone();
        // Two fills of i64::MAX contracts once left net_qty at -2.
        let err = p.apply_fill(Side::Buy, d("6850"), i64::MAX, m, None, 2).unwrap_err();
        assert_eq!(err.field, "qty");
        assert!(err.reason.contains("net quantity"), "{err}");
        assert_eq!(p, before);
        // Marked at a price whose P&L does not fit: the mark is refused, the position kept.
        assert_eq!(p.mark(Decimal::MAX, m, 3), None);
        assert_eq!(p, before);
        // Closing it out still works and realizes the exact value.
        p.apply_fill(Side::Sell, d("6851"), i64::MAX, m, None, 4).unwrap();
        assert_eq!(p.net_qty, 0);
        assert_eq!(p.realized_pnl, Decimal::from(i64::MAX) * m);
    }
}
