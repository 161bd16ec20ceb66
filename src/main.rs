#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use ttpulse::cli::{Cli, Command};
use ttpulse::{http, wiring};

/// Every role allocates and frees many small, short-lived values per event (updates, their
/// JSON, keys); glibc's allocator spent about a third of the CPU on them (BENCHMARKS.md,
/// "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A missing .env is normal; a broken one is worth saying.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::FAILURE;
    }
    let filter = EnvFilter::try_from_env("TTPULSE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    match std::env::var("TTPULSE_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => logs.init(),
        // One JSON object per line for log shippers; an event inside a hop's span (enabled at
        // debug) also carries that span's fields.
        Ok("json") => logs.json().with_current_span(true).with_span_list(true).init(),
        Ok(other) => {
            eprintln!("error: TTPULSE_LOG_FORMAT is `{other}`: it is `text` (the default) or `json`");
            return ExitCode::FAILURE;
        }
    }

    let cli = Cli::parse();
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Migrate { config } => {
                let pool = wiring::open_database(&config)?;
                let shown = match &config.carriers.database_url {
                    Some(url) => ttpulse_actors::store::redact_url(url),
                    None => config.database_path().display().to_string(),
                };
                println!("database {shown} ({}) is up to date", pool.backend());
                Ok(())
            }
            Command::Run { config } => run(config).await,
            Command::Check { config } => {
                let findings = ttpulse::check::run(&config).await;
                let mut problems = 0;
                for (what, result) in &findings {
                    match result {
                        Ok(detail) => println!("ok    {what}: {detail}"),
                        Err(problem) => {
                            problems += 1;
                            println!("FAIL  {what}: {problem}");
                        }
                    }
                }
                anyhow::ensure!(problems == 0, "{problems} of {} checks failed", findings.len());
                println!("all {} checks passed", findings.len());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ttpulse::config::Config) -> anyhow::Result<()> {
    let grace = std::time::Duration::from_secs(config.server.shutdown_grace_secs);
    let traces = match &config.traces.otlp_endpoint {
        None => None,
        Some(endpoint) => {
            let names: Vec<&str> = config.roles.iter().map(|r| r.name()).collect();
            let settings = ttpulse_actors::trace::TraceSettings {
                endpoint: endpoint.clone(),
                ratio: config.traces.trace_sample_ratio,
                service: format!("ttpulse-{}", names.join("-")),
            };
            tracing::info!(endpoint, ratio = settings.ratio, service = settings.service, "traces exported by OTLP");
            Some(ttpulse_actors::trace::init(&settings)?)
        }
    };
    let running = http::start(config).await?;
    let url = format!("http://{}", running.addr);
    let admin = format!("http://{}", running.admin_addr);
    let roles: Vec<&str> = running.pipeline.roles.iter().map(|r| r.name()).collect();
    if running.pipeline.hub.is_some() {
        tracing::info!(
            "ttpulse is running: open {url}/  (snapshot {url}/api/snapshot, stream ws://{}/ws; admin {admin}/admin/actors)",
            running.addr
        );
    } else {
        tracing::info!(roles = ?roles, "ttpulse is running: health at {admin}/admin/health");
    }
    // The first lines on stdout name the URL to open and the admin URL (scripts and tests read
    // them).
    // A closed stdout (a supervisor that stopped reading) must not stop the server.
    let banner =
        format!("\n  ttpulse ({}) is up: open {url}/\n  admin: {admin}/  (health, actors, metrics)\n", roles.join(","));
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    let server = actix_rt::spawn(running.server);
    wait_for_signal().await;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections, intake stopped, storing what is in flight (a second signal exits at once)"
    );
    // Stop accepting first (pushed events are then refused), then drain the pipeline.
    let handle = running.handle.clone();
    let pipeline = running.pipeline.clone();
    let drain = async move {
        let stopping = actix_rt::spawn(async move { handle.stop(true).await });
        pipeline.shut_down().await;
        let _ = stopping.await;
        let _ = server.await;
        // The spans still queued go out last, within the same grace period (a collector that
        // does not answer costs at most its export timeout, never more than the grace).
        if let Some(traces) = traces {
            let _ = actix_rt::task::spawn_blocking(move || traces.shutdown()).await;
        }
    };
    // Whatever the broker, Redis or the database do, the process ends within the grace period.
    let cut_short = tokio::select! {
        () = drain => None,
        () = actix_rt::time::sleep(grace) => Some("the grace period (TTPULSE_SHUTDOWN_GRACE_SECS) ran out"),
        () = wait_for_signal() => Some("a second signal came"),
    };
    if let Some(why) = cut_short {
        // HTTP clients whose events were not confirmed were answered 503 (or lose the
        // connection now) and resend; what the pipeline still held is said here.
        let mut held = 0;
        for report in running.pipeline.health.reports() {
            if report.queue_depth > 0 {
                held += report.queue_depth;
                tracing::error!(actor = %report.name, waiting = report.queue_depth, "not handed on before exit");
            }
        }
        tracing::error!(held, "{why}: exiting before the pipeline drained");
        std::process::exit(1);
    }
    tracing::info!("ttpulse stopped");
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    let mut term = match actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops ttpulse");
            let _ = actix_rt::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = actix_rt::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
