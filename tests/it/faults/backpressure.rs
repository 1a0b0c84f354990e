//! The index writer falls behind the WAL: past `wal.max_backlog_bytes` the stream pauses
//! (Postgres keeps the changes in the slot) and resumes once the index has caught up, losing
//! nothing; `/readyz` fails while the index lags the server past `http.ready_max_lag_secs`.

use pgroar::cluster::TestDb;

use super::{assert_equals_sql, counter, serve_env};
use crate::it::support::feed::{SCHEMA, insert_sql};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_its_bound_pauses_the_stream_and_loses_nothing() {
    let db = TestDb::new("backpressure");
    db.execute(SCHEMA).unwrap();
    let client = db.client().await.unwrap();
    // The index writer is slowed to 40 ms per batch (a failpoint), far behind the stream.
    let served = serve_env(
        &db.url(),
        &format!("s_{}", db.name()),
        "",
        |text| text.replace("[wal]\n", "[wal]\nmax_backlog_bytes = 65536\n"),
        &[("FAILPOINTS", "apply-send=sleep(40)")],
    )
    .await;
    // Transactions of ~1,000 images with their tags, each far above the bound.
    for round in 0..3u64 {
        for from in (1..=6000u64).step_by(1000) {
            client
                .batch_execute(&insert_sql(from, from + 999, round))
                .await
                .unwrap();
        }
        client
            .batch_execute(&format!(
                r#"UPDATE "Image" SET "nsfwLevel" = (id + {round}) % 5 WHERE id % 3 = 0"#
            ))
            .await
            .unwrap();
    }
    assert_equals_sql(&served, &client, "after the paused stream").await;
    let pauses = counter(&served.runner, "backlog_pauses_total").await;
    assert!(
        pauses > 0,
        "the stream never paused:\n{}",
        super::log_text(served.dir.path())
    );
    eprintln!("backpressure: {pauses} pauses");
}
