//! The database: diesel on SQLite (embedded default) or PostgreSQL (distributed mode), behind
//! a `DbActor` on a `SyncArbiter`.
//! Schema and queries are written once for every backend (see `queries.rs`).

pub mod actor;
pub mod models;
pub mod queries;
pub mod schema;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use actor::DbActor;

/// A stored fill, as `GET /api/fills` answers it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredFill {
    pub account: String,
    pub symbol: String,
    /// The fill's place in its account's lane for this instrument (the `fills:` key's seq).
    pub seq: u64,
    pub fill_id: String,
    pub order_id: String,
    pub side: crate::domain::Side,
    pub price: rust_decimal::Decimal,
    pub qty: i64,
    /// Exchange time (Unix micros).
    pub ts: crate::domain::Micros,
    /// The raw event that carried it.
    pub event_id: String,
}

/// A stored print (time and sales), as `GET /api/trades` answers it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredTrade {
    pub symbol: String,
    pub event_id: String,
    pub price: rust_decimal::Decimal,
    pub qty: i64,
    pub aggressor: crate::domain::Side,
    pub ts: crate::domain::Micros,
}

/// One set of migrations for both backends: the SQL is portable (TEXT, BIGINT, composite keys,
/// `ON CONFLICT`). A migration whose SQL must differ would go into a backend folder.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// What a database failure came from, kept typed (not as text); shared, because a result fans
/// out to every waiter of a write.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// A database failure. Each variant keeps the error it came from, typed (a lost connection and
/// a refused row are told apart by matching, not by reading text), and its message includes
/// that error's, so a log line or an answer with the error alone says why. (The cause is not
/// also offered as `source()`: a printed chain would say it twice.)
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {url}: {cause}")]
    Open { url: String, cause: Cause },
    #[error("database connection pool: {0}")]
    Pool(Arc<diesel::r2d2::PoolError>),
    #[error("database query failed: {0}")]
    Query(Arc<diesel::result::Error>),
    #[error("database migration failed: {0}")]
    Migration(Cause),
    /// The database actor stopped (or the send timed out) before it answered.
    #[error("database reader unavailable: {0}")]
    Unavailable(actix::MailboxError),
    #[error("database holds an unreadable value: {0}")]
    Corrupt(String),
    /// A query panicked; the database actor was replaced by a fresh one.
    #[error("the database actor panicked ({0}) and was restarted")]
    Panicked(String),
}

impl StoreError {
    pub fn open(url: impl Into<String>, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Open { url: url.into(), cause: Arc::from(cause.into()) }
    }
}

impl From<actix::MailboxError> for StoreError {
    fn from(e: actix::MailboxError) -> Self {
        StoreError::Unavailable(e)
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::Query(Arc::new(e))
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Pool(Arc::new(e))
    }
}

/// A pool of connections to the configured database.
#[derive(Clone)]
pub enum DbPool {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Postgres(Pool<ConnectionManager<PgConnection>>),
}

/// A connection checked out of a [`DbPool`].
pub enum DbConn {
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
    Postgres(PooledConnection<ConnectionManager<PgConnection>>),
}

/// Runs the same diesel code on whichever backend a [`DbConn`] holds.
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, $module:ident :: $function:ident ( $($arg:expr),* )) => {
        match $conn {
            $crate::store::DbConn::Sqlite(c) => $crate::store::queries::sqlite::$function(&mut *c $(, $arg)*),
            $crate::store::DbConn::Postgres(c) => $crate::store::queries::postgres::$function(&mut *c $(, $arg)*),
        }
    };
}

/// SQLite settings for a write-heavy single-writer workload: WAL lets readers run beside the
/// writer, and `synchronous=NORMAL` is durable across process crashes (not power loss).
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        diesel::sql_query("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
            .execute(conn)
            .map(|_| ())
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl DbPool {
    /// Opens the SQLite database file at `path` (created if missing) and runs the migrations.
    pub fn open_sqlite(path: &Path, max_connections: u32) -> Result<Self, StoreError> {
        let url = path.to_string_lossy().into_owned();
        let open_err = |cause: Box<dyn std::error::Error + Send + Sync>| StoreError::open(url.clone(), cause);
        // A direct connection first: it gives a clear error where the pool would only time out.
        let mut conn = SqliteConnection::establish(&url).map_err(|e| open_err(e.into()))?;
        diesel::sql_query("PRAGMA journal_mode = WAL").execute(&mut conn).map_err(|e| open_err(e.into()))?;
        conn.run_pending_migrations(MIGRATIONS).map_err(|e| StoreError::Migration(Arc::from(e)))?;
        let pool = Pool::builder()
            .max_size(max_connections.max(1))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(ConnectionManager::new(url.clone()))
            .map_err(|e| open_err(e.into()))?;
        Ok(DbPool::Sqlite(pool))
    }

    /// Opens the PostgreSQL database at `url` and runs the migrations.
    pub fn open_postgres(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let open_err = |cause: Box<dyn std::error::Error + Send + Sync>| StoreError::open(shown.clone(), cause);
        let mut conn = PgConnection::establish(url).map_err(|e| open_err(e.into()))?;
        conn.run_pending_migrations(MIGRATIONS).map_err(|e| StoreError::Migration(Arc::from(e)))?;
        let pool = Pool::builder()
            .max_size(max_connections.max(1))
            .connection_timeout(Duration::from_secs(10))
            .build(ConnectionManager::new(url))
            .map_err(|e| open_err(e.into()))?;
        Ok(DbPool::Postgres(pool))
    }

    /// `postgres://` or `postgresql://` URLs open PostgreSQL; anything else is a SQLite file.
    pub fn open(url_or_path: &str, max_connections: u32) -> Result<Self, StoreError> {
        if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
            Self::open_postgres(url_or_path, max_connections)
        } else {
            let path = url_or_path.strip_prefix("sqlite://").unwrap_or(url_or_path);
            Self::open_sqlite(Path::new(path), max_connections)
        }
    }

    /// Connects once, without migrating: whether the database is reachable (for `ttpulse check`).
    pub fn check(url_or_path: &str) -> Result<&'static str, StoreError> {
        let fail = |e: diesel::ConnectionError| StoreError::open(redact_url(url_or_path), e);
        if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
            PgConnection::establish(url_or_path).map(|_| "postgres").map_err(fail)
        } else {
            let path = url_or_path.strip_prefix("sqlite://").unwrap_or(url_or_path);
            SqliteConnection::establish(path).map(|_| "sqlite").map_err(fail)
        }
    }

    pub fn get(&self) -> Result<DbConn, StoreError> {
        match self {
            DbPool::Sqlite(pool) => Ok(DbConn::Sqlite(pool.get()?)),
            DbPool::Postgres(pool) => Ok(DbConn::Postgres(pool.get()?)),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DbPool::Sqlite(_) => "sqlite",
            DbPool::Postgres(_) => "postgres",
        }
    }
}

/// A URL with its password replaced, fit for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{DbConn, DbPool, redact_url};
    use diesel::RunQueryDsl as _;

    #[derive(diesel::QueryableByName)]
    struct PlanStep {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }

    /// The statements retention and the blotter run (as `queries.rs` builds them) read a range
    /// of an index that starts with the time column, never the whole table.
    #[test]
    fn retention_and_the_blotter_read_through_time_indexes() {
        let path = std::env::temp_dir().join(format!("ttpulse-plan-{}.db", std::process::id()));
        let pool = DbPool::open_sqlite(&path, 1).expect("open");
        let DbConn::Sqlite(mut conn) = pool.get().expect("connection") else { panic!("SQLite") };
        let cases = [
            ("SELECT min(ts) FROM trades WHERE ts < 9", "trades_ts (ts<?)"),
            ("DELETE FROM trades WHERE ts < 9", "trades_ts (ts<?)"),
            (
                "SELECT min(start_ts) FROM candles WHERE period = '1s' AND start_ts < 9",
                "candles_period_start (period=? AND start_ts<?)",
            ),
            (
                "DELETE FROM candles WHERE period = '1s' AND start_ts < 9",
                "candles_period_start (period=? AND start_ts<?)",
            ),
            (
                "SELECT min(start_ts) FROM pnl_samples WHERE period = '1s' AND start_ts < 9",
                "pnl_samples_period_start (period=? AND start_ts<?)",
            ),
            (
                "DELETE FROM pnl_samples WHERE period = '1s' AND start_ts < 9",
                "pnl_samples_period_start (period=? AND start_ts<?)",
            ),
            (
                "SELECT * FROM fills WHERE account = 'A' AND ts >= 1 \
                 ORDER BY ts DESC, symbol DESC, account_seq DESC LIMIT 100",
                "fills_account_ts (account=? AND ts>?)",
            ),
        ];
        let mut plans = Vec::new();
        for (statement, index) in cases {
            let plan: Vec<String> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {statement}"))
                .load::<PlanStep>(&mut *conn)
                .expect("plan")
                .into_iter()
                .map(|step| step.detail)
                .collect();
            plans.push((statement, index, plan));
        }
        drop(conn);
        drop(pool);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        for (statement, index, plan) in plans {
            assert!(plan.iter().any(|step| step.contains(index)), "{statement}: {plan:?}");
            // The day's fills come in the index's order: no sort of the account's fills.
            assert!(
                !plan.iter().any(|step| step.starts_with("SCAN") || step.contains("TEMP B-TREE")),
                "{statement}: {plan:?}"
            );
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/tt"), "postgres://app:***@db:5432/tt");
        assert_eq!(redact_url("rediss://:pw@cache:6380"), "rediss://:***@cache:6380");
        assert_eq!(redact_url("postgres://db/tt"), "postgres://db/tt");
    }
}
