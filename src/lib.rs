//! ttpulse: the binary's library part (configuration, wiring, HTTP), so that integration
//! tests start the same server the binary runs.

#![forbid(unsafe_code)]

pub mod check;
pub mod cli;
pub mod config;
pub mod http;
pub mod wiring;
