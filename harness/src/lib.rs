//! The one process harness of the integration tests and the benchmarks: child processes killed
//! when dropped, the services they start (the nisshi broker, redis-server, a PostgreSQL
//! database), and `ttpulse run` itself, whose banner on stdout (`... is up: open <url>/` and
//! `admin: <url>/`) is the contract scripts rely on too. Errors are strings that say what to do:
//! tests panic with them, the bench reports them.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The two URLs `ttpulse run` prints (without a trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// The public listener: the API, `/ws`.
    pub url: String,
    /// The admin listener: `/admin/*`, `/metrics`.
    pub admin: String,
}

/// The word after `marker` in `line`, without a trailing `/`.
fn after(line: &str, marker: &str) -> Option<String> {
    line.split(marker).nth(1).and_then(|u| u.split_whitespace().next()).map(|u| u.trim_end_matches('/').to_owned())
}

/// Reads the banner from a `ttpulse run`'s stdout on a thread of its own, which then keeps
/// reading (so the process never blocks on a full pipe). The receiver gets the banner once.
pub fn read_banner(stdout: impl Read + Send + 'static) -> Receiver<Banner> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let url = lines.find_map(|l| after(&l, "open "));
        let admin = lines.find_map(|l| after(&l, "admin: "));
        if let (Some(url), Some(admin)) = (url, admin) {
            let _ = tx.send(Banner { url, admin });
        }
        for _ in lines {}
    });
    rx
}

/// A free port on 127.0.0.1 (0 if none could be had).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Waits until something listens on `port`, for at most `limit`.
pub fn wait_port(port: u16, what: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} is not listening on {port}"))
}

/// A child process, killed (SIGKILL) when dropped.
pub struct Proc(Option<Child>);

impl Proc {
    /// Starts `command`; `what` names it if it cannot start.
    pub fn spawn(command: &mut Command, what: &str) -> Result<Self, String> {
        command.spawn().map(Self::adopt).map_err(|e| format!("{what} does not start: {e}"))
    }

    /// Takes a child started elsewhere.
    pub fn adopt(child: Child) -> Self {
        Self(Some(child))
    }

    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// The child itself (to signal it or wait for it); `None` once killed or stopped.
    pub fn child(&mut self) -> Option<&mut Child> {
        self.0.as_mut()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.0.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to 10 s for the exit (SIGKILL after that).
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
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The nisshi broker binary: `TTPULSE_TEST_NISSHI`, else where scripts/ensure-nisshi.sh puts it.
pub fn nisshi() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("TTPULSE_TEST_NISSHI") {
        return Ok(path.into());
    }
    let home = std::env::var("HOME").unwrap_or_default();
    [PathBuf::from(format!("{home}/.cargo/bin/nisshi")), PathBuf::from("/usr/local/bin/nisshi")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "the nisshi broker is not installed: run scripts/ensure-nisshi.sh (or set TTPULSE_TEST_NISSHI)".into()
        })
}

/// Starts a nisshi broker on `port` with `storage` (`memory://nisshi/`, or a PostgreSQL URL to
/// survive a restart), logging to `log`; returns once it listens.
pub fn start_broker(port: u16, storage: &str, log: &Path) -> Result<Proc, String> {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let proc = Proc::spawn(
        Command::new(nisshi()?)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", storage, "--group-initial-rebalance-delay", "200ms"])
            .stdout(log)
            .stderr(log_err),
        "nisshi",
    )?;
    wait_port(port, "the broker", Duration::from_secs(30))?;
    Ok(proc)
}

/// Starts a redis-server on `port` that keeps nothing on disk (its folder is `dir`); returns
/// once it listens.
pub fn start_redis(port: u16, dir: &Path) -> Result<Proc, String> {
    let proc = Proc::spawn(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null()),
        "redis-server",
    )?;
    wait_port(port, "redis", Duration::from_secs(30))?;
    Ok(proc)
}

/// The local PostgreSQL server's maintenance database.
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Runs `sql` with psql against `url`; the output, trimmed (rows by newlines, columns by `|`).
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql").args([url, "-tAqc", sql]).output().map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(format!("psql `{sql}`: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A fresh, empty database `name` on the local server (dropped first if it exists); its URL.
pub fn create_database(name: &str) -> Result<String, String> {
    psql(PG_ADMIN, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    psql(PG_ADMIN, &format!("CREATE DATABASE {name}"))?;
    Ok(format!("postgres://postgres@127.0.0.1:5432/{name}"))
}

/// Drops database `name` if it exists, whoever is connected (best effort: for clean-ups).
pub fn drop_database(name: &str) {
    let _ = psql(PG_ADMIN, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// Starts `ttpulse run` on free ports: `command` names the binary and carries the
/// environment and where stderr goes. Returns the process and its banner once it printed one.
pub fn start_ttpulse(command: &mut Command) -> Result<(Proc, Banner), String> {
    command
        .arg("run")
        .env_remove("RUST_LOG")
        .env("TTPULSE_HTTP_ADDR", "127.0.0.1:0")
        .env("TTPULSE_ADMIN_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped());
    let mut proc = Proc::spawn(command, "ttpulse")?;
    let stdout = proc.0.as_mut().and_then(|c| c.stdout.take()).ok_or("ttpulse has no stdout")?;
    let banner = read_banner(stdout)
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "ttpulse printed no banner within 60 s (it exited, or is stuck starting)".to_owned())?;
    Ok((proc, banner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_urls_and_keeps_draining() {
        let text =
            "\n  ttpulse (api) is up: open http://127.0.0.1:8080/\n  admin: http://127.0.0.1:9464/  (health)\n\nmore\n";
        let banner = read_banner(std::io::Cursor::new(text.as_bytes().to_vec())).recv().expect("banner");
        assert_eq!(banner, Banner { url: "http://127.0.0.1:8080".into(), admin: "http://127.0.0.1:9464".into() });
    }
}
