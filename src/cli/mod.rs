//! Command-line interface: one subcommand per file.

mod bootstrap;
mod check;
mod query;
mod run;
mod wal;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A live, queryable roaring-bitmap index of PostgreSQL tables, fed by logical replication.
#[derive(Parser, Debug)]
#[command(name = "pgroar", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Copy every source table under a new slot's snapshot into a fresh index, then stream
    /// from the slot's consistent point (as `run`).
    Bootstrap(bootstrap::BootstrapArgs),
    /// Load and validate a config file; print the index fields and sync sources it defines.
    Check {
        /// The TOML config file (every key can be overridden as PGROAR_<SECTION>_<KEY>).
        #[arg(long, short, env = "PGROAR_CONFIG")]
        config: PathBuf,
    },
    /// Query a running server (`pgroar run`) and print its JSON answer.
    Query(query::QueryArgs),
    /// Stream changes into the index from the durable LSN and serve it over HTTP until
    /// SIGTERM/SIGINT.
    Run {
        /// The TOML config file (every key can be overridden as PGROAR_<SECTION>_<KEY>).
        #[arg(long, short, env = "PGROAR_CONFIG")]
        config: PathBuf,
    },
    /// Inspect the ops WAL.
    Wal {
        #[command(subcommand)]
        command: wal::WalCommand,
    },
}

/// The multi-threaded runtime the long-running commands use.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pgroar")
        .build()
        .context("starting the async runtime")
}

/// Runs the command line.
pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bootstrap(args) => bootstrap::run(args),
        Command::Check { config } => check::run(&config),
        Command::Query(args) => query::run(args),
        Command::Run { config } => run::run(&config),
        Command::Wal { command } => wal::run(command),
    }
}
