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
use tokio::sync::{Semaphore, oneshot};

use crate::domain::{Changes, Engine, EngineSnapshot, InstrumentCatalog, Outcome, Published};
use crate::health::ActorHealth;
use crate::messages::{BatchAck, Durable, Flush, HopError, LoadSnapshot, RawBatch, Restart, UpdateBatch, WriteChanges};
use crate::metrics::Metrics;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub flush_interval: Duration,
    pub flush_rows: usize,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self { flush_interval: Duration::from_millis(5), flush_rows: 5_000 }
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
        }
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
                let engine = Engine::restore(self.catalog.clone(), snapshot);
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
                ctx.run_later(Duration::from_secs(1), |_, ctx| ctx.stop());
            }
        }
    }
}

/// Writes `changes` until the transaction commits, backing off between attempts.
async fn write_until_stored(db_write: &Recipient<WriteChanges>, changes: Arc<Changes>, health: &ActorHealth) {
    if changes.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let error = match db_write.send(WriteChanges { changes: changes.clone() }).await {
            Ok(Ok(_)) => {
                if backoff > Duration::from_millis(100) {
                    tracing::info!("database writes go through again");
                    health.set_detail(None);
                }
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("database writer unavailable: {e}"),
        };
        tracing::error!(error, retry_in = ?backoff, "database write failed; retrying the same transaction");
        health.set_detail(Some(format!("database write failing: {error}")));
        actix_rt::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
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
            db_load
                .send(LoadSnapshot)
                .await
                .unwrap_or_else(|e| Err(StoreError::Pool(format!("database reader unavailable: {e}"))))
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

impl Supervised for ProcessorActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.health.restarting();
        self.metrics.actor_restarts.with_label_values(&["processor"]).inc();
        self.engine = None;
    }
}

impl Handler<Restart> for ProcessorActor {
    type Result = ();

    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        tracing::warn!("processor restart requested");
        ctx.stop();
    }
}

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
        let Some(engine) = self.engine.as_mut() else {
            let err = HopError::Unavailable("the processor is restoring its state".into());
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        };
        let mut updates: Vec<Published> = Vec::with_capacity(batch.events.len() * 2);
        let mut changes = Changes::default();
        let mut duplicates = 0;
        for event in &batch.events {
            match engine.apply(event, &mut updates, &mut changes) {
                Outcome::Applied => self.metrics.events_processed.with_label_values(&[event.body.kind()]).inc(),
                Outcome::AppliedLateForCandles => {
                    self.metrics.events_processed.with_label_values(&[event.body.kind()]).inc();
                    self.metrics.late_trades.inc();
                }
                Outcome::Duplicate => {
                    duplicates += 1;
                    self.metrics.events_duplicate.inc();
                }
                Outcome::UnknownInstrument => {
                    tracing::error!(event_id = %event.id, "event for an instrument missing from the catalog; skipped");
                    self.metrics.events_rejected.with_label_values(&["processor"]).inc();
                }
            }
        }
        self.health.handled_n(batch.events.len() as u64);
        self.metrics.updates_published.inc_by(updates.len() as u64);
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
        let accepted = batch.events.len() - duplicates;
        let downstream = self.downstream.clone();
        let send = async move {
            // The batch is applied: its updates must go out, or they never will (a replay would
            // see only duplicates). Keep offering them; meanwhile nothing else is taken.
            let updates: std::sync::Arc<[Published]> = updates.into();
            let mut backoff = Duration::from_millis(100);
            while !updates.is_empty() {
                let error = match downstream.send(UpdateBatch { updates: updates.clone() }).await {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::error!(error, retry_in = ?backoff, "the next hop did not take processed updates; retrying");
                actix_rt::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            if let Some(slot) = slot {
                drop(slot.acquire().await);
            }
            Ok(BatchAck { accepted, duplicates, durable })
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
