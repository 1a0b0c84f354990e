//! The index side of `pgroar check`: a snapshot pinned at an LSN, read range by range.
//!
//! * `POST /check/hold`: the index stops advancing (readers keep the last snapshot) until the pin
//!   names its LSN, for at most 30 s: take the SQL snapshot after this, so that the index cannot
//!   pass its LSN meanwhile.
//! * `POST /check/pin` `{"lsn": "0/16B3748"}`: waits (up to 30 s) until the index is exactly at
//!   that LSN — every transaction committing before it applied, none after (see
//!   `pipeline::pin`) — and keeps that snapshot; answers `{"applied_lsn": …}`. 409 with code
//!   `passed` when the index is already beyond the LSN (take a newer SQL snapshot), `busy` when
//!   another check holds a pin.
//! * `GET /check/state?from=A&to=B`: the pinned snapshot's dump of slots `A..=B` (an
//!   `IndexState` without parent rows).
//! * `DELETE /check/pin`: forgets the pinned snapshot.
//!
//! One pin at a time; a pin is kept until deleted or replaced.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ServerState;
use super::query::error_response as error;
use crate::Lsn;
use crate::index::IndexState;
use crate::pipeline::PinError;

/// How long `POST /check/pin` waits for the index to reach the LSN.
const PIN_WAIT: Duration = Duration::from_secs(30);

/// The body of `POST /check/pin`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PinRequest {
    /// The LSN to pin at (a SQL snapshot's consistent point).
    pub lsn: Lsn,
}

/// The answer to `POST /check/pin`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PinAnswer {
    /// The pinned snapshot's applied LSN (the last transaction before the requested LSN).
    pub applied_lsn: Lsn,
}

/// The query of `GET /check/state`.
#[derive(Debug, Deserialize)]
pub struct Range {
    from: u32,
    to: u32,
}

pub(super) async fn pin(State(state): State<ServerState>, Json(req): Json<PinRequest>) -> Response {
    let Some(pins) = state.inner.pins.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "unavailable",
            "this server has no pipeline to pin".into(),
        );
    };
    let answer = tokio::task::spawn_blocking(move || {
        pins.request(req.lsn)
            .recv_timeout(PIN_WAIT)
            .map_err(|_| None)
            .and_then(|r| r.map_err(Some))
    })
    .await;
    match answer {
        Ok(Ok(snapshot)) => {
            let applied_lsn = snapshot.applied().lsn;
            *state.pinned() = Some(snapshot.settled());
            Json(PinAnswer { applied_lsn }).into_response()
        }
        Ok(Err(Some(e @ PinError::Passed { .. }))) => {
            error(StatusCode::CONFLICT, "passed", e.to_string())
        }
        Ok(Err(Some(e @ PinError::Busy))) => error(StatusCode::CONFLICT, "busy", e.to_string()),
        Ok(Err(Some(e))) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
        Ok(Err(None)) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "pin_timeout",
            format!(
                "the index did not reach LSN {} within {} s (is the stream moving?)",
                req.lsn,
                PIN_WAIT.as_secs()
            ),
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "pin task failed".into(),
        ),
    }
}

pub(super) async fn hold(State(state): State<ServerState>) -> Response {
    let Some(pins) = state.inner.pins.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "unavailable",
            "this server has no pipeline to pin".into(),
        );
    };
    match pins.hold() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(StatusCode::CONFLICT, "busy", e.to_string()),
    }
}

pub(super) async fn state_in(
    State(state): State<ServerState>,
    Query(range): Query<Range>,
) -> Response {
    let Some(snapshot) = state.pinned().clone() else {
        return error(
            StatusCode::CONFLICT,
            "not_pinned",
            "no pinned snapshot: POST /check/pin first".into(),
        );
    };
    let dump: IndexState =
        match tokio::task::spawn_blocking(move || snapshot.state_in(range.from..=range.to)).await {
            Ok(d) => d,
            Err(_) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "dump failed".into(),
                );
            }
        };
    Json(dump).into_response()
}

pub(super) async fn unpin(State(state): State<ServerState>) -> StatusCode {
    *state.pinned() = None;
    StatusCode::NO_CONTENT
}
