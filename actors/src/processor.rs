//! `ProcessorActor`: applies raw events to the domain engine, publishes the resulting updates
//! downstream (hop 2) and writes their effects to the database in batches.
//!
//! Order and back-pressure: a batch is handled atomically, and the handler waits until the
//! downstream hop has taken its updates, so updates leave in the order events arrived and a
//! slow downstream slows the ingest instead of growing a queue. Database writes are batched
//! (every `flush_interval` or `flush_rows`), one transaction in flight at a time; each batch's
//! `Durable` resolves when the transaction holding it commits. A failed transaction is retried
//! as it is until it commits (a database outage stalls the pipeline; it loses nothing, and no
//! later write can overtake an earlier one), so the database never falls behind memory for good.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use opentelemetry::KeyValue;
use tokio::sync::{Semaphore, oneshot};

use crate::backoff::Backoff;
use crate::domain::{
    Changes, Engine, EngineSnapshot, InstrumentCatalog, Outcome, Published, ValidEvent, ValidationError,
};
use crate::health::ActorHealth;
use crate::messages::{BatchAck, Durable, Flush, HopError, LoadSnapshot, RawBatch, Refused, UpdateBatch, WriteChanges};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::supervision::contain;

/// An event that crashed the processor this many times is refused from then on.
const CRASHES_BEFORE_QUARANTINE: u32 = 2;
/// Most events remembered as having crashed the processor.
const MAX_CRASH_RECORDS: usize = 1_000;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub flush_interval: Duration,
    pub flush_rows: usize,
    /// Whether prints (`trade` updates) go downstream: each trade is then one more update on
    /// hop 2 and hop 3, whether or not a session asked for prints.
    pub publish_prints: bool,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self { flush_interval: Duration::from_millis(5), flush_rows: 5_000, publish_prints: true }
    }
}

type Waiter = oneshot::Sender<Result<(), HopError>>;

pub struct ProcessorActor {
    catalog: Arc<InstrumentCatalog>,
    engine: Option<Engine>,
    downstream: Recipient<UpdateBatch>,
    db_write: Recipient<WriteChanges>,
    db_load: Recipient<LoadSnapshot>,
    pending: Changes,
    waiters: Vec<Waiter>,
    /// One write in flight at a time: transactions commit in the order they were made.
    flush_slot: Arc<Semaphore>,
    config: ProcessorConfig,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
    /// Events that crashed the processor, by (instrument, body): how often, and the panic.
    /// Kept across restarts (the supervisor restarts this same value).
    crashes: std::collections::HashMap<(String, String), (u32, String)>,
}

/// The key an event is remembered by when it crashes the processor.
/// By what the event says, not by its id: an event resent without an id gets a new one each
/// time (`api:…`), and it is the body that crashes the processor.
fn crash_key(event: &ValidEvent) -> (String, String) {
    (event.body.instrument().to_owned(), serde_json::to_string(&event.body).unwrap_or_default())
}

impl ProcessorActor {
    pub fn new(
        catalog: Arc<InstrumentCatalog>,
        downstream: Recipient<UpdateBatch>,
        db_write: Recipient<WriteChanges>,
        db_load: Recipient<LoadSnapshot>,
        config: ProcessorConfig,
        metrics: Arc<Metrics>,
        health: Arc<ActorHealth>,
    ) -> Self {
        Self {
            catalog,
            engine: None,
            downstream,
            db_write,
            db_load,
            pending: Changes::default(),
            waiters: Vec::new(),
            flush_slot: Arc::new(Semaphore::new(1)),
            config,
            metrics,
            health,
            crashes: std::collections::HashMap::new(),
        }
    }

    /// Why `event` is refused without being tried, if it crashed the processor too often.
    fn quarantined(&self, event: &ValidEvent) -> Option<ValidationError> {
        // The hot path: nothing ever crashed, nothing to look up (the key costs two strings).
        if self.crashes.is_empty() {
            return None;
        }
        let (count, panic) = self.crashes.get(&crash_key(event))?;
        (*count >= CRASHES_BEFORE_QUARANTINE).then(|| {
            ValidationError::new("event", format!("quarantined: it crashed the processor {count} times ({panic})"))
        })
    }

    fn record_crash(&mut self, event: &ValidEvent, panic: String) {
        if self.crashes.len() >= MAX_CRASH_RECORDS {
            self.crashes.clear();
        }
        let entry = self.crashes.entry(crash_key(event)).or_insert((0, String::new()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = panic;
    }

    /// Sends the pending changes to the writer if no write is in flight (else they wait for
    /// the next tick). Batches waiting on them are told when they are stored.
    fn flush(&mut self, _: &mut Context<Self>) {
        if self.pending.is_empty() && self.waiters.is_empty() {
            return;
        }
        let Ok(permit) = self.flush_slot.clone().try_acquire_owned() else {
            return;
        };
        let changes = Arc::new(std::mem::take(&mut self.pending));
        let waiters = std::mem::take(&mut self.waiters);
        self.health.set_queue_depth(0);
        let (db_write, health) = (self.db_write.clone(), self.health.clone());
        actix::spawn(async move {
            write_until_stored(&db_write, changes, &health).await;
            drop(permit);
            for waiter in waiters {
                let _ = waiter.send(Ok(()));
            }
        });
    }

    fn restore(&mut self, loaded: Result<EngineSnapshot, StoreError>, ctx: &mut Context<Self>) {
        match loaded {
            Ok(snapshot) => {
                tracing::info!(
                    instruments = snapshot.books.len(),
                    positions = snapshot.positions.len(),
                    "processor state restored from the database"
                );
                let engine = Engine::restore(self.catalog.clone(), snapshot).with_prints(self.config.publish_prints);
                // Hand the restored state downstream first, so a cache that started empty
                // serves it again; a cache that has it already skips it by seq.
                let current = engine.current_state();
                if !current.is_empty() {
                    self.downstream.do_send(UpdateBatch { updates: current.into() });
                }
                self.engine = Some(engine);
                self.health.set_running();
                self.health.set_detail(None);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot load processor state; retrying in 1 s");
                self.health.set_detail(Some(e.to_string()));
                crate::supervision::restart_later::<Self>(ctx);
            }
        }
    }
}

/// Writes `changes` until the transaction commits, backing off between attempts.
async fn write_until_stored(db_write: &Recipient<WriteChanges>, changes: Arc<Changes>, health: &ActorHealth) {
    if changes.is_empty() {
        return;
    }
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let error = match db_write.send(WriteChanges { changes: changes.clone() }).await {
            Ok(Ok(_)) => {
                if backoff.retried() {
                    tracing::info!("database writes go through again");
                    health.set_detail(None);
                }
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("database writer unavailable: {e}"),
        };
        tracing::error!(error, retry_in = ?backoff.peek(), "database write failed; retrying the same transaction");
        health.set_detail(Some(format!("database write failing: {error}")));
        actix_rt::time::sleep(backoff.next_delay()).await;
    }
}

impl Actor for ProcessorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        // Changes kept from before a restart are stored first, after any write in flight, and
        // only then is the state read back: the restored state includes everything computed.
        let pending = Arc::new(std::mem::take(&mut self.pending));
        let waiters = std::mem::take(&mut self.waiters);
        let (slot, db_write, db_load, health) =
            (self.flush_slot.clone(), self.db_write.clone(), self.db_load.clone(), self.health.clone());
        async move {
            let permit = slot.acquire_owned().await;
            write_until_stored(&db_write, pending, &health).await;
            for waiter in waiters {
                let _ = waiter.send(Ok(()));
            }
            drop(permit);
            db_load.send(LoadSnapshot).await.unwrap_or_else(|e| Err(StoreError::from(e)))
        }
        .into_actor(self)
        .map(|loaded, act, ctx| act.restore(loaded, ctx))
        .wait(ctx);
        ctx.run_interval(self.config.flush_interval, |act, ctx| act.flush(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.health.set_stopped();
    }
}

crate::supervised!(ProcessorActor, reset = |act| act.engine = None);

impl Handler<Flush> for ProcessorActor {
    type Result = ResponseFuture<Result<(), HopError>>;

    /// Stores everything pending now (after any write in flight) and answers when it is stored.
    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        let (waiter, durable) = Durable::pending();
        self.waiters.push(waiter);
        self.flush(ctx);
        // If a write was in flight, the flush tick picks the rest up as soon as it is done.
        Box::pin(durable.wait())
    }
}

impl Handler<RawBatch> for ProcessorActor {
    type Result = AtomicResponse<Self, Result<BatchAck, HopError>>;

    fn handle(&mut self, batch: RawBatch, ctx: &mut Context<Self>) -> Self::Result {
        let span = tracing::debug_span!("process", events = batch.events.len());
        let _entered = span.enter();
        if self.engine.is_none() {
            let err = HopError::Restoring;
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        let mut updates: Vec<Published> = Vec::with_capacity(batch.events.len() * 2);
        let mut changes = Changes::default();
        let mut duplicates = 0;
        let mut refused = Vec::new();
        let health = self.health.clone();
        let mut crashed = None;
        // Sampled events: which updates each one published, for the `ttpulse.process` span.
        let mut traced = Vec::new();
        for (index, event) in batch.events.iter().enumerate() {
            if let Some(error) = self.quarantined(event) {
                tracing::error!(event_id = %event.id, %error, "event refused");
                self.metrics.events_rejected.with_label_values(&["processor"]).inc();
                refused.push(Refused { index, event_id: event.id.to_string(), error });
                continue;
            }
            let Some(engine) = self.engine.as_mut() else { break };
            let published_before = updates.len();
            let applied = contain(&health, || {
                #[cfg(test)]
                tests::crash_on_request(event);
                engine.apply(event, &mut updates, &mut changes)
            });
            match applied {
                Ok(Ok(outcome @ (Outcome::Applied | Outcome::Stale | Outcome::AppliedLateForCandles))) => {
                    self.metrics.events_processed.with_label_values(&[event.body.kind()]).inc();
                    if let Some(trace) = &event.trace {
                        traced.push((published_before..updates.len(), trace, event));
                    }
                    match outcome {
                        // Older than the quote the book shows: recorded, changes nothing.
                        Outcome::Stale => self.metrics.stale_quotes.inc(),
                        Outcome::AppliedLateForCandles => self.metrics.late_trades.inc(),
                        _ => {}
                    }
                }
                Ok(Ok(Outcome::Duplicate)) => {
                    duplicates += 1;
                    self.metrics.events_duplicate.inc();
                }
                Ok(Ok(Outcome::UnknownInstrument)) => {
                    tracing::error!(event_id = %event.id, "event for an instrument missing from the catalog; skipped");
                    self.metrics.events_rejected.with_label_values(&["processor"]).inc();
                }
                Ok(Err(error)) => {
                    tracing::warn!(event_id = %event.id, %error, "event refused: its effects cannot be computed");
                    self.metrics.events_rejected.with_label_values(&["processor"]).inc();
                    refused.push(Refused { index, event_id: event.id.to_string(), error });
                }
                Err(panic) => {
                    crashed = Some((event.clone(), panic));
                    break;
                }
            }
        }
        if let Some((event, panic)) = crashed {
            // The engine may be half-changed: nothing of this batch is kept, the actor restarts
            // and reloads its state from the database, and the caller offers the batch again.
            let error = HopError::Unavailable(format!(
                "the processor crashed on event {} ({panic}) and is restarting; an event that crashes it \
                 {CRASHES_BEFORE_QUARANTINE} times is refused",
                event.id
            ));
            self.record_crash(&event, panic);
            // No batch touches the half-changed engine; the stop comes after this answer went out.
            self.engine = None;
            ctx.run_later(Duration::ZERO, |_, ctx| ctx.stop());
            return AtomicResponse::new(Box::pin(fut::ready(Err(error))));
        }
        self.health.handled_n(batch.events.len() as u64);
        self.metrics.updates_published.inc_by(updates.len() as u64);
        let processed = crate::health::now_micros();
        for update in &mut updates {
            update.hops.processed = processed;
            crate::metrics::observe_hop(&self.metrics.hop_ingest_to_processed, update.ingest_ts, processed);
        }
        for (published, parent, event) in traced {
            let span = crate::trace::hop("ttpulse.process", parent, event.ingest_ts, processed, || {
                vec![
                    KeyValue::new("ttpulse.event_id", event.id.to_string()),
                    KeyValue::new("ttpulse.instrument", event.body.instrument().to_owned()),
                    KeyValue::new("ttpulse.updates", published.len() as i64),
                ]
            });
            for update in updates.get_mut(published).into_iter().flatten() {
                update.trace = Some(span.clone());
            }
        }
        self.pending.merge(changes);
        self.health.set_queue_depth(self.pending.rows() as i64);
        // Even a batch of duplicates waits for the next write to commit: the originals may
        // still be pending or in flight.
        let (waiter, durable) = Durable::pending();
        self.waiters.push(waiter);
        let flush_rows = self.config.flush_rows;
        if self.pending.rows() >= flush_rows {
            self.flush(ctx);
        }
        // Still over the limit: a write is in flight, so the database is behind. Wait for a
        // slot before taking more (the caller waits too), which bounds the pending changes.
        let slot = (self.pending.rows() >= flush_rows).then(|| self.flush_slot.clone());
        let accepted = batch.events.len() - duplicates - refused.len();
        let downstream = self.downstream.clone();
        let send = async move {
            // The batch is applied: its updates must go out, or they never will (a replay would
            // see only duplicates). Keep offering them; meanwhile nothing else is taken.
            let updates: std::sync::Arc<[Published]> = updates.into();
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            while !updates.is_empty() {
                let error = match downstream.send(UpdateBatch { updates: updates.clone() }).await {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::error!(error, retry_in = ?backoff.peek(), "the next hop did not take processed updates; retrying");
                actix_rt::time::sleep(backoff.next_delay()).await;
            }
            if let Some(slot) = slot {
                drop(slot.acquire().await);
            }
            Ok(BatchAck { accepted, duplicates, refused, durable })
        }
        .into_actor(self)
        .map(move |result, act, ctx| {
            if act.pending.rows() >= flush_rows {
                act.flush(ctx);
            }
            result
        });
        AtomicResponse::new(Box::pin(send))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::domain::{EventBody, EventId, RawEvent, Update};
    use crate::health::{ActorState, HealthRegistry};
    use crate::store::{DbActor, DbPool};

    /// Fills whose id starts with this make the processor's handler panic (tests only): a
    /// stand-in for a bug that no validation foresaw.
    const CRASH_FILL_ID: &str = "crash-test";

    pub fn crash_on_request(event: &ValidEvent) {
        if let EventBody::Fill(fill) = &event.body
            && fill.fill_id.starts_with(CRASH_FILL_ID)
        {
            panic!("test crash on fill {}", fill.fill_id);
        }
    }

    /// Takes processed updates, remembering them.
    struct Sink(Arc<Mutex<Vec<Published>>>);

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<UpdateBatch> for Sink {
        type Result = Result<(), HopError>;

        fn handle(&mut self, batch: UpdateBatch, _: &mut Context<Self>) -> Self::Result {
            self.0.lock().unwrap().extend(batch.updates.iter().cloned());
            Ok(())
        }
    }

    fn fill(seq: u64, fill_id: &str, qty: i64) -> ValidEvent {
        let json = format!(
            r#"{{"type":"fill","account":"ACC1","order_id":"o","fill_id":"{fill_id}","instrument":"ESZ6","side":"buy","price":"6850","qty":{qty}}}"#
        );
        let mut raw = RawEvent::decode(json.as_bytes()).unwrap();
        raw.event_id = Some(EventId { source: "t".into(), seq }.to_string());
        raw.validate(&InstrumentCatalog::default_futures(), 1_000, &mut || unreachable!()).unwrap()
    }

    async fn offer(processor: &Addr<ProcessorActor>, events: Vec<ValidEvent>) -> Result<BatchAck, HopError> {
        // Like the ingester: offer again while the processor restarts and restores its state.
        for _ in 0..100 {
            match processor.send(RawBatch { events: events.clone() }).await {
                // Restoring its state, or restarting (a message in flight then is dropped).
                Ok(Err(HopError::Restoring)) => {}
                Err(_) => {}
                Ok(result) => return result,
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the processor never came back")
    }

    #[actix_rt::test]
    async fn a_panic_restarts_the_processor_from_the_database_and_a_repeat_offender_is_quarantined() {
        let path = std::env::temp_dir().join(format!("ttpulse-crash-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let pool = DbPool::open_sqlite(&path, 2).unwrap();
        let catalog = Arc::new(InstrumentCatalog::default_futures());
        let metrics = Arc::new(Metrics::new());
        let registry = HealthRegistry::new();
        let db = DbActor::start(1, pool, catalog.clone(), metrics.clone(), registry.register("db", "DbActor"));
        let published = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(published.clone()).start();
        let health = registry.register("processor", "ProcessorActor");
        let (c, m, h) = (catalog.clone(), metrics.clone(), health.clone());
        let processor = Supervisor::start(move |_| {
            ProcessorActor::new(
                c,
                sink.clone().recipient(),
                db.clone().recipient(),
                db.clone().recipient(),
                ProcessorConfig::default(),
                m,
                h,
            )
        });

        let ack = offer(&processor, vec![fill(1, "f1", 2)]).await.unwrap();
        assert_eq!(ack.accepted, 1);
        ack.durable.wait().await.unwrap();

        // The first crash: the batch is refused as a whole (the normal fill before the crashing
        // one is not kept), the actor restarts and reloads what was stored.
        let batch = vec![fill(2, "f2", 3), fill(3, "crash-test-1", 1)];
        let err = offer(&processor, batch.clone()).await.unwrap_err().to_string();
        assert!(err.contains("crashed on event t:3") && err.contains("test crash"), "{err}");
        let report = health.report();
        assert_eq!(report.panics, 1);
        assert!(report.last_error.unwrap().message.contains("test crash on fill crash-test-1"));
        offer(&processor, vec![]).await.expect("the actor answers again");
        assert_eq!(health.state(), ActorState::Running);
        assert_eq!(health.restarts(), 1);

        // Offered again (as the ingester and the Kafka consumer do), it crashes a second time;
        // resent under new ids (as a client without ids does), it is still the same event.
        offer(&processor, vec![fill(2, "f2", 3), fill(13, "crash-test-1", 1)]).await.unwrap_err();
        // The third time it is quarantined: refused with the reason, and the rest goes through.
        let ack = offer(&processor, vec![fill(2, "f2", 3), fill(23, "crash-test-1", 1)]).await.unwrap();
        assert_eq!((ack.accepted, ack.refused.len()), (1, 1));
        assert_eq!(ack.refused[0].index, 1);
        assert_eq!(ack.refused[0].error.field, "event");
        assert!(ack.refused[0].error.reason.contains("quarantined"), "{:?}", ack.refused[0]);
        ack.durable.wait().await.unwrap();
        assert_eq!(health.restarts(), 2);

        // The state is exact: 2 + 3 contracts, two fills in the lane, nothing of the crashing one.
        let ack = offer(&processor, vec![fill(4, "f4", 1)]).await.unwrap();
        ack.durable.wait().await.unwrap();
        // The guard in a block of its own: clippy does not see an explicit drop before an await.
        {
            let updates = published.lock().unwrap();
            let Some(Update::Fill(last)) =
                updates.iter().rev().map(|p| &p.update).find(|u| matches!(u, Update::Fill(_)))
            else {
                panic!("a fill report")
            };
            assert_eq!((last.seq, last.position.net_qty), (3, 6));
        }
        // Only that body is quarantined: the same fill id with other terms is another event (the
        // test hook crashes it again, which shows it was tried).
        let err = offer(&processor, vec![fill(30, "crash-test-1", 2)]).await.unwrap_err().to_string();
        assert!(err.contains("crashed on event t:30"), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}
