//! `Hub`: the session registry. It routes each update to the sessions subscribed to its
//! instrument or account, serializing it once, and answers subscriptions with a snapshot.
//! It never waits on a session: it pushes into each session's bounded outbox. Sessions are
//! grouped by their granted `max_rate`, and each group resamples its market states once
//! ([`Resampler`]), so a rate cap saves the hub work as well as the client.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use serde::Serialize;

use super::outbox::{CLOSE_INTERNAL_ERROR, Frame, Outbox, Pushed};
use super::resampler::{Due, Resampler, Turn};
use crate::cache::{Filter, Snapshot, StateStore};
use crate::domain::{InstrumentCatalog, Key, Lane, Topic};
use crate::health::ActorHealth;
use crate::messages::{
    CloseAll, Connect, Disconnect, HopError, Resnapshot, SessionId, Subscribe, SubscribeError, Subscribed, Unsubscribe,
    UpdateBatch, Wake,
};
use crate::metrics::Metrics;
use crate::supervision::{catch_panic, contain, contain_or_restart};

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
    /// The fingerprint of the last snapshot a subscribe put in this session's outbox (what it
    /// asked for and each key's seq), until an unsubscribe or a resnapshot.
    last_snapshot: Option<u64>,
    /// The maximum rate its latest subscribe was granted, which its snapshots report.
    max_rate: u32,
}

impl Entry {
    /// The instruments and accounts the session holds, as snapshot filters.
    fn filters(&self) -> (Filter, Filter) {
        let filter = |all: TopicKey, one: fn(&TopicKey) -> Option<&String>| {
            if self.topics.contains(&all) {
                Filter::All
            } else {
                Filter::Only(self.topics.iter().filter_map(one).cloned().collect())
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
        (instruments, accounts)
    }

    fn wants_key(&self, key: &str) -> bool {
        Key::parse(key).is_some_and(|key| {
            let (one, all) = topic_keys(key.topic());
            self.topics.contains(&all) || self.topics.contains(&one)
        })
    }
}

/// The subscription entries that want an update of `topic`: its own, and its kind's `*`.
fn topic_keys(topic: Topic<'_>) -> (TopicKey, TopicKey) {
    match topic {
        Topic::Instrument(s) => (TopicKey::Instrument(s.to_owned()), TopicKey::AllInstruments),
        Topic::Account(a) => (TopicKey::Account(a.to_owned()), TopicKey::AllAccounts),
        Topic::Prints(s) => (TopicKey::Prints(s.to_owned()), TopicKey::AllPrints),
    }
}

/// The sessions granted one `max_rate`: who subscribed to what, and (for a rate, not 0) the
/// resampler they share.
struct RateGroup {
    subscribers: HashMap<TopicKey, HashSet<SessionId>>,
    resampler: Option<Resampler>,
}

impl RateGroup {
    fn new(rate: u32) -> Self {
        Self { subscribers: HashMap::new(), resampler: (rate > 0).then(|| Resampler::new(rate)) }
    }

    fn targets(&self, topic: &(TopicKey, TopicKey)) -> Vec<SessionId> {
        self.each_target(topic).collect()
    }

    /// The sessions of this group subscribed to the topic or to its kind's `*` (a session of
    /// both comes twice; its outbox skips the second as stale).
    fn each_target<'a>(&'a self, (one, all): &'a (TopicKey, TopicKey)) -> impl Iterator<Item = SessionId> + 'a {
        [one, all].into_iter().filter_map(|key| self.subscribers.get(key)).flatten().copied()
    }

    fn index(&mut self, id: SessionId, topic: &TopicKey) {
        self.subscribers.entry(topic.clone()).or_default().insert(id);
    }

    /// Takes `id` off `topic`; true when it was the topic's last subscriber here.
    fn unindex(&mut self, id: SessionId, topic: &TopicKey) -> bool {
        let Some(ids) = self.subscribers.get_mut(topic) else { return false };
        ids.remove(&id);
        let emptied = ids.is_empty();
        if emptied {
            self.subscribers.remove(topic);
        }
        emptied
    }
}

/// After a panic mid-batch, every session is sent a fresh snapshot at most this often.
const RESNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// A state held back by a rate group's resampler, to release when its turn comes.
struct HeldState {
    rate: u32,
    key: String,
    due: Instant,
}

pub struct Hub {
    sessions: HashMap<SessionId, Entry>,
    /// By granted rate (0: every update as it comes); a group goes when its last session does.
    groups: HashMap<u32, RateGroup>,
    /// The rates whose group has subscribers of each topic, so that an update visits only the
    /// groups that want it (a client may pick any rate).
    topic_rates: HashMap<TopicKey, HashSet<u32>>,
    next_id: SessionId,
    store: StateStore,
    catalog: Arc<InstrumentCatalog>,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
    /// Most topics (instruments plus accounts, `*` counting one) one session may hold.
    max_subscriptions: usize,
    /// `updates_conflated_total` of the market and the account lane, looked up once: a session
    /// that is behind conflates on nearly every push.
    conflated: [prometheus::IntCounter; 2],
    /// When every session was last sent a fresh snapshot, and whether another is owed: after
    /// a panic mid-batch, at most one a second (a panic that repeats on every batch must not
    /// snapshot every session on every batch).
    last_resnapshot: Option<Instant>,
    resnapshot_pending: bool,
}

#[derive(Serialize)]
struct SnapshotMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    v: u32,
    /// The session's maximum rate per market key (updates per second; 0: as they come).
    max_rate: u32,
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
        let conflated =
            [Lane::Market, Lane::Account].map(|lane| metrics.updates_conflated.with_label_values(&[lane.as_str()]));
        Self {
            sessions: HashMap::new(),
            groups: HashMap::new(),
            topic_rates: HashMap::new(),
            next_id: 1,
            store,
            catalog,
            metrics,
            health,
            max_subscriptions,
            conflated,
            last_resnapshot: None,
            resnapshot_pending: false,
        }
    }

    fn remove(&mut self, id: SessionId) {
        if let Some(entry) = self.sessions.remove(&id) {
            self.unindex(id, entry.max_rate, &entry.topics);
        }
        self.health.set_queue_depth(self.sessions.len() as i64);
    }

    fn index<'a>(&mut self, id: SessionId, rate: u32, topics: impl IntoIterator<Item = &'a TopicKey>) {
        let group = self.groups.entry(rate).or_insert_with(|| RateGroup::new(rate));
        for topic in topics {
            group.index(id, topic);
            self.topic_rates.entry(topic.clone()).or_default().insert(rate);
        }
    }

    fn unindex<'a>(&mut self, id: SessionId, rate: u32, topics: impl IntoIterator<Item = &'a TopicKey>) {
        let Some(group) = self.groups.get_mut(&rate) else { return };
        for topic in topics {
            if group.unindex(id, topic)
                && let Some(rates) = self.topic_rates.get_mut(topic)
            {
                rates.remove(&rate);
                if rates.is_empty() {
                    self.topic_rates.remove(topic);
                }
            }
        }
        if group.subscribers.is_empty() {
            self.groups.remove(&rate);
        }
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
                self.conflated[usize::from(lane == Lane::Account)].inc_by(dropped as u64);
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

    /// Pushes `frame` into each target's outbox; sessions that must go are added to `gone`.
    fn deliver(&self, targets: &[SessionId], frame: &Arc<Frame>, now: Instant, gone: &mut Vec<SessionId>) {
        for id in targets {
            let Some(entry) = self.sessions.get(id) else { continue };
            if self.after_push(entry, entry.outbox.push(frame, now), frame.lane) {
                gone.push(*id);
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
        // After a restart (a contained panic, or the admin's restart) the groups and what they
        // hold survive but the context's timers do not: schedule every waiting release again.
        let pending: Vec<(u32, String, Instant)> = self
            .groups
            .iter()
            .filter_map(|(&rate, group)| Some((rate, group.resampler.as_ref()?.pending())))
            .flat_map(|(rate, pending)| pending.into_iter().map(move |(key, due)| (rate, key, due)))
            .collect();
        for (rate, key, due) in pending {
            self.release_at(rate, key, due, ctx);
        }
        if self.resnapshot_pending {
            let wait =
                self.last_resnapshot.map_or(Duration::ZERO, |at| RESNAPSHOT_INTERVAL.saturating_sub(at.elapsed()));
            ctx.run_later(wait, |act, ctx| {
                if act.resnapshot_pending {
                    act.last_resnapshot = Some(Instant::now());
                    act.resnapshot_or_restart(ctx);
                }
            });
        }
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
        self.sessions.insert(
            id,
            Entry { outbox: msg.outbox, wake: msg.wake, topics: HashSet::new(), last_snapshot: None, max_rate: 0 },
        );
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

    /// A panic here (building the snapshot, say) restarts the hub and answers that it is
    /// unavailable, as a panic in a batch does: it must not end the hub's task for every session.
    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        let health = self.health.clone();
        contain_or_restart::<Self, _>(&health, ctx, || self.subscribe(msg))
            .map_err(|e| SubscribeError::Unavailable(e.to_string()))?
    }
}

impl Hub {
    fn subscribe(&mut self, msg: Subscribe) -> Result<Subscribed, SubscribeError> {
        #[cfg(test)]
        tests::crash_on_snapshot_request();
        if !self.sessions.contains_key(&msg.id) {
            return Err(SubscribeError::NotConnected(msg.id));
        }
        let unknown = |e: crate::domain::selection::UnknownInstrument| SubscribeError::UnknownInstrument(e.0);
        let instruments = Filter::instruments(&msg.instruments, &self.catalog).map_err(unknown)?;
        let trades = Filter::instruments(&msg.trades, &self.catalog).map_err(unknown)?;
        let accounts = Filter::accounts(&msg.accounts).map_err(|e| SubscribeError::InvalidAccount(e.0))?;
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
        match trades {
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
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return Err(SubscribeError::NotConnected(msg.id));
        };
        entry.topics.extend(topics);
        // The latest subscribe's rate holds for the session's whole market lane.
        let old_rate = std::mem::replace(&mut entry.max_rate, msg.max_rate);
        let topics: Vec<TopicKey> = entry.topics.iter().cloned().collect();
        if old_rate != msg.max_rate {
            self.leave_group(msg.id, old_rate);
        }
        // Handing over what the old group held may have found the session gone (too slow).
        if !self.sessions.contains_key(&msg.id) {
            return Err(SubscribeError::NotConnected(msg.id));
        }
        self.index(msg.id, msg.max_rate, &topics);
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return Err(SubscribeError::NotConnected(msg.id));
        };
        // The store already holds every update this hub has routed (the cache writes it before
        // notifying), so the snapshot is never behind the stream; the outbox skips what the
        // snapshot already covers.
        let snapshot = self.store.snapshot(&instruments, &accounts);
        let key_seqs = snapshot.key_seqs();
        let fingerprint = snapshot_fingerprint(&instruments, &accounts, &key_seqs, msg.max_rate);
        // The same request with every key at the same seq as the session's last snapshot: the
        // client holds that state already (or it is still queued) and nothing it covers moved
        // since, so it is not serialized and queued again (a flood of repeated subscribes costs
        // the hub no serialization and the outbox nothing).
        if entry.last_snapshot != Some(fingerprint) {
            entry.last_snapshot = Some(fingerprint);
            let text = serialize_snapshot(&snapshot, msg.max_rate);
            let pushed = entry.outbox.push_snapshot(text, &key_seqs, Instant::now());
            let Some(entry) = self.sessions.get(&msg.id) else {
                return Err(SubscribeError::NotConnected(msg.id));
            };
            if self.after_push(entry, pushed, Lane::Market) {
                self.remove(msg.id);
            }
        }
        let fill_seqs =
            key_seqs.into_iter().filter(|(key, _)| matches!(Key::parse(key), Some(Key::Fills { .. }))).collect();
        Ok(Subscribed { fill_seqs })
    }
}

impl Hub {
    /// A session granted a new rate leaves the group of its old one. What that group holds back
    /// for it goes to it now: the subscribe's snapshot may not cover those keys.
    fn leave_group(&mut self, id: SessionId, old_rate: u32) {
        let Some(entry) = self.sessions.get(&id) else { return };
        let waiting = match self.groups.get(&old_rate).and_then(|group| group.resampler.as_ref()) {
            Some(resampler) => resampler.waiting(|key| entry.wants_key(key)),
            None => Vec::new(),
        };
        let now = Instant::now();
        let mut gone = Vec::new();
        for frame in &waiting {
            self.deliver(&[id], frame, now, &mut gone);
        }
        let topics: Vec<TopicKey> = entry.topics.iter().cloned().collect();
        self.unindex(id, old_rate, &topics);
        for id in gone {
            self.remove(id);
        }
    }

    /// A state held back by a rate group, when its turn has come.
    fn release(&mut self, rate: u32, key: &str, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let Some(group) = self.groups.get_mut(&rate) else { return };
        let Some(resampler) = group.resampler.as_mut() else { return };
        let frame = match resampler.release(key, now) {
            Due::Now(frame) => frame,
            Due::At(due) => return self.release_at(rate, key.to_owned(), due, ctx),
            Due::Nothing => return,
        };
        let Some(topic) = Key::parse(key).map(|key| topic_keys(key.topic())) else { return };
        let targets = group.targets(&topic);
        let mut gone = Vec::new();
        self.deliver(&targets, &frame, now, &mut gone);
        for id in gone {
            self.remove(id);
        }
    }

    fn release_at(&mut self, rate: u32, key: String, due: Instant, ctx: &mut Context<Self>) {
        ctx.run_later(due.saturating_duration_since(Instant::now()), move |hub, ctx| hub.release(rate, &key, ctx));
    }

    /// The current state of what a session subscribed to, serialized, with its key seqs.
    fn snapshot_for(&self, instruments: &Filter, accounts: &Filter, max_rate: u32) -> (ByteString, Vec<(String, u64)>) {
        let snapshot = self.store.snapshot(instruments, accounts);
        (serialize_snapshot(&snapshot, max_rate), snapshot.key_seqs())
    }
}

fn serialize_snapshot(snapshot: &Snapshot, max_rate: u32) -> ByteString {
    let text =
        serde_json::to_string(&SnapshotMessage { kind: "snapshot", v: 1, max_rate, snapshot }).unwrap_or_default();
    ByteString::from(text)
}

/// Identifies a snapshot: the filters it was asked with (in any order) and each key's seq,
/// which names the key's state (a key's seq grows with every change).
fn snapshot_fingerprint(instruments: &Filter, accounts: &Filter, key_seqs: &[(String, u64)], max_rate: u32) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write_u32(max_rate);
    for filter in [instruments, accounts] {
        match filter {
            Filter::All => hasher.write_u8(0),
            Filter::Only(names) => {
                hasher.write_u8(1);
                let names: std::collections::BTreeSet<&String> = names.iter().collect();
                names.hash(&mut hasher);
            }
        }
    }
    key_seqs.hash(&mut hasher);
    hasher.finish()
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

    fn handle(&mut self, _: Resnapshot, ctx: &mut Context<Self>) {
        self.resnapshot_or_restart(ctx);
    }
}

impl Hub {
    /// [`Hub::resnapshot_all`], with a panic outside any one session's snapshot (in the
    /// indices, say) contained: the hub restarts instead of ending its task.
    fn resnapshot_or_restart(&mut self, ctx: &mut Context<Self>) {
        let health = self.health.clone();
        if contain(&health, || self.resnapshot_all()).is_err() {
            ctx.run_later(Duration::ZERO, |_, ctx| ctx.stop());
        }
    }

    /// Puts a fresh snapshot of everything each session holds in front of its outbox: after
    /// the state may have been reloaded, or after a batch some sessions may have missed. The
    /// snapshot says where each fill lane stands, so a client refills the fills it missed.
    fn resnapshot_all(&mut self) {
        let now = Instant::now();
        self.resnapshot_pending = false;
        let mut gone = Vec::new();
        for (id, entry) in &self.sessions {
            if entry.topics.is_empty() {
                continue;
            }
            // One session's snapshot failing must not cost the others theirs: that session is
            // closed instead, and its client reconnects and subscribes again.
            let pushed = catch_panic(|| {
                #[cfg(test)]
                tests::crash_on_snapshot_request();
                let (instruments, accounts) = entry.filters();
                let (text, key_seqs) = self.snapshot_for(&instruments, &accounts, entry.max_rate);
                entry.outbox.push_snapshot(text, &key_seqs, now)
            });
            match pushed {
                Ok(pushed) => {
                    if self.after_push(entry, pushed, Lane::Market) {
                        gone.push(*id);
                    }
                }
                Err(panic) => {
                    tracing::error!(session = id, %panic, "a session's snapshot failed; closing it so that it resubscribes");
                    self.health.record_panic(&panic);
                    entry.outbox.close_with(CLOSE_INTERNAL_ERROR, "internal error: reconnect and subscribe again");
                    let _ = entry.wake.try_send(Wake);
                    gone.push(*id);
                }
            }
        }
        for id in gone {
            self.remove(id);
        }
        // The state may have been reloaded: the next subscribe is answered in full.
        for entry in self.sessions.values_mut() {
            entry.last_snapshot = None;
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
        // Only what the session held costs the indices anything (a flood of unknown names
        // does not).
        dropped.retain(|topic| entry.topics.remove(topic));
        // The outbox forgets the keys dropped, so the next subscribe is answered in full.
        entry.last_snapshot = None;
        entry.outbox.forget(|key| entry.wants_key(key));
        let rate = entry.max_rate;
        self.unindex(msg.id, rate, &dropped);
    }
}

impl Handler<UpdateBatch> for Hub {
    type Result = Result<(), HopError>;

    fn handle(&mut self, batch: UpdateBatch, ctx: &mut Context<Self>) -> Self::Result {
        let health = self.health.clone();
        let held = match contain(&health, || self.fan_out(&batch)) {
            Ok(held) => held,
            Err(panic) => return Err(self.recover_from_panic(panic, ctx)),
        };
        for HeldState { rate, key, due } in held {
            self.release_at(rate, key, due, ctx);
        }
        Ok(())
    }
}

impl Hub {
    /// After a panic in the middle of a batch: sessions routed before it have their share and
    /// the others none, and the cache holds the whole batch. Every session is sent a fresh
    /// snapshot now, ahead of the next batch, so none is left behind on a key; then the hub
    /// restarts (its supervisor keeps the sessions and groups) and the sender is told.
    fn recover_from_panic(&mut self, panic: String, ctx: &mut Context<Self>) -> HopError {
        let health = self.health.clone();
        let when = if self.last_resnapshot.is_some_and(|at| at.elapsed() < RESNAPSHOT_INTERVAL) {
            // Panicking again within the interval: the snapshots follow when it is up (the
            // restarted hub schedules them).
            self.resnapshot_pending = true;
            "within a second"
        } else {
            self.last_resnapshot = Some(Instant::now());
            if let Err(again) = contain(&health, || self.resnapshot_all()) {
                tracing::error!(panic = %again, "the snapshots after a hub panic panicked too");
            }
            "now"
        };
        // Stopped right after this answer goes out (a stop inside the handler can drop it).
        ctx.run_later(Duration::ZERO, |_, ctx| ctx.stop());
        HopError::Unavailable(format!(
            "{} crashed ({panic}); every session is sent a fresh snapshot {when}",
            health.name
        ))
    }

    /// Routes each update to its subscribers, group by group; a state a group's rate holds back
    /// is returned, to be released when due. Each session's share of the batch is pushed into
    /// its outbox at the end, in pieces of at most half its market lane: one lock and at most
    /// one wake per piece, not per update.
    fn fan_out(&mut self, batch: &UpdateBatch) -> Vec<HeldState> {
        let _span = tracing::debug_span!("fan_out", updates = batch.updates.len()).entered();
        self.health.handled_n(batch.updates.len() as u64);
        let mut held = Vec::new();
        // What each session gets of this batch, in update order. A new map per batch: it holds
        // only this batch's targets, and its random order changes which sessions go first.
        let mut shares: hashbrown::HashMap<SessionId, Vec<Arc<Frame>>> = hashbrown::HashMap::new();
        for update in batch.updates.iter() {
            // The resamplers' clock.
            let now = Instant::now();
            let topic = topic_keys(update.update.topic());
            // Serialized once, for every group and session that sends it.
            let mut frame: Option<Arc<Frame>> = None;
            // A session of `X` and `*` is in both: visit its group once (its resampler must see
            // each state once).
            let mut rates: Vec<u32> =
                [&topic.0, &topic.1].into_iter().filter_map(|t| self.topic_rates.get(t)).flatten().copied().collect();
            rates.sort_unstable();
            rates.dedup();
            // (`topic_rates` names only groups with subscribers of the topic.)
            for rate in rates {
                let Some(group) = self.groups.get_mut(&rate) else { continue };
                let frame = frame.get_or_insert_with(|| Frame::new(update));
                if frame.resampled
                    && let Some(resampler) = &mut group.resampler
                    && let Turn::Held(due) = resampler.offer(frame, now)
                {
                    held.extend(due.map(|due| HeldState { rate, key: frame.key.clone(), due }));
                    continue;
                }
                // Targets are listed only for what goes out now, not for a held state.
                for id in group.each_target(&topic) {
                    shares.entry(id).or_default().push(frame.clone());
                }
            }
        }
        let mut gone: Vec<SessionId> = Vec::new();
        #[cfg(test)]
        let mut pushed_shares = 0;
        for (id, mut frames) in shares {
            let Some(entry) = self.sessions.get(&id) else { continue };
            #[cfg(test)]
            {
                tests::crash_on_request(&frames, pushed_shares);
                pushed_shares += 1;
            }
            // In pieces no larger than its market lane holds, each with its wake: a share of a
            // large batch must not look like a backlog the session could not have drained.
            let piece = entry.outbox.push_piece();
            while !frames.is_empty() {
                let taken = frames.len().min(piece);
                // Read per piece, not per batch: an outbox times how long its lane waits from
                // it, and pushing a large batch to many sessions takes a while.
                let (pushed, conflated) = entry.outbox.push_many(frames.drain(..taken), Instant::now());
                if conflated > 0 {
                    self.conflated[0].inc_by(conflated as u64);
                }
                if self.after_push(entry, pushed, Lane::Market) {
                    gone.push(id);
                    break;
                }
            }
        }
        for id in gone {
            self.remove(id);
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::{FillReport, InstrumentState, Published, Update};
    use crate::health::{ActorState, HealthRegistry};
    use crate::session::outbox::OutboxLimits;

    /// The key whose updates make the hub panic while it pushes them (tests only): a stand-in
    /// for a bug no test foresaw.
    const CRASH_KEY: &str = "inst:CRASH";

    thread_local! {
        /// Makes building a snapshot panic (tests only; the hub runs on the test's thread).
        static CRASH_SNAPSHOTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    pub(super) fn crash_on_snapshot_request() {
        if CRASH_SNAPSHOTS.with(|crash| crash.get()) {
            panic!("asked to crash on a snapshot");
        }
    }

    /// A session whose snapshot fails is closed with 1011 and the others get theirs; a subscribe
    /// whose snapshot fails is answered `Unavailable` and the hub restarts: neither ends the
    /// hub's task, and the next subscribe is answered.
    #[actix_rt::test]
    async fn a_failing_snapshot_closes_its_session_or_refuses_its_subscribe_and_the_hub_goes_on() {
        let store = StateStore::new();
        assert!(store.apply(&instrument("ESZ6", 1)));
        let registry = HealthRegistry::new();
        let health = registry.register("hub", "hub");
        let catalog = Arc::new(InstrumentCatalog::default_futures());
        let hub = Supervisor::start(move |_| Hub::new(store, catalog, Arc::new(Metrics::new()), health, 200));
        let (_, first) = capped_session(&hub, &["ESZ6"], 0).await;
        let (_, second) = capped_session(&hub, &["ESZ6"], 0).await;

        // One session's snapshot fails (here every one: each is contained on its own).
        CRASH_SNAPSHOTS.with(|crash| crash.set(true));
        hub.send(Resnapshot).await.expect("hub");
        for outbox in [&first, &second] {
            assert_eq!(outbox.drain(usize::MAX).close.map(|c| c.code), Some(CLOSE_INTERNAL_ERROR));
        }
        let report = registry.get("hub").expect("the hub's health").report();
        assert_eq!((report.panics, report.state), (2, ActorState::Running), "{report:?}");

        // A subscribe whose snapshot fails: refused, the hub restarts.
        let outbox = test_outbox();
        let id = hub.send(Connect { outbox: outbox.clone(), wake: Sleeper.start().recipient() }).await.expect("hub");
        let subscribe =
            || Subscribe { id, instruments: vec!["ESZ6".into()], accounts: vec![], trades: vec![], max_rate: 0 };
        let refused = hub.send(subscribe()).await.expect("the hub answers");
        assert!(matches!(refused, Err(SubscribeError::Unavailable(_))), "{refused:?}");
        CRASH_SNAPSHOTS.with(|crash| crash.set(false));
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        hub.send(subscribe()).await.expect("the hub answers").expect("subscribed");
        assert_eq!(snapshots_sent(&outbox).len(), 1);
        let report = registry.get("hub").expect("the hub's health").report();
        assert_eq!((report.panics, report.restarts, report.state), (3, 1, ActorState::Running), "{report:?}");
    }

    /// Panics on a share holding [`CRASH_KEY`] once another share of the batch was pushed: the
    /// panic leaves some sessions with their share and others without.
    pub(super) fn crash_on_request(frames: &[Arc<Frame>], pushed_before: usize) {
        if pushed_before > 0 && frames.iter().any(|frame| frame.key == CRASH_KEY) {
            panic!("asked to crash");
        }
    }

    /// An outbox no one drains: its lane's wait must not conflate what the tests count.
    fn test_outbox() -> Arc<Outbox> {
        Outbox::new(OutboxLimits { conflate_after: Duration::from_secs(600), ..OutboxLimits::default() })
    }

    /// Stands in for a session actor: takes the hub's wake-ups and does nothing.
    struct Sleeper;

    impl Actor for Sleeper {
        type Context = Context<Self>;
    }

    impl Handler<Wake> for Sleeper {
        type Result = ();

        fn handle(&mut self, _: Wake, _: &mut Context<Self>) {}
    }

    fn instrument(symbol: &str, seq: u64) -> Published {
        let mut state = InstrumentState::empty(symbol);
        state.seq = seq;
        Published::new(Update::Instrument(state), 0)
    }

    fn fill(account: &str, symbol: &str, seq: u64) -> Published {
        let report: FillReport = serde_json::from_value(json!({
            "account": account, "seq": seq, "fill_id": format!("F-{seq}"), "order_id": "o-1", "symbol": symbol,
            "side": "buy", "price": "6850.25", "qty": 1, "ts": 1,
            "position": {"account": account, "symbol": symbol, "seq": seq, "net_qty": 1, "avg_price": "6850.25",
                         "realized_pnl": "0", "unrealized_pnl": "0", "updated_at": 1}
        }))
        .expect("a fill report");
        Published::new(Update::Fill(report), 0)
    }

    /// The snapshots waiting in an outbox, taken out as a client would read them.
    fn snapshots_sent(outbox: &Outbox) -> Vec<Value> {
        let drained = outbox.drain(usize::MAX);
        drained.control.iter().map(|text| serde_json::from_str(text).expect("a snapshot")).collect()
    }

    fn symbols(snapshot: &Value) -> Vec<&str> {
        snapshot["instruments"].as_array().expect("instruments").iter().filter_map(|s| s["symbol"].as_str()).collect()
    }

    #[actix_rt::test]
    async fn a_repeated_subscribe_is_answered_only_when_its_snapshot_would_differ() {
        let store = StateStore::new();
        for update in [instrument("ESZ6", 1), instrument("NQZ6", 1), fill("ACC1", "ESZ6", 3)] {
            assert!(store.apply(&update));
        }
        let health = HealthRegistry::new().register("hub", "hub");
        let catalog = Arc::new(InstrumentCatalog::default_futures());
        let hub = Hub::new(store.clone(), catalog, Arc::new(Metrics::new()), health, 200).start();
        let outbox = test_outbox();
        let connect = Connect { outbox: outbox.clone(), wake: Sleeper.start().recipient() };
        let id = hub.send(connect).await.expect("hub");
        let subscribe = |instruments: &[&str]| Subscribe {
            id,
            instruments: instruments.iter().map(|s| s.to_string()).collect(),
            accounts: vec!["ACC1".into()],
            trades: vec![],
            max_rate: 0,
        };
        let fill_lanes = vec![("fills:ACC1:ESZ6".to_string(), 3)];

        // 40 identical subscribes (in any order of names): one snapshot is serialized and
        // queued, and every answer still says where the fill lanes stand (for `recover`).
        for i in 0..40 {
            let names: &[&str] = if i % 2 == 0 { &["ESZ6", "NQZ6"] } else { &["NQZ6", "ESZ6"] };
            let subscribed = hub.send(subscribe(names)).await.expect("hub").expect("subscribed");
            assert_eq!(subscribed.fill_seqs, fill_lanes);
        }
        let sent = snapshots_sent(&outbox);
        assert_eq!(sent.len(), 1, "one snapshot for 40 identical subscribes");
        assert_eq!(symbols(&sent[0]), ["ESZ6", "NQZ6"]);
        // Read by the client, and asked for again with nothing changed: still nothing new.
        hub.send(subscribe(&["ESZ6", "NQZ6"])).await.expect("hub").expect("subscribed");
        assert_eq!(snapshots_sent(&outbox).len(), 0);

        // A key moved (e.g. the client saw a gap and asks for a fresh snapshot): answered.
        assert!(store.apply(&instrument("ESZ6", 2)));
        hub.send(subscribe(&["ESZ6", "NQZ6"])).await.expect("hub").expect("subscribed");
        let sent = snapshots_sent(&outbox);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["instruments"][0]["seq"], 2);

        // Another request is answered with what it covers.
        hub.send(subscribe(&["ESZ6"])).await.expect("hub").expect("subscribed");
        let sent = snapshots_sent(&outbox);
        assert_eq!(sent.iter().map(symbols).collect::<Vec<_>>(), [["ESZ6"]]);

        // After an unsubscribe, subscribing again is answered in full.
        hub.send(subscribe(&["ESZ6", "NQZ6"])).await.expect("hub").expect("subscribed");
        assert_eq!(snapshots_sent(&outbox).len(), 1);
        let unsubscribe = Unsubscribe { id, instruments: vec!["NQZ6".into()], accounts: vec![], trades: vec![] };
        hub.send(unsubscribe).await.expect("hub");
        hub.send(subscribe(&["ESZ6", "NQZ6"])).await.expect("hub").expect("subscribed");
        let sent = snapshots_sent(&outbox);
        assert_eq!(sent.iter().map(symbols).collect::<Vec<_>>(), [["ESZ6", "NQZ6"]]);

        // After a resnapshot (the state may have been reloaded), too.
        hub.send(Resnapshot).await.expect("hub");
        assert_eq!(snapshots_sent(&outbox).len(), 1, "the resnapshot itself");
        hub.send(subscribe(&["ESZ6", "NQZ6"])).await.expect("hub").expect("subscribed");
        assert_eq!(snapshots_sent(&outbox).len(), 1);
    }

    /// A panic while a batch is pushed leaves some sessions with their share and others
    /// without: every session is sent a fresh snapshot (the state the cache holds, with where
    /// each fill lane stands, of its own accounts only), nothing it covers follows it, the
    /// sender is told, and the next batch reaches every session.
    #[actix_rt::test]
    async fn after_a_panic_mid_batch_every_session_gets_a_fresh_snapshot_and_the_stream_goes_on() {
        let store = StateStore::new();
        for update in [instrument("ESZ6", 1), fill("ACC1", "ESZ6", 3), fill("ACC2", "ESZ6", 7)] {
            assert!(store.apply(&update));
        }
        let registry = HealthRegistry::new();
        let health = registry.register("hub", "hub");
        let catalog = Arc::new(InstrumentCatalog::default_futures());
        let (metrics, hub_store) = (Arc::new(Metrics::new()), store.clone());
        let hub = Supervisor::start(move |_| Hub::new(hub_store, catalog, metrics, health, 200));
        // Two sessions of everything (their shares hold the key that panics), two of ESZ6 only.
        let mut outboxes = Vec::new();
        for instruments in ["*", "*", "ESZ6", "ESZ6"] {
            let outbox = test_outbox();
            let id =
                hub.send(Connect { outbox: outbox.clone(), wake: Sleeper.start().recipient() }).await.expect("hub");
            let subscribe = Subscribe {
                id,
                instruments: vec![instruments.into()],
                accounts: vec!["ACC1".into()],
                trades: vec![],
                max_rate: 0,
            };
            hub.send(subscribe).await.expect("hub").expect("subscribed");
            assert_eq!(snapshots_sent(&outbox).len(), 1, "the subscribe's snapshot");
            outboxes.push(outbox);
        }

        // The cache stores a batch, then hands it to the hub, which panics part-way through.
        let batch = [instrument("ESZ6", 2), fill("ACC1", "ESZ6", 4), fill("ACC2", "ESZ6", 8), instrument("CRASH", 1)];
        for update in &batch {
            assert!(store.apply(update));
        }
        let answer = hub.send(UpdateBatch { updates: batch.to_vec().into() }).await.expect("hub");
        assert!(matches!(answer, Err(HopError::Unavailable(_))), "{answer:?}");
        for (index, outbox) in outboxes.iter().enumerate() {
            let drained = outbox.drain(usize::MAX);
            assert_eq!(drained.control.len(), 1, "one fresh snapshot per session");
            assert!(!drained.control[0].contains("ACC2"), "another account's data: {}", &*drained.control[0]);
            let snapshot: Value = serde_json::from_str(&drained.control[0]).expect("a snapshot");
            let esz6 = snapshot["instruments"].as_array().expect("instruments").iter().find(|i| i["symbol"] == "ESZ6");
            assert_eq!(esz6.expect("ESZ6")["seq"], 2, "the newest state");
            if index >= 2 {
                assert_eq!(symbols(&snapshot), ["ESZ6"], "what the session subscribed to, no more");
            }
            let lane = snapshot["accounts"].as_array().expect("accounts").iter().find(|a| a["symbol"] == "ESZ6");
            assert_eq!(lane.expect("the ESZ6 lane")["fill_seq"], 4, "where the fill lane stands: 4 can be refilled");
            // Nothing the snapshot covers follows it (a session pushed before the panic had
            // ESZ6 2 and fill 4 waiting).
            let after: Vec<(&str, u64)> = drained.updates.iter().map(|f| (f.key.as_str(), f.seq)).collect();
            assert!(after.iter().all(|(key, _)| *key == "inst:CRASH"), "{after:?}");
        }

        // Restarted: the next batch reaches every session, after the snapshot.
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert!(store.apply(&instrument("ESZ6", 3)));
        hub.send(states([3])).await.expect("hub").expect("fanned out");
        for outbox in &outboxes {
            assert_eq!(seqs_sent(outbox, "inst:ESZ6"), [3]);
        }
        let report = registry.get("hub").expect("the hub's health").report();
        assert_eq!((report.panics, report.restarts, report.state), (1, 1, ActorState::Running), "{report:?}");

        // Panicking again at once: the snapshots wait for the interval (one a second at most),
        // then come once.
        let again = [instrument("ESZ6", 4), instrument("CRASH", 2)];
        for update in &again {
            assert!(store.apply(update));
        }
        let answer = hub.send(UpdateBatch { updates: again.to_vec().into() }).await.expect("hub");
        assert!(matches!(answer, Err(HopError::Unavailable(_))), "{answer:?}");
        assert!(outboxes.iter().all(|outbox| outbox.drain(usize::MAX).control.is_empty()), "not at once");
        actix_rt::time::sleep(RESNAPSHOT_INTERVAL + Duration::from_millis(200)).await;
        for outbox in &outboxes {
            let sent = snapshots_sent(outbox);
            assert_eq!(sent.len(), 1, "one fresh snapshot when the interval is up");
            let esz6 = sent[0]["instruments"].as_array().expect("instruments").iter().find(|i| i["symbol"] == "ESZ6");
            assert_eq!(esz6.expect("ESZ6")["seq"], 4);
        }
    }

    /// The seqs of one key's updates waiting in an outbox, taken out as a client would read them.
    fn seqs_sent(outbox: &Outbox, key: &str) -> Vec<u64> {
        outbox.drain(usize::MAX).updates.iter().filter(|f| f.key == key).map(|f| f.seq).collect()
    }

    #[actix_rt::test]
    async fn sessions_of_one_rate_share_its_resampling_and_fills_are_never_held() {
        let health = HealthRegistry::new().register("hub", "hub");
        let catalog = Arc::new(InstrumentCatalog::default_futures());
        let hub = Hub::new(StateStore::new(), catalog, Arc::new(Metrics::new()), health, 200).start();
        let mut sessions = Vec::new();
        for max_rate in [0, 10, 10] {
            let outbox = test_outbox();
            let id =
                hub.send(Connect { outbox: outbox.clone(), wake: Sleeper.start().recipient() }).await.expect("hub");
            let subscribe = Subscribe {
                id,
                instruments: vec!["ESZ6".into()],
                accounts: vec!["ACC1".into()],
                trades: vec![],
                max_rate,
            };
            hub.send(subscribe).await.expect("hub").expect("subscribed");
            outbox.drain(usize::MAX); // the snapshot
            sessions.push((id, outbox));
        }
        let batch = |updates: Vec<Published>| UpdateBatch { updates: updates.into() };
        let states = (1..=5).map(|seq| instrument("ESZ6", seq)).chain([fill("ACC1", "ESZ6", 1)]).collect();
        hub.send(batch(states)).await.expect("hub").expect("fanned out");

        let (every, capped) = (&sessions[0].1, [&sessions[1].1, &sessions[2].1]);
        assert_eq!(seqs_sent(every, "inst:ESZ6"), [1, 2, 3, 4, 5], "no rate: every state");
        for outbox in capped {
            let drained = outbox.drain(usize::MAX);
            let keys: Vec<(&str, u64)> = drained.updates.iter().map(|f| (f.key.as_str(), f.seq)).collect();
            // (The account lane drains first.)
            assert_eq!(keys, [("fills:ACC1:ESZ6", 1), ("inst:ESZ6", 1)], "the first state at once, the fill too");
        }
        // One resampler for the rate, whatever the number of its sessions.
        let rates = hub.send(GroupRates).await.expect("hub");
        assert_eq!(rates, [(0, false), (10, true)]);

        // The newest state follows within the interval (100 ms), to both capped sessions.
        actix_rt::time::sleep(Duration::from_millis(250)).await;
        for outbox in capped {
            assert_eq!(seqs_sent(outbox, "inst:ESZ6"), [5]);
        }

        // A held state goes to a session that moves to another rate (its subscribe's snapshot
        // covers only what that subscribe names), and is still released to the one that stays.
        hub.send(batch(vec![instrument("ESZ6", 6), instrument("ESZ6", 7)])).await.expect("hub").expect("fanned out");
        assert_eq!(seqs_sent(capped[0], "inst:ESZ6"), [6]);
        assert_eq!(seqs_sent(capped[1], "inst:ESZ6"), [6]);
        let (mover, _) = &sessions[1];
        let subscribe =
            Subscribe { id: *mover, instruments: vec!["NQZ6".into()], accounts: vec![], trades: vec![], max_rate: 0 };
        hub.send(subscribe).await.expect("hub").expect("subscribed");
        assert_eq!(seqs_sent(capped[0], "inst:ESZ6"), [7], "handed over at once");
        actix_rt::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(seqs_sent(capped[1], "inst:ESZ6"), [7]);
        assert_eq!(seqs_sent(capped[0], "inst:ESZ6"), Vec::<u64>::new(), "not twice");
        hub.send(batch(vec![instrument("ESZ6", 8), instrument("ESZ6", 9)])).await.expect("hub").expect("fanned out");
        assert_eq!(seqs_sent(capped[0], "inst:ESZ6"), [8, 9], "every state at its new rate");
        let rates = hub.send(GroupRates).await.expect("hub");
        assert_eq!(rates, [(0, false), (10, true)]);
    }

    /// A capped session of ESZ6 at `rate`, on `hub`; its outbox, with the snapshot read.
    async fn capped_session(hub: &Addr<Hub>, instruments: &[&str], rate: u32) -> (SessionId, Arc<Outbox>) {
        let outbox = test_outbox();
        let id = hub.send(Connect { outbox: outbox.clone(), wake: Sleeper.start().recipient() }).await.expect("hub");
        let instruments = instruments.iter().map(|s| s.to_string()).collect();
        let subscribe = Subscribe { id, instruments, accounts: vec![], trades: vec![], max_rate: rate };
        hub.send(subscribe).await.expect("hub").expect("subscribed");
        outbox.drain(usize::MAX);
        (id, outbox)
    }

    fn states(seqs: impl IntoIterator<Item = u64>) -> UpdateBatch {
        UpdateBatch { updates: seqs.into_iter().map(|seq| instrument("ESZ6", seq)).collect::<Vec<_>>().into() }
    }

    /// A restart (a contained panic, or the admin's) loses the context's timers but not what the
    /// groups hold: the waiting state is still released, and the key keeps updating.
    #[actix_rt::test]
    async fn a_restarted_hub_still_releases_what_its_groups_hold() {
        let health = HealthRegistry::new().register("hub", "hub");
        let catalog = Arc::new(InstrumentCatalog::default_futures());
        let metrics = Arc::new(Metrics::new());
        let hub = Supervisor::start(move |_| Hub::new(StateStore::new(), catalog, metrics, health, 200));
        let (_, outbox) = capped_session(&hub, &["ESZ6"], 10).await;
        hub.send(states([1, 2])).await.expect("hub").expect("fanned out");
        assert_eq!(seqs_sent(&outbox, "inst:ESZ6"), [1]);
        hub.send(crate::messages::Restart).await.expect("hub");
        actix_rt::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(seqs_sent(&outbox, "inst:ESZ6"), [2], "released after the restart");
        hub.send(states([3, 4])).await.expect("hub").expect("fanned out");
        actix_rt::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(seqs_sent(&outbox, "inst:ESZ6"), [3, 4], "3 at once (2 went 250 ms ago), 4 when due");
    }

    /// A session of `ESZ6` and of `*` at one rate: its group sees each state once, so a state
    /// after a quiet interval still goes at once.
    #[actix_rt::test]
    async fn a_session_of_a_symbol_and_of_all_is_resampled_once() {
        let health = HealthRegistry::new().register("hub", "hub");
        let catalog = Arc::new(InstrumentCatalog::default_futures());
        let hub = Hub::new(StateStore::new(), catalog, Arc::new(Metrics::new()), health, 200).start();
        let (id, outbox) = capped_session(&hub, &["ESZ6"], 10).await;
        let all = Subscribe { id, instruments: vec!["*".into()], accounts: vec![], trades: vec![], max_rate: 10 };
        hub.send(all).await.expect("hub").expect("subscribed");
        outbox.drain(usize::MAX);
        hub.send(states([1])).await.expect("hub").expect("fanned out");
        assert_eq!(seqs_sent(&outbox, "inst:ESZ6"), [1]);
        actix_rt::time::sleep(Duration::from_millis(150)).await;
        hub.send(states([2])).await.expect("hub").expect("fanned out");
        assert_eq!(seqs_sent(&outbox, "inst:ESZ6"), [2], "the interval had passed: at once");
    }

    /// The rates the hub holds a group for, and whether each resamples (tests).
    #[derive(Message)]
    #[rtype(result = "Vec<(u32, bool)>")]
    struct GroupRates;

    impl Handler<GroupRates> for Hub {
        type Result = Vec<(u32, bool)>;

        fn handle(&mut self, _: GroupRates, _: &mut Context<Self>) -> Self::Result {
            let mut rates: Vec<(u32, bool)> =
                self.groups.iter().map(|(rate, group)| (*rate, group.resampler.is_some())).collect();
            rates.sort();
            rates
        }
    }
}
