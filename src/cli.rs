//! The command line: `ttpulse run`, `ttpulse migrate`.

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "ttpulse", version, about = "Real-time trading dashboard pipeline")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline (every role in one process on the embedded default) and its HTTP server.
    Run {
        #[command(flatten)]
        config: Config,
    },
    /// Check the configuration and that every configured service answers; print what is wrong.
    Check {
        #[command(flatten)]
        config: Config,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        config: Config,
    },
}
