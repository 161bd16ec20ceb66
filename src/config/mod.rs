//! Configuration: command-line flags, each with an environment variable (also read from
//! `.env` through dotenvy). Every key is documented in `.env.example`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

mod validate;
pub use validate::Validated;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// The built-in market simulator.
    Simulator,
    /// Replay a JSON-lines file (TTPULSE_REPLAY_FILE).
    Replay,
    /// Only events pushed to POST /api/ingest.
    None,
}

/// A part of the pipeline a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Role {
    /// Sources and `POST /api/ingest`, producing to `tt_raw_data`.
    Ingester,
    /// Calculations and database writes, `tt_raw_data` to `tt_processed_data`.
    Processor,
    /// Redis keys and `tt_updates`, from `tt_processed_data`.
    Cache,
    /// `/api` reads and `/ws`, fed by `tt_updates`.
    Api,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Ingester, Role::Processor, Role::Cache, Role::Api];

    pub fn name(self) -> &'static str {
        match self {
            Role::Ingester => "ingester",
            Role::Processor => "processor",
            Role::Cache => "cache",
            Role::Api => "api",
        }
    }
}

/// Who may read market data (instrument states and candles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MarketAccess {
    /// Anyone who reaches the server.
    Open,
    /// Holders of a valid token.
    Token,
}

/// Who may use `/admin/*` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdminAccess {
    /// Clients on the loopback interface, or holders of TTPULSE_ADMIN_TOKEN.
    LoopbackOrToken,
    /// Only holders of TTPULSE_ADMIN_TOKEN, wherever they connect from.
    Token,
    /// Anyone (for a network where something else guards the port).
    Open,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Roles this process runs, comma-separated. A subset needs the distributed carriers
    /// (TTPULSE_KAFKA_BROKERS, and TTPULSE_REDIS_URL for cache and api).
    #[arg(
        long,
        env = "TTPULSE_ROLES",
        value_enum,
        value_delimiter = ',',
        default_value = "ingester,processor,cache,api"
    )]
    pub roles: Vec<Role>,

    #[command(flatten)]
    pub carriers: Carriers,

    #[command(flatten)]
    pub server: Server,

    #[command(flatten)]
    pub source: Source,

    #[command(flatten)]
    pub storage: Storage,

    #[command(flatten)]
    pub intake: Intake,

    #[command(flatten)]
    pub sessions: Sessions,

    #[command(flatten)]
    pub access: Access,

    #[command(flatten)]
    pub traces: Traces,
}

/// Where the hops, the cache and the database live (distributed mode).
#[derive(Debug, Clone, Args)]
pub struct Carriers {
    /// Kafka bootstrap servers (`host:port,...`). Set: hops 1 and 2 go through Kafka (distributed
    /// mode). Other librdkafka settings: TTPULSE_KAFKA_<setting>, e.g. TTPULSE_KAFKA_security.protocol.
    #[arg(long, env = "TTPULSE_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Partitions of tt_raw_data and tt_processed_data when ttpulse creates them.
    #[arg(long, env = "TTPULSE_KAFKA_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=1_000))]
    pub kafka_partitions: i32,

    /// Replication factor of the topics when ttpulse creates them (3 on a production cluster).
    #[arg(long, env = "TTPULSE_KAFKA_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    pub kafka_replication: i32,

    /// Consumer group prefix (processors join `<group>-processor`, cache updaters `<group>-cache`).
    #[arg(long, env = "TTPULSE_KAFKA_GROUP", default_value = "ttpulse")]
    pub kafka_group: String,

    /// Redis URL (`redis://[:password@]host:port/db`, `rediss://` for TLS). Needed by the cache
    /// and api roles in distributed mode.
    #[arg(long, env = "TTPULSE_REDIS_URL")]
    pub redis_url: Option<String>,

    /// A PEM file of the CA that signed Redis' TLS certificate (for `rediss://` URLs), when it is
    /// not in the system's trust store: Redis connections trust it instead (nothing else does).
    #[arg(long, env = "TTPULSE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Database URL: `postgres://user:password@host/db` for PostgreSQL; unset for the SQLite
    /// file in TTPULSE_DATA_DIR.
    #[arg(long, env = "TTPULSE_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// The HTTP listeners and the process's life.
#[derive(Debug, Clone, Args)]
pub struct Server {
    /// Address the HTTP server (API, WebSocket, admin) listens on.
    #[arg(long, env = "TTPULSE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Address of the admin listener: `/admin/*` and `/metrics`, apart from the public one so
    /// that no proxy can expose them by accident. Port 0 picks a free port (printed at start).
    #[arg(long, env = "TTPULSE_ADMIN_ADDR", default_value = "127.0.0.1:9464")]
    pub admin_addr: SocketAddr,

    /// Seconds a connection may leave written data unacknowledged (a client that stopped
    /// reading, a peer that vanished) before the kernel closes it (TCP_USER_TIMEOUT), freeing its
    /// session; 0 leaves the system default.
    #[arg(long, env = "TTPULSE_TCP_USER_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub tcp_user_timeout_secs: u64,

    /// Bytes of written but unsent data a connection's kernel buffer may hold before the server
    /// stops writing to it (TCP_NOTSENT_LOWAT): what a slow client cannot take then waits in its
    /// session's queue, where it is conflated to the latest state per key, instead of in the
    /// kernel, where it only grows old. 0 leaves the system default (no limit).
    #[arg(long, env = "TTPULSE_TCP_NOTSENT_LOWAT", default_value_t = 131_072, value_parser = clap::value_parser!(u32).range(0..=67_108_864))]
    pub tcp_notsent_lowat: u32,

    /// Longest a graceful shutdown (SIGTERM, Ctrl-C) takes before the process exits anyway, in
    /// seconds; a second signal exits at once.
    #[arg(long, env = "TTPULSE_SHUTDOWN_GRACE_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub shutdown_grace_secs: u64,
}

/// Where raw events come from besides `POST /api/ingest`.
#[derive(Debug, Clone, Args)]
pub struct Source {
    /// Where raw events come from besides POST /api/ingest.
    #[arg(long = "source", env = "TTPULSE_SOURCE", value_enum, default_value = "simulator")]
    pub kind: SourceKind,

    /// Simulator events per second (1 to 100000); 0 turns the simulator off.
    #[arg(long, env = "TTPULSE_SIM_RATE", default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub sim_rate: u32,

    /// Simulator random seed (default: from the clock).
    #[arg(long, env = "TTPULSE_SIM_SEED")]
    pub sim_seed: Option<u64>,

    /// JSON-lines file to replay when the source is `replay`.
    #[arg(long, env = "TTPULSE_REPLAY_FILE")]
    pub replay_file: Option<PathBuf>,

    /// Replay speed in events per second; 0 for as fast as the pipeline takes them.
    #[arg(long, env = "TTPULSE_REPLAY_RATE", default_value_t = 0)]
    pub replay_rate: u32,
}

/// The database: where, how often it is written, how long rows are kept.
#[derive(Debug, Clone, Args)]
pub struct Storage {
    /// Folder for the embedded database (created if missing).
    #[arg(long, env = "TTPULSE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Longest wait before processed changes are written to the database, in milliseconds.
    #[arg(long, env = "TTPULSE_DB_FLUSH_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub db_flush_ms: u64,

    /// Rows that trigger a database write before the flush interval ends.
    #[arg(long, env = "TTPULSE_DB_FLUSH_ROWS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub db_flush_rows: u64,

    /// Batches the processor may have calculated whose updates (hop 2) and database write are
    /// not yet done: the next batch is calculated meanwhile. In the cache role, batches whose
    /// Redis writes are on the wire at once. 1 turns the overlap off.
    #[arg(long, env = "TTPULSE_PIPELINE_DEPTH", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub pipeline_depth: u64,

    /// Hours trades (time and sales) are kept in the database; 0 keeps them for good. Fills
    /// (the trader's record) and positions are always kept.
    #[arg(long, env = "TTPULSE_RETAIN_TRADES_HOURS", default_value_t = 168)]
    pub retain_trades_hours: u64,

    /// Hours 1 s candles are kept; 0 keeps them for good.
    #[arg(long, env = "TTPULSE_RETAIN_CANDLES_1S_HOURS", default_value_t = 48)]
    pub retain_candles_1s_hours: u64,

    /// Hours 1 min candles are kept; 0 (the default) keeps them for good.
    #[arg(long, env = "TTPULSE_RETAIN_CANDLES_1M_HOURS", default_value_t = 0)]
    pub retain_candles_1m_hours: u64,

    /// Hours 1 s P&L samples are kept; 0 keeps them for good (1 min samples always are).
    #[arg(long, env = "TTPULSE_RETAIN_PNL_1S_HOURS", default_value_t = 48)]
    pub retain_pnl_1s_hours: u64,

    /// Seconds between two passes that delete rows past their retention (in short batches).
    #[arg(long, env = "TTPULSE_PRUNE_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub prune_interval_secs: u64,
}

/// What `POST /api/ingest` and the engine accept, and what the processor publishes.
#[derive(Debug, Clone, Args)]
pub struct Intake {
    /// Events per second POST /api/ingest accepts (all clients together); 0: no limit.
    #[arg(long, env = "TTPULSE_INGEST_MAX_RATE", default_value_t = 200_000)]
    pub ingest_max_rate: u32,

    /// Largest POST /api/ingest body, in bytes.
    #[arg(long, env = "TTPULSE_INGEST_MAX_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub ingest_max_bytes: usize,

    /// Most events in one POST /api/ingest request.
    #[arg(long, env = "TTPULSE_INGEST_MAX_EVENTS", default_value_t = 10_000)]
    pub ingest_max_events: usize,

    /// How long POST /api/ingest waits for its events to be stored before it answers 503 with
    /// the ids the events got (resending them with those ids is then safe), in milliseconds.
    #[arg(long, env = "TTPULSE_INGEST_CONFIRM_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub ingest_confirm_timeout_ms: u64,

    /// Price band of every instrument: prices above this multiple of its reference price are
    /// refused (1 to 1000; and never above 1,000,000,000).
    #[arg(long, env = "TTPULSE_PRICE_BAND", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub price_band: u32,

    /// Most contracts one trade or fill (or one side of a quote) may carry.
    #[arg(long, env = "TTPULSE_MAX_EVENT_QTY", default_value_t = 100_000, value_parser = clap::value_parser!(i64).range(1..=1_000_000_000))]
    pub max_event_qty: i64,

    /// How far ahead of its arrival a pushed event may be dated, in milliseconds.
    #[arg(long, env = "TTPULSE_EVENT_TIME_AHEAD_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub event_time_ahead_ms: u64,

    /// How far behind its arrival a pushed event may be dated, in seconds (replay files keep
    /// their own clock and are not held to it).
    #[arg(long, env = "TTPULSE_EVENT_TIME_BEHIND_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(0..=31_622_400))]
    pub event_time_behind_secs: u64,

    /// Whether prints (time and sales, the `trade` update kind) are published downstream: each
    /// trade is then one more update through Kafka and Redis, whether or not a session asked
    /// for prints. `false` saves that; `/api/trades` still has every print.
    #[arg(long, env = "TTPULSE_PUBLISH_PRINTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub publish_prints: bool,
}

/// WebSocket sessions: queues, limits and update rates.
#[derive(Debug, Clone, Args)]
pub struct Sessions {
    /// Account events (fills) a WebSocket session may have waiting before it is closed (4008).
    #[arg(long, env = "TTPULSE_WS_ACCOUNT_QUEUE", default_value_t = 4_096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ws_account_queue: u64,

    /// Market updates a WebSocket session may have waiting before they are conflated to the
    /// latest state per key.
    #[arg(long, env = "TTPULSE_WS_MARKET_QUEUE", default_value_t = 1_024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ws_market_queue: u64,

    /// Milliseconds a WebSocket session's market updates may keep waiting (the queue never
    /// empty) before they are conflated to the latest state per key: how far behind the feed a
    /// slow client may fall before it gets the newest states instead of the backlog.
    #[arg(long, env = "TTPULSE_WS_CONFLATE_AFTER_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub ws_conflate_after_ms: u64,

    /// Seconds a WebSocket session may stay behind before it is closed (4009).
    #[arg(long, env = "TTPULSE_WS_MAX_BEHIND_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub ws_max_behind_secs: u64,

    /// Most WebSocket sessions this process holds at once.
    #[arg(long, env = "TTPULSE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: i64,

    /// Most WebSocket sessions one user (token subject) holds at once.
    #[arg(long, env = "TTPULSE_MAX_CONNECTIONS_PER_USER", default_value_t = 20)]
    pub max_connections_per_user: usize,

    /// Most WebSocket sessions one client address holds at once (behind a proxy on this host,
    /// the address it passes on in X-Real-IP or X-Forwarded-For); 0: no limit.
    #[arg(long, env = "TTPULSE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 50)]
    pub max_connections_per_address: usize,

    /// New WebSocket sessions accepted per second from one client address; 0: no limit.
    #[arg(long, env = "TTPULSE_WS_CONNECT_RATE_PER_ADDRESS", default_value_t = 10)]
    pub ws_connect_rate_per_address: u32,

    /// New WebSocket sessions accepted per second (all clients together); 0: no limit.
    #[arg(long, env = "TTPULSE_WS_CONNECT_RATE", default_value_t = 500)]
    pub ws_connect_rate: u32,

    /// Updates per market key per second a session gets when its subscribe asks no `max_rate`
    /// (0: every update, as it comes).
    #[arg(long, env = "TTPULSE_WS_DEFAULT_RATE", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub ws_default_rate: u32,

    /// Most updates per market key per second a session is granted (0: no cap; a subscribe
    /// that asks for every update then gets every update).
    #[arg(long, env = "TTPULSE_WS_MAX_RATE", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub ws_max_rate: u32,

    /// Most fills one subscribe's `recover` replays, over all its lanes; a lane beyond what is
    /// left answers `recovered: false` (the client pages GET /api/fills or starts from the snapshot).
    #[arg(long, env = "TTPULSE_WS_MAX_RECOVER", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub ws_max_recover: u64,

    /// Client messages one WebSocket session may send per second (bursts of twice that); more
    /// are dropped with one `rate_limited` error, and a session that keeps on is closed (1008).
    /// 0: no limit.
    #[arg(long, env = "TTPULSE_WS_MESSAGE_RATE", default_value_t = 20)]
    pub ws_message_rate: u32,

    /// Instruments plus accounts one session may subscribe to.
    #[arg(long, env = "TTPULSE_WS_MAX_SUBSCRIPTIONS", default_value_t = 200)]
    pub ws_max_subscriptions: usize,
}

/// Who may read, write and administer: tokens, hosts and origins.
#[derive(Debug, Clone, Args)]
pub struct Access {
    /// HS256 secret that signs user tokens (JWT). Set this or TTPULSE_AUTH_JWKS_FILE to require
    /// a token for account data (positions, fills) and, with TTPULSE_MARKET_DATA=token, for all.
    #[arg(long, env = "TTPULSE_AUTH_HS256_SECRET", hide_env_values = true)]
    pub auth_hs256_secret: Option<String>,

    /// A JWKS file (JSON) of RS256/ES256 public keys that sign user tokens.
    #[arg(long, env = "TTPULSE_AUTH_JWKS_FILE")]
    pub auth_jwks_file: Option<PathBuf>,

    /// When set, user tokens must carry this `iss` claim.
    #[arg(long, env = "TTPULSE_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// When set, user tokens must carry this `aud` claim.
    #[arg(long, env = "TTPULSE_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Whether market data needs a token too (when a token key is configured).
    #[arg(long, env = "TTPULSE_MARKET_DATA", value_enum, default_value = "open")]
    pub market_data: MarketAccess,

    /// Who may use /admin/* and /metrics.
    #[arg(long, env = "TTPULSE_ADMIN_ACCESS", value_enum, default_value = "loopback-or-token")]
    pub admin_access: AdminAccess,

    /// The bearer token for /admin/* and /metrics.
    #[arg(long, env = "TTPULSE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The bearer token POST /api/ingest requires (at least 32 bytes). Without it, ingest is
    /// open only when TTPULSE_HTTP_ADDR is a loopback address; ttpulse refuses to start with
    /// ingest reachable from the network and no token.
    #[arg(long, env = "TTPULSE_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,

    /// Host names clients may reach this server by (comma-separated, e.g. desk.example.com;
    /// `*` for any). IP addresses and `localhost` are always allowed. A request naming another
    /// host is refused (421): a page whose DNS name was rebound to this machine gets nothing.
    #[arg(long, env = "TTPULSE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Origins besides this server's own allowed to open /ws (comma-separated, e.g.
    /// https://desk.example.com). This server's own origin is always allowed; with an allowlist,
    /// a request without an Origin is refused.
    #[arg(long, env = "TTPULSE_WS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub ws_allowed_origins: Vec<String>,
}

/// Distributed traces of sampled events (OTLP).
#[derive(Debug, Clone, Args)]
pub struct Traces {
    /// OTLP/HTTP endpoint (`http://collector:4318`) that receives the traces of sampled events;
    /// unset, this process starts no trace (it still carries on the ones it receives).
    #[arg(long, env = "TTPULSE_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,

    /// Share of ingested events whose journey is traced (0 to 1), when an OTLP endpoint is set.
    #[arg(long, env = "TTPULSE_TRACE_SAMPLE_RATIO", default_value_t = 0.001, value_parser = parse_ratio)]
    pub trace_sample_ratio: f64,
}

/// An `http://host[:port][/path]` URL: spans go to `<it>/v1/traces`, so no query or fragment.
fn parse_otlp_endpoint(text: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("`{text}` is not an OTLP/HTTP endpoint: {why}"));
    let Ok(uri) = text.parse::<actix_web::http::Uri>() else { return bad("not a URL") };
    match uri.scheme_str() {
        Some("http") => {}
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => {
            return bad("https is not supported: send to a collector (agent) on this host or network over http, and \
                        let it forward with TLS");
        }
        _ => return bad("it must start with http://"),
    }
    let Some(authority) = uri.authority() else { return bad("no host") };
    // `Authority::port` is None for a port that is not a u16: read what follows the host.
    let port = authority.as_str().rsplit_once(':').map(|(_, port)| port).filter(|port| !port.contains(']'));
    if authority.host().is_empty() || port.is_some_and(|port| !port.parse::<u16>().is_ok_and(|p| p > 0)) {
        return bad("no host, or a port that is not 1-65535");
    }
    if uri.query().is_some() || text.contains('#') {
        return bad("no query or fragment (spans are sent to <endpoint>/v1/traces)");
    }
    Ok(text.to_owned())
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("`{text}` is not a number from 0 to 1")),
    }
}

impl Config {
    pub fn database_path(&self) -> PathBuf {
        self.storage.data_dir.join("ttpulse.db")
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn runs_all_roles(&self) -> bool {
        Role::ALL.iter().all(|r| self.has(*r))
    }

    /// The window a pushed event's exchange time must lie in.
    pub fn time_window(&self) -> ttpulse_actors::domain::TimeWindow {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        ttpulse_actors::domain::TimeWindow {
            ahead: micros(Duration::from_millis(self.intake.event_time_ahead_ms)),
            behind: micros(Duration::from_secs(self.intake.event_time_behind_secs)),
        }
    }

    /// The instrument catalog with the configured price band and quantity limit.
    pub fn catalog(&self) -> ttpulse_actors::domain::InstrumentCatalog {
        ttpulse_actors::domain::InstrumentCatalog::default_futures()
            .with_limits(self.intake.price_band, self.intake.max_event_qty)
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.storage.db_flush_ms)
    }

    /// Every setting at its default, as `ttpulse run` has it with nothing set (the environment
    /// is not read): the defaults are stated once, in the `#[arg]` attributes above.
    pub fn defaults() -> Self {
        use clap::FromArgMatches as _;
        let command = <Self as Args>::augment_args(clap::Command::new("ttpulse")).mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(["ttpulse"]).expect("every setting has a valid default");
        Self::from_arg_matches(&matches).expect("the defaults make a configuration")
    }

    /// A configuration for tests: the defaults, but an own data folder, free ports, no
    /// simulator, and no limits on how many sessions one address opens how fast (every test
    /// client comes from 127.0.0.1; the tests of those limits set them).
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let mut config = Self::defaults();
        let loopback_any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        config.server.http_addr = loopback_any_port;
        config.server.admin_addr = loopback_any_port;
        config.storage.data_dir = data_dir;
        config.storage.db_flush_ms = 2;
        config.source.kind = SourceKind::None;
        config.source.sim_rate = 0;
        config.source.sim_seed = Some(1);
        config.sessions.ws_connect_rate = 0;
        config.sessions.max_connections_per_address = 0;
        config.sessions.ws_connect_rate_per_address = 0;
        config.intake.ingest_max_rate = 0;
        // Tests that count every update must not depend on how soon a loaded machine schedules
        // a session; the tests of conflation set their own bound.
        config.sessions.ws_conflate_after_ms = 10_000;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults come from the `#[arg]` attributes, whatever the environment says.
    #[test]
    fn the_defaults_are_the_documented_ones_and_ignore_the_environment() {
        let defaults = Config::defaults();
        assert_eq!(defaults.server.http_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(defaults.roles, Role::ALL.to_vec());
        assert_eq!(
            (
                defaults.source.sim_rate,
                defaults.sessions.ws_message_rate,
                defaults.sessions.max_connections_per_address
            ),
            (200, 20, 50)
        );
        assert_eq!(defaults.traces.trace_sample_ratio, 0.001);
        assert!(defaults.intake.publish_prints);
        // `.env.example` shows every key with a default at that default (commented out).
        let example = include_str!("../../.env.example");
        let command = <Config as Args>::augment_args(clap::Command::new("ttpulse"));
        let mut checked = 0;
        for arg in command.get_arguments() {
            let (Some(key), defaults) = (arg.get_env(), arg.get_default_values()) else { continue };
            if defaults.is_empty() {
                continue;
            }
            let key = key.to_string_lossy();
            let default = defaults.iter().map(|v| v.to_string_lossy()).collect::<Vec<_>>().join(",");
            let shown: Vec<&str> = example
                .lines()
                .filter_map(|line| line.trim_start_matches("# ").strip_prefix(&format!("{key}=")))
                // A setting line, not a sentence that happens to start with one.
                .filter(|value| !value.contains(' '))
                .collect();
            assert_eq!(shown, vec![default.as_str()], "{key} in .env.example");
            checked += 1;
        }
        assert!(checked > 40, "{checked}");
    }

    /// Every setting is documented where the docs say: `.env.example` and docs/configuration.md.
    #[test]
    fn every_setting_is_documented() {
        let source = include_str!("mod.rs");
        let env_example = include_str!("../../.env.example");
        let reference = include_str!("../../docs/configuration.md");
        let keys: Vec<&str> = source
            .split("env = \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|key| key.starts_with("TTPULSE_"))
            .collect();
        assert!(keys.len() > 50, "{keys:?}");
        for key in keys {
            assert!(env_example.contains(key), "{key} is not in .env.example");
            assert!(reference.contains(&format!("`{key}`")), "{key} is not in docs/configuration.md");
        }
    }
}
