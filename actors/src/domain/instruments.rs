//! Instrument reference data: symbol, tick size and contract multiplier.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One tradable instrument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstrumentSpec {
    pub symbol: String,
    pub description: String,
    /// Smallest price increment; every price of this instrument is a multiple of it.
    pub tick_size: Decimal,
    /// Currency value of one point per contract (e.g. 50 for the E-mini S&P 500).
    pub multiplier: Decimal,
    /// Where the simulator starts this instrument's random walk.
    pub reference_price: Decimal,
}

/// The instruments the system knows, by symbol. Events for any other symbol are rejected.
#[derive(Debug, Clone, Default)]
pub struct InstrumentCatalog {
    by_symbol: BTreeMap<String, InstrumentSpec>,
}

impl InstrumentCatalog {
    pub fn new(specs: impl IntoIterator<Item = InstrumentSpec>) -> Self {
        Self { by_symbol: specs.into_iter().map(|s| (s.symbol.clone(), s)).collect() }
    }

    /// A dozen futures-like contracts (CME-style December 2026 symbols) with their real tick
    /// sizes and multipliers; the default catalog of the embedded mode and the simulator.
    pub fn default_futures() -> Self {
        let spec = |symbol: &str, description: &str, tick: &str, mult: &str, px: &str| InstrumentSpec {
            symbol: symbol.to_owned(),
            description: description.to_owned(),
            tick_size: tick.parse().unwrap_or_default(),
            multiplier: mult.parse().unwrap_or_default(),
            reference_price: px.parse().unwrap_or_default(),
        };
        Self::new([
            spec("ESZ6", "E-mini S&P 500 Dec 2026", "0.25", "50", "6850.00"),
            spec("NQZ6", "E-mini Nasdaq-100 Dec 2026", "0.25", "20", "24500.00"),
            spec("YMZ6", "E-mini Dow Dec 2026", "1", "5", "46800"),
            spec("RTYZ6", "E-mini Russell 2000 Dec 2026", "0.1", "50", "2450.0"),
            spec("CLF7", "Crude Oil Jan 2027", "0.01", "1000", "61.50"),
            spec("NGF7", "Natural Gas Jan 2027", "0.001", "10000", "3.450"),
            spec("GCG7", "Gold Feb 2027", "0.1", "100", "4050.0"),
            spec("SIH7", "Silver Mar 2027", "0.005", "5000", "48.500"),
            spec("HGH7", "Copper Mar 2027", "0.0005", "25000", "5.1000"),
            spec("ZNH7", "10-Year T-Note Mar 2027", "0.015625", "1000", "112.5"),
            spec("6EZ6", "Euro FX Dec 2026", "0.00005", "125000", "1.16000"),
            spec("ZCH7", "Corn Mar 2027", "0.25", "50", "445.00"),
        ])
    }

    pub fn get(&self, symbol: &str) -> Option<&InstrumentSpec> {
        self.by_symbol.get(symbol)
    }

    pub fn iter(&self) -> impl Iterator<Item = &InstrumentSpec> {
        self.by_symbol.values()
    }

    pub fn len(&self) -> usize {
        self.by_symbol.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_symbol.is_empty()
    }
}

/// Whether `price` lies on the tick grid of `tick_size`.
pub fn on_tick(price: Decimal, tick_size: Decimal) -> bool {
    tick_size > Decimal::ZERO && (price % tick_size).is_zero()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_has_a_dozen_valid_instruments() {
        let catalog = InstrumentCatalog::default_futures();
        assert_eq!(catalog.len(), 12);
        for spec in catalog.iter() {
            assert!(spec.tick_size > Decimal::ZERO, "{}", spec.symbol);
            assert!(spec.multiplier > Decimal::ZERO, "{}", spec.symbol);
            assert!(on_tick(spec.reference_price, spec.tick_size), "{}", spec.symbol);
        }
        let es = catalog.get("ESZ6").expect("ESZ6 listed");
        assert_eq!(es.tick_size.to_string(), "0.25");
        assert_eq!(es.multiplier.to_string(), "50");
    }

    #[test]
    fn tick_grid() {
        let q = Decimal::new(25, 2);
        assert!(on_tick(Decimal::new(685025, 2), q));
        assert!(!on_tick(Decimal::new(685010, 2), q));
        assert!(!on_tick(Decimal::ONE, Decimal::ZERO));
    }
}
