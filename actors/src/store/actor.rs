//! `DbActor`: blocking diesel work on a `SyncArbiter`. The writer pool has one thread (writes
//! stay in order); a reader pool serves queries beside it.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::{DbPool, StoreError, StoredFill, StoredTrade};
use crate::domain::{Candle, EngineSnapshot, InstrumentCatalog, PnlPoint};
use crate::health::ActorHealth;
use crate::messages::{
    LoadSnapshot, Prune, Pruned, QueryCandles, QueryFills, QueryPnl, QueryTrades, SamplePnl, SyncInstruments,
    WriteChanges,
};
use crate::metrics::Metrics;
use crate::with_conn;

pub struct DbActor {
    pool: DbPool,
    catalog: Arc<InstrumentCatalog>,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
}

impl DbActor {
    /// Starts `threads` DbActors sharing one pool; returns the address that fronts them.
    pub fn start(
        threads: usize,
        pool: DbPool,
        catalog: Arc<InstrumentCatalog>,
        metrics: Arc<Metrics>,
        health: Arc<ActorHealth>,
    ) -> Addr<DbActor> {
        SyncArbiter::start(threads.max(1), move || DbActor {
            pool: pool.clone(),
            catalog: catalog.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
        })
    }
}

impl Actor for DbActor {
    type Context = SyncContext<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        self.health.set_running();
    }
}

impl Handler<WriteChanges> for DbActor {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, msg: WriteChanges, _: &mut Self::Context) -> Self::Result {
        let _span = tracing::debug_span!("db_write", rows = msg.changes.rows()).entered();
        let started = Instant::now();
        let mut conn = self.pool.get()?;
        let result = with_conn!(&mut conn, queries::write_changes(&msg.changes));
        self.metrics.db_write_seconds.observe(started.elapsed().as_secs_f64());
        self.health.handled();
        match &result {
            Ok(rows) => self.metrics.db_rows_written.inc_by(*rows as u64),
            Err(e) => {
                self.metrics.db_write_errors.inc();
                tracing::error!(error = %e, "database write failed");
            }
        }
        result
    }
}

impl Handler<LoadSnapshot> for DbActor {
    type Result = Result<EngineSnapshot, StoreError>;

    fn handle(&mut self, _: LoadSnapshot, _: &mut Self::Context) -> Self::Result {
        self.health.handled();
        let mut conn = self.pool.get()?;
        with_conn!(&mut conn, queries::load_snapshot(&self.catalog))
    }
}

impl Handler<QueryCandles> for DbActor {
    type Result = Result<Vec<Candle>, StoreError>;

    fn handle(&mut self, msg: QueryCandles, _: &mut Self::Context) -> Self::Result {
        self.health.handled();
        let mut conn = self.pool.get()?;
        with_conn!(&mut conn, queries::recent_candles(&msg.symbol, msg.interval, msg.since, msg.limit))
    }
}

impl Handler<Prune> for DbActor {
    type Result = Result<Pruned, StoreError>;

    fn handle(&mut self, msg: Prune, _: &mut Self::Context) -> Self::Result {
        let _span = tracing::debug_span!("db_prune").entered();
        let mut conn = self.pool.get()?;
        let pruned = with_conn!(&mut conn, queries::prune(&msg))?;
        let tables = [
            ("trades", pruned.trades),
            ("candles_1s", pruned.candles_1s),
            ("candles_1m", pruned.candles_1m),
            ("pnl_1s", pruned.pnl_1s),
        ];
        for (table, rows) in tables {
            if rows > 0 {
                self.metrics.db_rows_pruned.with_label_values(&[table]).inc_by(rows as u64);
                tracing::info!(table, rows, "rows past their retention deleted");
            }
        }
        Ok(pruned)
    }
}

impl Handler<SamplePnl> for DbActor {
    type Result = Result<Vec<PnlPoint>, StoreError>;

    fn handle(&mut self, msg: SamplePnl, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.pool.get()?;
        with_conn!(&mut conn, queries::sample_pnl(&self.catalog, msg.now))
    }
}

impl Handler<QueryPnl> for DbActor {
    type Result = Result<Vec<PnlPoint>, StoreError>;

    fn handle(&mut self, msg: QueryPnl, _: &mut Self::Context) -> Self::Result {
        self.health.handled();
        let mut conn = self.pool.get()?;
        with_conn!(&mut conn, queries::pnl_history(&msg))
    }
}

impl Handler<QueryFills> for DbActor {
    type Result = Result<Vec<StoredFill>, StoreError>;

    fn handle(&mut self, msg: QueryFills, _: &mut Self::Context) -> Self::Result {
        self.health.handled();
        let mut conn = self.pool.get()?;
        with_conn!(&mut conn, queries::fills_page(&msg))
    }
}

impl Handler<QueryTrades> for DbActor {
    type Result = Result<Vec<StoredTrade>, StoreError>;

    fn handle(&mut self, msg: QueryTrades, _: &mut Self::Context) -> Self::Result {
        self.health.handled();
        let mut conn = self.pool.get()?;
        with_conn!(&mut conn, queries::recent_trades(&msg))
    }
}

impl Handler<SyncInstruments> for DbActor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: SyncInstruments, _: &mut Self::Context) -> Self::Result {
        self.health.handled();
        let mut conn = self.pool.get()?;
        with_conn!(&mut conn, queries::sync_instruments(&msg.specs))
    }
}
