//! Every message that crosses an actor boundary: the protocol of the system.
//!
//! The three hops of the pipeline are typed recipients, so the carrier behind each is chosen
//! when the system is wired (an in-process actor, or Kafka / Redis adapters):
//! - hop 1, raw events:      `Recipient<RawBatch>`    ingester  -> processor
//! - hop 2, processed state: `Recipient<UpdateBatch>` processor -> cache
//! - hop 3, notifications:   `Recipient<UpdateBatch>` cache     -> hub (sessions)
//!
//! In distributed mode hop 2 arrives at the cache role as [`StoreUpdates`], whose answer
//! carries a [`Durable`]: the Redis writes are pipelined like the processor's effects.

use std::sync::Arc;

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::domain::{
    Candle, Changes, EngineSnapshot, InstrumentSpec, Interval, Micros, PnlPoint, Published, RawEvent, TraceContext,
    ValidEvent, ValidationError,
};
use crate::session::outbox::Outbox;
use crate::store::{StoreError, StoredFill, StoredTrade};

// ---- hop 1: raw events ------------------------------------------------------------------

/// Validated raw events, in source order.
#[derive(Message, Debug)]
#[rtype(result = "Result<BatchAck, HopError>")]
pub struct RawBatch {
    pub events: Vec<ValidEvent>,
}

/// The next hop took a batch (in order). `durable` resolves once its effects are stored.
#[derive(Debug)]
pub struct BatchAck {
    pub accepted: usize,
    pub duplicates: usize,
    /// Events the processor could not apply (their effects would overflow, or they crashed it
    /// twice): nothing of them was applied, published or stored.
    pub refused: Vec<Refused>,
    pub durable: Durable,
}

/// One event of a batch that was refused, by its position in the batch.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub index: usize,
    pub event_id: String,
    #[serde(flatten)]
    pub error: ValidationError,
}

/// Resolves when a batch's effects are durable: committed to the database (embedded), or
/// acknowledged by the broker (distributed).
#[derive(Debug)]
pub struct Durable(Option<oneshot::Receiver<Result<(), HopError>>>);

impl Durable {
    pub fn already() -> Self {
        Self(None)
    }

    pub fn pending() -> (oneshot::Sender<Result<(), HopError>>, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, Self(Some(rx)))
    }

    pub async fn wait(self) -> Result<(), HopError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => {
                rx.await.unwrap_or_else(|_| Err(HopError::Unavailable("the writer stopped before committing".into())))
            }
        }
    }
}

/// Why a hop did not take a batch; the sender offers it again (or answers 503 with the ids).
#[derive(Debug, Clone, thiserror::Error)]
pub enum HopError {
    /// The next hop failed the batch (a broker, Redis, a crashed actor); the text says which.
    #[error("next hop unavailable: {0}")]
    Unavailable(String),
    /// The processor is loading its state from the database.
    #[error("next hop unavailable: the processor is restoring its state")]
    Restoring,
    /// The next actor stopped (it is restarting) before it answered.
    #[error("next hop unavailable: {0}")]
    Mailbox(MailboxError),
}

impl From<MailboxError> for HopError {
    fn from(e: MailboxError) -> Self {
        HopError::Mailbox(e)
    }
}

// ---- hops 2 and 3: processed updates ----------------------------------------------------

/// Processed updates in publication order (per key, seq order). `Ok` once the receiver has
/// taken them (stored them, for a cache; produced them, for a Kafka hop).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), HopError>")]
pub struct UpdateBatch {
    pub updates: Arc<[Published]>,
}

/// Processed updates read from `tt_processed_data`, for the cache role to write to Redis.
/// Answered once the cache has taken them: its write is on its way, and the [`Durable`]
/// resolves when Redis has applied it, so the consumer reads on while earlier writes are out.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Durable, HopError>")]
pub struct StoreUpdates {
    pub updates: Arc<[Published]>,
    /// Counts the consumer's restarts: when a write fails, the batch is offered again with
    /// every batch after it, under the next run. The cache numbers each run's writes from 1,
    /// and Redis applies a write only right after the one before it in its run, so that nothing
    /// overtakes a write that failed.
    pub run: u64,
}

// ---- ingest (HTTP push and other external sources) --------------------------------------

/// Raw events pushed from outside (e.g. `POST /api/ingest`): all are validated first, and if
/// any is invalid none is forwarded.
#[derive(Message, Debug)]
#[rtype(result = "Result<(IngestReceipt, Durable), IngestError>")]
pub struct IngestEvents {
    pub events: Vec<RawEvent>,
    /// The client's trace (its `traceparent` header), continued by every event of the request.
    pub trace: Option<TraceContext>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReceipt {
    pub accepted: usize,
    pub duplicates: usize,
    pub event_ids: Vec<String>,
    /// Events the processor refused (the others were applied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// Nothing was forwarded.
    #[error("event {index}: {error}")]
    Invalid { index: usize, error: ValidationError },
    /// The next hop did not take the whole batch. In process (embedded) nothing of it was
    /// applied; across Kafka some events may have reached the broker before the error. So a
    /// resend must carry `event_ids`, the ids the events were given: what was applied then
    /// counts as a duplicate.
    #[error("{error}")]
    Hop { error: HopError, event_ids: Vec<String> },
    /// The ingester could not be asked (stopped, or restarting): nothing was applied.
    #[error("ingester unavailable: {0}")]
    Unavailable(MailboxError),
}

// ---- database ---------------------------------------------------------------------------

#[derive(Message, Debug)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct WriteChanges {
    /// Shared so that a failed write can be retried without copying.
    pub changes: Arc<Changes>,
}

#[derive(Message, Debug)]
#[rtype(result = "Result<EngineSnapshot, StoreError>")]
pub struct LoadSnapshot;

/// The candles of a symbol, oldest first: the latest `limit`, or with `since` the first
/// `limit` that start at or after it (to refill a gap).
#[derive(Message, Debug)]
#[rtype(result = "Result<Vec<Candle>, StoreError>")]
pub struct QueryCandles {
    pub symbol: String,
    pub interval: Interval,
    pub since: Option<Micros>,
    pub limit: i64,
}

/// One account's fills, from the database. With `since_seq` (and `symbol`): the fills after
/// that seq, oldest first (to recover a lane). Otherwise newest first, within [`from`, `to`]
/// (Unix micros), continuing after `cursor` (the last fill of the previous page).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<StoredFill>, StoreError>")]
pub struct QueryFills {
    pub account: String,
    pub symbol: Option<String>,
    pub since_seq: Option<u64>,
    pub from: Option<Micros>,
    pub to: Option<Micros>,
    pub cursor: Option<FillCursor>,
    pub limit: i64,
}

/// Where a page of fills (newest first) ended: its last fill's time, symbol and seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillCursor {
    pub ts: Micros,
    pub symbol: String,
    pub seq: u64,
}

/// The latest prints of an instrument (time and sales), newest first (by time, then event id),
/// continuing after `before` when given.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<StoredTrade>, StoreError>")]
pub struct QueryTrades {
    pub symbol: String,
    pub before: Option<TradeCursor>,
    pub limit: i64,
}

/// Where a page of prints (newest first) goes on: prints before `ts` (Unix micros) and, with
/// `event_id`, the prints at `ts` whose event id sorts before it (prints often share a time: a
/// page may end among them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeCursor {
    pub ts: Micros,
    pub event_id: Option<String>,
}

/// Deletes what is older than the retention allows, in short batches (a write of the
/// processor waits for one batch at most). `None`: that table is kept for good.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Pruned, StoreError>")]
pub struct Prune {
    pub now: Micros,
    pub trades: Option<Micros>,
    pub candles_1s: Option<Micros>,
    pub candles_1m: Option<Micros>,
    pub pnl_1s: Option<Micros>,
}

/// Rows a prune deleted, by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub trades: usize,
    pub candles_1s: usize,
    pub candles_1m: usize,
    pub pnl_1s: usize,
}

/// Samples every account's P&L now, stores it (1 s and 1 min buckets) and returns the points.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<PnlPoint>, StoreError>")]
pub struct SamplePnl {
    pub now: Micros,
}

/// An account's P&L over time, oldest first.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<PnlPoint>, StoreError>")]
pub struct QueryPnl {
    pub account: String,
    pub interval: Interval,
    pub from: Option<Micros>,
    pub to: Option<Micros>,
    pub limit: i64,
}

#[derive(Message, Debug)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SyncInstruments {
    pub specs: Vec<InstrumentSpec>,
}

// ---- sessions ---------------------------------------------------------------------------

pub type SessionId = u64;

/// A session registers its outbox with the hub, and how to wake it when the outbox fills.
#[derive(Message)]
#[rtype(result = "SessionId")]
pub struct Connect {
    pub outbox: Arc<Outbox>,
    pub wake: Recipient<Wake>,
}

#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub id: SessionId,
}

/// Adds instruments (`"*"` for all) and accounts (`"*"` for all) to a session. The hub puts a
/// snapshot of them in the session's outbox, then every later update.
#[derive(Message, Debug)]
#[rtype(result = "Result<Subscribed, SubscribeError>")]
pub struct Subscribe {
    pub id: SessionId,
    pub instruments: Vec<String>,
    pub accounts: Vec<String>,
    /// Instruments (`"*"` for all) whose prints the session wants.
    pub trades: Vec<String>,
    /// The maximum rate granted (updates per market key per second; 0: as they come), which
    /// the snapshot reports.
    pub max_rate: u32,
}

/// What the snapshot of a subscription holds of the account lanes: each `fills:` key and its
/// seq (the stream goes on after it).
#[derive(Debug, Clone, Default)]
pub struct Subscribed {
    pub fill_seqs: Vec<(String, u64)>,
}

#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub id: SessionId,
    pub instruments: Vec<String>,
    pub accounts: Vec<String>,
    pub trades: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SubscribeError {
    #[error("unknown instrument `{0}`")]
    UnknownInstrument(String),
    #[error("invalid account `{0}`")]
    InvalidAccount(String),
    #[error("session {0} is not connected")]
    NotConnected(SessionId),
    #[error("at most {0} subscriptions (instruments plus accounts) per session")]
    TooMany(usize),
    /// The hub failed on this subscribe (and restarts): subscribe again.
    #[error("{0}")]
    Unavailable(String),
}

/// Puts a fresh snapshot of its subscriptions in every session's outbox (after the state was
/// reloaded, e.g. when Redis came back).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Resnapshot;

/// Tells a session that its outbox has something to send.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Wake;

// ---- control ----------------------------------------------------------------------------

/// Graceful shutdown, step 1: the ingester stops reading its source.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopIntake;

/// Graceful shutdown, step 2: resolves once everything the processor computed is stored.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), HopError>")]
pub struct Flush;

/// Graceful shutdown, step 3: closes every session with `code` (1001, going away).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CloseAll {
    pub code: u16,
    pub reason: String,
}

/// Stops an actor so that its supervisor restarts it (admin `POST /admin/actors/{name}/restart`).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Restart;
