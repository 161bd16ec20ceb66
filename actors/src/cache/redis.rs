//! Redis adapters of the distributed mode.
//!
//! - [`RedisCacheActor`] (cache role): keeps the latest state of every key in Redis, one hash
//!   per key (`tt:inst:{symbol}`, `tt:pos:{account}:{symbol}`, `tt:candle:{symbol}:{interval}`,
//!   `tt:fills:{account}:{symbol}`, fields `seq` and `json`), the set `tt:keys` of them, and publishes
//!   each change on `tt_updates`. A Lua script applies up to 500 updates at a time, atomically
//!   and only where the seq is newer, so replays and rebuilds never move a key backwards.
//!   Several batches' writes are on the wire at once (pipelined); the script applies each only
//!   right after the one before it ([`Writer`]), so a write that fails is never overtaken and
//!   updates are published in the order they were read. When Redis comes back
//!   empty (no marker key `tt:epoch`), the state is rebuilt from the database and a `resync`
//!   notice is published.
//! - [`RedisFeedActor`] (api role): subscribes to `tt_updates`, loads every key from Redis
//!   after each (re)connect into the local state the API serves, forwards each change to the
//!   hub, and asks the hub for fresh snapshots for every session after a reconnect or resync.
//!
//! `rediss://` URLs use TLS; a password in the URL is sent with AUTH. Every client is made by
//! [`client`], which applies a private CA to these connections alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;

use crate::backoff::Backoff;
use crate::domain::{Engine, InstrumentCatalog, Micros, Published};
use crate::health::ActorHealth;
use crate::messages::{Durable, HopError, LoadSnapshot, Resnapshot, StoreUpdates, UpdateBatch};
use crate::metrics::Metrics;

/// Why a Redis client could not be made from the settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the Redis CA file {}", path.display())]
    CaFile { path: PathBuf, source: std::io::Error },
    #[error("the Redis CA file {} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    /// The TLS backend did not take the file's certificates (a corrupt PEM, say).
    #[error("the Redis CA file {} was refused: {reason}", path.display())]
    CaRefused { path: PathBuf, reason: String },
    #[error("TTPULSE_REDIS_CA_FILE is set, so the Redis URL must use TLS (rediss://)")]
    CaWithoutTls,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// A Redis client for `url`. With `ca_file` (a PEM), a `rediss://` connection trusts the
/// certificates in it instead of the system's store; nothing else in the process is affected.
pub fn client(url: &str, ca_file: Option<&Path>) -> Result<redis::Client, ClientError> {
    let Some(path) = ca_file else { return Ok(redis::Client::open(url)?) };
    let pem = std::fs::read(path).map_err(|source| ClientError::CaFile { path: path.to_owned(), source })?;
    // Without one, the TLS backend would quietly fall back to the system's store.
    if !pem.windows(CERTIFICATE_PEM.len()).any(|w| w == CERTIFICATE_PEM) {
        return Err(ClientError::NoCertificate { path: path.to_owned() });
    }
    let info = redis::IntoConnectionInfo::into_connection_info(url)?;
    if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        return Err(ClientError::CaWithoutTls);
    }
    let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
    // Only the certificates can be refused here (the URL was read above); said once, by file.
    redis::Client::build_with_tls(info, certificates)
        .map_err(|e| ClientError::CaRefused { path: path.to_owned(), reason: e.to_string() })
}

/// Written once for the Rust constants and the Lua script alike (`concat!` needs literals).
macro_rules! redis_names {
    (prefix) => {
        "tt:"
    };
    (channel) => {
        "tt_updates"
    };
    // The key holding the number of a writer's last applied write (see `Writer`).
    (writer) => {
        concat!(redis_names!(prefix), "writer:")
    };
    // Seconds a writer's number is kept after its last write. A writer idle for longer has its
    // next write refused once (out of order) and goes on under a new id.
    (writer_ttl) => {
        "86400"
    };
}

pub const UPDATES_CHANNEL: &str = redis_names!(channel);
/// Every Redis key of ttpulse is this prefix and a state key (`domain::Key`).
pub const KEY_PREFIX: &str = redis_names!(prefix);
const KEYS_SET: &str = concat!(redis_names!(prefix), "keys");
const EPOCH_KEY: &str = concat!(redis_names!(prefix), "epoch");
const RESYNC: &str = r#"{"type":"resync","v":1}"#;

/// The error code of a write refused because an earlier write of its writer is not applied.
const OUT_OF_ORDER: &str = "TTORDER";
/// Updates per script call: a large batch is several calls, each its own numbered write.
const UPDATES_PER_CALL: usize = 500;
/// How long one batch's calls may take to be answered, queued behind the writes before them
/// (redis-rs would give up after 500 ms; a write given up on is offered again).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// ARGV: writer id, write number, then key, seq, json, key, seq, json, ...
/// Applies each update where its seq is newer and returns how many. A numbered write (not 0)
/// is applied only right after the writer's previous one (its number is the last applied plus
/// one): one that overtook a write that failed is refused whole (`TTORDER`), so that no key's
/// newer state is published before an older change of it that is still to be offered again (a
/// fill would be lost to the clients).
const APPLY_LUA: &str = concat!(
    "local w = tonumber(ARGV[2])\n",
    "local writer = '",
    redis_names!(writer),
    "' .. ARGV[1]\n",
    "local last = 0\n",
    "if w > 0 then\n",
    "  last = tonumber(redis.call('GET', writer) or '0')\n",
    "  if w ~= last + 1 then\n",
    "    return redis.error_reply('TTORDER write ' .. w .. ' of writer ' .. ARGV[1] .. ' before its write ' .. (last + 1))\n",
    "  end\n",
    "end\n",
    "local applied = 0\n",
    "for i = 3, #ARGV, 3 do\n",
    "  local key = '",
    redis_names!(prefix),
    "' .. ARGV[i]\n",
    "  local seq = tonumber(ARGV[i + 1])\n",
    "  local current = tonumber(redis.call('HGET', key, 'seq') or '0')\n",
    "  if seq > current then\n",
    "    redis.call('HSET', key, 'seq', ARGV[i + 1], 'json', ARGV[i + 2])\n",
    "    redis.call('SADD', '",
    redis_names!(prefix),
    "keys', key)\n",
    "    redis.call('PUBLISH', '",
    redis_names!(channel),
    "', ARGV[i + 2])\n",
    "    applied = applied + 1\n",
    "  end\n",
    "end\n",
    "if w > last then\n",
    "  redis.call('SET', writer, ARGV[2], 'EX', ",
    redis_names!(writer_ttl),
    ")\n",
    "end\n",
    "return applied\n",
);

/// Who numbers the cache's writes, so that Redis applies them in the order they were taken
/// although several are on the wire at once. The consumer starts a new run when it offers a
/// failed write again (with every write after it): the run's first write makes a new writer,
/// whose numbers start at 1 again. Until then, every write of the old writer after the one that
/// failed is refused by the script, so none of them can overtake it.
#[derive(Debug)]
struct Writer {
    id: String,
    run: u64,
    next: u64,
}

impl Writer {
    fn fresh(run: u64) -> Self {
        use std::hash::BuildHasher as _;
        // Random per call (the OS seeds each `RandomState`), so that two cache processes, or
        // two lives of one, never share an id.
        let id = std::hash::RandomState::new().hash_one(crate::health::now_micros());
        Self { id: format!("{id:016x}"), run, next: 1 }
    }

    /// The writer and the number of the first script call of `updates`, taken in `run`; the
    /// batch's further calls take the numbers after it.
    fn reserve(&mut self, run: u64, updates: usize) -> (String, u64) {
        if run != self.run {
            *self = Self::fresh(run);
        }
        let first = self.next;
        self.next += updates.div_ceil(UPDATES_PER_CALL) as u64;
        (self.id.clone(), first)
    }
}

/// Writes the updates (stamped as cached at `cached`) and publishes the ones that are newer.
/// `order`: the writer and the number of the first call, or `None` for a write that is not
/// ordered against others (a rebuild of the whole state).
///
/// A numbered write's calls go out together as one pipeline, with the script's text (`EVAL`,
/// not `EVALSHA`): a script missing from a restarted Redis would otherwise be loaded and the
/// call sent again after calls sent later, which the writer's numbers would refuse. A rebuild,
/// which may hold every key there is, goes one call at a time.
async fn apply(
    conn: &mut ConnectionManager,
    order: Option<(&str, u64)>,
    updates: &[Published],
    cached: Micros,
) -> redis::RedisResult<i64> {
    let call = |number: u64, chunk: &[Published], pipe: &mut redis::Pipeline| {
        let eval = pipe.cmd("EVAL").arg(APPLY_LUA).arg(0);
        match order {
            Some((writer, _)) => eval.arg(writer).arg(number),
            None => eval.arg("-").arg(0),
        };
        for update in chunk {
            eval.arg(&update.key).arg(update.seq()).arg(update.to_json_cached_at(cached));
        }
    };
    let chunks = updates.chunks(UPDATES_PER_CALL);
    let mut applied = 0;
    match order {
        Some((_, first)) => {
            let mut calls = redis::pipe();
            for (n, chunk) in chunks.enumerate() {
                call(first + n as u64, chunk, &mut calls);
            }
            if !calls.is_empty() {
                let counts: Vec<i64> = calls.query_async(conn).await?;
                applied = counts.iter().sum();
            }
        }
        None => {
            for chunk in chunks {
                let mut one = redis::pipe();
                call(0, chunk, &mut one);
                let counts: Vec<i64> = one.query_async(conn).await?;
                applied += counts.iter().sum::<i64>();
            }
        }
    }
    Ok(applied)
}

/// Reads Redis' `used_memory` into the metrics.
async fn record_memory(conn: &mut ConnectionManager, metrics: &Metrics) {
    let info: redis::RedisResult<String> = redis::cmd("INFO").arg("memory").query_async(conn).await;
    if let Ok(info) = info
        && let Some(bytes) =
            info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok())
    {
        metrics.redis_used_memory_bytes.set(bytes);
    }
}

pub struct RedisCacheActor {
    client: redis::Client,
    conn: Option<ConnectionManager>,
    catalog: Arc<InstrumentCatalog>,
    db_load: Recipient<LoadSnapshot>,
    rebuilding: bool,
    /// Numbers the writes, which may be several on the wire at once.
    writer: Writer,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
}

impl RedisCacheActor {
    pub fn new(
        client: redis::Client,
        catalog: Arc<InstrumentCatalog>,
        db_load: Recipient<LoadSnapshot>,
        metrics: Arc<Metrics>,
        health: Arc<ActorHealth>,
    ) -> Self {
        Self { client, conn: None, catalog, db_load, rebuilding: false, writer: Writer::fresh(0), metrics, health }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let client = self.client.clone();
        let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(WRITE_TIMEOUT));
        async move { ConnectionManager::new_with_config(client, config).await }
            .into_actor(self)
            .map(|result, act, ctx| match result {
                Ok(conn) => {
                    tracing::info!("connected to Redis");
                    act.conn = Some(conn);
                    act.health.set_running();
                    act.health.set_detail(Some("connected".into()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach Redis; retrying in 1 s");
                    act.health.set_detail(Some(format!("cannot reach Redis: {e}")));
                    act.metrics.redis_errors.inc();
                    ctx.run_later(Duration::from_secs(1), |act, ctx| act.connect(ctx));
                }
            })
            .wait(ctx);
    }

    /// Rebuilds Redis from the database when its marker is gone (Redis restarted empty).
    fn check_epoch(&mut self, ctx: &mut Context<Self>) {
        let Some(mut conn) = self.conn.clone() else { return };
        if self.rebuilding {
            return;
        }
        self.rebuilding = true;
        let (db_load, catalog, metrics) = (self.db_load.clone(), self.catalog.clone(), self.metrics.clone());
        let check = async move {
            record_memory(&mut conn, &metrics).await;
            let present: bool = redis::cmd("EXISTS").arg(EPOCH_KEY).query_async(&mut conn).await?;
            if present {
                return Ok(None);
            }
            let snapshot = db_load.send(LoadSnapshot).await??;
            let state = Engine::restore(catalog, snapshot).current_state();
            // Restored state took no hop just now: no cached time.
            let applied = apply(&mut conn, None, &state, 0).await?;
            let _: () =
                redis::cmd("SET").arg(EPOCH_KEY).arg(crate::health::now_micros()).query_async(&mut conn).await?;
            let _: () = redis::cmd("PUBLISH").arg(UPDATES_CHANNEL).arg(RESYNC).query_async(&mut conn).await?;
            Ok::<_, StateError>(Some((state.len(), applied)))
        };
        check
            .into_actor(self)
            .map(|result, act, _| {
                act.rebuilding = false;
                match result {
                    Ok(Some((keys, applied))) => {
                        tracing::warn!(keys, applied, "Redis had no state: rebuilt it from the database");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        act.metrics.redis_errors.inc();
                        tracing::warn!(error = %e, "Redis state check failed");
                    }
                }
            })
            .spawn(ctx);
    }
}

impl Actor for RedisCacheActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        self.connect(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.check_epoch(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.health.set_stopped();
    }
}

crate::supervised!(
    RedisCacheActor,
    reset = |act| {
        act.conn = None;
        act.rebuilding = false;
        // The writer is kept: a write the old life lost makes every later one of the same run
        // refused, until the consumer offers them again under its next run.
    }
);

impl Handler<StoreUpdates> for RedisCacheActor {
    type Result = Result<Durable, HopError>;

    /// Takes the batch and sends its write at once, without waiting for earlier writes: the
    /// consumer bounds how many are out (`TTPULSE_PIPELINE_DEPTH`) and offers a failed one
    /// again with every one after it; the writer's numbers keep Redis applying them in order.
    fn handle(&mut self, batch: StoreUpdates, ctx: &mut Context<Self>) -> Self::Result {
        let Some(mut conn) = self.conn.clone() else {
            return Err(HopError::Unavailable("not connected to Redis".into()));
        };
        let count = batch.updates.len() as u64;
        let cached = crate::health::now_micros();
        self.metrics.observe_cached(batch.updates.iter(), cached);
        // Sampled updates carry this cache's span on (into Redis and the API nodes).
        let updates: Arc<[Published]> = if batch.updates.iter().any(|u| u.trace.is_some() && u.hops.cached == 0) {
            let mut traced = batch.updates.to_vec();
            traced.iter_mut().for_each(|update| super::trace_cached(update, cached));
            traced.into()
        } else {
            batch.updates
        };
        let (writer, first) = self.writer.reserve(batch.run, updates.len());
        let (stored, durable) = Durable::pending();
        let write = async move { apply(&mut conn, Some((&writer, first)), &updates, cached).await };
        let settle = write.into_actor(self).map(move |result, act, _| {
            let outcome = match result {
                Ok(_) => {
                    act.health.handled_n(count);
                    act.health.set_detail(Some("connected".into()));
                    Ok(())
                }
                Err(e) => {
                    act.metrics.redis_errors.inc();
                    // (Inside a pipeline's error, which names no code of its own.)
                    if e.to_string().contains(OUT_OF_ORDER) {
                        tracing::debug!(error = %e, "a Redis write refused behind one that failed");
                    } else {
                        act.health.set_detail(Some(format!("Redis write failed: {e}")));
                    }
                    Err(HopError::Unavailable(format!("Redis write failed: {e}")))
                }
            };
            // The consumer may have stopped waiting (it offers the batch again meanwhile).
            let _ = stored.send(outcome);
        });
        ctx.spawn(settle);
        Ok(durable)
    }
}

/// What can go wrong rebuilding or reloading the state kept in Redis: the cause itself, worded
/// as it always was in the log and in `/admin/health` (`cannot load the state from Redis: <it>`).
#[derive(Debug, thiserror::Error)]
enum StateError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Hop(#[from] HopError),
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
}

/// Loads every key from Redis and hands it to the local cache.
async fn load_all(
    conn: &mut redis::aio::MultiplexedConnection,
    cache: &Recipient<UpdateBatch>,
) -> Result<usize, StateError> {
    let keys: Vec<String> = redis::cmd("SMEMBERS").arg(KEYS_SET).query_async(conn).await?;
    let mut loaded = 0;
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("HGET").arg(key).arg("json");
        }
        let values: Vec<Option<Vec<u8>>> = pipe.query_async(conn).await?;
        let updates: Vec<Published> = values.iter().flatten().filter_map(|v| Published::from_json(v).ok()).collect();
        loaded += updates.len();
        if !updates.is_empty() {
            cache.send(UpdateBatch { updates: updates.into() }).await??;
        }
    }
    Ok(loaded)
}

pub struct RedisFeedActor {
    client: redis::Client,
    cache: Recipient<UpdateBatch>,
    hub: Recipient<Resnapshot>,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
}

impl RedisFeedActor {
    pub fn new(
        client: redis::Client,
        cache: Recipient<UpdateBatch>,
        hub: Recipient<Resnapshot>,
        metrics: Arc<Metrics>,
        health: Arc<ActorHealth>,
    ) -> Self {
        Self { client, cache, hub, metrics, health }
    }
}

/// One subscription: subscribe, load everything, then stream changes until the connection ends.
async fn follow(
    client: redis::Client,
    cache: Recipient<UpdateBatch>,
    hub: Recipient<Resnapshot>,
    health: Arc<ActorHealth>,
) -> String {
    let mut pubsub = match client.get_async_pubsub().await {
        Ok(p) => p,
        Err(e) => return format!("cannot reach Redis: {e}"),
    };
    if let Err(e) = pubsub.subscribe(UPDATES_CHANNEL).await {
        return format!("cannot subscribe to {UPDATES_CHANNEL}: {e}");
    }
    let mut conn = match client.get_multiplexed_async_connection().await {
        Ok(c) => c,
        Err(e) => return format!("cannot reach Redis: {e}"),
    };
    // Subscribed first, loaded second: nothing published in between is missed.
    match load_all(&mut conn, &cache).await {
        Ok(keys) => tracing::info!(keys, "loaded the state from Redis"),
        Err(e) => return format!("cannot load the state from Redis: {e}"),
    }
    hub.do_send(Resnapshot);
    health.set_running();
    health.set_detail(Some("subscribed".into()));
    let mut messages = pubsub.into_on_message().ready_chunks(512);
    while let Some(chunk) = messages.next().await {
        let mut updates = Vec::with_capacity(chunk.len());
        let mut resync = false;
        for message in &chunk {
            let payload = message.get_payload_bytes();
            if payload == RESYNC.as_bytes() {
                resync = true;
            } else {
                match Published::from_json(payload) {
                    Ok(update) => updates.push(update),
                    Err(e) => tracing::warn!(error = %e, "unreadable message on tt_updates; skipped"),
                }
            }
        }
        health.handled_n(chunk.len() as u64);
        if !updates.is_empty() {
            match cache.send(UpdateBatch { updates: updates.into() }).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return format!("the local cache refused updates: {e}"),
                Err(e) => return format!("the local cache is unavailable: {e}"),
            }
        }
        if resync {
            if let Err(e) = load_all(&mut conn, &cache).await {
                return format!("cannot reload the state from Redis: {e}");
            }
            tracing::info!("Redis was rebuilt: state reloaded, sessions get fresh snapshots");
            hub.do_send(Resnapshot);
        }
    }
    "the Redis subscription ended".to_owned()
}

impl Actor for RedisFeedActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (client, cache, hub, metrics, health) =
            (self.client.clone(), self.cache.clone(), self.hub.clone(), self.metrics.clone(), self.health.clone());
        let run = async move {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
            loop {
                let followed = std::time::Instant::now();
                let reason = follow(client.clone(), cache.clone(), hub.clone(), health.clone()).await;
                tracing::warn!(reason, "Redis feed interrupted; reconnecting");
                health.set_detail(Some(format!("reconnecting: {reason}")));
                metrics.redis_reconnects.inc();
                // A subscription that held a while was a success: start over from the first delay.
                if followed.elapsed() > Duration::from_secs(10) {
                    backoff.reset();
                }
                actix_rt::time::sleep(backoff.next_delay()).await;
            }
        };
        ctx.spawn(run.into_actor(self));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.health.set_stopped();
    }
}

crate::supervised!(RedisFeedActor);

#[cfg(test)]
mod state_error_tests {
    use super::*;

    /// A state error reads as its cause alone, as the `String` errors it replaced did.
    #[test]
    fn a_state_error_reads_as_its_cause() {
        let redis_error = || redis::RedisError::from((redis::ErrorKind::Io, "connection refused"));
        assert_eq!(StateError::from(redis_error()).to_string(), redis_error().to_string());
        let hop = || HopError::Unavailable("not connected to Redis".into());
        assert_eq!(StateError::from(hop()).to_string(), hop().to_string());
        assert_eq!(StateError::from(MailboxError::Closed).to_string(), MailboxError::Closed.to_string());
        let store = || crate::store::StoreError::from(MailboxError::Timeout);
        assert_eq!(StateError::from(store()).to_string(), store().to_string());
    }
}
