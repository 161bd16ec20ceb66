//! The processes a benchmark runs: ttpulse (embedded, or one process per role), the nisshi
//! broker, redis-server, a PostgreSQL database, and their CPU and memory.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
pub use ttpulse_harness::free_port;

/// A child process with a name, killed when dropped (the harness' `Proc`).
pub struct Proc {
    pub name: String,
    proc: ttpulse_harness::Proc,
    /// The admin listener's URL (`/admin/*`, `/metrics`) of a ttpulse process.
    pub admin: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.proc.pid().unwrap_or(0)
    }

    /// CPU seconds used so far (user + system) and resident memory in bytes, from /proc.
    pub fn usage(&self) -> (f64, u64) {
        usage(self.pid())
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
    let mut cmd = Command::new(bin);
    cmd.env("TTPULSE_LOG", "warn").stderr(std::fs::File::create(logs.join(format!("{name}.log")))?);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (proc, ttpulse_harness::Banner { url, admin }) = ttpulse_harness::start_ttpulse(&mut cmd)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{name}: see its log"))?;
    wait_healthy(&admin)?;
    let mut proc = Proc { name: name.to_owned(), proc, admin };
    if !proc.proc.alive() {
        bail!("{name} exited; see its log");
    }
    Ok((proc, url))
}

pub fn broker(logs: &Path) -> anyhow::Result<(Proc, String)> {
    let port = free_port();
    let proc = ttpulse_harness::start_broker(port, "memory://nisshi/", &logs.join("broker.log"))
        .map_err(anyhow::Error::msg)?;
    Ok((Proc { name: "broker".into(), proc, admin: String::new() }, format!("127.0.0.1:{port}")))
}

pub fn redis(dir: &Path) -> anyhow::Result<(Proc, String)> {
    let port = free_port();
    let proc = ttpulse_harness::start_redis(port, dir).map_err(anyhow::Error::msg)?;
    Ok((Proc { name: "redis".into(), proc, admin: String::new() }, format!("redis://127.0.0.1:{port}/")))
}

/// A fresh PostgreSQL database on the local server; dropped again by [`drop_database`].
pub fn database(name: &str) -> anyhow::Result<String> {
    ttpulse_harness::create_database(name).map_err(anyhow::Error::msg)
}

pub use ttpulse_harness::drop_database;

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
    Proc { name: name.to_owned(), proc: ttpulse_harness::Proc::adopt(child), admin: String::new() }
}
