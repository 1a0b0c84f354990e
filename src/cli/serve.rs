//! Serving until a signal: what `pgroar run` and `pgroar bootstrap` (after its dump) share.

use pgroar::config::Config;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{info, warn};

/// Streams until SIGTERM/SIGINT, then logs where the pipeline stopped.
pub(crate) async fn stream(config: Config) -> anyhow::Result<()> {
    stream_from(config, None).await
}

/// [`stream`] from an index already in memory (the one a bootstrap just checkpointed).
pub(crate) async fn stream_from(
    config: Config,
    index: Option<pgroar::index::Index>,
) -> anyhow::Result<()> {
    let summary = pgroar::server::run_with_index(config, index, shutdown_signal()).await?;
    log_stopped(&summary);
    Ok(())
}

/// Logs where a pipeline stood when it stopped cleanly.
pub(crate) fn log_stopped(summary: &pgroar::pipeline::RunSummary) {
    info!(
        durable = %summary.durable,
        applied = %summary.applied.lsn,
        checkpointed = %summary.checkpointed.lsn,
        "stopped cleanly"
    );
}

/// Completes at the first SIGTERM or SIGINT. A second one exits at once: everything
/// acknowledged is already in the WAL, so skipping the drain and final checkpoint loses nothing.
///
/// The SIGTERM handler is installed when this is called (inside the runtime), not when the
/// future is first polled: a SIGTERM arriving between a server's first answer and its first
/// poll of this future would otherwise meet the default action and kill the process without
/// its final checkpoint.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let mut term = signal(SignalKind::terminate()).ok();
    async move {
        next_signal(&mut term).await;
        info!("signal received: stopping (send it again to exit at once)");
        tokio::spawn(async move {
            next_signal(&mut term).await;
            warn!("second signal: exiting without the final checkpoint");
            std::process::exit(130);
        });
    }
}

/// The next SIGINT, or SIGTERM when its handler could be installed.
async fn next_signal(term: &mut Option<Signal>) {
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
}
