//! The bearer token of `[http].token`: `POST /ops` and the admin routes (`/check/*`) answer
//! 401 without it. The token is compared in constant time and never logged.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ServerState;

/// Lets the request through when no token is configured or it carries `Bearer <token>`.
pub(super) async fn require_token(
    State(state): State<ServerState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.inner.options.token.as_ref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|p| token.matches(p.trim())) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({
            "error": "this route needs the bearer token of [http].token (Authorization: Bearer …)"
        })),
    )
        .into_response()
}
