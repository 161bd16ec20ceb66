//! `Hub`: the session registry. It routes each update to the sessions subscribed to its
//! instrument or account, serializing it once, and answers subscriptions with a snapshot.
//! It never waits on a session: it pushes into each session's bounded outbox.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use serde::Serialize;

use super::outbox::{Frame, Outbox, Pushed};
use crate::cache::{Filter, Snapshot, StateStore};
use crate::domain::{InstrumentCatalog, Key, Lane, Topic};
use crate::health::ActorHealth;
use crate::messages::{
    CloseAll, Connect, Disconnect, HopError, Resnapshot, SessionId, Subscribe, SubscribeError, Subscribed, Unsubscribe,
    UpdateBatch, Wake,
};
use crate::metrics::Metrics;
use crate::supervision::contain_or_restart;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TopicKey {
    Instrument(String),
    AllInstruments,
    Account(String),
    AllAccounts,
    Prints(String),
    AllPrints,
}

struct Entry {
    outbox: Arc<Outbox>,
    wake: Recipient<Wake>,
    topics: HashSet<TopicKey>,
}

impl Entry {
    fn wants_key(&self, key: &str) -> bool {
        let wants = |one: TopicKey, all: TopicKey| self.topics.contains(&all) || self.topics.contains(&one);
        match Key::parse(key) {
            Some(Key::Instrument(symbol) | Key::Candle(symbol, _)) => {
                wants(TopicKey::Instrument(symbol.into()), TopicKey::AllInstruments)
            }
            Some(Key::Position { account, .. } | Key::Fills { account, .. } | Key::Pnl { account, .. }) => {
                wants(TopicKey::Account(account.into()), TopicKey::AllAccounts)
            }
            Some(Key::Trades(symbol)) => wants(TopicKey::Prints(symbol.into()), TopicKey::AllPrints),
            None => false,
        }
    }
}

pub struct Hub {
    sessions: HashMap<SessionId, Entry>,
    subscribers: HashMap<TopicKey, HashSet<SessionId>>,
    next_id: SessionId,
    store: StateStore,
    catalog: Arc<InstrumentCatalog>,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
    /// Most topics (instruments plus accounts, `*` counting one) one session may hold.
    max_subscriptions: usize,
}

#[derive(Serialize)]
struct SnapshotMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    v: u32,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
}

impl Hub {
    pub fn new(
        store: StateStore,
        catalog: Arc<InstrumentCatalog>,
        metrics: Arc<Metrics>,
        health: Arc<ActorHealth>,
        max_subscriptions: usize,
    ) -> Self {
        Self {
            sessions: HashMap::new(),
            subscribers: HashMap::new(),
            next_id: 1,
            store,
            catalog,
            metrics,
            health,
            max_subscriptions,
        }
    }

    fn remove(&mut self, id: SessionId) {
        if let Some(entry) = self.sessions.remove(&id) {
            for topic in entry.topics {
                if let Some(ids) = self.subscribers.get_mut(&topic) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.subscribers.remove(&topic);
                    }
                }
            }
        }
        self.health.set_queue_depth(self.sessions.len() as i64);
    }

    fn targets(&self, topic: Topic<'_>) -> Vec<SessionId> {
        let (one, all) = match topic {
            Topic::Instrument(s) => (TopicKey::Instrument(s.to_owned()), TopicKey::AllInstruments),
            Topic::Account(a) => (TopicKey::Account(a.to_owned()), TopicKey::AllAccounts),
            Topic::Prints(s) => (TopicKey::Prints(s.to_owned()), TopicKey::AllPrints),
        };
        let mut ids: Vec<SessionId> = Vec::new();
        for key in [one, all] {
            if let Some(set) = self.subscribers.get(&key) {
                ids.extend(set.iter().copied());
            }
        }
        ids
    }

    /// Acts on what a push into a session's outbox did; returns whether the session must go.
    fn after_push(&self, entry: &Entry, pushed: Pushed, lane: Lane) -> bool {
        match pushed {
            Pushed::Wake => {
                // A full mailbox already holds a Wake; a closed one means the session is gone.
                matches!(entry.wake.try_send(Wake), Err(SendError::Closed(_)))
            }
            Pushed::Queued | Pushed::Stale => false,
            Pushed::Conflated(dropped) => {
                self.metrics.updates_conflated.with_label_values(&[lane.as_str()]).inc_by(dropped as u64);
                false
            }
            Pushed::Closed(reason) => {
                if reason.just_closed {
                    tracing::warn!(code = reason.code, reason = %reason.reason, "closing a slow session");
                    self.metrics.ws_slow_disconnects.with_label_values(&[&reason.code.to_string()]).inc();
                    let dropped = &self.metrics.updates_dropped;
                    dropped.with_label_values(&["market"]).inc_by(reason.dropped_market as u64);
                    dropped.with_label_values(&["account"]).inc_by(reason.dropped_account as u64);
                }
                let _ = entry.wake.try_send(Wake);
                true
            }
        }
    }
}

impl Hub {
    fn sweep(&mut self) {
        let now = Instant::now();
        let stalled: Vec<SessionId> = self
            .sessions
            .iter()
            .filter_map(|(id, entry)| {
                let reason = entry.outbox.check_progress(now)?;
                Some((id, entry, reason))
            })
            .map(|(id, entry, reason)| {
                self.after_push(entry, Pushed::Closed(reason), Lane::Market);
                *id
            })
            .collect();
        for id in stalled {
            self.remove(id);
        }
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
        self.health.set_running();
        // Sessions that get no more updates are checked here, not only when pushed to.
        ctx.run_interval(Duration::from_secs(1), |act, _| act.sweep());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.health.set_stopped();
    }
}

crate::supervised!(Hub);

impl Handler<Connect> for Hub {
    type Result = SessionId;

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) -> SessionId {
        let id = self.next_id;
        self.next_id += 1;
        self.sessions.insert(id, Entry { outbox: msg.outbox, wake: msg.wake, topics: HashSet::new() });
        self.health.set_queue_depth(self.sessions.len() as i64);
        id
    }
}

impl Handler<Disconnect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.remove(msg.id);
    }
}

impl Handler<Subscribe> for Hub {
    type Result = Result<Subscribed, SubscribeError>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        if !self.sessions.contains_key(&msg.id) {
            return Err(SubscribeError::NotConnected(msg.id));
        }
        if let Some(unknown) =
            msg.instruments.iter().chain(&msg.trades).find(|s| *s != "*" && self.catalog.get(s).is_none())
        {
            return Err(SubscribeError::UnknownInstrument(unknown.clone()));
        }
        if let Some(bad) = msg.accounts.iter().find(|a| *a != "*" && !crate::domain::ids::is_valid_account(a)) {
            return Err(SubscribeError::InvalidAccount(bad.clone()));
        }
        let instruments = Filter::from_list(&msg.instruments);
        let accounts = Filter::from_list(&msg.accounts);
        let mut topics: Vec<TopicKey> = Vec::new();
        match &instruments {
            Filter::All => topics.push(TopicKey::AllInstruments),
            Filter::Only(list) => topics.extend(list.iter().cloned().map(TopicKey::Instrument)),
        }
        match &accounts {
            Filter::All => topics.push(TopicKey::AllAccounts),
            Filter::Only(list) => topics.extend(list.iter().cloned().map(TopicKey::Account)),
        }
        // Prints have no state to snapshot: they start with the next one.
        match Filter::from_list(&msg.trades) {
            Filter::All => topics.push(TopicKey::AllPrints),
            Filter::Only(list) => topics.extend(list.into_iter().map(TopicKey::Prints)),
        }
        if let Some(entry) = self.sessions.get(&msg.id) {
            let new: HashSet<&TopicKey> = topics.iter().filter(|t| !entry.topics.contains(t)).collect();
            if entry.topics.len() + new.len() > self.max_subscriptions {
                self.metrics.refusals.with_label_values(&["max_subscriptions"]).inc();
                return Err(SubscribeError::TooMany(self.max_subscriptions));
            }
        }
        for topic in &topics {
            self.subscribers.entry(topic.clone()).or_default().insert(msg.id);
        }
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return Err(SubscribeError::NotConnected(msg.id));
        };
        entry.topics.extend(topics);
        // The store already holds every update this hub has routed (the cache writes it before
        // notifying), so the snapshot is never behind the stream; the outbox skips what the
        // snapshot already covers.
        let (text, key_seqs) = self.snapshot_for(&instruments, &accounts);
        let Some(entry) = self.sessions.get(&msg.id) else {
            return Err(SubscribeError::NotConnected(msg.id));
        };
        let pushed = entry.outbox.push_snapshot(text, &key_seqs, Instant::now());
        if self.after_push(entry, pushed, Lane::Market) {
            self.remove(msg.id);
        }
        let fill_seqs =
            key_seqs.into_iter().filter(|(key, _)| matches!(Key::parse(key), Some(Key::Fills { .. }))).collect();
        Ok(Subscribed { fill_seqs })
    }
}

impl Hub {
    /// The current state of what a session subscribed to, serialized, with its key seqs.
    fn snapshot_for(&self, instruments: &Filter, accounts: &Filter) -> (ByteString, Vec<(String, u64)>) {
        let snapshot = self.store.snapshot(instruments, accounts);
        let text =
            serde_json::to_string(&SnapshotMessage { kind: "snapshot", v: 1, snapshot: &snapshot }).unwrap_or_default();
        (ByteString::from(text), snapshot.key_seqs())
    }
}

impl Handler<CloseAll> for Hub {
    type Result = ();

    fn handle(&mut self, msg: CloseAll, _: &mut Context<Self>) {
        for entry in self.sessions.values() {
            entry.outbox.close_with(msg.code, &msg.reason);
            let _ = entry.wake.try_send(Wake);
        }
        tracing::info!(sessions = self.sessions.len(), "closing every session");
    }
}

impl Handler<Resnapshot> for Hub {
    type Result = ();

    fn handle(&mut self, _: Resnapshot, _: &mut Context<Self>) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (id, entry) in &self.sessions {
            if entry.topics.is_empty() {
                continue;
            }
            let filter = |all: TopicKey, one: fn(&TopicKey) -> Option<&String>| {
                if entry.topics.contains(&all) {
                    Filter::All
                } else {
                    Filter::Only(entry.topics.iter().filter_map(one).cloned().collect())
                }
            };
            let instruments = filter(TopicKey::AllInstruments, |t| match t {
                TopicKey::Instrument(s) => Some(s),
                _ => None,
            });
            let accounts = filter(TopicKey::AllAccounts, |t| match t {
                TopicKey::Account(a) => Some(a),
                _ => None,
            });
            let (text, key_seqs) = self.snapshot_for(&instruments, &accounts);
            if self.after_push(entry, entry.outbox.push_snapshot(text, &key_seqs, now), Lane::Market) {
                gone.push(*id);
            }
        }
        for id in gone {
            self.remove(id);
        }
    }
}

impl Handler<Unsubscribe> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return;
        };
        let mut dropped = Vec::new();
        for name in &msg.instruments {
            dropped.push(if name == "*" { TopicKey::AllInstruments } else { TopicKey::Instrument(name.clone()) });
        }
        for name in &msg.accounts {
            dropped.push(if name == "*" { TopicKey::AllAccounts } else { TopicKey::Account(name.clone()) });
        }
        for name in &msg.trades {
            dropped.push(if name == "*" { TopicKey::AllPrints } else { TopicKey::Prints(name.clone()) });
        }
        for topic in &dropped {
            entry.topics.remove(topic);
        }
        entry.outbox.forget(|key| entry.wants_key(key));
        for topic in dropped {
            if let Some(ids) = self.subscribers.get_mut(&topic) {
                ids.remove(&msg.id);
                if ids.is_empty() {
                    self.subscribers.remove(&topic);
                }
            }
        }
    }
}

impl Handler<UpdateBatch> for Hub {
    type Result = Result<(), HopError>;

    fn handle(&mut self, batch: UpdateBatch, ctx: &mut Context<Self>) -> Self::Result {
        let health = self.health.clone();
        contain_or_restart::<Self, _>(&health, ctx, || self.fan_out(&batch))
    }
}

impl Hub {
    fn fan_out(&mut self, batch: &UpdateBatch) {
        let _span = tracing::debug_span!("fan_out", updates = batch.updates.len()).entered();
        self.health.handled_n(batch.updates.len() as u64);
        let now = Instant::now();
        let mut gone: Vec<SessionId> = Vec::new();
        for update in batch.updates.iter() {
            let targets = self.targets(update.update.topic());
            if targets.is_empty() {
                continue;
            }
            let frame = Frame::new(update);
            for id in targets {
                let Some(entry) = self.sessions.get(&id) else { continue };
                if self.after_push(entry, entry.outbox.push(&frame, now), frame.lane) {
                    gone.push(id);
                }
            }
        }
        for id in gone {
            self.remove(id);
        }
    }
}
