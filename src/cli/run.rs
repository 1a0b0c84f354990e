//! `pgroar run`: stream from the durable LSN, serve HTTP, stop cleanly on SIGTERM/SIGINT.
//!
//! It needs a bootstrapped data directory: an empty one is refused (bootstrap first), and one
//! an unfinished bootstrap left behind is bootstrapped again from scratch before streaming.

use std::path::Path;

use anyhow::Context;
use pgroar::bootstrap::{self, BootstrapOptions, DataDir};
use pgroar::config::Config;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

pub fn run(path: &Path) -> anyhow::Result<()> {
    let config =
        Config::load(path).with_context(|| format!("config {} is not valid", path.display()))?;
    let data_dir = &config.storage.data_dir;
    match bootstrap::marker::state(data_dir)? {
        DataDir::Empty => anyhow::bail!(
            "{} holds no index yet: run `pgroar bootstrap --config {}` first (it copies the \
             tables, then streams)",
            data_dir.display(),
            path.display()
        ),
        DataDir::Incomplete { .. } => {
            warn!(
                data_dir = %data_dir.display(),
                "the last bootstrap did not finish: bootstrapping again from scratch"
            );
            let runtime = super::runtime()?;
            return runtime.block_on(super::bootstrap::bootstrap_then_stream(
                config,
                BootstrapOptions::default(),
                true,
            ));
        }
        DataDir::Complete(_) => {}
    }
    let runtime = super::runtime()?;
    runtime.block_on(stream(config))
}

/// Streams until SIGTERM/SIGINT, then logs where the pipeline stopped.
pub(crate) async fn stream(config: Config) -> anyhow::Result<()> {
    let summary = pgroar::server::run(config, shutdown_signal()).await?;
    info!(
        durable = %summary.durable,
        applied = %summary.applied.lsn,
        checkpointed = %summary.checkpointed.lsn,
        "stopped cleanly"
    );
    Ok(())
}

/// Completes at the first SIGTERM or SIGINT. A second one exits at once: everything
/// acknowledged is already in the WAL, so skipping the drain and final checkpoint loses nothing.
pub(crate) async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).ok();
    let terminate = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    info!("signal received: stopping (send it again to exit at once)");
    tokio::spawn(async move {
        let again = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = again => {}
        }
        warn!("second signal: exiting without the final checkpoint");
        std::process::exit(130);
    });
}
