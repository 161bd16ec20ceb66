//! Wiring: starts the actors and connects each hop to its carrier. In the embedded default
//! every hop is an in-process actor message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use anyhow::{Context as _, bail};
use ttpulse_actors::cache::{CacheActor, StateStore};
use ttpulse_actors::domain::InstrumentCatalog;
use ttpulse_actors::health::HealthRegistry;
use ttpulse_actors::ingest::{IngesterActor, SourceConfig};
use ttpulse_actors::messages::{Restart, SyncInstruments};
use ttpulse_actors::metrics::Metrics;
use ttpulse_actors::processor::{ProcessorActor, ProcessorConfig};
use ttpulse_actors::session::{Hub, OutboxLimits, SessionConfig};
use ttpulse_actors::store::{DbActor, DbPool};

use crate::config::{Config, SourceKind};

/// Handles on a running pipeline, shared by the HTTP routes.
#[derive(Clone)]
pub struct Pipeline {
    pub catalog: Arc<InstrumentCatalog>,
    pub store: StateStore,
    pub hub: Addr<Hub>,
    pub ingester: Addr<IngesterActor>,
    pub db_reader: Addr<DbActor>,
    pub db_pool: DbPool,
    pub health: Arc<HealthRegistry>,
    pub metrics: Arc<Metrics>,
    /// Actors the admin endpoint may restart, by name.
    pub restartable: BTreeMap<&'static str, Recipient<Restart>>,
    pub session: SessionConfig,
}

/// Makes sure the data folder exists and can be written, with an error that says which.
pub fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data folder {}", dir.display()))?;
    let probe = dir.join(".ttpulse-write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!("the data folder {} is not writable (set TTPULSE_DATA_DIR to a writable folder)", dir.display())
    })?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

pub fn open_database(config: &Config) -> anyhow::Result<DbPool> {
    prepare_data_dir(config)?;
    Ok(DbPool::open_sqlite(&config.database_path(), 4)?)
}

fn source_config(config: &Config) -> anyhow::Result<SourceConfig> {
    Ok(match config.source {
        SourceKind::None => SourceConfig::None,
        SourceKind::Simulator if config.sim_rate == 0 => SourceConfig::None,
        SourceKind::Simulator => SourceConfig::Simulator {
            rate: config.sim_rate,
            seed: config.sim_seed.unwrap_or_else(|| {
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
            }),
        },
        SourceKind::Replay => {
            let Some(path) = &config.replay_file else {
                bail!("TTPULSE_SOURCE=replay needs TTPULSE_REPLAY_FILE (the JSON-lines file to replay)");
            };
            if !path.is_file() {
                bail!("the replay file {} does not exist or is not a file", path.display());
            }
            SourceConfig::Replay { path: path.clone(), rate: config.replay_rate }
        }
    })
}

/// Starts every actor of the embedded pipeline. Must run inside an actix `System`.
pub async fn start_embedded(config: &Config) -> anyhow::Result<Pipeline> {
    let source = source_config(config)?;
    let catalog = Arc::new(InstrumentCatalog::default_futures());
    let health = HealthRegistry::new();
    let metrics = Arc::new(Metrics::new());
    let pool = open_database(config)?;
    tracing::info!(path = %config.database_path().display(), "database ready");

    // The writer has one thread so transactions commit in order; readers serve the API.
    let db_writer =
        DbActor::start(1, pool.clone(), catalog.clone(), metrics.clone(), health.register("db-writer", "DbActor"));
    let db_reader =
        DbActor::start(2, pool.clone(), catalog.clone(), metrics.clone(), health.register("db-reader", "DbActor"));
    db_writer
        .send(SyncInstruments { specs: catalog.iter().cloned().collect() })
        .await
        .context("database writer did not start")??;

    let store = StateStore::new();
    let hub = {
        let (store, catalog, metrics, h) =
            (store.clone(), catalog.clone(), metrics.clone(), health.register("hub", "Hub"));
        Supervisor::start(move |_| Hub::new(store, catalog, metrics, h))
    };
    let cache = {
        let (store, notifier, metrics, h) =
            (store.clone(), hub.clone().recipient(), metrics.clone(), health.register("cache", "CacheActor"));
        Supervisor::start(move |_| CacheActor::new(store, notifier, metrics, h))
    };
    let processor = {
        let processor_config =
            ProcessorConfig { flush_interval: config.flush_interval(), flush_rows: config.db_flush_rows as usize };
        let (catalog, downstream, write, load, metrics, h) = (
            catalog.clone(),
            cache.clone().recipient(),
            db_writer.clone().recipient(),
            db_writer.clone().recipient(),
            metrics.clone(),
            health.register("processor", "ProcessorActor"),
        );
        Supervisor::start(move |_| ProcessorActor::new(catalog, downstream, write, load, processor_config, metrics, h))
    };
    let ingester = {
        let (catalog, hop, metrics, h) = (
            catalog.clone(),
            processor.clone().recipient(),
            metrics.clone(),
            health.register("ingester", "IngesterActor"),
        );
        Supervisor::start(move |_| IngesterActor::new(source, catalog, hop, metrics, h))
    };

    let restartable = BTreeMap::from([
        ("ingester", ingester.clone().recipient()),
        ("processor", processor.clone().recipient()),
        ("cache", cache.clone().recipient()),
        ("hub", hub.clone().recipient()),
    ]);
    let session = SessionConfig {
        outbox: OutboxLimits {
            account_capacity: config.ws_account_queue as usize,
            market_capacity: config.ws_market_queue as usize,
            max_behind: Duration::from_secs(config.ws_max_behind_secs),
        },
    };
    Ok(Pipeline { catalog, store, hub, ingester, db_reader, db_pool: pool, health, metrics, restartable, session })
}
