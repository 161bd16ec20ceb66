//! The integration tests, one binary (linking ttpulse, diesel and rdkafka once):
//! - `pipeline`: the embedded pipeline through its public surface (with `abuse`: extreme and
//!   hostile input; `history`: the trader's record read back);
//! - `batched`: wire version 2, the updates of a wake in one frame;
//! - `security`: who may connect, read, write and how much;
//! - `cli`: the binary as an operator runs it;
//! - `tracing`: a sampled event as OpenTelemetry spans across hops (and roles, in `tracing::distributed`);
//! - `attack_review`: hostile reviews of tracing, the session budget and wire version 2 (what broke, what held);
//! - `distributed`: one process per role against a real broker (nisshi), Redis and PostgreSQL
//!   (with `scale_out`: one to three processors, two api nodes behind the shipped nginx).
//!
//! `cargo test --test it distributed::` runs one group; `--skip distributed::` the others.

mod attack_review;
mod batched;
mod cli;
mod common;
mod distributed;
mod pipeline;
mod security;
mod tracing;
