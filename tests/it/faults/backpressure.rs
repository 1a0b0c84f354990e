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

/// The child's peak resident memory (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// Peak memory allowed while ~250 MB of changes wait behind a slow index writer.
const PEAK_RSS_MIB: u64 = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_the_index_writer_is_slow() {
    let db = TestDb::new("backpressure_rss");
    db.execute(SCHEMA).unwrap();
    // A wide column nobody indexes: every change carries ~4 KB twice (old and new row).
    db.execute(r#"ALTER TABLE "Image" ADD COLUMN note text"#)
        .unwrap();
    let client = db.client().await.unwrap();
    let served = serve_env(
        &db.url(),
        &format!("s_{}", db.name()),
        "",
        |text| text.replace("[wal]\n", "[wal]\nmax_backlog_bytes = 4096\n"),
        &[("FAILPOINTS", "apply-send=sleep(100)")],
    )
    .await;
    super::seed(&client).await;
    let started = std::time::Instant::now();
    // 100 transactions of 300 rows: the stream pauses after each while the writer sleeps.
    for round in 0..10u64 {
        for from in (0..3000u64).step_by(300) {
            client
                .batch_execute(&format!(
                    r#"UPDATE "Image" SET note = repeat(md5((id + {round})::text), 128),
                           "nsfwLevel" = (id + {round}) % 5
                       WHERE id > {from} AND id <= {from} + 300"#
                ))
                .await
                .unwrap();
        }
    }
    assert_equals_sql(&served, &client, "after the wide backlog").await;
    let peak = peak_rss_mib(served.child.0.id());
    let pauses = counter(&served.runner, "backlog_pauses_total").await;
    eprintln!(
        "backpressure: peak RSS {peak} MiB over a ~250 MB backlog, {pauses} pauses, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak < PEAK_RSS_MIB,
        "peak RSS {peak} MiB past {PEAK_RSS_MIB} MiB with a slow index writer"
    );
}
