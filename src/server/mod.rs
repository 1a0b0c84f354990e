//! The HTTP surface: queries, status, Prometheus metrics, liveness and readiness.
//!
//! | route          | answers |
//! |----------------|---------|
//! | `POST /query`  | a page of ids on the newest snapshot ([`QueryRequest`] → [`QueryResponse`]); errors are [`ErrorBody`] with 400 (bad query, with the filter position for syntax errors), 504 (`min_lsn` not reached in time), 503 (index writer gone, shutting down) |
//! | `GET /status`  | [`StatusReport`]: phase, stage LSNs, lags, rates, counters, last error |
//! | `GET /metrics` | Prometheus text (see [`metrics`](self#metrics)) |
//! | `GET /healthz` | 200 `ok` while the process serves |
//! | `GET /readyz`  | 200 while the pipeline is [`Phase::Streaming`], else 503 naming the phase |
//! | `POST /ops`    | a batch of ops in the trigger pipeline's format, written through the stream (see [`ops`](self::ops)); also at `POST /api/indexes/{name}/ops` |
//! | `/check/*`     | the live check's pin, hold and index state (admin) |
//! | `GET /status/memory` | [`MemoryReport`]: the index's memory by field, made on the index writer's thread (admin; tens of milliseconds of its time at 10^7 slots) |
//!
//! With `[http].token` set, `POST /ops`, `/check/*` and `/status/memory` answer 401 without `Authorization: Bearer <token>`.
//!
//! Guarantees: readers never block the pipeline. Queries run on an immutable snapshot loaded
//! from the sink's published cell, on the blocking pool, with no lock held across an await; the
//! pipeline updates [`Status`] with atomics only. A `min_lsn` wait ends when the applied
//! cursor covers it ([`covers`]), when its timeout passes, or at shutdown; while it waits, its
//! position is registered ([`crate::status::ReadDemand`]) so that the replication source writes the Mark that
//! proves it as soon as it knows one, instead of at its next keepalive Mark.
//!
//! # Metrics
//! `pgroar_lsn{stage="received|durable|applied|checkpointed|server"}`, `pgroar_lag_bytes`
//! (server − applied), `pgroar_lag_seconds`, `pgroar_server_lsn_age_seconds`,
//! `pgroar_alive_slots`, `pgroar_phase{phase}`, one metric per counter of
//! [`crate::status::COUNTERS`] (`pgroar_ops_applied_total`, …, and
//! `pgroar_bad_data_total{kind}` for the bad-data kinds),
//! `pgroar_queries_total{outcome="ok|bad_request|timeout|unavailable|error"}`,
//! `pgroar_min_lsn_waits` (queries waiting for their `min_lsn` now) and the histogram
//! `pgroar_query_duration_seconds`. Every server has its own registry: nothing process-global.

mod auth;
pub mod bootstrapping;
pub mod check;
mod listener;
mod metrics;
mod ops;
mod query;
mod run;
mod status;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::WalKey;
use crate::index::{MemoryReport, Snapshot};
use crate::pipeline::Pins;
use crate::sink::coalescing::{CoalescingSink, MemoryProbe};
use crate::status::{Phase, Status};

pub use ops::{BatchError, OpsIntake, parse_batch};
pub use query::{ErrorBody, QueryRequest, QueryResponse, SortRequest};
pub use run::{RunError, run, run_follower, run_with_index};
pub use status::{ErrorReport, History, RATE_WINDOW, StageLags, StageLsns, StatusReport};

use metrics::ServerMetrics;

/// How often the sampler records ops and the server position (and flushes histograms).
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Tuning of the HTTP server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Page size of a query that gives no `limit`.
    pub default_limit: usize,
    /// Longest `min_lsn` wait of a query that gives no `timeout_ms`.
    pub default_timeout: Duration,
    /// Largest `timeout_ms` accepted (a larger one is refused with 400, not shortened).
    pub max_timeout: Duration,
    /// Queries running at once; more wait for a turn.
    pub max_concurrent_queries: usize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// The bearer token `POST /ops` and the admin routes require (`None`: open).
    pub token: Option<crate::config::Token>,
    /// `/readyz` answers 503 once the index has been behind the server this long (`None`: no
    /// bound).
    pub ready_max_lag: Option<Duration>,
    /// A query still running after this answers 503 (`None`: no deadline).
    pub query_timeout: Option<Duration>,
    /// HTTP connections open at once; more are closed on accept.
    pub max_connections: usize,
}

impl ServerOptions {
    /// Default page size.
    pub const DEFAULT_LIMIT: usize = 50;
    /// Default `min_lsn` wait.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default cap on `timeout_ms`: a minute, long enough for any sane read-your-writes wait.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default request size cap: room for filters with very long `in [...]` lists.
    pub const MAX_BODY_BYTES: usize = 16 << 20;

    /// The options `[http]` sets; the rest at their defaults.
    pub fn from_config(config: &crate::config::Config) -> ServerOptions {
        let http = &config.http;
        ServerOptions {
            token: http.token.clone(),
            ready_max_lag: Some(Duration::from_secs(http.ready_max_lag_secs))
                .filter(|d| !d.is_zero()),
            query_timeout: Some(Duration::from_millis(http.query_timeout_ms))
                .filter(|d| !d.is_zero()),
            max_connections: http.max_connections,
            ..ServerOptions::default()
        }
    }
}

impl Default for ServerOptions {
    /// Defaults: the constants above, and one running query per CPU.
    fn default() -> Self {
        ServerOptions {
            default_limit: Self::DEFAULT_LIMIT,
            default_timeout: Self::DEFAULT_TIMEOUT,
            max_timeout: Self::MAX_TIMEOUT,
            max_concurrent_queries: std::thread::available_parallelism()
                .map_or(2, std::num::NonZero::get),
            max_body_bytes: Self::MAX_BODY_BYTES,
            token: None,
            ready_max_lag: Some(Duration::from_secs(
                crate::config::DEFAULT_READY_MAX_LAG_SECS,
            )),
            query_timeout: Some(Duration::from_millis(
                crate::config::DEFAULT_QUERY_TIMEOUT_MS,
            )),
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Failures of the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Accepting or serving connections failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Everything the handlers read. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ServerState {
    inner: Arc<Inner>,
}

struct Inner {
    status: Arc<Status>,
    published: Arc<ArcSwap<Snapshot>>,
    applied: watch::Receiver<WalKey>,
    options: ServerOptions,
    metrics: ServerMetrics,
    history: Mutex<History>,
    query_slots: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    /// The pipeline's pin requests (`None`: a server over a bare sink).
    pins: Option<Arc<Pins>>,
    /// The snapshot `POST /check/pin` keeps.
    pinned: Mutex<Option<Snapshot>>,
    /// Where `POST /ops` writes (`None`: a server without a pipeline).
    ops: Option<OpsIntake>,
    /// Asks the index writer for `GET /status/memory`.
    memory: Option<MemoryProbe>,
}

impl ServerState {
    /// A state reading snapshots from `published` and waiting on `applied` (both from the
    /// sink: [`CoalescingSink::published`], [`CoalescingSink::applied`]).
    pub fn new(
        status: Arc<Status>,
        published: Arc<ArcSwap<Snapshot>>,
        applied: watch::Receiver<WalKey>,
        options: ServerOptions,
    ) -> ServerState {
        let slots = options.max_concurrent_queries.max(1);
        ServerState {
            inner: Arc::new(Inner {
                status,
                published,
                applied,
                metrics: ServerMetrics::new(),
                history: Mutex::new(History::default()),
                query_slots: Arc::new(Semaphore::new(slots)),
                shutdown: watch::Sender::new(false),
                options,
                pins: None,
                pinned: Mutex::new(None),
                ops: None,
                memory: None,
            }),
        }
    }

    /// This state with the pipeline's pin requests, which `POST /check/pin` serves (call it
    /// before the state is shared).
    pub fn with_pins(mut self, pins: Arc<Pins>) -> ServerState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.pins = Some(pins);
        }
        self
    }

    /// This state with the intake `POST /ops` writes through (call it before the state is
    /// shared).
    pub fn with_ops(mut self, intake: OpsIntake) -> ServerState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.ops = Some(intake);
        }
        self
    }

    /// This state with the index writer's memory probe, which `GET /status/memory` asks (call
    /// it before the state is shared).
    pub fn with_memory(mut self, probe: MemoryProbe) -> ServerState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.memory = Some(probe);
        }
        self
    }

    fn pinned(&self) -> std::sync::MutexGuard<'_, Option<Snapshot>> {
        self.inner
            .pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A state over `sink`'s published snapshots, asking its writer for memory reports.
    pub fn from_sink(
        status: Arc<Status>,
        sink: &CoalescingSink,
        options: ServerOptions,
    ) -> ServerState {
        ServerState::new(status, sink.published(), sink.applied(), options)
            .with_memory(sink.memory_probe())
    }

    /// The pipeline's status.
    pub fn status(&self) -> &Arc<Status> {
        &self.inner.status
    }

    /// The `GET /status` report, as of now.
    pub fn report(&self) -> StatusReport {
        let snapshot = self.inner.published.load();
        let history = self
            .inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        StatusReport::build(
            &self.inner.status,
            snapshot.applied().lsn,
            snapshot.alive_count(),
            &history,
            Instant::now(),
        )
    }

    /// Samples the counters for ops/s and lag (the server's sampler does it every second).
    pub fn sample(&self) {
        self.inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample(&self.inner.status, Instant::now());
    }

    fn applied_key(&self) -> WalKey {
        self.inner.published.load().applied()
    }
}

/// The routes, for embedding in another server; [`serve`] is the usual entry.
pub fn router(state: ServerState) -> Router {
    let body_limit = state.inner.options.max_body_bytes;
    // Writes and admin routes: behind the bearer token when one is configured.
    let guarded = Router::new()
        .route("/ops", post(ops::handle))
        .route("/api/indexes/{name}/ops", post(ops::handle))
        .route("/check/pin", post(check::pin).delete(check::unpin))
        .route("/check/state", get(check::state_in))
        .route("/check/hold", post(check::hold))
        .route("/status/memory", get(memory_handler))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/query", post(query::handle))
        .route("/status", get(status_handler))
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves the routes on `listener` until `shutdown` completes, then lets requests in flight
/// finish (`min_lsn` waits end at once with 503) and returns.
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    state.inner.shutdown.send_replace(false);
    let sampler = tokio::spawn(sample_loop(state.clone()));
    let down = state.inner.shutdown.clone();
    let signal = async move {
        shutdown.await;
        down.send_replace(true);
    };
    let listener = listener::CappedListener::new(listener, state.inner.options.max_connections);
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(signal)
        .await;
    sampler.abort();
    result.map_err(ServerError::Serve)
}

async fn sample_loop(state: ServerState) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.sample();
        state.inner.metrics.upkeep();
    }
}

async fn status_handler(State(state): State<ServerState>) -> Json<StatusReport> {
    Json(state.report())
}

/// How long `GET /status/memory` waits for the index writer (it answers between batches).
const MEMORY_WAIT: Duration = Duration::from_secs(10);

async fn memory_handler(State(state): State<ServerState>) -> Response {
    let unavailable = |error: &str| {
        query::error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", error.into())
    };
    let Some(probe) = state.inner.memory.clone() else {
        return unavailable("this server has no index writer to ask");
    };
    match tokio::task::spawn_blocking(move || probe.report(MEMORY_WAIT)).await {
        Ok(Some(report)) => Json::<MemoryReport>(report).into_response(),
        _ => unavailable(
            "the index writer did not answer within 10 s (busy rebuilding its columns after a restart, or stopping)",
        ),
    }
}

async fn metrics_handler(State(state): State<ServerState>) -> Response {
    let text = state.inner.metrics.render(&state.report());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn readyz(State(state): State<ServerState>) -> (StatusCode, String) {
    match state.inner.status.phase() {
        Phase::Streaming => match (
            state.inner.options.ready_max_lag,
            state.report().lag_seconds,
        ) {
            (Some(bound), Some(lag)) if lag > bound.as_secs_f64() => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "not ready: the index is {lag:.1} s behind the server (http.ready_max_lag_secs = {})",
                    bound.as_secs()
                ),
            ),
            _ => (StatusCode::OK, "ready: streaming".into()),
        },
        phase => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {phase}"),
        ),
    }
}
