//! Pure calculations: no I/O, no actors, no clocks. Every function here takes its inputs as
//! arguments (timestamps included) so it can be unit-tested with hand-computed values.
//!
//! Money and prices are `rust_decimal::Decimal` (fixed point); quantities are whole contracts
//! (`i64`). Nothing here uses binary floating point.

pub mod candles;
pub mod events;
pub mod instruments;
pub mod market;
pub mod positions;

pub use candles::{Candle, CandleBook, Interval};
pub use events::{EventBody, EventId, Fill, Quote, RawEvent, Side, Trade, ValidEvent, ValidationError};
pub use instruments::{InstrumentCatalog, InstrumentSpec};
pub use market::InstrumentState;
pub use positions::PositionState;

/// Unix time in microseconds, the one time unit used across the system.
pub type Micros = i64;
