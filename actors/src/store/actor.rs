//! `DbActor`: blocking diesel work on a `SyncArbiter`. The writer pool has one thread (writes
//! stay in order); a reader pool serves queries beside it.
//!
//! Every handler runs its work through [`DbActor::contained`]: a panic in a query would end the
//! arbiter thread for good (and with it the only writer), so it becomes a `StoreError`, is
//! recorded in the actor's health, and the `SyncArbiter` replaces the actor with a fresh one.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::{DbConn, DbPool, StoreError, StoredFill, StoredTrade};
use crate::domain::{Candle, EngineSnapshot, InstrumentCatalog, PnlPoint};
use crate::health::ActorHealth;
use crate::messages::{
    LoadSnapshot, Prune, Pruned, QueryCandles, QueryFills, QueryPnl, QueryTrades, SamplePnl, SyncInstruments,
    WriteChanges,
};
use crate::metrics::Metrics;
use crate::supervision::contain;
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

impl DbActor {
    /// Runs `work` on a pooled connection with a panic contained: the panic is recorded in the
    /// health (`crashed`, `last_error`), counted as a restart, answered as a `StoreError`, and
    /// the actor is stopped, which its `SyncArbiter` answers with a new one. The connection is
    /// taken inside, so one that a panic left mid-transaction is dropped from the pool.
    fn contained<R>(
        &self,
        ctx: &mut SyncContext<Self>,
        work: impl FnOnce(&mut DbConn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pool = &self.pool;
        contain(&self.health, || work(&mut pool.get()?)).unwrap_or_else(|panic| {
            self.health.restarting();
            self.metrics.actor_restarts.with_label_values(&[self.health.name.as_str()]).inc();
            ctx.stop();
            Err(StoreError::Panicked(panic))
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

    fn handle(&mut self, msg: WriteChanges, ctx: &mut Self::Context) -> Self::Result {
        let _span = tracing::debug_span!("db_write", rows = msg.changes.rows()).entered();
        let started = Instant::now();
        let result = self.contained(ctx, |conn| with_conn!(conn, queries::write_changes(&msg.changes)));
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

    fn handle(&mut self, msg: Prune, ctx: &mut Self::Context) -> Self::Result {
        let _span = tracing::debug_span!("db_prune").entered();
        let pruned = self.contained(ctx, |conn| with_conn!(conn, queries::prune(&msg)))?;
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

    fn handle(&mut self, msg: SamplePnl, ctx: &mut Self::Context) -> Self::Result {
        self.contained(ctx, |conn| with_conn!(conn, queries::sample_pnl(&self.catalog, msg.now)))
    }
}

/// The reads (and the catalog sync): one query on a pooled connection per message, counted in
/// the actor's health. `|this, msg|` name the actor and the message in the query's arguments.
macro_rules! query_handlers {
    ($($msg:ty => $out:ty : |$this:ident, $m:ident| $function:ident ( $($arg:expr),* );)*) => {$(
        impl Handler<$msg> for DbActor {
            type Result = Result<$out, StoreError>;

            fn handle(&mut self, $m: $msg, ctx: &mut Self::Context) -> Self::Result {
                self.health.handled();
                let $this = &*self;
                $this.contained(ctx, |conn| {
                    #[cfg(test)]
                    tests::crash_on_request(&$m);
                    with_conn!(conn, queries::$function($($arg),*))
                })
            }
        }

        impl crate::handles::DbQuery for $msg {
            type Answer = $out;

            fn ask(self, reader: &Addr<DbActor>) -> impl std::future::Future<Output = Result<$out, StoreError>> {
                let request = reader.send(self);
                async move { request.await.map_err(StoreError::from).and_then(|answer| answer) }
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

#[cfg(test)]
mod tests {
    use std::any::Any;

    use super::*;
    use crate::health::{ActorState, HealthRegistry};

    /// A trades query for a symbol starting with this makes the handler panic (tests only): a
    /// stand-in for a query bug that no test foresaw.
    const CRASH_SYMBOL: &str = "crash-test";

    pub fn crash_on_request(msg: &dyn Any) {
        if let Some(query) = msg.downcast_ref::<QueryTrades>()
            && query.symbol.starts_with(CRASH_SYMBOL)
        {
            panic!("test crash on a query for {}", query.symbol);
        }
    }

    fn trades_of(symbol: &str) -> QueryTrades {
        QueryTrades { symbol: symbol.into(), before: None, limit: 10 }
    }

    #[actix_rt::test]
    async fn a_panicking_query_becomes_an_error_in_health_and_the_actor_goes_on() {
        let path = std::env::temp_dir().join(format!("ttpulse-db-crash-{}.db", std::process::id()));
        let pool = DbPool::open_sqlite(&path, 2).expect("SQLite opens");
        let registry = HealthRegistry::new();
        let health = registry.register("db-reader", "DbActor");
        let metrics = Arc::new(Metrics::new());
        let catalog = Arc::new(InstrumentCatalog::default_futures());
        // One thread: the query after the panic reaches the replaced actor, not a sibling.
        let db = DbActor::start(1, pool, catalog, metrics.clone(), health.clone());

        assert_eq!(db.send(trades_of("ESZ6")).await.expect("answered").expect("no trades"), vec![]);
        let error = db.send(trades_of("crash-test-1")).await.expect("answered, not a closed mailbox");
        assert!(
            matches!(&error, Err(StoreError::Panicked(panic)) if panic == "test crash on a query for crash-test-1"),
            "the panic is answered as an error: {error:?}"
        );
        let report = health.report();
        assert_eq!((report.panics, report.restarts), (1, 1), "{report:?}");
        assert_eq!(
            report.last_error.map(|e| e.message),
            Some("panicked: test crash on a query for crash-test-1".to_owned())
        );
        assert_eq!(metrics.actor_restarts.with_label_values(&["db-reader"]).get(), 1);

        // The SyncArbiter replaced the actor: the next query is served, and health is back.
        assert_eq!(db.send(trades_of("ESZ6")).await.expect("answered").expect("served"), vec![]);
        assert_eq!(health.state(), ActorState::Running);
        assert!(registry.ready());
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
