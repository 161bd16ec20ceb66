//! Wiring: starts the actors a process runs and connects each hop to its carrier.
//!
//! | hop | embedded (no TTPULSE_KAFKA_BROKERS) | distributed |
//! |---|---|---|
//! | 1 raw events | ingester -> processor (actor message) | KafkaProducerActor -> `tt_raw_data` -> KafkaConsumerActor -> processor |
//! | 2 processed | processor -> cache (actor message) | KafkaProducerActor -> `tt_processed_data` -> KafkaConsumerActor -> RedisCacheActor |
//! | 3 notify | cache -> hub (actor message) | Redis `tt_updates` -> RedisFeedActor -> local cache -> hub |
//!
//! The actors do not know which carrier they have: each hop is a `Recipient`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use ttpulse_actors::backoff::Backoff;
use ttpulse_actors::cache::redis::{RedisCacheActor, RedisFeedActor};
use ttpulse_actors::cache::{CacheActor, StateStore};
use ttpulse_actors::domain::InstrumentCatalog;
use ttpulse_actors::handles::{DbReader, Intake, Restarts};
use ttpulse_actors::health::{HealthRegistry, names};
use ttpulse_actors::ingest::IngesterActor;
use ttpulse_actors::kafka::{self, Feed, KafkaConsumerActor, KafkaProducerActor, KafkaSettings};
use ttpulse_actors::messages::{
    CloseAll, Flush, Prune, Pruned, QueryFills, RawBatch, SamplePnl, SyncInstruments, UpdateBatch,
};
use ttpulse_actors::metrics::Metrics;
use ttpulse_actors::processor::{ProcessorActor, ProcessorConfig};
use ttpulse_actors::session::{Hub, MaxRates, OutboxLimits, SessionConfig};
use ttpulse_actors::store::{DbActor, DbPool, redact_url};

use crate::config::{Config, Role, Validated};

/// Handles on a running process's actors, shared by the HTTP routes. What a role does not run
/// is `None`, and its routes are not mounted.
#[derive(Clone)]
pub struct Pipeline {
    pub catalog: Arc<InstrumentCatalog>,
    /// The latest state this process serves (api role).
    pub store: StateStore,
    pub hub: Option<Addr<Hub>>,
    pub intake: Option<Intake>,
    pub db_reader: Option<DbReader>,
    pub db_pool: Option<DbPool>,
    /// Where a graceful shutdown asks the processor to store what it holds.
    pub flush: Option<Recipient<Flush>>,
    pub health: Arc<HealthRegistry>,
    pub metrics: Arc<Metrics>,
    /// Actors the admin endpoint may restart, by name.
    pub restartable: Restarts,
    pub session: SessionConfig,
    pub roles: Vec<Role>,
    pub distributed: bool,
}

/// Makes sure the data folder exists and can be written, with an error that says which.
pub fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    let dir = &config.storage.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data folder {}", dir.display()))?;
    let probe = dir.join(".ttpulse-write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!("the data folder {} is not writable (set TTPULSE_DATA_DIR to a writable folder)", dir.display())
    })?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// Opens the configured database (PostgreSQL when TTPULSE_DATABASE_URL is set, else the SQLite
/// file) and runs the migrations.
pub fn open_database(config: &Config) -> anyhow::Result<DbPool> {
    match &config.carriers.database_url {
        Some(url) => Ok(DbPool::open(url, 8)?),
        None => {
            prepare_data_dir(config)?;
            Ok(DbPool::open_sqlite(&config.database_path(), 4)?)
        }
    }
}

/// Opens the database, retrying while it is unreachable (a service starting beside us).
async fn open_database_retrying(config: &Config) -> anyhow::Result<DbPool> {
    if config.carriers.database_url.is_none() {
        return open_database(config);
    }
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        let attempt = config.clone();
        match actix_rt::task::spawn_blocking(move || open_database(&attempt)).await? {
            Ok(pool) => return Ok(pool),
            Err(e) => {
                let shown = config.carriers.database_url.as_deref().map(redact_url).unwrap_or_default();
                tracing::error!(database = shown, error = %format!("{e:#}"), retry_in = ?backoff.peek(), "cannot open the database");
                actix_rt::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Every `TTPULSE_PRUNE_INTERVAL_SECS`, deletes what is past its retention (through the
/// database writer, so the deletes take turns with the processor's writes).
fn prune_in_background(config: &Config, writer: Recipient<Prune>) {
    let hours =
        |h: u64| (h > 0).then(|| i64::try_from(h).unwrap_or(i64::MAX / 3_600_000_000).saturating_mul(3_600_000_000));
    let (trades, candles_1s, candles_1m, pnl_1s) = (
        hours(config.storage.retain_trades_hours),
        hours(config.storage.retain_candles_1s_hours),
        hours(config.storage.retain_candles_1m_hours),
        hours(config.storage.retain_pnl_1s_hours),
    );
    if trades.is_none() && candles_1s.is_none() && candles_1m.is_none() && pnl_1s.is_none() {
        return;
    }
    let interval = Duration::from_secs(config.storage.prune_interval_secs);
    actix_rt::spawn(async move {
        loop {
            actix_rt::time::sleep(interval).await;
            // One short slice per table per message: the processor's writes queue up between
            // them. A backlog (retention just turned on) is worked off slice after slice.
            for _ in 0..10_000 {
                let prune = Prune { now: ttpulse_actors::health::now_micros(), trades, candles_1s, candles_1m, pnl_1s };
                match writer.send(prune).await {
                    Ok(Ok(pruned)) if pruned == Pruned::default() => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "pruning old rows failed; trying again next time");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the database writer is unavailable for pruning");
                        break;
                    }
                }
            }
        }
    });
}

/// Every second, samples each account's P&L from the stored positions (through the database
/// writer, after the writes before it), stores it, and publishes it downstream as `pnl` updates.
/// With several processors each samples: the same second gives the same seq, which the cache
/// keeps once.
fn sample_pnl_in_background(writer: Recipient<SamplePnl>, downstream: Recipient<UpdateBatch>) {
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let points = match writer.send(SamplePnl { now: ttpulse_actors::health::now_micros() }).await {
                Ok(Ok(points)) => points,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "sampling P&L failed; trying again in a second");
                    continue;
                }
                Err(_) => return,
            };
            if points.is_empty() {
                continue;
            }
            let updates: Vec<_> = points
                .into_iter()
                .map(|p| ttpulse_actors::domain::Published::new(ttpulse_actors::domain::Update::Pnl(p), 0))
                .collect();
            if let Err(e) = downstream.send(UpdateBatch { updates: updates.into() }).await {
                tracing::warn!(error = %e, "the next hop did not take the P&L samples");
            }
        }
    });
}

fn session_config(config: &Config, fills: Option<Recipient<QueryFills>>) -> SessionConfig {
    SessionConfig {
        outbox: OutboxLimits {
            account_capacity: config.sessions.ws_account_queue as usize,
            market_capacity: config.sessions.ws_market_queue as usize,
            conflate_after: Duration::from_millis(config.sessions.ws_conflate_after_ms),
            max_behind: Duration::from_secs(config.sessions.ws_max_behind_secs),
        },
        message_rate: config.sessions.ws_message_rate,
        max_list: config.sessions.ws_max_subscriptions,
        max_rates: MaxRates { default: config.sessions.ws_default_rate, cap: config.sessions.ws_max_rate },
        fills,
        max_recover: config.sessions.ws_max_recover,
    }
}

fn processor_config(config: &Config) -> ProcessorConfig {
    ProcessorConfig {
        flush_interval: config.flush_interval(),
        flush_rows: config.storage.db_flush_rows as usize,
        publish_prints: config.intake.publish_prints,
        pipeline_depth: config.storage.pipeline_depth as usize,
    }
}

/// Starts what the configuration asks for. Must run inside an actix `System`.
pub async fn start(config: &Validated) -> anyhow::Result<Pipeline> {
    match &config.carriers.kafka_brokers {
        None => start_embedded(config).await,
        Some(brokers) => start_distributed(config, brokers).await,
    }
}

struct Parts {
    catalog: Arc<InstrumentCatalog>,
    health: Arc<HealthRegistry>,
    metrics: Arc<Metrics>,
    store: StateStore,
}

impl Parts {
    fn new(config: &Config) -> Self {
        Self {
            catalog: Arc::new(config.catalog()),
            health: HealthRegistry::new(),
            metrics: Arc::new(Metrics::new()),
            store: StateStore::new(),
        }
    }

    /// The writer (one thread, so transactions commit in order) and the readers (the API).
    async fn databases(&self, pool: &DbPool) -> anyhow::Result<(Addr<DbActor>, Addr<DbActor>)> {
        let (catalog, metrics) = (self.catalog.clone(), self.metrics.clone());
        let writer = DbActor::start(
            1,
            pool.clone(),
            catalog.clone(),
            metrics.clone(),
            self.health.register(names::DB_WRITER, "DbActor"),
        );
        let reader = DbActor::start(
            2,
            pool.clone(),
            catalog.clone(),
            metrics,
            self.health.register(names::DB_READER, "DbActor"),
        );
        writer
            .send(SyncInstruments { specs: catalog.iter().cloned().collect() })
            .await
            .context("database writer did not start")??;
        Ok((writer, reader))
    }

    fn hub(&self, max_subscriptions: usize) -> Addr<Hub> {
        let (store, catalog, metrics, h) =
            (self.store.clone(), self.catalog.clone(), self.metrics.clone(), self.health.register(names::HUB, "Hub"));
        watched(
            Supervisor::start(move |_| Hub::new(store, catalog, metrics, h, max_subscriptions)),
            &self.health,
            names::HUB,
        )
    }

    fn local_cache(&self, notifier: Recipient<UpdateBatch>) -> Addr<CacheActor> {
        let (store, metrics, h) =
            (self.store.clone(), self.metrics.clone(), self.health.register(names::CACHE, "CacheActor"));
        watched(Supervisor::start(move |_| CacheActor::new(store, notifier, metrics, h)), &self.health, names::CACHE)
    }

    fn processor(
        &self,
        config: &Config,
        downstream: Recipient<UpdateBatch>,
        writer: &Addr<DbActor>,
    ) -> Addr<ProcessorActor> {
        let processor_config = processor_config(config);
        let (catalog, write, load, metrics, h) = (
            self.catalog.clone(),
            writer.clone().recipient(),
            writer.clone().recipient(),
            self.metrics.clone(),
            self.health.register(names::PROCESSOR, "ProcessorActor"),
        );
        watched(
            Supervisor::start(move |_| {
                ProcessorActor::new(catalog, downstream, write, load, processor_config, metrics, h)
            }),
            &self.health,
            names::PROCESSOR,
        )
    }

    fn ingester(&self, config: &Validated, hop: Recipient<RawBatch>) -> Addr<IngesterActor> {
        let source = config.source.clone();
        let (catalog, metrics, h) =
            (self.catalog.clone(), self.metrics.clone(), self.health.register(names::INGESTER, "IngesterActor"));
        let window = config.time_window();
        watched(
            Supervisor::start(move |_| IngesterActor::new(source, catalog, hop, window, metrics, h)),
            &self.health,
            names::INGESTER,
        )
    }
}

/// Lets the health report of `name` see whether its actor's task still runs: an actor whose
/// task ended without its supervisor restarting it shows as `dead`.
fn watched<A: Actor>(addr: Addr<A>, health: &HealthRegistry, name: &str) -> Addr<A> {
    if let Some(record) = health.get(name) {
        let probe = addr.clone();
        record.watch(move || probe.connected());
    }
    addr
}

/// Every role in one process, every hop an actor message, SQLite (or TTPULSE_DATABASE_URL).
async fn start_embedded(config: &Validated) -> anyhow::Result<Pipeline> {
    let parts = Parts::new(config);
    let pool = open_database(config)?;
    tracing::info!(database = pool.backend(), "database ready");
    let (writer, reader) = parts.databases(&pool).await?;
    let hub = parts.hub(config.sessions.ws_max_subscriptions);
    let cache = parts.local_cache(hub.clone().recipient());
    let processor = parts.processor(config, cache.clone().recipient(), &writer);
    prune_in_background(config, writer.clone().recipient());
    sample_pnl_in_background(writer.clone().recipient(), cache.clone().recipient());
    let ingester = parts.ingester(config, processor.clone().recipient());
    let restartable = Restarts::from([
        (names::INGESTER, ingester.clone().recipient()),
        (names::PROCESSOR, processor.clone().recipient()),
        (names::CACHE, cache.clone().recipient()),
        (names::HUB, hub.clone().recipient()),
    ]);
    Ok(Pipeline {
        catalog: parts.catalog,
        store: parts.store,
        hub: Some(hub),
        intake: Some(Intake::new(ingester)),
        session: session_config(config, Some(reader.clone().recipient())),
        db_reader: Some(DbReader::new(reader)),
        db_pool: Some(pool),
        flush: Some(processor.clone().recipient()),
        health: parts.health,
        metrics: parts.metrics,
        restartable,
        roles: Role::ALL.to_vec(),
        distributed: false,
    })
}

/// Creates the topics, retrying until the broker answers (in the background: the process and
/// its admin endpoints are up meanwhile, and the Kafka actors retry on their own).
fn ensure_topics_in_background(settings: KafkaSettings) {
    actix_rt::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        loop {
            match kafka::ensure_topics(&settings).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(brokers = settings.brokers, error = %e, retry_in = ?backoff.peek(), "cannot create the Kafka topics");
                    actix_rt::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    });
}

/// The roles this process runs, with Kafka, Redis and the database as carriers.
async fn start_distributed(config: &Validated, brokers: &str) -> anyhow::Result<Pipeline> {
    let parts = Parts::new(config);
    let extra = config.kafka_passthrough.clone();
    tracing::info!(brokers, settings = ?kafka::redacted(&extra), roles = ?config.roles, "distributed mode");
    let settings = KafkaSettings {
        brokers: brokers.to_owned(),
        extra,
        partitions: config.carriers.kafka_partitions,
        replication: config.carriers.kafka_replication,
        group: config.carriers.kafka_group.clone(),
    };
    ensure_topics_in_background(settings.clone());
    let redis = match &config.carriers.redis_url {
        Some(url) => Some(
            ttpulse_actors::cache::redis::client(url, config.carriers.redis_ca_file.as_deref())
                .context("TTPULSE_REDIS_URL")?,
        ),
        None => None,
    };

    let needs_db = config.has(Role::Processor) || config.has(Role::Cache) || config.has(Role::Api);
    let (pool, writer, reader) = if needs_db {
        let pool = open_database_retrying(config).await?;
        tracing::info!(database = pool.backend(), "database ready");
        let (writer, reader) = parts.databases(&pool).await?;
        (Some(pool), Some(writer), Some(reader))
    } else {
        (None, None, None)
    };

    let mut restartable = Restarts::default();
    let producer = |topic: &'static str, name: &str| {
        let (settings, metrics, h) =
            (settings.clone(), parts.metrics.clone(), parts.health.register(name, "KafkaProducerActor"));
        Supervisor::start(move |_| KafkaProducerActor::new(settings, topic, metrics, h))
    };
    let pipeline_depth = config.storage.pipeline_depth as usize;
    let consumer = |topic: &'static str, group_suffix: &'static str, feed: Feed, name: &str| {
        let (settings, metrics, health) =
            (settings.clone(), parts.metrics.clone(), parts.health.register(name, "KafkaConsumerActor"));
        Supervisor::start(move |_| KafkaConsumerActor {
            settings,
            topic,
            group_suffix,
            feed,
            pipeline_depth,
            metrics,
            health,
        })
    };

    let mut intake = None;
    let mut flush = None;
    if config.has(Role::Ingester) {
        let raw_out = producer(kafka::RAW_TOPIC, names::KAFKA_PRODUCER_RAW);
        let actor = parts.ingester(config, raw_out.clone().recipient());
        restartable.insert(names::INGESTER, actor.clone().recipient());
        restartable.insert(names::KAFKA_PRODUCER_RAW, raw_out.recipient());
        intake = Some(Intake::new(actor));
    }
    if config.has(Role::Processor)
        && let Some(writer) = &writer
    {
        let processed_out = producer(kafka::PROCESSED_TOPIC, names::KAFKA_PRODUCER_PROCESSED);
        let processor = parts.processor(config, processed_out.clone().recipient(), writer);
        prune_in_background(config, writer.clone().recipient());
        sample_pnl_in_background(writer.clone().recipient(), processed_out.clone().recipient());
        flush = Some(processor.clone().recipient());
        let feed = Feed::Raw {
            target: processor.clone().recipient(),
            reload: processor.clone().recipient(),
            catalog: parts.catalog.clone(),
        };
        let raw_in = consumer(kafka::RAW_TOPIC, "processor", feed, names::KAFKA_CONSUMER_RAW);
        restartable.insert(names::PROCESSOR, processor.recipient());
        restartable.insert(names::KAFKA_PRODUCER_PROCESSED, processed_out.recipient());
        restartable.insert(names::KAFKA_CONSUMER_RAW, raw_in.recipient());
    }
    if config.has(Role::Cache)
        && let (Some(client), Some(reader)) = (&redis, &reader)
    {
        let (client, catalog, load, metrics, h) = (
            client.clone(),
            parts.catalog.clone(),
            reader.clone().recipient(),
            parts.metrics.clone(),
            parts.health.register(names::REDIS_CACHE, "RedisCacheActor"),
        );
        let redis_cache = Supervisor::start(move |_| RedisCacheActor::new(client, catalog, load, metrics, h));
        let feed = Feed::Processed { target: redis_cache.clone().recipient() };
        let processed_in = consumer(kafka::PROCESSED_TOPIC, "cache", feed, names::KAFKA_CONSUMER_PROCESSED);
        restartable.insert(names::REDIS_CACHE, redis_cache.recipient());
        restartable.insert(names::KAFKA_CONSUMER_PROCESSED, processed_in.recipient());
    }
    let mut hub = None;
    if config.has(Role::Api)
        && let Some(client) = &redis
    {
        let api_hub = parts.hub(config.sessions.ws_max_subscriptions);
        let cache = parts.local_cache(api_hub.clone().recipient());
        let (client, cache_in, hub_in, metrics, h) = (
            client.clone(),
            cache.clone().recipient(),
            api_hub.clone().recipient(),
            parts.metrics.clone(),
            parts.health.register(names::REDIS_FEED, "RedisFeedActor"),
        );
        let feed = Supervisor::start(move |_| RedisFeedActor::new(client, cache_in, hub_in, metrics, h));
        restartable.insert(names::HUB, api_hub.clone().recipient());
        restartable.insert(names::CACHE, cache.recipient());
        restartable.insert(names::REDIS_FEED, feed.recipient());
        hub = Some(api_hub);
    }
    Ok(Pipeline {
        catalog: parts.catalog,
        store: parts.store,
        hub,
        intake,
        session: session_config(config, reader.clone().map(|r| r.recipient())),
        db_reader: reader.map(DbReader::new),
        db_pool: pool,
        flush,
        health: parts.health,
        metrics: parts.metrics,
        restartable,
        roles: config.roles.clone(),
        distributed: true,
    })
}

impl Pipeline {
    /// Graceful shutdown of the actors: stop intake, store what the processor holds, then close
    /// every WebSocket session with 1001 (going away) after what it has queued. The HTTP server
    /// has stopped accepting before this runs.
    pub async fn shut_down(&self) {
        if let Some(intake) = &self.intake {
            intake.stop().await;
        }
        if let Some(flush) = &self.flush {
            match actix_rt::time::timeout(Duration::from_secs(30), flush.send(Flush)).await {
                Ok(Ok(Ok(()))) => tracing::info!("everything processed is stored"),
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "the final flush failed"),
                Ok(Err(e)) => tracing::error!(error = %e, "the processor is gone"),
                Err(_) => tracing::error!("the final flush did not finish within 30 s"),
            }
        }
        if let Some(hub) = &self.hub {
            let _ = hub.send(CloseAll { code: 1001, reason: "server shutting down".into() }).await;
            // Let sessions write their last frames and the close.
            actix_rt::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
