//! An account's P&L at one moment: the sum over its positions of realized and unrealized P&L
//! (each position marked to its instrument's mid, as the positions are).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Micros;
use super::candles::Interval;
use super::positions::PositionState;

/// One sample of an account's P&L, in a 1 s or 1 min bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PnlPoint {
    pub account: String,
    pub interval: Interval,
    /// Start of the bucket (Unix micros).
    pub start: Micros,
    pub realized: Decimal,
    pub unrealized: Decimal,
    pub total: Decimal,
    /// When it was sampled (Unix seconds): grows with every sample of the key.
    pub seq: u64,
}

/// Each account's (realized, unrealized) P&L over its positions; an account whose sum would
/// overflow is left out (its positions hold values no real book reaches).
pub fn by_account(positions: &[PositionState]) -> BTreeMap<String, (Decimal, Decimal)> {
    let mut sums: BTreeMap<String, Option<(Decimal, Decimal)>> = BTreeMap::new();
    for p in positions {
        let entry = sums.entry(p.account.clone()).or_insert(Some((Decimal::ZERO, Decimal::ZERO)));
        *entry = entry.and_then(|(realized, unrealized)| {
            Some((realized.checked_add(p.realized_pnl)?, unrealized.checked_add(p.unrealized_pnl)?))
        });
    }
    sums.into_iter().filter_map(|(account, sum)| sum.map(|s| (account, s))).collect()
}

/// The points one sample at `now` writes for each account: its 1 s bucket and its 1 min bucket.
pub fn points(sums: &BTreeMap<String, (Decimal, Decimal)>, now: Micros) -> Vec<PnlPoint> {
    let seq = u64::try_from(now.div_euclid(1_000_000)).unwrap_or(0);
    let mut out = Vec::with_capacity(sums.len().saturating_mul(2));
    for (account, (realized, unrealized)) in sums {
        let Some(total) = realized.checked_add(*unrealized) else { continue };
        for interval in Interval::ALL {
            out.push(PnlPoint {
                account: account.clone(),
                interval,
                start: interval.bucket_start(now),
                realized: realized.normalize(),
                unrealized: unrealized.normalize(),
                total: total.normalize(),
                seq,
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn position(account: &str, symbol: &str, realized: &str, unrealized: &str) -> PositionState {
        let mut p = PositionState::flat(account, symbol);
        p.realized_pnl = realized.parse().unwrap();
        p.unrealized_pnl = unrealized.parse().unwrap();
        p
    }

    #[test]
    fn sums_per_account_and_buckets_per_interval() {
        let positions = [
            position("ACC1", "ESZ6", "400", "-50.25"),
            position("ACC1", "CLF7", "-100", "360"),
            position("ACC2", "ESZ6", "0", "12.5"),
        ];
        let sums = by_account(&positions);
        assert_eq!(sums["ACC1"], ("300".parse().unwrap(), "309.75".parse().unwrap()));
        let points = points(&sums, 61_500_000);
        assert_eq!(points.len(), 4);
        let acc1: Vec<(Interval, Micros, String, u64)> = points
            .iter()
            .filter(|p| p.account == "ACC1")
            .map(|p| (p.interval, p.start, p.total.to_string(), p.seq))
            .collect();
        assert_eq!(
            acc1,
            [
                (Interval::OneSecond, 61_000_000, "609.75".into(), 61),
                (Interval::OneMinute, 60_000_000, "609.75".into(), 61)
            ]
        );
    }

    #[test]
    fn an_account_whose_sum_overflows_is_left_out() {
        let positions = [position("A", "X", &Decimal::MAX.to_string(), "0"), position("A", "Y", "1", "0")];
        assert!(by_account(&positions).is_empty());
    }
}
