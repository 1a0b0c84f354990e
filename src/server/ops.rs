//! `POST /ops` (also `POST /api/indexes/{name}/ops`, the path the trigger pipeline's poller
//! posts to): other producers write ops into the index in the trigger pipeline's batch format.
//!
//! A batch is validated whole first — a malformed one gets 400 naming its first bad entry and
//! writes nothing. It is then written into Postgres's WAL as one transactional logical message
//! (`pg_logical_emit_message`, prefix [`ops_message_prefix`]) and comes back through the slot
//! like any transaction: the stream's order is the batch's order (it sits between the
//! transactions that committed before and after it), the source writes it to pgroar's own WAL
//! under its commit LSN, and a crash anywhere after Postgres's commit loses nothing (the slot
//! sends it again until pgroar's WAL holds it). The answer, 200 with the LSN, comes only once
//! the index has applied the batch — so only after pgroar's WAL has fsynced it — and a query
//! with that `min_lsn` sees it.
//!
//! `{"op":"alive"}` in an entity's ops (the seed's form) is taken out and makes the entity
//! `creates_slot`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use serde_json::Value as Json_;

use tokio_postgres::Client;

use super::ServerState;
use super::query::wait_covered;
use crate::Lsn;
use crate::ops::{EntityOps, Op};
use crate::schema::Schema;
use crate::source::{ConnInfo, connect_sql, ops_message_prefix};

/// What `POST /ops` needs: the database to emit into, the slot the batches are for, the schema
/// to validate against.
pub struct OpsIntake {
    conn: ConnInfo,
    prefix: String,
    schema: Arc<Schema>,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl OpsIntake {
    /// An intake emitting into `conn`'s database for the source reading `slot`.
    pub fn new(conn: ConnInfo, slot: &str, schema: Arc<Schema>) -> OpsIntake {
        OpsIntake {
            conn,
            prefix: ops_message_prefix(slot),
            schema,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// Emits `batch` as one committed transaction; the WAL position after its commit.
    async fn emit(&self, batch: &[EntityOps]) -> Result<Lsn, String> {
        let content = serde_json::to_string(batch).map_err(|e| e.to_string())?;
        let mut guard = self.client.lock().await;
        for attempt in 0..2 {
            if guard.as_ref().is_none_or(Client::is_closed) {
                *guard = Some(connect_sql(&self.conn).await.map_err(|e| e.to_string())?);
            }
            let Some(client) = guard.as_ref() else {
                continue;
            };
            let sql = "SELECT pg_logical_emit_message(true, $1, $2)";
            match client.execute(sql, &[&self.prefix, &content]).await {
                Ok(_) => {
                    let row = client
                        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                        .await
                        .map_err(|e| e.to_string())?;
                    let text: String = row.get(0);
                    return text.parse().map_err(|_| format!("bad LSN {text:?}"));
                }
                Err(e) if attempt == 0 && client.is_closed() => {
                    tracing::debug!(error = %e, "the ops connection was closed; reconnecting");
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("cannot reach Postgres".into())
    }
}

/// A batch's first problem: where (`ops[2].ops[0]`) and what.
#[derive(Debug, PartialEq, Eq)]
pub struct BatchError {
    /// The JSON path of the bad entry.
    pub at: String,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(at: impl Into<String>, reason: impl Into<String>) -> BatchError {
    BatchError {
        at: at.into(),
        reason: reason.into(),
    }
}

/// Parses and checks a batch body against `schema`: entity ids that fit a slot, known ops on
/// known fields, `queryOpSet` queries that parse. `alive` ops become `creates_slot`.
pub fn parse_batch(body: &[u8], schema: &Schema) -> Result<Vec<EntityOps>, BatchError> {
    let json: Json_ =
        serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    let Some(entries) = json.get("ops").and_then(Json_::as_array) else {
        return Err(bad("ops", "missing, or not an array of entities"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("ops[{i}]");
        let id = entry
            .get("entity_id")
            .and_then(Json_::as_i64)
            .filter(|id| u32::try_from(*id).is_ok())
            .ok_or_else(|| bad(&at, "entity_id must be an integer in 0..=4294967295"))?;
        let mut creates_slot = match entry.get("creates_slot") {
            None | Some(Json_::Null) => false,
            Some(Json_::Bool(b)) => *b,
            Some(_) => return Err(bad(&at, "creates_slot must be a boolean")),
        };
        let Some(list) = entry.get("ops").and_then(Json_::as_array) else {
            return Err(bad(&at, "ops missing, or not an array"));
        };
        let mut ops = Vec::with_capacity(list.len());
        for (j, op) in list.iter().enumerate() {
            let at = format!("{at}.ops[{j}]");
            if op.get("op").and_then(Json_::as_str) == Some("alive") {
                creates_slot = true;
                continue;
            }
            let op: Op = serde_json::from_value(op.clone()).map_err(|e| bad(&at, e.to_string()))?;
            check_op(&op, schema).map_err(|reason| bad(&at, reason))?;
            ops.push(op);
        }
        out.push(EntityOps {
            entity_id: id,
            ops,
            creates_slot,
        });
    }
    Ok(out)
}

fn check_op(op: &Op, schema: &Schema) -> Result<(), String> {
    let known = |f: &str| schema.filter(f).is_some() || schema.sort(f).is_some();
    match op {
        Op::Set { field, .. } | Op::Remove { field, .. } | Op::Add { field, .. }
            if !known(field) =>
        {
            Err(format!("unknown field {:?}", &**field))
        }
        Op::Truncate { field: Some(f) } if !known(f) => Err(format!("unknown field {:?}", &**f)),
        Op::QueryOpSet { query, ops } => {
            if let Some(q) = query
                && let Err(e) = q.filter()
            {
                return Err(format!("query {:?} does not parse: {e}", &**q.text()));
            }
            for (k, nested) in ops.iter().enumerate() {
                if matches!(nested, Op::QueryOpSet { .. } | Op::Truncate { .. }) {
                    return Err(format!("ops[{k}]: a queryOpSet holds only field ops"));
                }
                check_op(nested, schema).map_err(|e| format!("ops[{k}]: {e}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// How long a `POST /ops` waits for the index to apply its batch before answering 202.
const APPLY_WAIT: Duration = Duration::from_secs(30);

pub(super) async fn handle(State(state): State<ServerState>, body: Bytes) -> Response {
    let Some(intake) = state.inner.ops.as_ref() else {
        return error(
            StatusCode::NOT_FOUND,
            "this server takes no ops (no pipeline)",
        );
    };
    let batch = match parse_batch(&body, &intake.schema) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("{}: {}; nothing was written", e.at, e.reason),
            );
        }
    };
    let entities = batch.len();
    let lsn = match intake.emit(&batch).await {
        Ok(lsn) => lsn,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the batch could not be written to Postgres ({e}); nothing was written, retry"
                ),
            );
        }
    };
    let body = serde_json::json!({ "lsn": lsn.to_string(), "entities": entities });
    if wait_covered(&state, lsn, APPLY_WAIT).await {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        // Committed in Postgres: it will be applied; the caller can wait with `min_lsn`.
        (StatusCode::ACCEPTED, Json(body)).into_response()
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn the_seed_batch_and_its_alive_form_are_accepted() {
        let schema = fixtures::schema();
        let body = br#"{"ops":[{"entity_id":123,"ops":[{"op":"remove","field":"nsfwLevel","value":8},
            {"op":"set","field":"nsfwLevel","value":16}],"creates_slot":false},
            {"entity_id":456,"ops":[{"op":"queryOpSet","query":"modelVersionIds eq 456",
              "ops":[{"op":"set","field":"baseModels","value":"SDXL"}]}]},
            {"entity_id":7,"ops":[{"op":"alive"},{"op":"set","field":"userId","value":3}]}],
            "meta":{"source":"pg-sync-default","cursor":420000000,"max_id":500000000,"lag_rows":80000000}}"#;
        let batch = parse_batch(body, &schema).expect("valid");
        assert_eq!(batch.len(), 3);
        assert!(!batch[0].creates_slot && !batch[1].creates_slot);
        assert!(batch[2].creates_slot, "alive makes the entity creates_slot");
        assert_eq!(batch[2].ops, vec![Op::set("userId", 3)]);
    }

    #[test]
    fn the_first_bad_entry_is_named() {
        let schema = fixtures::schema();
        let at = |body: &str| parse_batch(body.as_bytes(), &schema).unwrap_err().at;
        assert_eq!(at("not json"), "body");
        assert_eq!(at(r#"{"ops":{}}"#), "ops");
        assert_eq!(at(r#"{"ops":[{"entity_id":-1,"ops":[]}]}"#), "ops[0]");
        assert_eq!(
            at(r#"{"ops":[{"entity_id":4294967296,"ops":[]}]}"#),
            "ops[0]"
        );
        assert_eq!(
            at(
                r#"{"ops":[{"entity_id":1,"ops":[]},{"entity_id":2,"ops":[{"op":"set","field":"nope","value":1}]}]}"#
            ),
            "ops[1].ops[0]"
        );
        assert_eq!(
            at(r#"{"ops":[{"entity_id":1,"ops":[{"op":"frobnicate"}]}]}"#),
            "ops[0].ops[0]"
        );
        let e = parse_batch(
            br#"{"ops":[{"entity_id":1,"ops":[{"op":"queryOpSet","query":"postId eq","ops":[]}]}]}"#,
            &schema,
        )
        .unwrap_err();
        assert!(e.reason.contains("does not parse"), "{e:?}");
        assert_eq!(
            at(r#"{"ops":[{"entity_id":1,"ops":[],"creates_slot":"yes"}]}"#),
            "ops[0]"
        );
    }
}
