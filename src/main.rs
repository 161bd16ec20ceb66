use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use ttpulse::cli::{Cli, Command};
use ttpulse::{http, wiring};

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
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).init();

    let cli = Cli::parse();
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Migrate { config } => {
                let pool = wiring::open_database(&config)?;
                println!("database {} ({}) is up to date", config.database_path().display(), pool.backend());
                Ok(())
            }
            Command::Run { config } => run(config).await,
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
    let running = http::start(config).await?;
    let url = format!("http://{}", running.addr);
    tracing::info!("ttpulse is running: open {url}/  (snapshot {url}/api/snapshot, stream ws://{}/ws)", running.addr);
    println!("\n  ttpulse is up: open {url}/\n");
    running.server.await?;
    tracing::info!("ttpulse stopped");
    Ok(())
}
