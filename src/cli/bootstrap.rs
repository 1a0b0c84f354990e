//! `pgroar bootstrap`: dump every source table under the slot's snapshot, then stream as
//! `pgroar run` does. `run` also comes here when it finds an unfinished bootstrap.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pgroar::bootstrap::{self, BootstrapOptions};
use pgroar::config::Config;
use pgroar::server::bootstrapping::{Preview, serve_progress};
use pgroar::status::Progress;
use tokio::net::TcpListener;
use tracing::info;

use super::serve::shutdown_signal;

/// Options of `pgroar bootstrap`.
#[derive(Args, Debug)]
pub struct BootstrapArgs {
    /// The TOML config file (every key can be overridden as PGROAR_<SECTION>_<KEY>).
    #[arg(long, short, env = "PGROAR_CONFIG")]
    config: PathBuf,
    /// Throw away a complete index (and drop its slot) and bootstrap again.
    #[arg(long)]
    force: bool,
    /// COPY sessions in parallel (default: the number of CPUs, 2 to 8).
    #[arg(long)]
    connections: Option<usize>,
    /// Threads parsing and translating rows (default: the number of CPUs, up to 8).
    #[arg(long)]
    workers: Option<usize>,
    /// Exit once the bootstrap is durable instead of going on streaming.
    #[arg(long)]
    no_stream: bool,
    /// Do nothing (and succeed) when the data directory already holds a complete index: for an
    /// init step that runs before every start (a Kubernetes init container, `ExecStartPre`).
    #[arg(long, conflicts_with = "force")]
    if_needed: bool,
}

pub fn run(args: BootstrapArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)
        .with_context(|| format!("config {} is not valid", args.config.display()))?;
    if args.if_needed && complete_or_seeded(&config)? {
        info!(
            data_dir = %config.storage.data_dir.display(),
            "the data directory already holds a complete index: nothing to bootstrap"
        );
        if args.no_stream {
            return Ok(());
        }
        let runtime = super::runtime()?;
        return runtime.block_on(super::serve::stream(config));
    }
    let mut options = BootstrapOptions {
        force: args.force,
        ..BootstrapOptions::default()
    };
    if let Some(n) = args.connections {
        options.connections = n.max(1);
    }
    if let Some(n) = args.workers {
        options.workers = n.max(1);
    }
    let runtime = super::runtime()?;
    runtime.block_on(bootstrap_then_stream(config, options, !args.no_stream))
}

/// Bootstraps (serving progress on `[http].listen`), then streams unless `stream` is false.
/// Whether the data directory holds a complete index — with `[replication]`, an empty one is
/// first given the stream's newest checkpoint when the stream has a history (a standby's or a
/// replaced leader's first start): only the first leader bootstraps.
fn complete_or_seeded(config: &Config) -> anyhow::Result<bool> {
    match bootstrap::marker::state(&config.storage.data_dir)? {
        bootstrap::DataDir::Complete(_) => Ok(true),
        bootstrap::DataDir::Empty if config.replication.is_some() => {
            super::runtime()?.block_on(super::follow::seed(config))
        }
        _ => Ok(false),
    }
}

pub(crate) async fn bootstrap_then_stream(
    config: Config,
    options: BootstrapOptions,
    stream: bool,
) -> anyhow::Result<()> {
    pgroar::pipeline::replication::check_new_history(&config).await?;
    // Installed before anything answers: a SIGTERM from then on is a clean stop.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let progress = Progress::new();
    let reporter =
        bootstrap::progress::spawn_reporter(Arc::clone(&progress), Duration::from_secs(5));
    let listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let preview = Preview::default();
    let server = tokio::spawn(serve_progress(
        listener,
        Arc::clone(&progress),
        config.postgres.slot.clone(),
        config.postgres.publication.clone(),
        preview.clone(),
        async move {
            let _ = server_stopped.await;
        },
    ));
    let (result, stopping) = {
        let boot = bootstrap::bootstrap_serving(&config, &options, &progress, |snapshot| {
            info!("the index is complete: answering queries while its checkpoint is written");
            preview.publish(&config, snapshot);
        });
        tokio::pin!(boot);
        tokio::select! {
            r = &mut boot => (Some(r), false),
            () = &mut shutdown => {
                // A complete dump is kept: its checkpoint takes seconds, redoing it minutes.
                if preview.is_published() {
                    info!("stopping once the index's checkpoint is durable");
                    (Some(boot.await), true)
                } else {
                    (None, false)
                }
            }
        }
    };
    progress.finish();
    let _ = stop_server.send(());
    let _ = server.await;
    // The preview's snapshot would keep every chunk the writer copies from now on: let it go.
    drop(preview);
    let _ = tokio::task::spawn_blocking(move || reporter.join()).await;
    let (summary, index) = match result {
        None => anyhow::bail!(
            "interrupted: the bootstrap did not finish; the next `pgroar bootstrap` or `pgroar \
             run` starts it over"
        ),
        Some(r) => r.context("bootstrap failed")?,
    };
    for t in &summary.tables {
        info!(
            table = %t.table,
            rows = t.rows,
            bytes = t.bytes,
            rows_per_sec = t.rows_per_sec.round(),
            "table loaded"
        );
    }
    let phases: Vec<String> = summary
        .phases
        .iter()
        .map(|(name, secs)| format!("{name} {secs:.3} s"))
        .collect();
    info!(phases = %phases.join(", "), "bootstrap phases");
    info!(
        rows = summary.rows,
        alive = summary.alive,
        consistent_point = %summary.consistent_point,
        secs = summary.elapsed.as_secs_f64(),
        bad_slot_ids = summary.translate.bad_slot_ids,
        eval_errors = summary.translate.eval_errors,
        unparsable_values = summary.translate.unparsable_values,
        "bootstrap complete"
    );
    if !stream || stopping {
        // Freeing a large index takes a while: off the async threads.
        let _ = tokio::task::spawn_blocking(move || drop(index)).await;
        return Ok(());
    }
    // The index just checkpointed is what loading the checkpoint would give: serve it as is.
    super::serve::stream_from(config, Some(index)).await
}
