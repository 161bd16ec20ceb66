//! `ProcessorActor`: applies raw events to the domain engine, publishes the resulting updates
//! downstream (hop 2) and writes their effects to the database in batches.
//!
//! Order and back-pressure: a batch is handled atomically, and the handler waits until the
//! downstream hop has taken its updates, so updates leave in the order events arrived and a
//! slow downstream slows the ingest instead of growing a queue. Database writes are batched
//! (every `flush_interval` or `flush_rows`) with at most `max_flushes_in_flight` transactions
//! queued at the single writer thread; each batch's `Durable` resolves when its transaction
//! commits. If a write fails, the processor restarts and rebuilds its state from the database,
//! so memory never runs ahead of what is stored.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{Semaphore, oneshot};

use crate::domain::{Changes, Engine, EngineSnapshot, InstrumentCatalog, Outcome, Published};
use crate::health::ActorHealth;
use crate::messages::{BatchAck, Durable, HopError, LoadSnapshot, RawBatch, Restart, UpdateBatch, WriteChanges};
use crate::metrics::Metrics;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub flush_interval: Duration,
    pub flush_rows: usize,
    pub max_flushes_in_flight: usize,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self { flush_interval: Duration::from_millis(5), flush_rows: 5_000, max_flushes_in_flight: 2 }
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
    flush_slots: Arc<Semaphore>,
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
            flush_slots: Arc::new(Semaphore::new(config.max_flushes_in_flight.max(1))),
            config,
            metrics,
            health,
        }
    }

    /// Sends the pending changes to the writer if a slot is free (else they wait for the next
    /// tick). The send is enqueued here, in actor order, so transactions commit in order.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.pending.is_empty() && self.waiters.is_empty() {
            return;
        }
        let Ok(permit) = self.flush_slots.clone().try_acquire_owned() else {
            return;
        };
        let changes = std::mem::take(&mut self.pending);
        let waiters = std::mem::take(&mut self.waiters);
        self.health.set_queue_depth(0);
        let write = self.db_write.send(WriteChanges { changes });
        let me = ctx.address();
        actix::spawn(async move {
            let result = match write.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(HopError::Storage(e.to_string())),
                Err(e) => Err(HopError::Storage(format!("database writer unavailable: {e}"))),
            };
            drop(permit);
            if let Err(e) = &result {
                tracing::error!(error = %e, "batch not stored; restarting the processor to rebuild from the database");
                me.do_send(Restart);
            }
            for waiter in waiters {
                let _ = waiter.send(result.clone());
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

impl Actor for ProcessorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        // Changes kept from before a restart go first; the writer is one thread, so the load
        // below reads after they commit.
        self.flush(ctx);
        let load = self.db_load.send(LoadSnapshot);
        async move {
            load.await
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
        let durable = if self.pending.is_empty() && self.waiters.is_empty() {
            Durable::already()
        } else {
            let (waiter, durable) = Durable::pending();
            self.waiters.push(waiter);
            durable
        };
        let flush_rows = self.config.flush_rows;
        if self.pending.rows() >= flush_rows {
            self.flush(ctx);
        }
        // Still over the limit: every write slot is busy, so the database is behind. Wait for a
        // slot before taking more (the caller waits too), which bounds the pending changes.
        let slots = (self.pending.rows() >= flush_rows).then(|| self.flush_slots.clone());
        let accepted = batch.events.len() - duplicates;
        let downstream = self.downstream.clone();
        let send = async move {
            if !updates.is_empty() {
                downstream.send(UpdateBatch { updates: updates.into() }).await??;
            }
            if let Some(slots) = slots {
                drop(slots.acquire().await);
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
