//! The HTTP surface while `pgroar bootstrap` dumps the tables (before the index exists):
//! `GET /status` answers `{"phase": "bootstrapping", "slot", "publication", "bootstrap":
//! ProgressReport}`, `/healthz` is 200, `/readyz` and `POST /query` are 503 naming the phase.
//! Once the dump is durable this server stops and the pipeline's server takes the address.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;

use super::ServerError;
use crate::status::{Progress, ProgressReport};

#[derive(Clone)]
struct BootState {
    progress: Arc<Progress>,
    slot: Arc<str>,
    publication: Arc<str>,
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

/// Serves the bootstrap's progress on `listener` until `shutdown` completes.
pub async fn serve_progress(
    listener: TcpListener,
    progress: Arc<Progress>,
    slot: String,
    publication: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = BootState {
        progress,
        slot: slot.into(),
        publication: publication.into(),
    };
    let app = Router::new()
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(unavailable))
        .route("/query", post(unavailable))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}
