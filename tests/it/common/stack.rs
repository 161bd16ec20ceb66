//! Real services for the distributed tests: a nisshi broker, a redis-server and a fresh
//! PostgreSQL database per test, and ttpulse role processes started from the built binary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub use ttpulse_harness::{Proc, free_port};
use ttpulse_harness::{create_database, drop_database};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Panics with what the harness says went wrong.
fn or_panic<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

pub struct Services {
    pub dir: tempfile::TempDir,
    pub broker_port: u16,
    pub redis_port: u16,
    pub db_name: String,
    pub group: String,
    broker_storage: String,
    broker: Option<Proc>,
    redis: Option<Proc>,
}

impl Services {
    /// Broker storage in memory (fast) or in PostgreSQL (survives a broker restart).
    pub fn start(durable_broker: bool) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}_{n}", std::process::id());
        let db_name = format!("ttpulse_test_{tag}");
        or_panic(create_database(&db_name));
        let broker_storage = if durable_broker {
            let broker_db = or_panic(create_database(&format!("nisshi_test_{tag}")));
            format!("{broker_db}?sslmode=disable")
        } else {
            "memory://nisshi/".to_owned()
        };
        let mut services = Self {
            dir: tempfile::tempdir().expect("dir"),
            broker_port: free_port(),
            redis_port: free_port(),
            db_name,
            group: format!("test-{tag}"),
            broker_storage,
            broker: None,
            redis: None,
        };
        services.start_broker();
        services.start_redis();
        services
    }

    pub fn start_broker(&mut self) {
        let log = self.dir.path().join("broker.log");
        self.broker = Some(or_panic(ttpulse_harness::start_broker(self.broker_port, &self.broker_storage, &log)));
    }

    pub fn stop_broker(&mut self) {
        if let Some(mut broker) = self.broker.take() {
            broker.stop();
        }
    }

    pub fn start_redis(&mut self) {
        self.redis = Some(or_panic(ttpulse_harness::start_redis(self.redis_port, self.dir.path())));
    }

    pub fn stop_redis(&mut self) {
        self.redis = None;
    }

    pub fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.db_name)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.redis_port)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// One value (or rows joined by newlines, columns by `|`) from the test database.
    pub fn sql(&self, query: &str) -> String {
        or_panic(ttpulse_harness::psql(&self.database_url(), query))
    }

    /// A consumer of `topic` in a group of its own, from the topic's first message.
    pub fn reader(&self, topic: &str) -> rdkafka::consumer::StreamConsumer {
        use rdkafka::consumer::Consumer as _;
        let consumer: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", format!("{}-{topic}-reader-{}", self.group, NEXT.fetch_add(1, Ordering::Relaxed)))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        consumer
    }

    pub fn redis_cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.redis_port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts a ttpulse process running `roles`; returns once its admin endpoint answers.
    pub fn role(&self, roles: &str, extra: &[(&str, &str)]) -> Role {
        let log_path =
            self.dir.path().join(format!("{}-{}.log", roles.replace(',', "+"), NEXT.fetch_add(1, Ordering::Relaxed)));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ttpulse"));
        cmd.env("TTPULSE_LOG", "info")
            .env("TTPULSE_ROLES", roles)
            .env("TTPULSE_KAFKA_BROKERS", self.brokers())
            .env("TTPULSE_KAFKA_GROUP", &self.group)
            .env("TTPULSE_KAFKA_PARTITIONS", "4")
            .env("TTPULSE_REDIS_URL", self.redis_url())
            .env("TTPULSE_DATABASE_URL", self.database_url())
            .env("TTPULSE_DATA_DIR", self.dir.path().join("data"))
            .env("TTPULSE_SOURCE", "none")
            // As in `Config::for_tests`: counted updates must not depend on the scheduler.
            .env("TTPULSE_WS_CONFLATE_AFTER_MS", "10000")
            .stderr(std::fs::File::create(&log_path).expect("log"));
        for (key, value) in extra {
            cmd.env(key, value);
        }
        let (proc, ttpulse_harness::Banner { url, admin }) =
            ttpulse_harness::start_ttpulse(&mut cmd).unwrap_or_else(|e| {
                panic!("{roles}: {e}; log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default())
            });
        Role { proc, url, admin, log: log_path }
    }
}

pub struct Role {
    pub proc: Proc,
    pub url: String,
    /// The admin listener (`/admin/*`, `/metrics`).
    pub admin: String,
    pub log: PathBuf,
}

impl Role {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn ws_url(&self) -> String {
        self.url.replacen("http", "ws", 1) + "/ws"
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.broker = None;
        self.redis = None;
        drop_database(&self.db_name);
        if let Some(broker_db) = self.broker_storage.split('/').nth(3).and_then(|s| s.split('?').next())
            && broker_db.starts_with("nisshi_test_")
        {
            drop_database(broker_db);
        }
    }
}
