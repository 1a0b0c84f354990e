//! `pgroar run`: stream from the durable LSN, serve HTTP, stop cleanly on SIGTERM/SIGINT.

use std::path::Path;

use anyhow::Context;
use pgroar::config::Config;
use pgroar::pipeline;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

pub fn run(path: &Path) -> anyhow::Result<()> {
    let config =
        Config::load(path).with_context(|| format!("config {} is not valid", path.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pgroar")
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(pipeline::run(config, shutdown_signal()))?;
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
async fn shutdown_signal() {
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
