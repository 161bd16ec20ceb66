//! The ttpulse actor system.
//!
//! - [`domain`]: pure calculations (no I/O), unit-tested directly; the `ttpulse-domain` crate
//!   (`domain/`), re-exported here so that `ttpulse_actors::domain::…` names it.
//! - [`messages`]: every message that crosses an actor boundary.
//! - one module per actor: [`ingest`], [`processor`], [`store`], [`cache`], [`session`].
//! - [`health`] and [`metrics`]: what the admin endpoints report.
//! - [`handles`]: what the HTTP layer asks the actors through (no actix types beyond here).
//! - [`pipeline`]: the in-order commit tracker of a pipelined consumer (pure logic).

#![forbid(unsafe_code)]

pub mod backoff;
pub mod cache;
pub mod handles;
pub use ttpulse_domain as domain;
pub mod health;
pub mod ingest;
pub mod kafka;
pub mod messages;
pub mod metrics;
pub mod pipeline;
pub mod processor;
pub mod session;
pub mod store;
pub mod supervision;
pub mod trace;
