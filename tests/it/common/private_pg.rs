//! A PostgreSQL cluster of one test's own (initdb into a temporary folder, on a free port), so
//! that the test may pause it (SIGSTOP) without touching the PostgreSQL other tests share.

use std::path::PathBuf;
use std::process::Command;

use super::stack::free_port;

pub struct PrivatePostgres {
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    /// Runs the PostgreSQL tools as `postgres` (they refuse to run as root).
    as_postgres: bool,
    paused: Vec<u32>,
    _dir: tempfile::TempDir,
}

/// The newest `initdb` of the Debian `postgresql` package, if installed.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let version = path.file_name()?.to_str()?.parse().ok()?;
            let bin = path.join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl PrivatePostgres {
    /// Starts the cluster; `None` (the caller skips) when PostgreSQL's tools are not installed.
    pub fn start() -> Option<Self> {
        let bin = postgres_bin()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown").arg("postgres:").arg(dir.path()).status().expect("chown runs");
            assert!(status.success(), "chown the cluster folder to postgres");
        }
        let data = dir.path().join("data");
        let port = free_port();
        let cluster = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            data,
            as_postgres,
            paused: Vec::new(),
            _dir: dir,
        };
        let data = cluster.data.to_string_lossy().into_owned();
        cluster.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync", "--no-instructions"]);
        let socket_dir = cluster._dir.path().to_string_lossy().into_owned();
        let options = format!("-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off");
        let log = format!("{socket_dir}/postgres.log");
        cluster.run("pg_ctl", &["-D", &data, "-o", &options, "-l", &log, "-w", "-t", "30", "start"]);
        Some(cluster)
    }

    /// One of PostgreSQL's tools, as `postgres` when this runs as root.
    fn tool(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.tool(tool).args(args).output().unwrap_or_else(|e| panic!("{tool} runs: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn postmaster(&self) -> u32 {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).expect("postmaster.pid");
        pid_file.lines().next().and_then(|l| l.trim().parse().ok()).expect("the postmaster's pid")
    }

    fn signal(signal: &str, pids: &[u32]) {
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill").arg(format!("-{signal}")).args(pids.iter().map(u32::to_string)).status();
    }

    /// SIGSTOP to the postmaster, then to every process it started (the backends holding the
    /// pool's connections among them): the database answers nothing until [`Self::resume`].
    pub fn pause(&mut self) {
        let postmaster = self.postmaster();
        Self::signal("STOP", &[postmaster]);
        self.paused.push(postmaster);
        let children = Command::new("pgrep").args(["-P", &postmaster.to_string()]).output().expect("pgrep runs");
        let children: Vec<u32> =
            String::from_utf8_lossy(&children.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert!(!children.is_empty(), "a running cluster has backends and workers");
        Self::signal("STOP", &children);
        self.paused.extend(children);
    }

    pub fn resume(&mut self) {
        Self::signal("CONT", &std::mem::take(&mut self.paused));
    }
}

impl Drop for PrivatePostgres {
    /// Resumed (a failed test may leave it paused) and stopped at once.
    fn drop(&mut self) {
        self.resume();
        let data = self.data.to_string_lossy().into_owned();
        let _ = self.tool("pg_ctl").args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}
