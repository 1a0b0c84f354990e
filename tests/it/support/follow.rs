//! Following a running pipeline from a test: the server's WAL position, waiting for the
//! streaming phase, and waiting until the index has applied everything written so far.

use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::pipeline::Pipeline;
use pgroar::status::Phase;
use tokio_postgres::Client;

/// How long any of these waits may take before the test fails.
pub const FOLLOW_PATIENCE: Duration = Duration::from_secs(30);

/// The server's current WAL position.
pub async fn current_lsn(client: &Client) -> Lsn {
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap();
    row.get::<_, String>(0).parse().unwrap()
}

/// Writes a tiny non-transactional logical message: the walsender then has something past a
/// waited-for position to report, even on a quiet cluster.
pub async fn nudge(client: &Client) {
    client
        .execute(
            "SELECT pg_logical_emit_message(false, 'pgroar-test', '')",
            &[],
        )
        .await
        .unwrap();
}

/// Waits until the pipeline reports the streaming phase.
pub async fn wait_streaming(p: &Pipeline) {
    let deadline = Instant::now() + FOLLOW_PATIENCE;
    while p.status().phase() != Phase::Streaming {
        assert!(
            Instant::now() < deadline,
            "not streaming: {:?}",
            p.status().last_error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the index has applied everything written so far; returns the position waited
/// for. It [`nudge`]s the server so the keepalive that covers the target comes even on a quiet
/// cluster.
pub async fn wait_caught_up(p: &Pipeline, client: &Client) -> Lsn {
    let target = current_lsn(client).await;
    let mut applied = p.applied();
    let deadline = Instant::now() + FOLLOW_PATIENCE;
    while applied.borrow().lsn < target {
        assert!(
            Instant::now() < deadline,
            "applied {:?} never reached {target}; status error: {:?}",
            *applied.borrow(),
            p.status().last_error()
        );
        nudge(client).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), applied.changed()).await;
    }
    target
}

/// The slot's confirmed flush position (`None` before it has one).
pub async fn slot_confirmed(client: &Client, slot: &str) -> Option<Lsn> {
    let row = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    row.get::<_, Option<String>>(0).map(|s| s.parse().unwrap())
}
