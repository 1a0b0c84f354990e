//! Command-line interface: one subcommand per file.

mod bootstrap;
mod check;
#[cfg(feature = "demo")]
mod demo;
mod follow;
mod generate;
mod logging;
mod ops;
mod query;
mod run;
mod serve;
mod status;
mod triggers;
mod wal;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// A live, queryable roaring-bitmap index of PostgreSQL tables, fed by logical replication.
#[derive(Parser, Debug)]
#[command(name = "pgroar", version, about)]
struct Cli {
    /// Log format on stderr: `text` (colours only on a terminal) or `json` (one object per line).
    /// The level comes from RUST_LOG (default `info`; `warn` for the demo).
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Copy every source table under a new slot's snapshot into a fresh index, then stream
    /// from the slot's consistent point (as `run`).
    Bootstrap(bootstrap::BootstrapArgs),
    /// Validate a config file, then compare the live index with SQL over the source tables at
    /// one LSN, field by field; exits non-zero on any difference.
    Check(check::CheckArgs),
    /// Try pgroar in a minute: a throwaway PostgreSQL with a generated image feed, bootstrapped,
    /// streamed under a live writer, shown in a view that refreshes in place, checked against
    /// SQL as it runs. Ctrl-C removes everything.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Serve queries as a read replica of a leader (`[replication]`): load the newest
    /// checkpoint from the stream's bucket, replay the stream, keep following. Never connects
    /// to Postgres.
    Follow {
        /// The TOML config file (every key can be overridden as PGROAR_<SECTION>_<KEY>).
        #[arg(long, short, env = "PGROAR_CONFIG")]
        config: PathBuf,
    },
    /// Load the image-feed dataset into a throwaway database (and optionally keep changing it).
    Generate(generate::GenerateArgs),
    /// Read the ops of a data directory as the trigger pipeline's JSON.
    Ops {
        #[command(subcommand)]
        command: ops::OpsCommand,
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
    /// Print a running server's status: phase, positions, lag, rates and every counter.
    Status(status::StatusArgs),
    /// Print the SQL of triggers that write, into an ops table, the ops the stream yields for
    /// the same config (`--drop`: the SQL that removes them).
    Triggers(triggers::TriggersArgs),
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
    let cli = Cli::parse();
    #[cfg(feature = "demo")]
    let quiet = matches!(cli.command, Command::Demo(_));
    #[cfg(not(feature = "demo"))]
    let quiet = false;
    logging::init(cli.log_format, if quiet { "warn" } else { "info" });
    match cli.command {
        Command::Bootstrap(args) => bootstrap::run(args),
        Command::Check(args) => check::run(&args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&args),
        Command::Follow { config } => follow::run(&config),
        Command::Generate(args) => generate::run(args),
        Command::Ops { command } => ops::run(command),
        Command::Query(args) => query::run(args),
        Command::Run { config } => run::run(&config),
        Command::Status(args) => status::run(&args),
        Command::Triggers(args) => triggers::run(&args),
        Command::Wal { command } => wal::run(command),
    }
}

/// The base URL of a running server: `server` (`host:port` or a URL), else the config's listen
/// address (a wildcard listen address is reached on loopback).
fn server_url(config: Option<&Path>, server: Option<&str>) -> anyhow::Result<String> {
    use anyhow::Context;
    if let Some(s) = server {
        let s = s.trim_end_matches('/');
        return Ok(if s.starts_with("http://") || s.starts_with("https://") {
            s.to_owned()
        } else {
            format!("http://{s}")
        });
    }
    let path = config.context("give --config or --server")?;
    let config = pgroar::config::Config::load(path)
        .with_context(|| format!("config {} is not valid", path.display()))?;
    let mut addr: SocketAddr = config.http.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(format!("http://{addr}"))
}
