//! `POST /query`: a filter/sort/page query on the newest snapshot, optionally after waiting for
//! the index to reach an LSN (read-your-writes).
//!
//! The handler holds no lock across an await: it waits on the sink's applied watch, then loads
//! the newest snapshot and runs the query on the blocking pool (a query over a large index can
//! take milliseconds), at most [`ServerOptions::max_concurrent_queries`] at a time.
//!
//! [`ServerOptions::max_concurrent_queries`]: super::ServerOptions::max_concurrent_queries

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::Lsn;
use crate::index::{FilterError, Order, Query, QueryError, QueryResult, Sort};

use super::ServerState;
use super::metrics::Outcome;

/// The body of `POST /query`. Unknown keys are refused (a misspelt `limt` must not silently
/// become the default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// A filter such as `nsfwLevel eq 1 AND tagIds in [4, 9]`; absent, null or blank selects
    /// every live slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Sort field and direction; absent means ascending slot ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<SortRequest>,
    /// Page size, 0 ..= 1,000,000; absent means [`super::ServerOptions::default_limit`]. 0
    /// returns only the total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Answer only once the index reflects every transaction committed before this LSN
    /// (e.g. `pg_current_wal_lsn()` read after the application's commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lsn: Option<Lsn>,
    /// Longest wait for `min_lsn`, in milliseconds; absent means
    /// [`super::ServerOptions::default_timeout`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `sort` of a [`QueryRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortRequest {
    /// A sort field.
    pub field: String,
    /// `asc` (the default) or `desc`.
    #[serde(default = "ascending")]
    pub order: Order,
}

fn ascending() -> Order {
    Order::Asc
}

/// The body of a successful `POST /query`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Slot ids of this page, in result order.
    pub ids: Vec<u32>,
    /// Live slots matching the filter (ignoring cursor and limit).
    pub total: u64,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// The applied LSN of the snapshot that answered.
    pub lsn: Lsn,
}

impl From<QueryResult> for QueryResponse {
    fn from(r: QueryResult) -> Self {
        QueryResponse {
            ids: r.ids,
            total: r.total,
            next_cursor: r.next_cursor,
            lsn: r.applied.lsn,
        }
    }
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, with its causes.
    pub error: String,
    /// A stable machine-readable kind: `bad_request`, `filter_syntax`, `unknown_field`,
    /// `bad_value`, `unknown_sort_field`, `limit_too_large`, `bad_cursor`, `timeout_too_large`,
    /// `min_lsn_timeout`, `unavailable`, `internal`.
    pub code: String,
    /// For `filter_syntax`: the byte offset in the filter where parsing stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// For `min_lsn_timeout` and `unavailable`: the LSN the index had applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_lsn: Option<Lsn>,
}

/// A response of `status` with an [`ErrorBody`] of `code` and `error` (no position or LSN).
pub(super) fn error_response(status: StatusCode, code: &str, error: String) -> Response {
    let body = ErrorBody {
        error,
        code: code.into(),
        position: None,
        applied_lsn: None,
    };
    (status, Json(body)).into_response()
}

/// An error response: status and body.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    outcome: Outcome,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, error: String, outcome: Outcome) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error,
                code: code.into(),
                position: None,
                applied_lsn: None,
            },
            outcome,
        }
    }

    fn bad_request(code: &str, error: String) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, error, Outcome::BadRequest)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// `e` and its causes, joined with ": ".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.ends_with(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        let text = with_causes(&e);
        let code = match &e {
            QueryError::Filter(FilterError::Parse(p)) => {
                let mut err = ApiError::bad_request("filter_syntax", text);
                err.body.position = Some(p.pos);
                return err;
            }
            QueryError::Filter(FilterError::UnknownField(_)) => "unknown_field",
            QueryError::Filter(FilterError::BadValue { .. }) => "bad_value",
            QueryError::Filter(FilterError::Deadline) => {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "query_timeout",
                    "the query ran past its deadline (http.query_timeout_ms): narrow the filter \
                     or raise the deadline"
                        .into(),
                    Outcome::Timeout,
                );
            }
            QueryError::UnknownSortField(_) => "unknown_sort_field",
            QueryError::LimitTooLarge { .. } => "limit_too_large",
            QueryError::Cursor(_) => "bad_cursor",
        };
        ApiError::bad_request(code, text)
    }
}

/// `POST /query`.
pub(crate) async fn handle(State(state): State<ServerState>, body: Bytes) -> Response {
    let (outcome, ran_for, response) = match run(&state, &body).await {
        Ok((response, ran_for)) => (Outcome::Ok, Some(ran_for), Json(response).into_response()),
        Err(e) => (e.outcome, None, e.into_response()),
    };
    state.inner.metrics.query(outcome, ran_for);
    response
}

async fn run(state: &ServerState, body: &[u8]) -> Result<(QueryResponse, Duration), ApiError> {
    let req: QueryRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "bad_request",
            format!("request body is not a valid query: {e}"),
        )
    })?;
    let options = &state.inner.options;
    let timeout = match req.timeout_ms {
        None => options.default_timeout,
        Some(ms) if Duration::from_millis(ms) <= options.max_timeout => Duration::from_millis(ms),
        Some(ms) => {
            return Err(ApiError::bad_request(
                "timeout_too_large",
                format!(
                    "timeout_ms {ms} is above the maximum of {}",
                    options.max_timeout.as_millis()
                ),
            ));
        }
    };
    if let Some(min) = req.min_lsn {
        wait_for(state, min, timeout).await?;
    }
    let query = Query {
        filter: req.filter.filter(|f| !f.trim().is_empty()),
        sort: req.sort.map(|s| Sort {
            field: s.field,
            order: s.order,
        }),
        limit: req.limit.unwrap_or(options.default_limit),
        cursor: req.cursor,
    };
    // The permit moves into the task: a client that hangs up does not free its slot while its
    // query still runs.
    // A turn waits at most the query deadline too.
    let deadline = options.query_timeout;
    let acquire = Arc::clone(&state.inner.query_slots).acquire_owned();
    let permit = match deadline {
        None => acquire.await.ok(),
        Some(d) => tokio::time::timeout(d, acquire)
            .await
            .map_err(|_| {
                unavailable(
                    state,
                    format!(
                        "every query slot stayed busy for {} ms (http.query_timeout_ms)",
                        d.as_millis()
                    ),
                )
            })?
            .ok(),
    }
    .ok_or_else(|| unavailable(state, "the server is shutting down".into()))?;
    let published = Arc::clone(&state.inner.published);
    let (result, ran_for) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let snapshot = published.load_full();
        let result = snapshot.query_until(&query, deadline.map(|d| started + d));
        drop(permit);
        (result, started.elapsed())
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the query failed: {e}"),
            Outcome::Error,
        )
    })?;
    Ok((result?.into(), ran_for))
}

fn unavailable(state: &ServerState, error: String) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        error,
        Outcome::Unavailable,
    );
    e.body.applied_lsn = Some(state.applied_key().lsn);
    e
}

/// Whether the applied cursor covers `min` within `timeout` (as a `min_lsn` wait).
pub(super) async fn wait_covered(state: &ServerState, min: Lsn, timeout: Duration) -> bool {
    wait_for(state, min, timeout).await.is_ok()
}

/// Waits until the applied cursor covers `min`, at most `timeout`.
async fn wait_for(state: &ServerState, min: Lsn, timeout: Duration) -> Result<(), ApiError> {
    let mut applied = state.inner.applied.clone();
    if applied.borrow().covers(min) {
        return Ok(());
    }
    let _waiting = state.inner.metrics.waiting();
    // Tells the source to write the Mark that proves `min` complete as soon as it knows one.
    let _demand = state.inner.status.read_demand().register(min);
    let mut shutdown = state.inner.shutdown.subscribe();
    let reached = tokio::select! {
        r = tokio::time::timeout(timeout, applied.wait_for(|k| k.covers(min))) => {
            r.map(|seen| seen.is_ok())
        }
        _ = shutdown.wait_for(|&down| down) => {
            return Err(unavailable(state, "the server is shutting down".into()));
        }
    };
    match reached {
        Ok(true) => Ok(()),
        Ok(false) => {
            // The sink is gone; what it published last still answers if it is far enough.
            let last = *applied.borrow();
            if last.covers(min) {
                Ok(())
            } else {
                Err(unavailable(
                    state,
                    format!(
                        "the index is not being written (it stopped, or streaming has not \
                         started yet) at {}: it cannot reach {min} now; retry later",
                        last.lsn
                    ),
                ))
            }
        }
        Err(_) => {
            let last = state.applied_key();
            let mut e = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "min_lsn_timeout",
                format!(
                    "the index did not reach min_lsn {min} within {} ms; it has applied up to {}",
                    timeout.as_millis(),
                    last.lsn
                ),
                Outcome::Timeout,
            );
            e.body.applied_lsn = Some(last.lsn);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refuse_unknown_keys_and_default_the_order() {
        let r: QueryRequest = serde_json::from_str(
            r#"{"filter": "a eq 1", "sort": {"field": "s"}, "min_lsn": "0/16B3748"}"#,
        )
        .unwrap();
        assert_eq!(r.sort.unwrap().order, Order::Asc);
        assert_eq!(r.min_lsn, Some(Lsn(0x16B3748)));
        let e = serde_json::from_str::<QueryRequest>(r#"{"limt": 5}"#).unwrap_err();
        assert!(e.to_string().contains("limt"), "{e}");
        assert!(serde_json::from_str::<QueryRequest>(r#"{"min_lsn": "16B3748"}"#).is_err());
    }
}
