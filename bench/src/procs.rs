//! The processes a benchmark runs: ttpulse (embedded, or one process per role), the nisshi
//! broker, redis-server, a PostgreSQL database, and their CPU and memory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A child process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    /// The admin listener's URL (`/admin/*`, `/metrics`) of a ttpulse process.
    pub admin: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds used so far (user + system) and resident memory in bytes, from /proc.
    pub fn usage(&self) -> (f64, u64) {
        usage(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/pid/stat, i.e. 11 and 12 after the name.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu, rss_kib * 1024)
}

fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} is not listening on {port}")
}

pub fn http_get(url: &str) -> anyhow::Result<String> {
    Ok(ureq::get(url).call()?.body_mut().read_to_string()?)
}

pub fn wait_healthy(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http_get(&format!("{url}/admin/health")).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not become healthy")
}

/// Starts `ttpulse run` with `env`; returns the process and its base URL.
pub fn ttpulse(bin: &Path, name: &str, env: &[(String, String)], logs: &Path) -> anyhow::Result<(Proc, String)> {
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .env("TTPULSE_HTTP_ADDR", "127.0.0.1:0")
        .env("TTPULSE_ADMIN_ADDR", "127.0.0.1:0")
        .env("TTPULSE_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(log).spawn().with_context(|| format!("start {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut proc = Proc { name: name.to_owned(), child, admin: String::new() };
    let ttpulse_harness::Banner { url, admin } = ttpulse_harness::read_banner(stdout)
        .recv_timeout(Duration::from_secs(60))
        .with_context(|| format!("{name} did not start; see its log"))?;
    wait_healthy(&admin)?;
    proc.admin = admin;
    if let Ok(Some(status)) = proc.child.try_wait() {
        bail!("{name} exited: {status}");
    }
    Ok((proc, url))
}

pub fn nisshi() -> anyhow::Result<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    [PathBuf::from(format!("{home}/.cargo/bin/nisshi")), PathBuf::from("/usr/local/bin/nisshi")]
        .into_iter()
        .find(|p| p.is_file())
        .context("nisshi is not installed: run scripts/ensure-nisshi.sh")
}

pub fn broker(logs: &Path) -> anyhow::Result<(Proc, String)> {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(logs.join("broker.log"))?;
    let child = Command::new(nisshi()?)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://nisshi/",
        ])
        .args(["--group-initial-rebalance-delay", "200ms"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let proc = Proc { name: "broker".into(), child, admin: String::new() };
    wait_port(port, "the broker")?;
    Ok((proc, format!("127.0.0.1:{port}")))
}

pub fn redis(dir: &Path) -> anyhow::Result<(Proc, String)> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .context("redis-server")?;
    let proc = Proc { name: "redis".into(), child, admin: String::new() };
    wait_port(port, "redis")?;
    Ok((proc, format!("redis://127.0.0.1:{port}/")))
}

/// A fresh PostgreSQL database on the local server; dropped again by [`drop_database`].
pub fn database(name: &str) -> anyhow::Result<String> {
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
        let status = Command::new("psql").args([admin, "-qtAc", &sql]).status()?;
        if !status.success() {
            bail!("psql `{sql}` failed");
        }
    }
    Ok(format!("postgres://postgres@127.0.0.1:5432/{name}"))
}

pub fn drop_database(name: &str) {
    let _ = Command::new("psql")
        .args([
            "postgres://postgres@127.0.0.1:5432/postgres",
            "-qtAc",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ])
        .status();
}

/// The cumulative buckets of a Prometheus histogram: (upper bound in seconds, count).
pub fn buckets(page: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    page.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, value) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound (ms) under which quantile `q` of the observations between two scrapes lie.
pub fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let deltas: Vec<(f64, f64)> =
        after.iter().map(|(le, n)| (*le, n - before.iter().find(|(b, _)| b == le).map_or(0.0, |(_, m)| *m))).collect();
    let total = deltas.last().map_or(0.0, |(_, n)| *n);
    if total <= 0.0 {
        return 0.0;
    }
    deltas.iter().find(|(_, n)| *n >= q * total).map_or(f64::INFINITY, |(le, _)| le * 1000.0)
}

/// One metric's value from a Prometheus text page (summing over label sets that match).
pub fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Takes ownership of a spawned child, to be killed when dropped.
pub fn adopt(name: &str, child: Child) -> Proc {
    Proc { name: name.to_owned(), child, admin: String::new() }
}
