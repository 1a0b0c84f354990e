//! `pgroar run` as a library call: the pipeline, with the HTTP surface over it.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{info, warn};

use super::{OpsIntake, ServerOptions, ServerState, serve};
use crate::config::Config;
use crate::pipeline::{
    Feed, Pipeline, PipelineError, PipelineOptions, RunSummary, check_identities,
};
use crate::source::{ConnInfo, error_chain};
use crate::translate::Translator;

/// Why [`run`] could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline could not start, or stopped with an error.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The HTTP address cannot be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// `pgroar run`: checks the config's expressions and the tables' replica identities, serves
/// HTTP on `[http].listen`, and streams until `shutdown` completes. A failure of the HTTP
/// server alone is logged; the pipeline goes on until `shutdown`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    run_with_index(config, None, shutdown).await
}

/// [`run`] starting from an index already in memory: the one a bootstrap just checkpointed
/// into the data directory (see [`Pipeline::start_with_index`]).
pub async fn run_with_index(
    config: Config,
    preloaded: Option<crate::index::Index>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    let translator = Translator::new(&config).map_err(PipelineError::from)?;
    check_identities(&config).await?;
    serve_feed(config, Feed::Postgres(translator), preloaded, shutdown).await
}

/// `pgroar follow`: the same HTTP surface over a pipeline fed by the leader's stream
/// (`[replication]`), never connecting to Postgres; `POST /ops` is not offered.
pub async fn run_follower(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    Translator::new(&config).map_err(PipelineError::from)?;
    serve_feed(config, Feed::<Translator>::Follow, None, shutdown).await
}

/// Serves HTTP over a pipeline started from `feed` until `shutdown`.
async fn serve_feed<T: crate::source::Translate>(
    config: Config,
    feed: Feed<T>,
    preloaded: Option<crate::index::Index>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    let follower = matches!(feed, Feed::Follow);
    let listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.http.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(config.http.listen);
    let options = PipelineOptions::from_config(&config);
    let intake = ConnInfo::parse(&config.postgres.url)
        .ok()
        .filter(|_| !follower)
        .map(|conn| OpsIntake::new(conn, &config.postgres.slot, config.schema()));
    let server_options = ServerOptions::from_config(&config);
    let pipeline = Pipeline::start_with_feed(config, feed, options, preloaded).await?;
    let mut state = ServerState::new(
        Arc::clone(pipeline.status()),
        pipeline.published(),
        pipeline.applied(),
        server_options,
    )
    .with_pins(Arc::clone(pipeline.pins()))
    .with_memory(pipeline.memory_probe());
    if let Some(intake) = intake {
        state = state.with_ops(intake);
    }
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async move {
        let _ = server_stopped.await;
    }));
    info!(%addr, "serving HTTP");
    let result = pipeline.run_until(shutdown).await;
    let _ = server_stop.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %error_chain(&e), "the HTTP server failed"),
        Err(_) => warn!("the HTTP server panicked"),
    }
    Ok(result?)
}
