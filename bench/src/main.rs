//! `make bench`: ttpulse beside the raw limits of the parts it uses, measured side by side in
//! one run on this machine. See BENCHMARKS.md for how to read the output.

mod fanout;
mod measure;
mod procs;
mod report;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use measure::Latency;
use procs::Proc;

#[derive(Parser)]
#[command(
    name = "ttpulse-bench",
    about = "ttpulse beside the raw limits of Kafka, Redis and a plain WebSocket broadcast"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmarks and write bench/results/ (results.json, latency.svg, summary.md).
    Run {
        /// A few minutes instead of a quarter of an hour: fewer rates, shorter windows.
        #[arg(long)]
        quick: bool,
        /// The ttpulse binary to measure (build it with --release).
        #[arg(long, default_value = "target/release/ttpulse")]
        bin: PathBuf,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// Only the embedded end-to-end latency at one rate (for profiling a change).
    Latency {
        #[arg(long)]
        rate: u32,
        /// Offer wire version 2 (batched frames).
        #[arg(long)]
        batched: bool,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        #[arg(long, default_value = "target/release/ttpulse")]
        bin: PathBuf,
    },
    /// Load generator: many WebSocket sessions (run by `run` in its own process).
    FanoutClient {
        #[arg(long)]
        url: String,
        #[arg(long)]
        sessions: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Offer wire version 2 (batched frames).
        #[arg(long)]
        batched: bool,
        /// Extra sessions that subscribe to everything and never read.
        #[arg(long, default_value_t = 0)]
        stalled: usize,
        /// After the window, drop every session at once and reconnect them all.
        #[arg(long)]
        reconnect: bool,
        /// What each session subscribes to.
        #[arg(long, value_enum, default_value = "watch3")]
        profile: fanout::Profile,
    },
    /// Only the fan-out rows (ttpulse v1, ttpulse v2, plain broadcast), as JSON on stdout.
    Fanout {
        /// Session counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
        sessions: Vec<usize>,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        #[arg(long, default_value = "target/release/ttpulse")]
        bin: PathBuf,
    },
    /// Distributed scale-out: 1, 2, 3... processors sharing the partitions, the ingester's
    /// simulator pushing more than they take; events/s processed and per processor CPU-second.
    Scale {
        /// Processor counts, comma-separated, each on a fresh stack.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        processors: Vec<usize>,
        /// The processors' `TTPULSE_PIPELINE_DEPTH`s, comma-separated: each processor count is
        /// measured with each (1 is the unpipelined processor), side by side in one run.
        #[arg(long, value_delimiter = ',', default_value = "3")]
        pipeline_depths: Vec<u32>,
        /// The simulator's rate (events/s): above what the processors take, so that they are
        /// the limit.
        #[arg(long, default_value_t = 50_000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value = "target/release/ttpulse")]
        bin: PathBuf,
    },
    /// The cache role's Redis writes (issue 15): `tt_processed_data` filled by the processor
    /// while no cache runs, then a cache started with each `TTPULSE_PIPELINE_DEPTH` (1: one write
    /// at a time), each on a fresh stack, timed from its first message to its last. Markdown
    /// rows on stdout.
    CacheDrain {
        /// The cache's `TTPULSE_PIPELINE_DEPTH`s, comma-separated, alternated in one run.
        #[arg(long, value_delimiter = ',', default_value = "1,3,1,3")]
        pipeline_depths: Vec<u32>,
        /// How long the ingester's simulator fills the backlog.
        #[arg(long, default_value_t = 10)]
        fill_seconds: u64,
        #[arg(long, default_value_t = 20_000)]
        rate: u32,
        #[arg(long, default_value = "target/release/ttpulse")]
        bin: PathBuf,
    },
    /// Slow and stalled clients (issue 14): the measured sessions' delivery with and without one
    /// session that never reads, alternated on fresh servers; then a mass reconnect of
    /// `--reconnect-sessions` at once. Markdown rows on stdout.
    Resilience {
        #[arg(long, default_value_t = 1_000)]
        sessions: usize,
        /// Rounds of (without, with) the stalled session.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[arg(long, default_value_t = 5_000)]
        reconnect_sessions: usize,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        #[arg(long, default_value = "target/release/ttpulse")]
        bin: PathBuf,
    },
    /// Many sessions of one profile on a fresh server with default settings (session limits
    /// lifted): `quiet` (one instrument each), `dashboard` (a 12-instrument watchlist at 1
    /// update per key per second and one account), `firehose` (everything at full rate, beside
    /// the plain broadcast server sending each session as many updates), `idle` (connected,
    /// subscribed to nothing). Markdown rows on stdout.
    Sessions {
        #[arg(long, value_enum)]
        profile: fanout::Profile,
        /// Session counts, comma-separated, each on a fresh server.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
        sessions: Vec<usize>,
        /// The simulator's rate (events/s).
        #[arg(long, default_value_t = 1000)]
        sim_rate: u32,
        /// Offer wire version 2 (batched frames).
        #[arg(long)]
        batched: bool,
        /// Also run the plain broadcast server with as many sessions, sending each the updates
        /// per second ttpulse did (always on with `--profile firehose`).
        #[arg(long)]
        broadcast: bool,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        /// 0: one embedded process (the default). N: the distributed mode (broker, Redis,
        /// PostgreSQL, one processor and one cache process) with N api processes, the sessions
        /// spread evenly over them, each api process with a load generator of its own: how
        /// more sessions than one process may hold (its open files) are served.
        #[arg(long, default_value_t = 0)]
        api_nodes: usize,
        #[arg(long, default_value = "target/release/ttpulse")]
        bin: PathBuf,
    },
    /// The raw-event decoder alone (issue 15): the same hop-1 lines (quotes, trades and fills
    /// as the simulator writes them) decoded in one pass (`RawEvent::decode`) and through a JSON
    /// tree (`RawEvent::decode_tree`, the path that names a field at fault), alternated in one
    /// run. Prints ns per event for each.
    Decode {
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 4)]
        rounds: usize,
    },
    /// The hub's hottest path alone (issue 14): every update pushed into every session's outbox,
    /// each outbox drained every `--drain-every` updates as a session that keeps up would. No
    /// sockets, no actors: run it under `valgrind --tool=callgrind` to count instructions per
    /// push, which the machine's load does not change. Prints ns and pushes.
    OutboxPush {
        #[arg(long, default_value_t = 1_000)]
        sessions: usize,
        #[arg(long, default_value_t = 2_000)]
        updates: u64,
        /// Distinct instruments the updates cycle through.
        #[arg(long, default_value_t = 30)]
        keys: u64,
        #[arg(long, default_value_t = 10)]
        drain_every: u64,
    },
    /// The minimal WebSocket broadcast server ttpulse's fan-out is compared with.
    BroadcastServer {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        rate: u32,
    },
}

/// CPU and memory of one process over a measurement window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cost {
    pub process: String,
    pub cpu_percent: f64,
    pub rss_mib: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateRow {
    pub rate: u32,
    pub latency: Latency,
    /// ttpulse's own histogram (ingest -> frame written to the socket), as bucket bounds in ms.
    #[serde(default)]
    pub server_p50_ms: Option<f64>,
    #[serde(default)]
    pub server_p99_ms: Option<f64>,
    pub warmup: Latency,
    pub cost: Vec<Cost>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputStep {
    pub target: u32,
    pub achieved: f64,
    pub p99_ms: f64,
    pub lag: f64,
    pub sustained: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutRow {
    pub sessions: usize,
    pub ours: fanout::FanoutResult,
    pub ours_bytes_per_session: f64,
    /// The same sessions offering wire version 2 (batched frames), on a fresh server.
    #[serde(default)]
    pub ours_batched: fanout::FanoutResult,
    #[serde(default)]
    pub ours_batched_bytes_per_session: f64,
    pub broadcast: fanout::FanoutResult,
    pub broadcast_bytes_per_session: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub setup: serde_json::Value,
    pub embedded: Vec<RateRow>,
    pub distributed: Vec<RateRow>,
    pub kafka_raw: Vec<RateRow>,
    pub redis_raw: Vec<RateRow>,
    pub polling_1s: Option<Latency>,
    pub throughput_embedded: Vec<ThroughputStep>,
    pub throughput_distributed: Vec<ThroughputStep>,
    pub broker_max_rate: f64,
    pub fanout: Vec<FanoutRow>,
}

struct Plan {
    rates: Vec<u32>,
    warmup: Duration,
    window: Duration,
    embedded_steps: Vec<u32>,
    distributed_steps: Vec<u32>,
    sessions: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match cli.command {
        Cmd::FanoutClient { url, sessions, seconds, batched, stalled, reconnect, profile } => {
            let options = fanout::ClientOptions { batched, stalled, reconnect, profile };
            // One descriptor per session: take the hard limit, and report it with the result.
            let open_files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
            let mut result = runtime.block_on(fanout::client(&url, sessions, Duration::from_secs(seconds), options))?;
            result.open_files_limit = open_files;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Cmd::Fanout { sessions, seconds, bin } => runtime.block_on(async {
            let work = std::env::temp_dir().join(format!("ttpulse-bench-fanout-{}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            for n in sessions {
                log(format!("fan-out to {n} sessions"));
                let row = fanout_row(&bin, &work, &work, n, seconds).await?;
                println!("{}", serde_json::to_string(&row)?);
            }
            let _ = std::fs::remove_dir_all(&work);
            Ok(())
        }),
        Cmd::Resilience { sessions, rounds, reconnect_sessions, seconds, bin } => runtime.block_on(async {
            let work = std::env::temp_dir().join(format!("ttpulse-bench-resilience-{}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            let data = work.join("data");
            println!("| round | stalled sessions | connected | updates/s | p50 ms | p99 ms | max ms | server KiB per session |");
            println!("|---|---|---|---|---|---|---|---|");
            let mut p99 = [Vec::new(), Vec::new()];
            for round in 1..=rounds {
                for stalled in [0, 1] {
                    log(format!("round {round}: {sessions} sessions, {stalled} stalled"));
                    let options = fanout::ClientOptions { stalled, ..Default::default() };
                    let Served { result: r, bytes_per_session: bytes, .. } =
                        ours_fanout(&bin, &data, &work, sessions, seconds, options, FANOUT_SIM_RATE).await?;
                    let short = if r.sessions_connected < sessions { " (short: not quoted)" } else { "" };
                    println!(
                        "| {round} | {stalled} | {}{short} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
                        r.sessions_connected,
                        r.messages_per_second,
                        r.delivery.p50_ms,
                        r.delivery.p99_ms,
                        r.delivery.max_ms,
                        bytes / 1024.0
                    );
                    if short.is_empty() {
                        p99[stalled].push(r.delivery.p99_ms);
                    }
                }
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
            };
            let (without, with) = (median(&mut p99[0]), median(&mut p99[1]));
            println!("\nmedian p99: {without:.1} ms without, {with:.1} ms with one stalled session ({:+.1} %)\n", (with / without - 1.0) * 100.0);
            log(format!("mass reconnect of {reconnect_sessions} sessions"));
            let options = fanout::ClientOptions { reconnect: true, ..Default::default() };
            let r = ours_fanout(&bin, &data, &work, reconnect_sessions, seconds, options, FANOUT_SIM_RATE).await?.result;
            let storm = r.reconnect.unwrap_or_default();
            println!("| sessions | connected before | resynced within 30 s | resync p50 ms | p99 ms | max ms | probe subscribe: longest answered wait ms | unanswered in 5 s / sent | connect retries |");
            println!("|---|---|---|---|---|---|---|---|---|");
            println!(
                "| {} | {} | {} ({:.1} %) | {:.0} | {:.0} | {:.0} | {:.0} | {} / {} | {} |",
                storm.sessions,
                r.sessions_connected,
                storm.resynced_within_30s,
                storm.resynced_within_30s as f64 * 100.0 / storm.sessions.max(1) as f64,
                storm.resync.p50_ms,
                storm.resync.p99_ms,
                storm.resync.max_ms,
                storm.probe_max_ms,
                storm.probe_unanswered,
                storm.probes,
                r.connect_retries
            );
            let _ = std::fs::remove_dir_all(&work);
            Ok(())
        }),
        Cmd::Sessions { profile, sessions, sim_rate, batched, broadcast, seconds, api_nodes, bin } => runtime.block_on(async {
            let work = std::env::temp_dir().join(format!("ttpulse-bench-sessions-{}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            let data = work.join("data");
            println!(
                "| server | profile | wire | sessions | connected | updates/s | frames/s | delivery p50 / p99 / max ms | \
                 added delay p99 ms | fills p99 ms | server CPU (cores) | load generator CPU (cores) | server KiB per session |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            let wire = if batched { "v2" } else { "v1" };
            for n in sessions {
                log(format!("{n} {profile:?} sessions ({wire}), simulator at {sim_rate}/s"));
                let options = fanout::ClientOptions { batched, profile, ..Default::default() };
                if api_nodes > 0 {
                    let ours = distributed_fanout(&bin, &work, n, seconds, options, sim_rate, api_nodes)?;
                    let server = format!("ttpulse, {api_nodes} api processes");
                    println!("{}", sessions_row(&server, &profile.name(), wire, &ours));
                    // The plain broadcast server is one process: it cannot hold more sessions
                    // than one process may have open files either.
                    continue;
                }
                let ours = ours_fanout(&bin, &data, &work, n, seconds, options, sim_rate).await?;
                println!("{}", sessions_row("ttpulse", &profile.name(), wire, &ours));
                if broadcast || profile == fanout::Profile::Firehose {
                    let plain = broadcast_fanout(n, seconds, &ours.result).await?;
                    println!("{}", sessions_row("plain broadcast", "ttpulse's updates/s", "v1", &plain));
                }
            }
            let _ = std::fs::remove_dir_all(&work);
            Ok(())
        }),
        Cmd::Decode { events, rounds } => decode(events, rounds),
        Cmd::OutboxPush { sessions, updates, keys, drain_every } => {
            outbox_push(sessions, updates, keys, drain_every);
            Ok(())
        }
        Cmd::BroadcastServer { addr, rate } => runtime.block_on(fanout::broadcast_server(&addr, rate)),
        Cmd::Run { quick, bin, out } => runtime.block_on(run(quick, &bin, &out)),
        Cmd::Scale { processors, pipeline_depths, rate, seconds, bin } => runtime.block_on(async {
            let work = std::env::temp_dir().join(format!("ttpulse-bench-scale-{}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            println!(
                "| processors | pipeline depth | events/s processed | processor CPU (cores) | events per processor CPU-second | \
                 CPU µs per event: processor / cache / api / ingester | consumer lag at the end |"
            );
            println!("|---|---|---|---|---|---|---|");
            let runs = processors.iter().flat_map(|&n| pipeline_depths.iter().map(move |&depth| (n, depth)));
            for (n, depth) in runs {
                log(format!("{n} processor(s), pipeline depth {depth}, simulator at {rate}/s"));
                let db = format!("bench_scale_{}_{n}_{depth}", std::process::id());
                let depth_env = [("TTPULSE_PIPELINE_DEPTH", depth.to_string())];
                let stack = Stack::start(&bin, &work, &work, &db, rate, n, &depth_env)?;
                let row = scale_row(&stack, Duration::from_secs(seconds)).await;
                let per_event = |role: &str| row.micros_per_event.get(role).copied().unwrap_or(0.0);
                println!(
                    "| {n} | {depth} | {:.0} | {:.2} | {:.0} | {:.1} / {:.1} / {:.1} / {:.1} | {:.0} |",
                    row.events_per_sec,
                    row.processor_cores,
                    row.events_per_cpu_second,
                    per_event("processor"),
                    per_event("cache"),
                    per_event("api"),
                    per_event("ingester"),
                    row.lag
                );
            }
            let _ = std::fs::remove_dir_all(&work);
            Ok(())
        }),
        Cmd::CacheDrain { pipeline_depths, fill_seconds, rate, bin } => runtime.block_on(async {
            let work = std::env::temp_dir().join(format!("ttpulse-bench-drain-{}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            println!(
                "| cache pipeline depth | updates in the backlog | drained in (s) | updates/s | \
                 CPU (cores): cache / Redis / api / broker | CPU µs per update: cache / Redis / api |"
            );
            println!("|---|---|---|---|---|---|");
            for (run, depth) in pipeline_depths.into_iter().enumerate() {
                log(format!("cache pipeline depth {depth}: filling the backlog for {fill_seconds} s at {rate}/s"));
                let db = format!("bench_drain_{}_{run}", std::process::id());
                let mut stack = Stack::start(&bin, &work, &work, &db, rate, 1, &[])?;
                let row = drain_row(&mut stack, depth, Duration::from_secs(fill_seconds)).await?;
                let per_update = |cores: f64| cores * 1e6 / row.updates_per_sec.max(1.0);
                println!(
                    "| {depth} | {} | {:.2} | {:.0} | {:.2} / {:.2} / {:.2} / {:.2} | {:.1} / {:.1} / {:.1} |",
                    row.backlog,
                    row.seconds,
                    row.updates_per_sec,
                    row.cores[0],
                    row.cores[1],
                    row.cores[2],
                    row.cores[3],
                    per_update(row.cores[0]),
                    per_update(row.cores[1]),
                    per_update(row.cores[2]),
                );
            }
            let _ = std::fs::remove_dir_all(&work);
            Ok(())
        }),
        Cmd::Latency { rate, batched, seconds, bin } => runtime.block_on(async {
            let work = std::env::temp_dir().join(format!("ttpulse-bench-latency-{}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            let env = env(&[("TTPULSE_SIM_RATE", rate.to_string()), ("TTPULSE_DATA_DIR", work.display().to_string())]);
            let (server, url) = procs::ttpulse(&bin, "embedded", &env, &work)?;
            let ws = url.replacen("http", "ws", 1) + "/ws";
            let ((latency, _), cost) =
                with_cost(&[&server], measure::ws_latency_on(&ws, batched, Duration::from_secs(2), Duration::from_secs(seconds)))
                    .await?;
            println!("{}", serde_json::json!({"rate": rate, "latency": latency, "cost": cost}));
            drop(server);
            let _ = std::fs::remove_dir_all(&work);
            Ok(())
        }),
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

/// Runs `f` while sampling the CPU and memory of `procs` around it.
async fn with_cost<T>(
    procs: &[&Proc],
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Vec<Cost>)> {
    let before: Vec<(f64, u64)> = procs.iter().map(|p| p.usage()).collect();
    let start = Instant::now();
    let value = f.await?;
    let seconds = start.elapsed().as_secs_f64();
    let cost = procs
        .iter()
        .zip(before)
        .map(|(p, (cpu0, _))| {
            let (cpu1, rss) = p.usage();
            Cost {
                process: p.name.clone(),
                cpu_percent: (cpu1 - cpu0) / seconds * 100.0,
                rss_mib: rss as f64 / 1048576.0,
            }
        })
        .collect();
    Ok((value, cost))
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

async fn run(quick: bool, bin: &Path, out: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(bin.is_file(), "{} is missing: build it with `cargo build --release --bin ttpulse`", bin.display());
    std::fs::create_dir_all(out)?;
    let work = std::env::temp_dir().join(format!("ttpulse-bench-{}", std::process::id()));
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    let plan = if quick {
        Plan {
            rates: vec![1_000, 10_000],
            warmup: Duration::from_secs(2),
            window: Duration::from_secs(4),
            embedded_steps: vec![20_000, 50_000],
            distributed_steps: vec![5_000, 20_000],
            sessions: vec![1_000],
        }
    } else {
        Plan {
            rates: vec![1_000, 10_000, 50_000],
            warmup: Duration::from_secs(3),
            window: Duration::from_secs(10),
            embedded_steps: vec![20_000, 50_000, 100_000],
            distributed_steps: vec![5_000, 10_000, 20_000, 50_000],
            sessions: vec![1_000, 5_000, 10_000],
        }
    };
    let mut report = Report {
        setup: serde_json::json!({
            "mode": if quick { "quick" } else { "full" },
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "broker": "nisshi 0.8.1 (memory storage), single broker, no replication",
            "warmup_seconds": plan.warmup.as_secs(),
            "window_seconds": plan.window.as_secs(),
            "started_at_unix": measure::now_micros() / 1_000_000,
        }),
        ..Report::default()
    };

    for &rate in &plan.rates {
        log(format!("embedded end-to-end at {rate} events/s"));
        let data = work.join(format!("embedded-{rate}"));
        let (server, url) = procs::ttpulse(
            bin,
            "embedded",
            &env(&[
                ("TTPULSE_SIM_RATE", rate.to_string()),
                ("TTPULSE_DATA_DIR", data.display().to_string()),
                ("TTPULSE_SIM_SEED", "7".into()),
            ]),
            &logs,
        )?;
        let ws = url.replacen("http", "ws", 1) + "/ws";
        let before = server_histogram(&server.admin);
        let measure = async {
            if rate == plan.rates[0] {
                let (ws_result, polling) = tokio::join!(
                    measure::ws_latency(&ws, plan.warmup, plan.window),
                    measure::polling_baseline(&url, plan.warmup + plan.window)
                );
                report.polling_1s = Some(polling?);
                ws_result
            } else {
                measure::ws_latency(&ws, plan.warmup, plan.window).await
            }
        };
        let ((latency, warmup), cost) = with_cost(&[&server], measure).await?;
        let (server_p50_ms, server_p99_ms) = server_quantiles(&before, &server_histogram(&server.admin));
        report.embedded.push(RateRow { rate, latency, server_p50_ms, server_p99_ms, warmup, cost });
    }

    for &rate in &plan.rates {
        log(format!("distributed end-to-end at {rate} events/s, then the raw broker and Redis trips"));
        let stack = Stack::start(bin, &work, &logs, &format!("bench_{}_{rate}", std::process::id()), rate, 1, &[])?;
        let ws = stack.api_url.replacen("http", "ws", 1) + "/ws";
        let role_refs: Vec<&Proc> = stack.roles.iter().collect();
        let before = server_histogram(&stack.api_admin);
        let ((latency, warmup), cost) =
            with_cost(&role_refs, measure::ws_latency(&ws, plan.warmup, plan.window)).await?;
        let (server_p50_ms, server_p99_ms) = server_quantiles(&before, &server_histogram(&stack.api_admin));
        report.distributed.push(RateRow { rate, latency, server_p50_ms, server_p99_ms, warmup, cost });
        let brokers = stack.brokers.clone();
        let ((latency, warmup), cost) =
            with_cost(&[&stack.broker], measure::kafka_round_trip(&brokers, rate, plan.warmup, plan.window)).await?;
        report.kafka_raw.push(RateRow { rate, latency, server_p50_ms: None, server_p99_ms: None, warmup, cost });
        let ((latency, warmup), cost) =
            with_cost(&[&stack.redis], measure::redis_round_trip(&stack.redis_url, rate, plan.warmup, plan.window))
                .await?;
        report.redis_raw.push(RateRow { rate, latency, server_p50_ms: None, server_p99_ms: None, warmup, cost });
    }

    log("throughput, embedded");
    for &target in &plan.embedded_steps {
        let data = work.join(format!("tp-{target}"));
        let (server, url) = procs::ttpulse(
            bin,
            "embedded",
            &env(&[("TTPULSE_SIM_RATE", target.to_string()), ("TTPULSE_DATA_DIR", data.display().to_string())]),
            &logs,
        )?;
        let step = throughput_step(&url, &server.admin, target, &plan).await?;
        log(format!("  {target}/s: achieved {:.0}/s, p99 {:.1} ms", step.achieved, step.p99_ms));
        report.throughput_embedded.push(step);
        drop(server);
    }
    log("throughput, distributed");
    for &target in &plan.distributed_steps {
        let stack =
            Stack::start(bin, &work, &logs, &format!("bench_tp_{}_{target}", std::process::id()), target, 1, &[])?;
        let step = throughput_step(&stack.api_url, &stack.processor_admin, target, &plan).await?;
        log(format!("  {target}/s: achieved {:.0}/s, p99 {:.1} ms, lag {:.0}", step.achieved, step.p99_ms, step.lag));
        report.throughput_distributed.push(step);
        if target == plan.distributed_steps[0] {
            report.broker_max_rate = measure::kafka_max_rate(&stack.brokers, if quick { 4 } else { 10 }).await?;
            log(format!("  broker raw produce->consume: {:.0} msg/s", report.broker_max_rate));
        }
    }

    for &sessions in &plan.sessions {
        log(format!("fan-out to {sessions} sessions"));
        report.fanout.push(fanout_row(bin, &work, &logs, sessions, plan.window.as_secs()).await?);
    }

    report::write(&report, out)?;
    let _ = std::fs::remove_dir_all(&work);
    log(format!("wrote {}", out.display()));
    Ok(())
}

fn server_histogram(url: &str) -> Vec<(f64, f64)> {
    procs::buckets(
        &procs::http_get(&format!("{url}/metrics")).unwrap_or_default(),
        "ttpulse_end_to_end_latency_seconds",
    )
}

fn server_quantiles(before: &[(f64, f64)], after: &[(f64, f64)]) -> (Option<f64>, Option<f64>) {
    (Some(procs::bucket_quantile(before, after, 0.5)), Some(procs::bucket_quantile(before, after, 0.99)))
}

/// Runs at `target` events/s: the achieved processing rate, the p99 seen by a client, and the
/// consumer lag left at the end (distributed). `processor` is the processor's admin URL.
async fn throughput_step(api: &str, processor: &str, target: u32, plan: &Plan) -> anyhow::Result<ThroughputStep> {
    let processed = |url: &str| {
        procs::metric(&procs::http_get(&format!("{url}/metrics")).unwrap_or_default(), "ttpulse_events_processed_total")
    };
    tokio::time::sleep(plan.warmup).await;
    let before = processed(processor);
    let start = Instant::now();
    let ws = api.replacen("http", "ws", 1) + "/ws";
    let (latency, _) = measure::ws_latency(&ws, Duration::ZERO, plan.window).await?;
    let achieved = (processed(processor) - before) / start.elapsed().as_secs_f64();
    let lag = procs::metric(
        &procs::http_get(&format!("{processor}/metrics")).unwrap_or_default(),
        "ttpulse_kafka_consumer_lag",
    );
    let sustained = achieved >= 0.95 * target as f64 && latency.p99_ms < 100.0 && lag < target as f64 * 0.5;
    Ok(ThroughputStep { target, achieved, p99_ms: latency.p99_ms, lag, sustained })
}

/// One scale-out measurement: what the processors together took over the window.
struct ScaleRow {
    events_per_sec: f64,
    /// CPU the processors used over the window, in cores (1.0: one core all the time).
    processor_cores: f64,
    events_per_cpu_second: f64,
    /// CPU microseconds per processed event, by role (all processors together).
    micros_per_event: std::collections::BTreeMap<String, f64>,
    lag: f64,
}

/// After a warm-up, the events the stack's processors processed over `window`, and their CPU.
async fn scale_row(stack: &Stack, window: Duration) -> ScaleRow {
    let processed = |admins: &[String]| -> f64 {
        admins
            .iter()
            .map(|url| {
                procs::metric(
                    &procs::http_get(&format!("{url}/metrics")).unwrap_or_default(),
                    "ttpulse_events_processed_total",
                )
            })
            .sum()
    };
    // CPU seconds used so far, by role.
    let cpu = || {
        let mut by_role = std::collections::BTreeMap::<String, f64>::new();
        for p in &stack.roles {
            *by_role.entry(p.name.clone()).or_default() += p.usage().0;
        }
        by_role
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (events_before, cpu_before, start) = (processed(&stack.processor_admins), cpu(), Instant::now());
    tokio::time::sleep(window).await;
    let events = processed(&stack.processor_admins) - events_before;
    let used: std::collections::BTreeMap<String, f64> = cpu()
        .into_iter()
        .map(|(role, after)| (role.clone(), after - cpu_before.get(&role).copied().unwrap_or(0.0)))
        .collect();
    let cpu_seconds = used.get("processor").copied().unwrap_or(0.0);
    let elapsed = start.elapsed().as_secs_f64();
    let micros_per_event =
        used.iter().map(|(role, s)| (role.clone(), if events > 0.0 { s * 1e6 / events } else { 0.0 })).collect();
    let lag = stack
        .processor_admins
        .iter()
        .map(|url| {
            procs::metric(&procs::http_get(&format!("{url}/metrics")).unwrap_or_default(), "ttpulse_kafka_consumer_lag")
        })
        .sum();
    ScaleRow {
        events_per_sec: events / elapsed,
        processor_cores: cpu_seconds / elapsed,
        events_per_cpu_second: if cpu_seconds > 0.0 { events / cpu_seconds } else { 0.0 },
        micros_per_event,
        lag,
    }
}

/// See `Cmd::Decode`.
fn decode(events: usize, rounds: usize) -> anyhow::Result<()> {
    use ttpulse_actors::domain::RawEvent;
    let lines: Vec<Vec<u8>> = (0..events)
        .map(|n| {
            let (id, ts) = (format!("sim:{n}"), 1_764_000_000_000_000i64 + n as i64);
            let body = match n % 10 {
                0..=6 => serde_json::json!({"type": "quote", "instrument": "ESZ6", "bid": "6850.25", "bid_qty": 12,
                    "ask": "6850.5", "ask_qty": 7}),
                7..=8 => serde_json::json!({"type": "trade", "instrument": "NQZ6", "price": "21000.75", "qty": 3,
                    "aggressor": "buy"}),
                _ => serde_json::json!({"type": "fill", "account": "ACC1", "order_id": format!("o{n}"),
                    "fill_id": format!("f{n}"), "instrument": "ESZ6", "side": "sell", "price": "6850.25", "qty": 2}),
            };
            let mut event = body;
            event["event_id"] = id.into();
            event["ts"] = ts.into();
            event["ingest_ts"] = (ts + 50).into();
            serde_json::to_vec(&event).expect("json")
        })
        .collect();
    let time = |decode: &dyn Fn(&[u8]) -> Option<RawEvent>| {
        let start = Instant::now();
        let decoded = lines.iter().filter(|line| decode(line).is_some()).count();
        assert_eq!(decoded, lines.len(), "every line decodes");
        start.elapsed().as_nanos() as f64 / lines.len() as f64
    };
    let one_pass = |line: &[u8]| RawEvent::decode(line).ok();
    let tree = |line: &[u8]| RawEvent::decode_tree(line).ok();
    println!("| round | one pass (ns/event) | JSON tree (ns/event) | ratio |");
    println!("|---|---|---|---|");
    for round in 1..=rounds {
        let (fast, slow) = (time(&one_pass), time(&tree));
        println!("| {round} | {fast:.0} | {slow:.0} | {:.2} |", slow / fast);
    }
    Ok(())
}

/// See `Cmd::OutboxPush`.
fn outbox_push(sessions: usize, updates: u64, keys: u64, drain_every: u64) {
    use ttpulse_actors::domain::{InstrumentState, Published, Update};
    use ttpulse_actors::session::outbox::{Frame, Outbox, OutboxLimits};
    // A session that keeps up: nothing conflates, nothing is closed.
    let limits = OutboxLimits { conflate_after: Duration::from_secs(3600), ..OutboxLimits::default() };
    let outboxes: Vec<_> = (0..sessions).map(|_| Outbox::new(limits)).collect();
    let frames: Vec<_> = (0..updates)
        .map(|n| {
            let mut state = InstrumentState::empty(&format!("SYM{}", n % keys));
            state.seq = n / keys + 1;
            Frame::new(&Published::new(Update::Instrument(state), 0))
        })
        .collect();
    let (mut pushes, mut drained) = (0u64, 0usize);
    let start = Instant::now();
    for (n, frame) in frames.iter().enumerate() {
        let now = Instant::now();
        for outbox in &outboxes {
            std::hint::black_box(outbox.push(frame, now));
            pushes += 1;
        }
        if (n as u64 + 1).is_multiple_of(drain_every) {
            drained += outboxes.iter().map(|o| o.drain(usize::MAX).updates.len()).sum::<usize>();
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{}",
        serde_json::json!({
            "sessions": sessions, "updates": updates, "pushes": pushes, "drained": drained,
            "ns_per_push": elapsed.as_nanos() as f64 / pushes as f64,
        })
    );
}

/// A cache's drain of a backlog: how many updates, how long from its first to its last, and
/// the cores the cache, Redis, the api and the broker used meanwhile.
struct DrainRow {
    backlog: u64,
    seconds: f64,
    updates_per_sec: f64,
    cores: [f64; 4],
}

/// Stops the stack's cache, lets the ingester fill `tt_processed_data` for `fill`, stops it and
/// waits for the processor to publish everything, then starts a cache with `depth` and times
/// its drain of the backlog.
async fn drain_row(stack: &mut Stack, depth: u32, fill: Duration) -> anyhow::Result<DrainRow> {
    let counter = |admin: &str, name: &str| {
        procs::metric(&procs::http_get(&format!("{admin}/metrics")).unwrap_or_default(), name)
    };
    stack.stop("cache");
    tokio::time::sleep(fill).await;
    stack.stop("ingester");
    // The processor catches up with its own lag: done once it reads no more raw events. (What it
    // publishes still grows a little: it samples each account's P&L every second.)
    let raw_read = || counter(&stack.processor_admin, "ttpulse_kafka_consumed_total") as u64;
    let mut last = raw_read();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = raw_read();
        if now == last && now > 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the processor did not finish its backlog in 300 s");
        last = now;
    }
    let backlog = counter(&stack.processor_admin, "ttpulse_kafka_produced_total") as u64;
    // A consumer group of its own reads the topic from its start, whatever the first cache took
    // before it was stopped.
    let cache = stack.start_role(
        "cache",
        &[("TTPULSE_PIPELINE_DEPTH", depth.to_string()), ("TTPULSE_KAFKA_GROUP", format!("{}-drain", stack.db))],
    )?;
    let consumed = || counter(&cache.admin, "ttpulse_kafka_consumed_total") as u64;
    let usage = |stack: &Stack| {
        let role = |name: &str| stack.roles.iter().filter(|p| p.name == name).map(|p| p.usage().0).sum::<f64>();
        [role("cache"), stack.redis.usage().0, role("api"), stack.broker.usage().0]
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    // From its first message (the group join is not the writes' time) to the last.
    let (start, first, cpu_before) = loop {
        let seen = consumed();
        if seen > 0 {
            break (Instant::now(), seen, usage(stack));
        }
        anyhow::ensure!(Instant::now() < deadline, "the cache consumed nothing in 600 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while consumed() < backlog {
        anyhow::ensure!(Instant::now() < deadline, "the cache did not drain {backlog} updates in 600 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = usage(stack);
    let cores = std::array::from_fn(|i| (cpu_after[i] - cpu_before[i]) / seconds);
    Ok(DrainRow { backlog, seconds, updates_per_sec: (backlog - first) as f64 / seconds, cores })
}

/// Broker, Redis, a database and one ttpulse process per role (`processors` of the processor
/// role, sharing the partitions), the ingester's simulator at `rate`.
struct Stack {
    roles: Vec<Proc>,
    api_url: String,
    /// Admin URLs (metrics) of the api and the processor.
    api_admin: String,
    processor_admin: String,
    /// Every processor's admin URL (the first is `processor_admin`).
    processor_admins: Vec<String>,
    brokers: String,
    redis_url: String,
    broker: Proc,
    redis: Proc,
    db: String,
    /// What starts one more role process: the binary, its logs' folder and each role's settings.
    bin: PathBuf,
    logs: PathBuf,
    settings: std::collections::HashMap<&'static str, Vec<(String, String)>>,
}

impl Stack {
    /// `processor_env`: settings of the processors only, on top of the common ones.
    fn start(
        bin: &Path,
        work: &Path,
        logs: &Path,
        db: &str,
        rate: u32,
        processors: usize,
        processor_env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let (broker, brokers) = procs::broker(logs)?;
        let redis_dir = work.join(format!("redis-{db}"));
        std::fs::create_dir_all(&redis_dir)?;
        let (redis, redis_url) = procs::redis(&redis_dir)?;
        let database = procs::database(db)?;
        let common = |role: &str, sim: u32| {
            env(&[
                ("TTPULSE_ROLES", role.to_owned()),
                ("TTPULSE_KAFKA_BROKERS", brokers.clone()),
                ("TTPULSE_KAFKA_GROUP", db.to_owned()),
                ("TTPULSE_REDIS_URL", redis_url.clone()),
                ("TTPULSE_DATABASE_URL", database.clone()),
                ("TTPULSE_DATA_DIR", work.join(format!("data-{db}")).display().to_string()),
                ("TTPULSE_SIM_RATE", sim.to_string()),
                ("TTPULSE_SIM_SEED", "7".into()),
            ])
        };
        let mut processor_roles = Vec::new();
        for _ in 0..processors.max(1) {
            let mut settings = common("processor", 0);
            settings.extend(env(processor_env));
            processor_roles.push(procs::ttpulse(bin, "processor", &settings, logs)?.0);
        }
        let processor_admins: Vec<String> = processor_roles.iter().map(|p| p.admin.clone()).collect();
        let settings = std::collections::HashMap::from([("cache", common("cache", 0)), ("api", common("api", 0))]);
        let (cache, _) = procs::ttpulse(bin, "cache", &settings["cache"], logs)?;
        let (api, api_url) = procs::ttpulse(bin, "api", &common("api", 0), logs)?;
        // Let the consumer groups settle before the first event.
        std::thread::sleep(Duration::from_secs(2));
        let (ingester, _) = procs::ttpulse(bin, "ingester", &common("ingester", rate), logs)?;
        let (api_admin, processor_admin) = (api.admin.clone(), processor_admins[0].clone());
        // In the order the cost table lists them: ingester, processors, cache, api.
        let mut roles = vec![ingester];
        roles.extend(processor_roles);
        roles.extend([cache, api]);
        Ok(Self {
            roles,
            api_url,
            api_admin,
            processor_admin,
            processor_admins,
            brokers,
            redis_url,
            broker,
            redis,
            db: db.to_owned(),
            bin: bin.to_owned(),
            logs: logs.to_owned(),
            settings,
        })
    }

    /// Stops every process of `role`.
    fn stop(&mut self, role: &str) {
        self.roles.retain(|p| p.name != role);
    }

    /// Starts one more process of `role` (its usual settings and `extra`).
    fn start_role(&mut self, role: &'static str, extra: &[(&str, String)]) -> anyhow::Result<Started> {
        let mut settings = self.settings.get(role).context("a role the stack knows")?.clone();
        settings.extend(env(extra));
        let (proc, url) = procs::ttpulse(&self.bin, role, &settings, &self.logs)?;
        let started = Started { pid: proc.pid(), url, admin: proc.admin.clone() };
        self.roles.push(proc);
        Ok(started)
    }
}

/// A role process [`Stack::start_role`] started: its pid, base URL and admin URL.
struct Started {
    pid: u32,
    url: String,
    admin: String,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.roles.clear();
        procs::drop_database(&self.db);
    }
}

/// A fan-out run seen from both ends: the client's result, the server's peak resident memory
/// during the run, its memory per connected session (that peak minus the server's memory before
/// any session connected) and the cores it used over the measured window.
struct Served {
    result: fanout::FanoutResult,
    peak_rss: u64,
    bytes_per_session: f64,
    cpu_cores: f64,
    /// The load generator's cores over the same window (it shares the machine).
    client_cpu_cores: f64,
}

/// Runs the fan-out client (its own process) against `url` while sampling the server's memory,
/// and its CPU at the client's `measuring` and `measured` lines; `bytes_per_session` is left 0.
fn fanout_client(
    url: &str,
    sessions: usize,
    seconds: u64,
    options: fanout::ClientOptions,
    server_pid: u32,
) -> anyhow::Result<Served> {
    let me = std::env::current_exe()?;
    let mut child = Command::new(me)
        .args(["fanout-client", "--url", url, "--sessions", &sessions.to_string(), "--seconds", &seconds.to_string()])
        .args(["--stalled", &options.stalled.to_string()])
        .args(["--profile", &options.profile.name()])
        .args(options.batched.then_some("--batched"))
        .args(options.reconnect.then_some("--reconnect"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let cpu = |client: u32| (procs::usage(server_pid).0, procs::usage(client).0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut rss, mut window_start, mut window_cpu) = (0, None, None);
    let deadline = Instant::now()
        + fanout::connect_window(sessions)
        + Duration::from_secs(60 + seconds + if options.reconnect { 180 } else { 0 });
    let result = loop {
        rss = rss.max(procs::usage(server_pid).1);
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) if line.contains(r#""phase":"measuring""#) => {
                window_start = Some((Instant::now(), cpu(child.id())));
            }
            Ok(line) if line.contains(r#""phase":"measured""#) => {
                window_cpu = window_start.map(|(at, (server, client))| {
                    let (server_now, client_now) = cpu(child.id());
                    let seconds = at.elapsed().as_secs_f64();
                    ((server_now - server) / seconds, (client_now - client) / seconds)
                });
            }
            Ok(line) => break serde_json::from_str::<fanout::FanoutResult>(&line)?,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!("no result from the fan-out client"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "the fan-out client did not finish");
    };
    let _ = child.wait();
    let (cpu_cores, client_cpu_cores) = window_cpu.unwrap_or((f64::NAN, f64::NAN));
    Ok(Served { result, peak_rss: rss, bytes_per_session: 0.0, cpu_cores, client_cpu_cores })
}

/// The simulator's rate under the fan-out, resilience and reconnect rows.
const FANOUT_SIM_RATE: u32 = 1000;

/// One ttpulse server (fresh, same seed, the simulator at `sim_rate`) and the fan-out client
/// against it.
async fn ours_fanout(
    bin: &Path,
    data: &Path,
    logs: &Path,
    sessions: usize,
    seconds: u64,
    options: fanout::ClientOptions,
    sim_rate: u32,
) -> anyhow::Result<Served> {
    let _ = std::fs::remove_dir_all(data);
    let (server, url) = procs::ttpulse(
        bin,
        "fanout",
        &env(&[
            ("TTPULSE_SIM_RATE", sim_rate.to_string()),
            ("TTPULSE_DATA_DIR", data.display().to_string()),
            ("TTPULSE_SIM_SEED", "7".into()),
        ]
        .into_iter()
        .chain(session_limits_lifted())
        .collect::<Vec<_>>()),
        logs,
    )?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.usage().1;
    let ws = url.replacen("http", "ws", 1) + "/ws";
    let pid = server.pid();
    let served = tokio::task::spawn_blocking(move || fanout_client(&ws, sessions, seconds, options, pid)).await??;
    drop(server);
    Ok(served.per_session_over(idle))
}

/// The load generator opens thousands of sessions at once, all from this host: the session
/// limits lifted.
fn session_limits_lifted() -> Vec<(&'static str, String)> {
    [
        ("TTPULSE_MAX_CONNECTIONS", "20000"),
        ("TTPULSE_WS_CONNECT_RATE", "0"),
        ("TTPULSE_MAX_CONNECTIONS_PER_ADDRESS", "0"),
        ("TTPULSE_WS_CONNECT_RATE_PER_ADDRESS", "0"),
    ]
    .map(|(key, value)| (key, value.to_owned()))
    .into()
}

/// The distributed stack with `api_nodes` api processes, the sessions spread evenly over them,
/// one load generator per api process (each process, server or client, may hold at most its
/// open-file limit of sockets). Delivery percentiles are the worst of the load generators'
/// (an upper bound of the percentile over all sessions); CPU and memory are the api processes'.
fn distributed_fanout(
    bin: &Path,
    work: &Path,
    sessions: usize,
    seconds: u64,
    options: fanout::ClientOptions,
    sim_rate: u32,
    api_nodes: usize,
) -> anyhow::Result<Served> {
    let db = format!("bench_sessions_{}_{sessions}", std::process::id());
    let mut stack = Stack::start(bin, work, work, &db, sim_rate, 1, &[])?;
    // Its api process has the default limits: replaced by `api_nodes` with them lifted.
    stack.stop("api");
    let lifted = session_limits_lifted();
    let apis: Vec<Started> = (0..api_nodes).map(|_| stack.start_role("api", &lifted)).collect::<anyhow::Result<_>>()?;
    std::thread::sleep(Duration::from_secs(1));
    let idle: u64 = apis.iter().map(|api| procs::usage(api.pid).1).sum();
    let clients: Vec<_> = apis
        .iter()
        .enumerate()
        .map(|(i, api)| {
            let share = sessions / api_nodes + usize::from(i < sessions % api_nodes);
            let (ws, pid) = (api.url.replacen("http", "ws", 1) + "/ws", api.pid);
            std::thread::spawn(move || fanout_client(&ws, share, seconds, options, pid))
        })
        .collect();
    let mut served = Vec::new();
    for client in clients {
        served.push(client.join().map_err(|_| anyhow::anyhow!("a load generator thread panicked"))??);
    }
    drop(stack);
    Ok(Served::combined(&served, idle))
}

impl Served {
    /// Several load generators' results as one row: counts and rates summed, each percentile
    /// the worst of theirs, memory per session over the servers' memory before `idle`.
    fn combined(parts: &[Served], idle: u64) -> Self {
        let worst = |pick: fn(&fanout::FanoutResult) -> Option<&Latency>| -> Option<Latency> {
            let all: Vec<&Latency> = parts.iter().filter_map(|p| pick(&p.result)).collect();
            if all.is_empty() {
                return None;
            }
            let max = |f: fn(&Latency) -> f64| all.iter().map(|l| f(l)).fold(0.0, f64::max);
            Some(Latency {
                samples: all.iter().map(|l| l.samples).sum(),
                seconds: max(|l| l.seconds),
                per_second: all.iter().map(|l| l.per_second).sum(),
                p50_ms: max(|l| l.p50_ms),
                p99_ms: max(|l| l.p99_ms),
                p999_ms: max(|l| l.p999_ms),
                max_ms: max(|l| l.max_ms),
            })
        };
        let sum = |f: fn(&Served) -> f64| parts.iter().map(f).sum::<f64>();
        let mut result = parts[0].result.clone();
        result.sessions_wanted = parts.iter().map(|p| p.result.sessions_wanted).sum();
        result.sessions_connected = parts.iter().map(|p| p.result.sessions_connected).sum();
        result.connect_retries = parts.iter().map(|p| p.result.connect_retries).sum();
        result.messages_per_second = sum(|p| p.result.messages_per_second);
        result.frames_per_second = sum(|p| p.result.frames_per_second);
        result.delivery = worst(|r| Some(&r.delivery)).unwrap_or_else(|| result.delivery.clone());
        result.added_delay = worst(|r| r.added_delay.as_ref());
        result.fills = worst(|r| r.fills.as_ref());
        result.open_files_limit = parts.iter().map(|p| p.result.open_files_limit).min().unwrap_or(0);
        let peak_rss = parts.iter().map(|p| p.peak_rss).sum();
        Served {
            result,
            peak_rss,
            bytes_per_session: 0.0,
            cpu_cores: sum(|p| p.cpu_cores),
            client_cpu_cores: sum(|p| p.client_cpu_cores),
        }
        .per_session_over(idle)
    }

    fn per_session_over(self, before: u64) -> Self {
        let connected = self.result.sessions_connected.max(1) as f64;
        Self { bytes_per_session: self.peak_rss.saturating_sub(before) as f64 / connected, ..self }
    }
}

/// The plain broadcast server with `sessions` clients, sending each the updates per second that
/// ttpulse sent each session in `ours`.
async fn broadcast_fanout(sessions: usize, seconds: u64, ours: &fanout::FanoutResult) -> anyhow::Result<Served> {
    let per_session = (ours.messages_per_second / ours.sessions_connected.max(1) as f64).max(1.0).round() as u32;
    let addr = format!("127.0.0.1:{}", procs::free_port());
    let me = std::env::current_exe()?;
    let child =
        Command::new(me).args(["broadcast-server", "--addr", &addr, "--rate", &per_session.to_string()]).spawn()?;
    let server = procs::adopt("broadcast", child);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.usage().1;
    let (ws, pid) = (format!("ws://{addr}/"), server.pid());
    let served = tokio::task::spawn_blocking(move || {
        fanout_client(&ws, sessions, seconds, fanout::ClientOptions::default(), pid)
    })
    .await??;
    drop(server);
    Ok(served.per_session_over(before))
}

/// One markdown row of `ttpulse-bench sessions`; a run that connected fewer sessions than asked
/// says so (and is not to be quoted).
fn sessions_row(server: &str, shape: &str, wire: &str, served: &Served) -> String {
    let r = &served.result;
    let short = if r.sessions_connected < r.sessions_wanted { " (short: not quoted)" } else { "" };
    if !short.is_empty() {
        log(format!(
            "{server}: {} of {} sessions connected ({} failed connection attempts; the load generator's open-file limit: {})",
            r.sessions_connected, r.sessions_wanted, r.connect_retries, r.open_files_limit
        ));
    }
    let p99 = |latency: &Option<Latency>| latency.as_ref().map_or("-".to_owned(), |l| format!("{:.1}", l.p99_ms));
    format!(
        "| {server} | {shape} | {wire} | {} | {}{short} | {:.0} | {:.0} | {:.1} / {:.1} / {:.1} | {} | {} | {:.2} | {:.2} | {:.1} |",
        r.sessions_wanted,
        r.sessions_connected,
        r.messages_per_second,
        r.frames_per_second,
        r.delivery.p50_ms,
        r.delivery.p99_ms,
        r.delivery.max_ms,
        p99(&r.added_delay),
        p99(&r.fills),
        served.cpu_cores,
        served.client_cpu_cores,
        served.bytes_per_session / 1024.0
    )
}

async fn fanout_row(bin: &Path, work: &Path, logs: &Path, sessions: usize, seconds: u64) -> anyhow::Result<FanoutRow> {
    let data = work.join(format!("fanout-{sessions}"));
    let ours = ours_fanout(bin, &data, logs, sessions, seconds, Default::default(), FANOUT_SIM_RATE).await?;
    let batched = fanout::ClientOptions { batched: true, ..Default::default() };
    let ours_batched = ours_fanout(bin, &data, logs, sessions, seconds, batched, FANOUT_SIM_RATE).await?;
    // The same sessions on a plain broadcast server, sending each session the rate ttpulse did.
    let broadcast = broadcast_fanout(sessions, seconds, &ours.result).await?;
    Ok(FanoutRow {
        sessions,
        ours_bytes_per_session: ours.bytes_per_session,
        ours_batched: ours_batched.result,
        ours_batched_bytes_per_session: ours_batched.bytes_per_session,
        broadcast_bytes_per_session: broadcast.bytes_per_session,
        ours: ours.result,
        broadcast: broadcast.result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(p50_ms: f64, p99_ms: f64, per_second: f64) -> Latency {
        Latency { samples: 100, seconds: 8.0, per_second, p50_ms, p99_ms, p999_ms: p99_ms, max_ms: p99_ms * 2.0 }
    }

    fn served(connected: usize, p99_ms: f64, peak_rss: u64) -> Served {
        let result = fanout::FanoutResult {
            sessions_wanted: 10,
            sessions_connected: connected,
            delivery: latency(p99_ms / 2.0, p99_ms, 1000.0),
            messages_per_second: 1000.0,
            fills: None,
            open_files_limit: 20_000,
            ..Default::default()
        };
        Served { result, peak_rss, bytes_per_session: 0.0, cpu_cores: 0.5, client_cpu_cores: 0.25 }
    }

    /// Several load generators make one row: counts and rates add up, each percentile is the
    /// worst of theirs (an upper bound over all sessions), memory is per connected session.
    #[test]
    fn load_generators_combine_into_one_row() {
        let row = Served::combined(&[served(10, 100.0, 3_000), served(9, 300.0, 5_000)], 1_100);
        let r = &row.result;
        assert_eq!((r.sessions_wanted, r.sessions_connected), (20, 19));
        assert_eq!((r.messages_per_second, r.delivery.per_second, r.delivery.samples), (2000.0, 2000.0, 200));
        assert_eq!((r.delivery.p50_ms, r.delivery.p99_ms, r.delivery.max_ms), (150.0, 300.0, 600.0));
        assert!(r.fills.is_none(), "no load generator measured fills");
        assert_eq!((row.cpu_cores, row.client_cpu_cores, row.peak_rss), (1.0, 0.5, 8_000));
        assert_eq!(row.bytes_per_session, (8_000.0 - 1_100.0) / 19.0);
    }
}
