//! Real services for the distributed tests: a nisshi broker, a redis-server and a fresh
//! PostgreSQL database per test, and ttpulse role processes started from the built binary.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn nisshi() -> PathBuf {
    if let Ok(path) = std::env::var("TTPULSE_TEST_NISSHI") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let candidates = [PathBuf::from(format!("{home}/.cargo/bin/nisshi")), PathBuf::from("/usr/local/bin/nisshi")];
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("the nisshi broker is not installed: run scripts/ensure-nisshi.sh (or set TTPULSE_TEST_NISSHI)")
    })
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-tAqc", sql]).output().expect("psql runs");
    assert!(out.status.success(), "psql `{sql}`: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} is not listening on {port}");
}

/// A child process killed when dropped.
pub struct Proc(pub Option<Child>);

impl Proc {
    /// Starts `command`; `what` names it if it cannot start.
    fn spawn(command: &mut Command, what: &str) -> Self {
        Self(Some(command.spawn().unwrap_or_else(|e| panic!("{what} starts: {e:?}"))))
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn alive(&mut self) -> bool {
        self.0.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Services {
    pub dir: tempfile::TempDir,
    pub broker_port: u16,
    pub redis_port: u16,
    pub db_name: String,
    pub group: String,
    broker_storage: String,
    broker: Proc,
    redis: Proc,
}

impl Services {
    /// Broker storage in memory (fast) or in PostgreSQL (survives a broker restart).
    pub fn start(durable_broker: bool) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}_{n}", std::process::id());
        let db_name = format!("ttpulse_test_{tag}");
        psql(PG_ADMIN, &format!("DROP DATABASE IF EXISTS {db_name}"));
        psql(PG_ADMIN, &format!("CREATE DATABASE {db_name}"));
        let broker_storage = if durable_broker {
            let broker_db = format!("nisshi_test_{tag}");
            psql(PG_ADMIN, &format!("DROP DATABASE IF EXISTS {broker_db}"));
            psql(PG_ADMIN, &format!("CREATE DATABASE {broker_db}"));
            format!("postgres://postgres@127.0.0.1:5432/{broker_db}?sslmode=disable")
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
            broker: Proc(None),
            redis: Proc(None),
        };
        services.start_broker();
        services.start_redis();
        services
    }

    pub fn start_broker(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.broker_port);
        let log = std::fs::File::create(self.dir.path().join("broker.log")).expect("log");
        self.broker = Proc::spawn(
            Command::new(nisshi())
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", &self.broker_storage, "--group-initial-rebalance-delay", "200ms"])
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
            "nisshi",
        );
        wait_port(self.broker_port, "the broker");
    }

    pub fn stop_broker(&mut self) {
        self.broker.stop();
    }

    pub fn start_redis(&mut self) {
        let mut redis = Command::new("redis-server");
        redis
            .args(["--port", &self.redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null());
        self.redis = Proc::spawn(&mut redis, "redis-server");
        wait_port(self.redis_port, "redis");
    }

    pub fn stop_redis(&mut self) {
        self.redis.kill9();
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
        psql(&self.database_url(), query)
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
        let log = std::fs::File::create(&log_path).expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ttpulse"));
        cmd.arg("run")
            .env_remove("RUST_LOG")
            .env("TTPULSE_LOG", "info")
            .env("TTPULSE_ROLES", roles)
            .env("TTPULSE_HTTP_ADDR", "127.0.0.1:0")
            .env("TTPULSE_ADMIN_ADDR", "127.0.0.1:0")
            .env("TTPULSE_KAFKA_BROKERS", self.brokers())
            .env("TTPULSE_KAFKA_GROUP", &self.group)
            .env("TTPULSE_KAFKA_PARTITIONS", "4")
            .env("TTPULSE_REDIS_URL", self.redis_url())
            .env("TTPULSE_DATABASE_URL", self.database_url())
            .env("TTPULSE_DATA_DIR", self.dir.path().join("data"))
            .env("TTPULSE_SOURCE", "none");
        for (key, value) in extra {
            cmd.env(key, value);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().expect("ttpulse starts");
        let stdout = child.stdout.take().expect("stdout");
        let rx = ttpulse_harness::read_banner(stdout);
        let ttpulse_harness::Banner { url, admin } = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            panic!("{roles} did not start; log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default())
        });
        Role { proc: Proc(Some(child)), url, admin, log: log_path }
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
        self.broker.kill9();
        self.redis.kill9();
        let _ = Command::new("psql")
            .args([PG_ADMIN, "-tAqc", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name)])
            .output();
        if let Some(broker_db) = self.broker_storage.split('/').nth(3).and_then(|s| s.split('?').next())
            && broker_db.starts_with("nisshi_test_")
        {
            let _ = Command::new("psql")
                .args([PG_ADMIN, "-tAqc", &format!("DROP DATABASE IF EXISTS {broker_db} WITH (FORCE)")])
                .output();
        }
    }
}
