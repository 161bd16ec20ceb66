//! Instrument reference data: symbol, tick size, contract multiplier and price notation.

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
    /// Highest price accepted for this instrument: a band against fat fingers and against
    /// values whose arithmetic could overflow. Prices above it are refused at ingest.
    pub max_price: Decimal,
    /// Most contracts one trade or fill may carry (and one side of a quote may show).
    pub max_qty: i64,
    /// How traders write this instrument's prices; display only, prices stay decimals on the wire.
    #[serde(default)]
    pub price_format: PriceFormat,
}

/// The notation a dashboard prints an instrument's prices in (`GET /api/instruments`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceFormat {
    /// Plain decimals, padded to the tick's decimals ("6850.25").
    #[default]
    Decimal,
    /// Bond futures: the handle and 32nds, with halves and quarters of a 32nd ("112-16+").
    ThirtySeconds,
    /// Grains: cents and eighths of a cent ("445'2" for 445.25).
    Eighths,
}

impl PriceFormat {
    /// The wire name: `decimal`, `thirty_seconds` or `eighths`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decimal => "decimal",
            Self::ThirtySeconds => "thirty_seconds",
            Self::Eighths => "eighths",
        }
    }
}

/// Default band: prices up to this multiple of the reference price are accepted.
pub const DEFAULT_PRICE_BAND: u32 = 10;
/// Default most contracts per event.
pub const DEFAULT_MAX_QTY: i64 = 100_000;
/// No configuration may raise a band above these: with them, no single event, and no sum of
/// fewer than ~10^13 events, can overflow the fixed-point arithmetic.
pub const MAX_PRICE_LIMIT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
pub const MAX_QTY_LIMIT: i64 = 1_000_000_000;

impl InstrumentSpec {
    /// Sets the price band to `band` times the reference price, rounded down to the tick grid
    /// and capped at [`MAX_PRICE_LIMIT`].
    pub fn with_price_band(mut self, band: u32) -> Self {
        let top = self.reference_price.checked_mul(Decimal::from(band)).unwrap_or(MAX_PRICE_LIMIT).min(MAX_PRICE_LIMIT);
        self.max_price = match top.checked_rem(self.tick_size) {
            Some(rest) => top.checked_sub(rest).unwrap_or(top),
            None => top,
        };
        self
    }
}

/// A symbol that is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown instrument `{0}`")]
pub struct UnknownInstrument(pub String);

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
        let spec = |symbol: &str, description: &str, tick: &str, mult: &str, px: &str| {
            InstrumentSpec {
                symbol: symbol.to_owned(),
                description: description.to_owned(),
                tick_size: tick.parse().unwrap_or_default(),
                multiplier: mult.parse().unwrap_or_default(),
                reference_price: px.parse().unwrap_or_default(),
                max_price: Decimal::ZERO,
                max_qty: DEFAULT_MAX_QTY,
                price_format: PriceFormat::Decimal,
            }
            .with_price_band(DEFAULT_PRICE_BAND)
        };
        let in_format = |spec: InstrumentSpec, price_format: PriceFormat| InstrumentSpec { price_format, ..spec };
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
            in_format(spec("ZNH7", "10-Year T-Note Mar 2027", "0.015625", "1000", "112.5"), PriceFormat::ThirtySeconds),
            spec("6EZ6", "Euro FX Dec 2026", "0.00005", "125000", "1.16000"),
            in_format(spec("ZCH7", "Corn Mar 2027", "0.25", "50", "445.00"), PriceFormat::Eighths),
        ])
    }

    /// The same catalog with every instrument's band set to `band` times its reference price
    /// and its quantity limit to `max_qty` (the configuration keeps both within the hard limits).
    pub fn with_limits(self, band: u32, max_qty: i64) -> Self {
        Self::new(self.by_symbol.into_values().map(|spec| InstrumentSpec { max_qty, ..spec }.with_price_band(band)))
    }

    pub fn get(&self, symbol: &str) -> Option<&InstrumentSpec> {
        self.by_symbol.get(symbol)
    }

    /// The one parse of a symbol that comes from outside (a read, a subscription): the
    /// instrument it names, or the error every edge shows.
    pub fn symbol(&self, text: &str) -> Result<&InstrumentSpec, UnknownInstrument> {
        self.get(text).ok_or_else(|| UnknownInstrument(text.to_owned()))
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
    tick_size > Decimal::ZERO && price.checked_rem(tick_size).is_some_and(|rest| rest.is_zero())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
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
    fn price_bands_lie_on_the_tick_grid() {
        let catalog = InstrumentCatalog::default_futures();
        let es = catalog.get("ESZ6").unwrap();
        assert_eq!((es.max_price.to_string(), es.max_qty), ("68500.00".to_owned(), DEFAULT_MAX_QTY));
        let zn = catalog.get("ZNH7").unwrap();
        assert!(on_tick(zn.max_price, zn.tick_size), "{}", zn.max_price);
        let wide = InstrumentCatalog::default_futures().with_limits(u32::MAX, 7);
        let es = wide.get("ESZ6").unwrap();
        assert_eq!((es.max_price, es.max_qty), (MAX_PRICE_LIMIT, 7), "capped at the hard limit");
    }

    #[test]
    fn price_formats_follow_the_trading_convention() {
        let catalog = InstrumentCatalog::default_futures();
        let format = |symbol: &str| catalog.get(symbol).map(|s| s.price_format);
        assert_eq!(format("ZNH7"), Some(PriceFormat::ThirtySeconds));
        assert_eq!(format("ZCH7"), Some(PriceFormat::Eighths));
        for spec in catalog.iter().filter(|s| !["ZNH7", "ZCH7"].contains(&s.symbol.as_str())) {
            assert_eq!(spec.price_format, PriceFormat::Decimal, "{}", spec.symbol);
        }
        // The wire names `GET /api/instruments` prints, the same as serde's.
        for (format, name) in [
            (PriceFormat::Decimal, "decimal"),
            (PriceFormat::ThirtySeconds, "thirty_seconds"),
            (PriceFormat::Eighths, "eighths"),
        ] {
            assert_eq!(format.as_str(), name);
            assert_eq!(serde_json::to_value(format).unwrap(), serde_json::json!(name));
            assert_eq!(serde_json::from_value::<PriceFormat>(serde_json::json!(name)).unwrap(), format);
        }
        // Limits keep the format; a spec serialized without it reads back as decimal.
        let limited = InstrumentCatalog::default_futures().with_limits(5, 10);
        assert_eq!(limited.get("ZNH7").map(|s| s.price_format), Some(PriceFormat::ThirtySeconds));
        let mut json = serde_json::to_value(catalog.get("ZCH7").unwrap()).unwrap();
        assert_eq!(json["price_format"], "eighths");
        json.as_object_mut().unwrap().remove("price_format");
        let old: InstrumentSpec = serde_json::from_value(json).unwrap();
        assert_eq!(old.price_format, PriceFormat::Decimal);
    }

    #[test]
    fn tick_grid() {
        let q = Decimal::new(25, 2);
        assert!(on_tick(Decimal::new(685025, 2), q));
        assert!(!on_tick(Decimal::new(685010, 2), q));
        assert!(!on_tick(Decimal::ONE, Decimal::ZERO));
    }
}
