//! Sessions: the hub (registry and fan-out), one `SessionActor` per WebSocket, and the
//! bounded, conflating outbox between them.

pub mod actor;
pub mod hub;
pub mod outbox;
mod resampler;

pub use actor::{BATCH_PROTOCOL, MaxRates, SessionConfig, SessionUser, start_session};
pub use hub::Hub;
pub use outbox::{Outbox, OutboxLimits};
