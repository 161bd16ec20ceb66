//! The latest state of every key, and the `CacheActor` that keeps it and notifies the hub.
//!
//! Embedded mode keeps the state in a `StateStore` (a dashmap) that the HTTP snapshot and the
//! hub read directly.

pub mod outgoing;
pub mod redis;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use serde::Serialize;

use opentelemetry::KeyValue;

use crate::domain::{Candle, InstrumentState, Key, Micros, PositionState, Published, Update};
use crate::health::ActorHealth;
use crate::messages::{HopError, UpdateBatch};
use crate::metrics::Metrics;
use crate::supervision::contain_or_restart;
use outgoing::Outgoing;
use tokio::sync::Notify;

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

/// Fills and prints (never merged) that may wait for the notifier before the cache waits too.
pub const MAX_EVENTS_WAITING: usize = 10_000;

/// Keeps the latest state and passes every change on to the notifier (hop 3), in order. It does
/// not wait for the notifier: what it has not taken yet waits in [`Outgoing`], which merges
/// waiting states once they have waited longer than `conflate_after` (the hub is behind the
/// feed), and one forwarder hands it on. Only when more than [`MAX_EVENTS_WAITING`] fills and
/// prints wait does a batch wait for the notifier.
pub struct CacheActor {
    store: StateStore,
    notifier: Recipient<UpdateBatch>,
    outgoing: Arc<Mutex<Outgoing>>,
    /// Wakes the forwarder: updates wait.
    ready: Arc<Notify>,
    /// Wakes a batch waiting for the forwarder to take the events before it.
    room: Arc<Notify>,
    conflate_after: Duration,
    /// The forwarder runs as a task of its own, not in the actor's context: a batch waiting for
    /// room (`AtomicResponse`) holds the context, and the forwarder must still run. It is
    /// started once and outlives the actor's restarts (two would race each other).
    forwarding: bool,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
}

impl CacheActor {
    pub fn new(
        store: StateStore,
        notifier: Recipient<UpdateBatch>,
        conflate_after: Duration,
        metrics: Arc<Metrics>,
        health: Arc<ActorHealth>,
    ) -> Self {
        Self {
            store,
            notifier,
            outgoing: Arc::default(),
            ready: Arc::default(),
            room: Arc::default(),
            conflate_after,
            forwarding: false,
            metrics,
            health,
        }
    }
}

fn lock(outgoing: &Mutex<Outgoing>) -> MutexGuard<'_, Outgoing> {
    // A panic while holding this lock leaves plain data behind; keep using it.
    outgoing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands what waits to the notifier, one batch at a time, in order, until the actor stops.
async fn forward(
    outgoing: Arc<Mutex<Outgoing>>,
    ready: Arc<Notify>,
    room: Arc<Notify>,
    notifier: Recipient<UpdateBatch>,
) {
    loop {
        let updates = lock(&outgoing).take();
        room.notify_waiters();
        if updates.is_empty() {
            ready.notified().await;
            continue;
        }
        // The state is stored: a notifier that is gone costs the sessions this batch (they
        // resubscribe for a snapshot), not the cache.
        match notifier.send(UpdateBatch { updates: updates.into() }).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the notifier refused a batch"),
            Err(e) => tracing::error!(error = %e, "the notifier is gone"),
        }
    }
}

impl Actor for CacheActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        if !std::mem::replace(&mut self.forwarding, true) {
            actix_rt::spawn(forward(
                self.outgoing.clone(),
                self.ready.clone(),
                self.room.clone(),
                self.notifier.clone(),
            ));
        }
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
        let (replaced, waiting, events) = {
            let mut outgoing = lock(&self.outgoing);
            let replaced = outgoing.add(fresh, Instant::now(), self.conflate_after);
            (replaced, outgoing.len(), outgoing.events())
        };
        if replaced > 0 {
            self.metrics.updates_conflated.with_label_values(&["hub_input"]).inc_by(replaced as u64);
        }
        self.health.set_queue_depth(waiting as i64);
        self.ready.notify_one();
        if events <= MAX_EVENTS_WAITING {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        }
        // Too many fills and prints wait for the notifier: this batch is answered once it has
        // taken them (the sender waits, as it waited for every batch before the merge).
        let (outgoing, room) = (self.outgoing.clone(), self.room.clone());
        let wait = async move {
            loop {
                let taken = room.notified();
                tokio::pin!(taken);
                taken.as_mut().enable();
                if lock(&outgoing).events() <= MAX_EVENTS_WAITING {
                    return Ok(());
                }
                taken.await;
            }
        };
        AtomicResponse::new(Box::pin(wait.into_actor(self)))
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

    fn fill(seq: u64) -> Published {
        let report: crate::domain::FillReport = serde_json::from_value(serde_json::json!({
            "account": "ACC1", "seq": seq, "fill_id": format!("F-{seq}"), "order_id": "o-1", "symbol": "ESZ6",
            "side": "buy", "price": "6850.25", "qty": 1, "ts": 1,
            "position": {"account": "ACC1", "symbol": "ESZ6", "seq": seq, "net_qty": 1, "avg_price": "6850.25",
                         "realized_pnl": "0", "unrealized_pnl": "0", "updated_at": 1}
        }))
        .expect("a fill report");
        Published::new(Update::Fill(report), 0)
    }

    /// A notifier (the hub) that takes 50 ms per batch, on a thread of its own, and records what
    /// it got.
    struct SlowHub(Arc<Mutex<Vec<Vec<(String, u64)>>>>);

    impl SlowHub {
        fn start(got: &Arc<Mutex<Vec<Vec<(String, u64)>>>>) -> Addr<Self> {
            let got = got.clone();
            SyncArbiter::start(1, move || SlowHub(got.clone()))
        }
    }

    impl Actor for SlowHub {
        type Context = SyncContext<Self>;
    }

    impl Handler<UpdateBatch> for SlowHub {
        type Result = Result<(), HopError>;

        fn handle(&mut self, batch: UpdateBatch, _: &mut SyncContext<Self>) -> Self::Result {
            std::thread::sleep(Duration::from_millis(50));
            lock_log(&self.0).push(batch.updates.iter().map(|u| (u.key.clone(), u.seq())).collect());
            Ok(())
        }
    }

    fn lock_log<T>(log: &Mutex<T>) -> MutexGuard<'_, T> {
        log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cache in front of a hub that cannot keep up: the cache answers at once; the hub gets
    /// every fill, in order, and the newest state of the key, not every state.
    #[actix_rt::test]
    async fn a_hub_behind_the_feed_gets_the_latest_states_and_every_fill() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let hub = SlowHub::start(&got);
        let health = crate::health::HealthRegistry::new().register("cache", "CacheActor");
        let metrics = Arc::new(Metrics::new());
        let cache =
            CacheActor::new(StateStore::new(), hub.recipient(), Duration::from_millis(20), metrics.clone(), health)
                .start();
        let started = Instant::now();
        for seq in 1..=40 {
            let batch = vec![inst("ESZ6", seq), fill(seq)];
            cache.send(UpdateBatch { updates: batch.into() }).await.expect("the cache").expect("taken");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        // 40 batches at 5 ms: the cache did not wait for the 50 ms hub.
        assert!(started.elapsed() < Duration::from_millis(1_000), "the cache waited: {:?}", started.elapsed());
        let deadline = Instant::now() + Duration::from_secs(10);
        let everything = || lock_log(&got).iter().flatten().cloned().collect::<Vec<_>>();
        while everything().iter().filter(|(k, _)| k.starts_with("fills:")).count() < 40 && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let all = everything();
        let fills: Vec<u64> = all.iter().filter(|(k, _)| k.starts_with("fills:")).map(|(_, s)| *s).collect();
        assert_eq!(fills, (1..=40).collect::<Vec<_>>(), "every fill, in order");
        let states: Vec<u64> = all.iter().filter(|(k, _)| k == "inst:ESZ6").map(|(_, s)| *s).collect();
        assert!(states.windows(2).all(|w| w[0] < w[1]), "states only move forward: {states:?}");
        assert_eq!(states.last(), Some(&40), "the newest state arrives");
        assert!(states.len() < 40, "waiting states were merged: {states:?}");
        let merged = metrics.updates_conflated.with_label_values(&["hub_input"]).get();
        assert_eq!(merged as usize, 40 - states.len(), "each merged state is counted");
    }

    /// Fills are never merged, so what may wait for the hub is bounded by making the sender
    /// wait once more than `MAX_EVENTS_WAITING` of them do; and none is lost.
    #[actix_rt::test]
    async fn more_fills_waiting_than_the_bound_make_the_sender_wait_for_the_hub() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let hub = SlowHub::start(&got);
        let health = crate::health::HealthRegistry::new().register("cache", "CacheActor");
        let cache = CacheActor::new(
            StateStore::new(),
            hub.recipient(),
            Duration::from_secs(60),
            Arc::new(Metrics::new()),
            health,
        )
        .start();
        let many: Vec<Published> = (2..=MAX_EVENTS_WAITING as u64 + 2).map(fill).collect();
        cache.send(UpdateBatch { updates: vec![fill(1)].into() }).await.expect("the cache").expect("taken");
        // Once the forwarder has handed it on, the hub is busy with it for 50 ms: these wait.
        actix_rt::time::sleep(Duration::from_millis(10)).await;
        let started = Instant::now();
        cache.send(UpdateBatch { updates: many.into() }).await.expect("the cache").expect("taken");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(20), "answered after {waited:?}, before the hub took the fills");
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock_log(&got).iter().flatten().count() < MAX_EVENTS_WAITING + 2 && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let seqs: Vec<u64> = lock_log(&got).iter().flatten().map(|(_, s)| *s).collect();
        assert_eq!(seqs, (1..=MAX_EVENTS_WAITING as u64 + 2).collect::<Vec<_>>());
    }

    /// While the hub keeps up, nothing is merged, whatever the batches hold.
    #[actix_rt::test]
    async fn a_hub_that_keeps_up_gets_every_update() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let hub = SlowHub::start(&got);
        let health = crate::health::HealthRegistry::new().register("cache", "CacheActor");
        let cache = CacheActor::new(
            StateStore::new(),
            hub.recipient(),
            Duration::from_secs(60),
            Arc::new(Metrics::new()),
            health,
        )
        .start();
        for seq in 1..=10 {
            let batch = vec![inst("ESZ6", seq * 2 - 1), inst("ESZ6", seq * 2)];
            cache.send(UpdateBatch { updates: batch.into() }).await.expect("the cache").expect("taken");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock_log(&got).iter().flatten().count() < 20 && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let seqs: Vec<u64> = lock_log(&got).iter().flatten().map(|(_, s)| *s).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
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
