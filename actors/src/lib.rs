//! The ttpulse actor system.
//!
//! - [`domain`]: pure calculations (no I/O), unit-tested directly.
//! - [`messages`]: every message that crosses an actor boundary.
//! - one module per actor: [`ingest`], [`processor`], [`store`], [`cache`], [`session`].
//! - [`health`] and [`metrics`]: what the admin endpoints report.

pub mod domain;
