//! The HTTP surface while `pgroar bootstrap` dumps the tables (before the index exists):
//! `GET /status` answers `{"phase": "bootstrapping", "slot", "publication", "bootstrap":
//! ProgressReport}`, `/healthz` is 200, `/readyz` is 503 naming the phase, and so is
//! `POST /query` until the dump is complete: then, while its checkpoint is written, queries are
//! answered from the finished index ([`Preview`]), as SQL answers at the consistent point.
//! Once the dump is durable this server stops and the pipeline's server takes the address.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{ServerError, ServerOptions, ServerState, query};
use crate::config::Config;
use crate::index::Snapshot;
use crate::status::{Progress, ProgressReport, Status};

/// The index a bootstrap has finished but not yet made durable: once published, the progress
/// server answers `POST /query` from it. Cheap to clone; published once.
#[derive(Clone, Default)]
pub struct Preview(Arc<OnceLock<ServerState>>);

impl Preview {
    /// Answers queries from `snapshot` from now on, with `config`'s `[http]` options. No
    /// `min_lsn` past the snapshot is ever reached here: such a wait ends as the pipeline's
    /// does when its sink is gone.
    pub fn publish(&self, config: &Config, snapshot: Snapshot) {
        let (_, applied) = watch::channel(snapshot.applied());
        let status = Arc::new(Status::new(
            config.postgres.slot.clone(),
            config.postgres.publication.clone(),
        ));
        let state = ServerState::new(
            status,
            Arc::new(ArcSwap::from_pointee(snapshot)),
            applied,
            ServerOptions::from_config(config),
        );
        let _ = self.0.set(state);
    }

    /// Whether the finished index has been published (the dump is complete).
    pub fn is_published(&self) -> bool {
        self.0.get().is_some()
    }
}

#[derive(Clone)]
struct BootState {
    progress: Arc<Progress>,
    slot: Arc<str>,
    publication: Arc<str>,
    preview: Preview,
}

/// `/status` during a bootstrap.
#[derive(Serialize)]
pub struct BootstrapStatus {
    /// Always `bootstrapping`.
    pub phase: &'static str,
    /// The slot being created.
    pub slot: Arc<str>,
    /// The publication.
    pub publication: Arc<str>,
    /// Per-table progress.
    pub bootstrap: ProgressReport,
}

async fn status(State(s): State<BootState>) -> Json<BootstrapStatus> {
    Json(BootstrapStatus {
        phase: "bootstrapping",
        slot: Arc::clone(&s.slot),
        publication: Arc::clone(&s.publication),
        bootstrap: s.progress.report(),
    })
}

async fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({
            "error": "the index is being bootstrapped; see GET /status for progress",
            "phase": "bootstrapping",
        })),
    )
        .into_response()
}

/// `POST /query`: from the finished index once it is published, else 503.
async fn preview_query(State(s): State<BootState>, body: Bytes) -> Response {
    match s.preview.0.get() {
        Some(state) => query::handle(State(state.clone()), body).await,
        None => unavailable().await,
    }
}

/// Serves the bootstrap's progress on `listener` until `shutdown` completes, and queries from
/// `preview` once it is published.
pub async fn serve_progress(
    listener: TcpListener,
    progress: Arc<Progress>,
    slot: String,
    publication: String,
    preview: Preview,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = BootState {
        progress,
        slot: slot.into(),
        publication: publication.into(),
        preview,
    };
    let app = Router::new()
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(unavailable))
        .route("/query", post(preview_query))
        .layer(DefaultBodyLimit::max(ServerOptions::MAX_BODY_BYTES))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}
