//! `ProcessorActor`: applies raw events to the domain engine, publishes the resulting updates
//! downstream (hop 2) and writes their effects to the database in batches.
//!
//! Pipelined: the handler calculates a batch and answers as soon as it is calculated; its
//! updates then go downstream in a task of their own while the next batch is calculated. Up to
//! `pipeline_depth` calculated batches may wait for the downstream hop; one more waits (and so
//! does its caller) until the oldest has gone out, so a slow downstream slows the ingest instead
//! of growing a queue.
//!
//! Order: each batch's updates go out after the previous batch's (a chain of tasks, each
//! waiting for the one before), retried until the next hop takes them: the batch is applied, a
//! replay would see only duplicates. Only then are its changes staged for the database, so a
//! stored change always has its update out, and changes are staged in batch order. Database
//! writes are batched (every `flush_interval` or `flush_rows`), one transaction in flight at a
//! time, so they commit in batch order too; each batch's `Durable` resolves when the
//! transaction holding it commits, which is after its updates went out: both effects. A failed
//! transaction is retried as it is until it commits (a database outage stalls the pipeline; it
//! loses nothing, and no later write can overtake an earlier one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use opentelemetry::KeyValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

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
    /// Calculated batches whose updates may be on their way downstream at once (at least 1;
    /// 1 is the unpipelined processor: a batch is calculated while the previous one's database
    /// write is in flight, but not while its updates are).
    pub pipeline_depth: usize,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self { flush_interval: Duration::from_millis(5), flush_rows: 5_000, publish_prints: true, pipeline_depth: 3 }
    }
}

type Waiter = oneshot::Sender<Result<(), HopError>>;

/// Changes whose updates went out, waiting for the next database write, and the batches that
/// wait for that write. The publish tasks add to it, in batch order.
#[derive(Default)]
struct Staged {
    changes: Changes,
    waiters: Vec<Waiter>,
}

/// Writes staged changes: shared by the actor's flush tick and the publish tasks.
#[derive(Clone)]
struct Writer {
    staged: Arc<Mutex<Staged>>,
    /// One write in flight at a time: transactions commit in the order they were made.
    slot: Arc<Semaphore>,
    db_write: Recipient<WriteChanges>,
    health: Arc<ActorHealth>,
}

impl Writer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Staged> {
        // A panic while holding it cannot leave `Staged` half-changed (merge and push only).
        self.staged.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rows(&self) -> usize {
        self.lock().changes.rows()
    }

    /// Adds a batch's changes after those of every batch before it; answers the rows staged.
    fn stage(&self, changes: Changes, waiter: Waiter) -> usize {
        let mut staged = self.lock();
        staged.changes.merge(changes);
        staged.waiters.push(waiter);
        let rows = staged.changes.rows();
        self.health.set_queue_depth(rows as i64);
        rows
    }

    fn take(&self) -> (Changes, Vec<Waiter>) {
        let mut staged = self.lock();
        self.health.set_queue_depth(0);
        (std::mem::take(&mut staged.changes), std::mem::take(&mut staged.waiters))
    }

    /// Writes `changes` until they commit, then tells the batches waiting on them. The caller
    /// holds the write slot.
    async fn store(&self, changes: Changes, waiters: Vec<Waiter>) {
        write_until_stored(&self.db_write, Arc::new(changes), &self.health).await;
        for waiter in waiters {
            let _ = waiter.send(Ok(()));
        }
    }

    /// Sends the staged changes to the database if no write is in flight (else they wait for
    /// the next tick). Batches waiting on them are told when they are stored.
    fn flush(&self) {
        let Ok(permit) = self.slot.clone().try_acquire_owned() else {
            return;
        };
        let (changes, waiters) = self.take();
        if changes.is_empty() && waiters.is_empty() {
            return;
        }
        let writer = self.clone();
        actix::spawn(async move {
            writer.store(changes, waiters).await;
            drop(permit);
        });
    }
}

pub struct ProcessorActor {
    catalog: Arc<InstrumentCatalog>,
    engine: Option<Engine>,
    downstream: Recipient<UpdateBatch>,
    db_load: Recipient<LoadSnapshot>,
    writer: Writer,
    /// Resolves when the last batch handed to hop 2 has gone out and its changes are staged
    /// (`None`: nothing handed on since it was last awaited). Kept across restarts.
    tail: Option<oneshot::Receiver<()>>,
    /// One permit per calculated batch whose updates have not gone out yet.
    in_flight: Arc<Semaphore>,
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
        mut config: ProcessorConfig,
        metrics: Arc<Metrics>,
        health: Arc<ActorHealth>,
    ) -> Self {
        config.pipeline_depth = config.pipeline_depth.max(1);
        let writer = Writer {
            staged: Arc::new(Mutex::new(Staged::default())),
            slot: Arc::new(Semaphore::new(1)),
            db_write,
            health: health.clone(),
        };
        Self {
            catalog,
            engine: None,
            downstream,
            db_load,
            writer,
            tail: None,
            in_flight: Arc::new(Semaphore::new(config.pipeline_depth)),
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

    /// Hands a calculated batch to hop 2, after every batch before it. Once the next hop has
    /// its updates, its changes are staged for the database (`flush`: and written now, if no
    /// write is in flight); `permit` (its place in the pipeline) is given back then.
    /// The answer resolves when the transaction holding its changes commits.
    fn publish(
        &mut self,
        updates: Vec<Published>,
        changes: Changes,
        permit: Option<OwnedSemaphorePermit>,
        flush: bool,
    ) -> Durable {
        let (waiter, durable) = Durable::pending();
        let (done, tail) = oneshot::channel();
        let previous = self.tail.replace(tail);
        let (downstream, writer) = (self.downstream.clone(), self.writer.clone());
        let (metrics, in_flight, depth) = (self.metrics.clone(), self.in_flight.clone(), self.config.pipeline_depth);
        let flush_rows = self.config.flush_rows;
        actix::spawn(async move {
            // Dropped only if the task before was (the system is stopping): go on regardless.
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            send_until_taken(&downstream, updates).await;
            if writer.stage(changes, waiter) >= flush_rows || flush {
                writer.flush();
            }
            drop(permit);
            metrics.processor_batches_in_flight.set(in_flight_count(&in_flight, depth));
            let _ = done.send(());
        });
        durable
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
                    // Ahead of every batch calculated from now on.
                    drop(self.publish(current, Changes::default(), None, false));
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

    /// Calculates a batch (holding `permit`, its place in the pipeline) and hands it on.
    fn process(
        &mut self,
        batch: RawBatch,
        permit: OwnedSemaphorePermit,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<BatchAck, HopError>> {
        let span = tracing::debug_span!("process", events = batch.events.len());
        let _entered = span.enter();
        if self.engine.is_none() {
            return Box::pin(fut::ready(Err(HopError::Restoring)));
        }
        // Batches in the pipeline, this one included: more than one means this calculation
        // runs while an earlier batch is still on its way downstream.
        let in_flight = in_flight_count(&self.in_flight, self.config.pipeline_depth);
        self.metrics.processor_batches_in_flight.set(in_flight);
        if in_flight > 1 {
            self.metrics.processor_batches_overlapped.inc();
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
            // and reloads its state from the database (after the batches before this one are
            // out and stored), and the caller offers the batch again.
            let error = HopError::Unavailable(format!(
                "the processor crashed on event {} ({panic}) and is restarting; an event that crashes it \
                 {CRASHES_BEFORE_QUARANTINE} times is refused",
                event.id
            ));
            self.record_crash(&event, panic);
            // No batch touches the half-changed engine; the stop comes after this answer went out.
            self.engine = None;
            drop(permit);
            ctx.run_later(Duration::ZERO, |_, ctx| ctx.stop());
            return Box::pin(fut::ready(Err(error)));
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
        let accepted = batch.events.len() - duplicates - refused.len();
        // Even a batch of duplicates waits for a write to commit: the originals may still be on
        // their way (the chain stages it after them).
        let durable = self.publish(updates, changes, Some(permit), false);
        let ack = BatchAck { accepted, duplicates, refused, durable };
        let flush_rows = self.config.flush_rows;
        if self.writer.rows() >= flush_rows {
            self.writer.flush();
        }
        // Still over the limit: a write is in flight, so the database is behind. Wait for it
        // before taking more (the caller waits too), which bounds the staged changes.
        if self.writer.rows() < flush_rows {
            return Box::pin(fut::ready(Ok(ack)));
        }
        let slot = self.writer.slot.clone();
        Box::pin(
            async move {
                drop(slot.acquire().await);
            }
            .into_actor(self)
            .map(move |(), act, _| {
                if act.writer.rows() >= flush_rows {
                    act.writer.flush();
                }
                Ok(ack)
            }),
        )
    }
}

/// Batches holding a place in the pipeline, for the gauge.
fn in_flight_count(in_flight: &Semaphore, depth: usize) -> i64 {
    depth.saturating_sub(in_flight.available_permits()) as i64
}

/// Offers `updates` to the next hop until it takes them, backing off between attempts.
async fn send_until_taken(downstream: &Recipient<UpdateBatch>, updates: Vec<Published>) {
    if updates.is_empty() {
        return;
    }
    let updates: Arc<[Published]> = updates.into();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let error = match downstream.send(UpdateBatch { updates: updates.clone() }).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(error, retry_in = ?backoff.peek(), "the next hop did not take processed updates; retrying");
        actix_rt::time::sleep(backoff.next_delay()).await;
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
        // Batches calculated before a restart go out and are staged first, then stored (after
        // any write in flight), and only then is the state read back: the restored state
        // includes everything computed.
        let previous = self.tail.take();
        let (writer, db_load) = (self.writer.clone(), self.db_load.clone());
        async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let permit = writer.slot.clone().acquire_owned().await;
            let (changes, waiters) = writer.take();
            writer.store(changes, waiters).await;
            drop(permit);
            db_load.send(LoadSnapshot).await.unwrap_or_else(|e| Err(StoreError::from(e)))
        }
        .into_actor(self)
        .map(|loaded, act, ctx| act.restore(loaded, ctx))
        .wait(ctx);
        ctx.run_interval(self.config.flush_interval, |act, _| act.writer.flush());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.health.set_stopped();
    }
}

crate::supervised!(ProcessorActor, reset = |act| act.engine = None);

impl Handler<Flush> for ProcessorActor {
    type Result = ResponseFuture<Result<(), HopError>>;

    /// Stores everything calculated until now (after the updates before it went out and any
    /// write in flight) and answers when it is stored.
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        let durable = self.publish(Vec::new(), Changes::default(), None, true);
        // If a write was in flight, the flush tick picks the rest up as soon as it is done.
        Box::pin(durable.wait())
    }
}

impl Handler<RawBatch> for ProcessorActor {
    type Result = AtomicResponse<Self, Result<BatchAck, HopError>>;

    fn handle(&mut self, batch: RawBatch, ctx: &mut Context<Self>) -> Self::Result {
        if self.engine.is_none() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(HopError::Restoring))));
        }
        if let Ok(permit) = self.in_flight.clone().try_acquire_owned() {
            return AtomicResponse::new(self.process(batch, permit, ctx));
        }
        // `pipeline_depth` batches are on their way downstream: wait until the oldest has gone
        // out before calculating this one (the caller waits, and nothing else is taken).
        // The permits are given back by the publish tasks, which do not need this actor.
        let wait = self.in_flight.clone().acquire_owned();
        AtomicResponse::new(Box::pin(wait.into_actor(self).then(
            move |permit, act, ctx| -> ResponseActFuture<Self, Result<BatchAck, HopError>> {
                match permit {
                    Ok(permit) => act.process(batch, permit, ctx),
                    Err(_) => Box::pin(fut::ready(Err(HopError::Unavailable("the processor is stopping".into())))),
                }
            },
        )))
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

    /// Takes processed updates only as the test lets it (one permit per batch), in order.
    struct GatedSink {
        gate: Arc<Semaphore>,
        taken: Arc<Mutex<Vec<Published>>>,
    }

    impl Actor for GatedSink {
        type Context = Context<Self>;
    }

    impl Handler<UpdateBatch> for GatedSink {
        type Result = ResponseFuture<Result<(), HopError>>;

        fn handle(&mut self, batch: UpdateBatch, _: &mut Context<Self>) -> Self::Result {
            let (gate, taken) = (self.gate.clone(), self.taken.clone());
            Box::pin(async move {
                gate.acquire().await.map_err(|e| HopError::Unavailable(e.to_string()))?.forget();
                taken.lock().unwrap().extend(batch.updates.iter().cloned());
                Ok(())
            })
        }
    }

    /// A fresh SQLite file with its database actor, and what a processor beside it needs.
    struct TestDb {
        path: std::path::PathBuf,
        catalog: Arc<InstrumentCatalog>,
        metrics: Arc<Metrics>,
        registry: Arc<HealthRegistry>,
        db: Addr<DbActor>,
    }

    impl TestDb {
        fn fresh(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!("ttpulse-{name}-{}.db", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let pool = DbPool::open_sqlite(&path, 2).unwrap();
            let catalog = Arc::new(InstrumentCatalog::default_futures());
            let metrics = Arc::new(Metrics::new());
            let registry = HealthRegistry::new();
            let db = DbActor::start(1, pool, catalog.clone(), metrics.clone(), registry.register("db", "DbActor"));
            Self { path, catalog, metrics, registry, db }
        }
    }

    fn fill_seqs(published: &Mutex<Vec<Published>>) -> Vec<u64> {
        let published = published.lock().unwrap();
        published
            .iter()
            .filter_map(|p| match &p.update {
                Update::Fill(fill) => Some(fill.seq),
                _ => None,
            })
            .collect()
    }

    #[actix_rt::test]
    async fn the_next_batch_is_calculated_while_the_previous_one_goes_out_and_nothing_is_stored_before_it_did() {
        let TestDb { path, catalog, metrics, registry, db } = TestDb::fresh("pipeline");
        // A downstream hop that takes nothing until the test says so: a slow produce.
        let gate = Arc::new(Semaphore::new(0));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let sink = GatedSink { gate: gate.clone(), taken: taken.clone() }.start();
        let config = ProcessorConfig { pipeline_depth: 2, ..ProcessorConfig::default() };
        let processor = ProcessorActor::new(
            catalog,
            sink.recipient(),
            db.clone().recipient(),
            db.clone().recipient(),
            config,
            metrics.clone(),
            registry.register("processor", "ProcessorActor"),
        )
        .start();
        let soon = Duration::from_secs(5);

        // The first batch is answered once calculated, though its updates cannot go out.
        let first = actix_rt::time::timeout(soon, offer(&processor, vec![fill(1, "f1", 2)]))
            .await
            .expect("answered before its updates went out")
            .unwrap();
        assert_eq!(first.accepted, 1);
        // The second is calculated while the first is still on its way.
        let second = actix_rt::time::timeout(soon, offer(&processor, vec![fill(2, "f2", 3)]))
            .await
            .expect("calculated while the first batch was on its way")
            .unwrap();
        assert_eq!(second.accepted, 1);
        assert_eq!(metrics.processor_batches_in_flight.get(), 2);
        assert_eq!(metrics.processor_batches_overlapped.get(), 1);

        // Two batches in flight is the depth: a third waits until the oldest went out.
        let third = {
            let processor = processor.clone();
            actix_rt::spawn(async move { offer(&processor, vec![fill(3, "f3", 1)]).await })
        };
        let first_stored = actix_rt::spawn(first.durable.wait());
        // Many flush ticks (5 ms): still nothing is written, since nothing went out.
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        assert!(!third.is_finished(), "a third batch was taken with two in flight and depth 2");
        assert!(!first_stored.is_finished(), "a batch was reported stored before its updates went out");
        let stored = db.send(LoadSnapshot).await.unwrap().unwrap();
        assert!(stored.positions.is_empty(), "changes were stored before their updates went out");
        assert!(taken.lock().unwrap().is_empty());

        // The first batch goes out: the third is taken, and the first is stored.
        gate.add_permits(1);
        let third = actix_rt::time::timeout(soon, third).await.expect("taken once a batch went out").unwrap().unwrap();
        actix_rt::time::timeout(soon, first_stored).await.expect("stored after it went out").unwrap().unwrap();
        assert_eq!(fill_seqs(&taken), vec![1]);

        // The rest, in batch order, each stored after it went out.
        gate.add_permits(10);
        actix_rt::time::timeout(soon, second.durable.wait()).await.unwrap().unwrap();
        actix_rt::time::timeout(soon, third.durable.wait()).await.unwrap().unwrap();
        assert_eq!(fill_seqs(&taken), vec![1, 2, 3]);
        let stored = db.send(LoadSnapshot).await.unwrap().unwrap();
        assert_eq!(stored.positions.iter().map(|p| p.net_qty).sum::<i64>(), 6);
        // Flush waits for every batch before it.
        actix_rt::time::timeout(soon, processor.send(Flush)).await.unwrap().unwrap().unwrap();
        assert_eq!(metrics.processor_batches_in_flight.get(), 0);
        let _ = std::fs::remove_file(&path);
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
        let TestDb { path, catalog, metrics, registry, db } = TestDb::fresh("crash");
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
