//! Pure calculations: no I/O, no actors, no clocks. Every function here takes its inputs as
//! arguments (timestamps included) so it can be unit-tested with hand-computed values.
//!
//! Money and prices are `rust_decimal::Decimal` (fixed point); quantities are whole contracts
//! (`i64`). Nothing here uses binary floating point. All arithmetic is checked (see
//! `checked.rs`): an event whose effects would overflow is refused, never wrapped or panicked on.
#![deny(clippy::arithmetic_side_effects)]
#![forbid(unsafe_code)]

pub mod candles;
mod checked;
pub mod engine;
pub mod events;
pub mod ids;
pub mod instruments;
pub mod keys;
pub mod market;
pub mod pnl;
pub mod positions;
pub mod selection;
pub mod trace_context;
pub mod updates;

pub use candles::{Candle, CandleBook, Interval};
pub use engine::{Changes, Engine, EngineSnapshot, FillKey, FillTerms, Outcome};
pub use events::{
    EventBody, EventId, EventIdAllocator, Fill, Quote, RawEvent, Side, TimeWindow, Trade, ValidEvent, ValidationError,
};
pub use instruments::{InstrumentCatalog, InstrumentSpec};
pub use keys::Key;
pub use market::{InstrumentBook, InstrumentState};
pub use pnl::PnlPoint;
pub use positions::PositionState;
pub use selection::Filter;
pub use trace_context::TraceContext;
pub use updates::{FillReport, HopTimes, Lane, Published, Topic, TradePrint, Update};

/// Unix time in microseconds, the one time unit used across the system.
pub type Micros = i64;
