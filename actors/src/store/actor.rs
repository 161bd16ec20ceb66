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

/// The reads (and the catalog sync): one query on a pooled connection per message, counted in
/// the actor's health. `|this, msg|` name the actor and the message in the query's arguments.
macro_rules! query_handlers {
    ($($msg:ty => $out:ty : |$this:ident, $m:ident| $function:ident ( $($arg:expr),* );)*) => {$(
        impl Handler<$msg> for DbActor {
            type Result = Result<$out, StoreError>;

            fn handle(&mut self, $m: $msg, _: &mut Self::Context) -> Self::Result {
                self.health.handled();
                let $this = &*self;
                let mut conn = $this.pool.get()?;
                with_conn!(&mut conn, queries::$function($($arg),*))
            }
        }
    )*};
}

query_handlers! {
    LoadSnapshot => EngineSnapshot: |this, _msg| load_snapshot(&this.catalog);
    QueryCandles => Vec<Candle>: |this, msg| recent_candles(&msg.symbol, msg.interval, msg.since, msg.limit);
    QueryPnl => Vec<PnlPoint>: |this, msg| pnl_history(&msg);
    QueryFills => Vec<StoredFill>: |this, msg| fills_page(&msg);
    QueryTrades => Vec<StoredTrade>: |this, msg| recent_trades(&msg);
    SyncInstruments => (): |this, msg| sync_instruments(&msg.specs);
}
