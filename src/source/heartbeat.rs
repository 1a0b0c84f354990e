//! The heartbeat: when the replication stream has been silent for half its receive timeout, a
//! short-lived ordinary connection writes a non-transactional logical message
//! (`pg_logical_emit_message(false, 'pgroar.heartbeat', '')`). Decoding sends it (and moves the
//! server's WAL end, so keepalives follow) down every pgoutput stream with messages on; if the
//! stream is alive, something arrives well before the receive timeout. An idle server sends
//! nothing by itself while our acknowledgements keep arriving, so without this a quiet
//! database and a dead connection would look the same.
//!
//! A heartbeat that fails (no privilege, a standby, an unreachable server) is logged and
//! changes nothing else: the receive timeout then decides.

use std::time::Duration;

use tracing::debug;

use super::{ConnInfo, connect_sql, error_chain};

/// The prefix of heartbeat messages (every pgroar source ignores them).
pub const HEARTBEAT_PREFIX: &str = "pgroar.heartbeat";

/// Sends one heartbeat in the background, giving up after `within`.
pub(super) fn send(conn: ConnInfo, within: Duration) {
    tokio::spawn(async move {
        let sent = tokio::time::timeout(within, async {
            let client = connect_sql(&conn).await.map_err(|e| error_chain(&e))?;
            client
                .batch_execute(&format!(
                    "SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', '')"
                ))
                .await
                .map_err(|e| error_chain(&e))
        })
        .await;
        match sent {
            Ok(Ok(())) => debug!("heartbeat sent"),
            Ok(Err(e)) => debug!(error = %e, "heartbeat failed"),
            Err(_) => debug!(within_ms = within.as_millis() as u64, "heartbeat timed out"),
        }
    });
}
