//! The latest state of every key, and the `CacheActor` that keeps it and notifies the hub.
//!
//! Embedded mode keeps the state in a `StateStore` (a dashmap) that the HTTP snapshot and the
//! hub read directly.

pub mod redis;

use std::sync::Arc;

use actix::prelude::*;
use dashmap::DashMap;
use serde::Serialize;

use opentelemetry::KeyValue;

use crate::domain::{Candle, InstrumentState, Key, Micros, PositionState, Published, Update};
use crate::health::ActorHealth;
use crate::messages::{HopError, UpdateBatch};
use crate::metrics::Metrics;
use crate::supervision::contain_or_restart;

/// Records the `ttpulse.cache` span (processed → cached) of a sampled update that this cache is
/// the first to take, and makes it the context the update carries on.
pub(crate) fn trace_cached(update: &mut Published, cached: Micros) {
    if update.hops.cached != 0 {
        return;
    }
    if let Some(parent) = &update.trace {
        let span = crate::trace::hop("ttpulse.cache", parent, update.hops.processed, cached, || {
            vec![KeyValue::new("ttpulse.key", update.key.clone()), KeyValue::new("ttpulse.seq", update.seq() as i64)]
        });
        update.trace = Some(span);
    }
}

/// Which instruments or accounts a read covers (parsed in the domain, by the rule of each kind).
pub use crate::domain::Filter;

/// Where an account's fill lane stands in one instrument: the seq of its last fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSeq {
    pub account: String,
    pub symbol: String,
    pub fill_seq: u64,
}

/// The current state of a set of keys, each with its seq, so that a stream can resume
/// exactly after it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub instruments: Vec<InstrumentState>,
    pub candles: Vec<Candle>,
    pub positions: Vec<PositionState>,
    pub accounts: Vec<AccountSeq>,
}

impl Snapshot {
    /// Every key in the snapshot and its seq.
    pub fn key_seqs(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        out.extend(self.instruments.iter().map(|s| (Key::Instrument(&s.symbol).to_string(), s.seq)));
        out.extend(self.candles.iter().map(|c| (Key::Candle(&c.symbol, c.interval).to_string(), c.seq)));
        out.extend(
            self.positions
                .iter()
                .map(|p| (Key::Position { account: &p.account, symbol: &p.symbol }.to_string(), p.seq)),
        );
        out.extend(
            self.accounts
                .iter()
                .map(|a| (Key::Fills { account: &a.account, symbol: &a.symbol }.to_string(), a.fill_seq)),
        );
        out
    }
}

/// Latest published update per key.
#[derive(Clone, Default)]
pub struct StateStore {
    entries: Arc<DashMap<String, Published>>,
}

impl StateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `update` if it is newer than what the key holds. Returns whether it was kept.
    pub fn apply(&self, update: &Published) -> bool {
        match self.entries.get_mut(&update.key) {
            Some(mut current) => {
                if update.seq() <= current.seq() {
                    return false;
                }
                *current = update.clone();
                true
            }
            None => {
                self.entries.insert(update.key.clone(), update.clone());
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&self) {
        self.entries.clear();
    }

    pub fn snapshot(&self, instruments: &Filter, accounts: &Filter) -> Snapshot {
        let mut snap = Snapshot::default();
        for entry in self.entries.iter() {
            match &entry.update {
                Update::Instrument(s) if instruments.matches(&s.symbol) => snap.instruments.push(s.clone()),
                Update::Candle(c) if instruments.matches(&c.symbol) => snap.candles.push(c.clone()),
                Update::Position(p) if accounts.matches(&p.account) => snap.positions.push(p.clone()),
                Update::Fill(f) if accounts.matches(&f.account) => snap.accounts.push(AccountSeq {
                    account: f.account.clone(),
                    symbol: f.symbol.clone(),
                    fill_seq: f.seq,
                }),
                _ => {}
            }
        }
        snap.instruments.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        snap.candles.sort_by(|a, b| (&a.symbol, a.interval).cmp(&(&b.symbol, b.interval)));
        snap.positions.sort_by(|a, b| (&a.account, &a.symbol).cmp(&(&b.account, &b.symbol)));
        snap.accounts.sort_by(|a, b| (&a.account, &a.symbol).cmp(&(&b.account, &b.symbol)));
        snap
    }
}

/// Keeps the latest state and passes every change on to the notifier (hop 3), in order.
pub struct CacheActor {
    store: StateStore,
    notifier: Recipient<UpdateBatch>,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
}

impl CacheActor {
    pub fn new(
        store: StateStore,
        notifier: Recipient<UpdateBatch>,
        metrics: Arc<Metrics>,
        health: Arc<ActorHealth>,
    ) -> Self {
        Self { store, notifier, metrics, health }
    }
}

impl Actor for CacheActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        self.health.set_running();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.health.set_stopped();
    }
}

crate::supervised!(CacheActor);

impl Handler<UpdateBatch> for CacheActor {
    type Result = AtomicResponse<Self, Result<(), HopError>>;

    fn handle(&mut self, batch: UpdateBatch, ctx: &mut Context<Self>) -> Self::Result {
        let _span = tracing::debug_span!("cache", updates = batch.updates.len()).entered();
        self.health.handled_n(batch.updates.len() as u64);
        let store = &self.store;
        let fresh = contain_or_restart::<Self, _>(&self.health, ctx, || {
            batch.updates.iter().filter(|u| store.apply(u)).cloned().collect::<Vec<Published>>()
        });
        let mut fresh = match fresh {
            Ok(fresh) => fresh,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        // The first cache an update passes stamps it (the cache role's Redis write in the
        // distributed mode; an api process's mirror keeps that stamp).
        let cached = crate::health::now_micros();
        self.metrics.observe_cached(&fresh, cached);
        for update in fresh.iter_mut().filter(|u| u.hops.cached == 0) {
            trace_cached(update, cached);
            update.hops.cached = cached;
        }
        self.health.set_queue_depth(0);
        let notifier = self.notifier.clone();
        let notify = async move {
            if !fresh.is_empty() {
                // The state is stored: a notifier that is gone costs the sessions this batch
                // (they resubscribe for a snapshot), not the cache.
                match notifier.send(UpdateBatch { updates: fresh.into() }).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "the notifier refused a batch"),
                    Err(e) => tracing::error!(error = %e, "the notifier is gone"),
                }
            }
            Ok(())
        };
        AtomicResponse::new(Box::pin(notify.into_actor(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InstrumentState;

    fn inst(symbol: &str, seq: u64) -> Published {
        let mut s = InstrumentState::empty(symbol);
        s.seq = seq;
        Published::new(Update::Instrument(s), 0)
    }

    #[test]
    fn newer_seq_wins_and_filters_apply() {
        let store = StateStore::new();
        assert!(store.apply(&inst("ESZ6", 2)));
        assert!(!store.apply(&inst("ESZ6", 1)));
        assert!(!store.apply(&inst("ESZ6", 2)));
        assert!(store.apply(&inst("ESZ6", 3)));
        assert!(store.apply(&inst("CLF7", 1)));
        let all = store.snapshot(&Filter::All, &Filter::none());
        assert_eq!(all.key_seqs(), vec![("inst:CLF7".to_string(), 1), ("inst:ESZ6".to_string(), 3)]);
        let one = store.snapshot(&Filter::Only(vec!["ESZ6".into()]), &Filter::All);
        assert_eq!(one.instruments.len(), 1);
    }
}
