//! Actor health registry: what `GET /admin/actors` and `GET /admin/health` report.
//! Each actor holds an `Arc<ActorHealth>` and updates it lock-free as it works.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use serde::Serialize;

use crate::domain::Micros;

/// The name of each actor, written once: its health record, its restart counter's `actor`
/// label, its logs and `POST /admin/actors/{name}/restart` all use it.
pub mod names {
    pub const INGESTER: &str = "ingester";
    pub const PROCESSOR: &str = "processor";
    pub const CACHE: &str = "cache";
    pub const HUB: &str = "hub";
    pub const DB_WRITER: &str = "db-writer";
    pub const DB_READER: &str = "db-reader";
    pub const REDIS_CACHE: &str = "redis-cache";
    pub const REDIS_FEED: &str = "redis-feed";
    pub const KAFKA_PRODUCER_RAW: &str = "kafka-producer-raw";
    pub const KAFKA_PRODUCER_PROCESSED: &str = "kafka-producer-processed";
    pub const KAFKA_CONSUMER_RAW: &str = "kafka-consumer-raw";
    pub const KAFKA_CONSUMER_PROCESSED: &str = "kafka-consumer-processed";
}

pub fn now_micros() -> Micros {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as Micros).unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorState {
    Starting,
    Running,
    Restarting,
    Stopped,
    /// A handler panicked; the supervisor restarts the actor (see `supervision.rs`).
    Crashed,
    /// The actor's task is gone and nothing will restart it: the process needs a restart.
    Dead,
}

impl ActorState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => ActorState::Running,
            2 => ActorState::Restarting,
            3 => ActorState::Stopped,
            4 => ActorState::Crashed,
            _ => ActorState::Starting,
        }
    }
}

pub struct ActorHealth {
    pub name: String,
    pub kind: &'static str,
    state: AtomicU8,
    restarts: AtomicU64,
    handled: AtomicU64,
    queue_depth: AtomicI64,
    last_message_at: AtomicI64,
    detail: std::sync::Mutex<Option<String>>,
    panics: AtomicU64,
    /// The last panic or fatal error, with its time: kept after the restart, for the operator.
    last_error: std::sync::Mutex<Option<(Micros, String)>>,
    /// Whether the actor's task still runs (its mailbox is open), once the wiring set it.
    alive: std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl std::fmt::Debug for ActorHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorHealth").field("name", &self.name).field("state", &self.state()).finish()
    }
}

impl ActorHealth {
    fn new(name: &str, kind: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            state: AtomicU8::new(0),
            restarts: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            queue_depth: AtomicI64::new(0),
            last_message_at: AtomicI64::new(0),
            detail: std::sync::Mutex::new(None),
            panics: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
            alive: std::sync::OnceLock::new(),
        }
    }

    pub fn set_running(&self) {
        self.state.store(1, Ordering::Relaxed);
    }

    pub fn set_stopped(&self) {
        self.state.store(3, Ordering::Relaxed);
    }

    /// Called from `Supervised::restarting`.
    pub fn restarting(&self) {
        self.state.store(2, Ordering::Relaxed);
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// A handler panicked with `message`: the actor is about to be stopped and restarted.
    pub fn crashed(&self, message: &str) {
        self.state.store(4, Ordering::Relaxed);
        self.panics.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some((now_micros(), message.to_owned()));
        }
    }

    /// A panic was contained in a piece of the actor's work that it recovers from without a
    /// restart (one session's snapshot, say): counted and kept as the last error, the actor's
    /// state unchanged.
    pub fn record_panic(&self, message: &str) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some((now_micros(), format!("panicked: {message}")));
        }
    }

    /// Lets the health report see whether the actor's task still runs (an `Addr::connected`).
    pub fn watch(&self, alive: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.alive.set(Box::new(alive));
    }

    pub fn handled(&self) {
        self.handled_n(1);
    }

    pub fn handled_n(&self, n: u64) {
        self.handled.fetch_add(n, Ordering::Relaxed);
        self.last_message_at.store(now_micros(), Ordering::Relaxed);
    }

    /// The actor's own backlog: what is waiting for it (meaning documented per actor).
    pub fn set_queue_depth(&self, depth: i64) {
        self.queue_depth.store(depth, Ordering::Relaxed);
    }

    /// A short free-text note, e.g. the last error or the connection state.
    pub fn set_detail(&self, detail: Option<String>) {
        if let Ok(mut d) = self.detail.lock() {
            *d = detail;
        }
    }

    pub fn state(&self) -> ActorState {
        if self.alive.get().is_some_and(|alive| !alive()) {
            return ActorState::Dead;
        }
        ActorState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> ActorReport {
        let last = self.last_message_at.load(Ordering::Relaxed);
        ActorReport {
            name: self.name.clone(),
            kind: self.kind,
            state: self.state(),
            restarts: self.restarts(),
            messages_handled: self.handled.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            last_message_at: (last > 0).then_some(last),
            detail: self.detail.lock().ok().and_then(|d| d.clone()),
            panics: self.panics.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .map(|(at, message)| LastError { at, message }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ActorReport {
    pub name: String,
    pub kind: &'static str,
    pub state: ActorState,
    pub restarts: u64,
    pub messages_handled: u64,
    pub queue_depth: i64,
    /// Unix micros of the last handled message.
    pub last_message_at: Option<Micros>,
    pub detail: Option<String>,
    /// Panics contained in this actor's handlers since the process started.
    pub panics: u64,
    pub last_error: Option<LastError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// Unix micros.
    pub at: Micros,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct HealthRegistry {
    actors: DashMap<String, Arc<ActorHealth>>,
}

impl HealthRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The health record for `name`, created on first use (a restarted actor keeps its record).
    pub fn register(&self, name: &str, kind: &'static str) -> Arc<ActorHealth> {
        self.actors.entry(name.to_owned()).or_insert_with(|| Arc::new(ActorHealth::new(name, kind))).clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<ActorHealth>> {
        self.actors.get(name).map(|e| e.clone())
    }

    pub fn reports(&self) -> Vec<ActorReport> {
        let mut reports: Vec<_> = self.actors.iter().map(|e| e.report()).collect();
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        reports
    }

    /// Ready when every registered actor runs.
    pub fn ready(&self) -> bool {
        self.actors.iter().all(|e| e.state() == ActorState::Running)
    }
}
