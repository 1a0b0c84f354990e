//! Write and fsync errors on pgroar's own disk (injected with failpoints), and kills between
//! two steps that must each be durable. pgroar stops with an error naming the fix, acknowledges
//! nothing it has not made durable, never retries a failed fsync, and the restart loses nothing.

use std::time::Duration;

use pgroar::Lsn;
use pgroar::cluster::TestDb;

use super::{Served, Writer, assert_equals_sql, seed, seed_for, serve_env, wait_failed};
use crate::it::support::feed::{SCHEMA, insert_sql};

/// The LSN named in "nothing past X (the last durable LSN)".
fn durable_in(log: &str) -> Lsn {
    let at = log.find("nothing past ").expect("the durable LSN named") + "nothing past ".len();
    log[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Serves the feed with `failpoints`, writes under it until the process fails, checks the error
/// and the slot, then restarts without them and compares with SQL.
async fn fail_then_recover(topic: &str, failpoints: &str, expect: &[&str]) {
    let db = TestDb::new(topic);
    db.execute(SCHEMA).unwrap();
    let client = db.client().await.unwrap();
    let slot = format!("s_{}", db.name());
    let mut served: Served =
        serve_env(&db.url(), &slot, "", |t| t, &[("FAILPOINTS", failpoints)]).await;
    seed(&client).await;
    let writer = Writer::start(&db.url(), seed_for(topic));
    let log = wait_failed(&mut served, Duration::from_secs(60)).await;
    let (committed, _) = writer.finish().await;
    for e in expect {
        assert!(log.contains(e), "no {e:?} in the log:\n{log}");
    }
    if log.contains("nothing past ") {
        let durable = durable_in(&log);
        let confirmed = crate::it::support::follow::slot_confirmed(&client, &slot)
            .await
            .expect("the slot exists");
        // Acknowledgements are durable + 1 (the next byte wanted).
        assert!(
            confirmed.0 <= durable.0 + 1,
            "the slot was acknowledged to {confirmed}, past the durable {durable}"
        );
    }
    served.runner.env.clear();
    served.child = served.runner.spawn(&["run"]);
    served.runner.wait_ready(&mut served.child).await;
    client
        .batch_execute(&insert_sql(4001, 4100, 9))
        .await
        .unwrap();
    assert_equals_sql(&served, &client, "after the restart").await;
    eprintln!("{topic}: failed after {committed} writer transactions, restart lost nothing");
}

// A failed fsync is never retried: the point fails once and then works, so a retry would go on
// streaming and the process would not exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wal_fsync_stops_pgroar_and_the_restart_loses_nothing() {
    fail_then_recover(
        "io_wal_fsync",
        "wal-fsync=40*off->1*return->off",
        &["WAL fsync failed", "Input/output error", "nothing past "],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_wal_stops_pgroar_and_the_restart_loses_nothing() {
    fail_then_recover(
        "io_wal_enospc",
        "wal-write=40*off->1*return(28)->off",
        &[
            "WAL write failed",
            "No space left on device",
            "nothing past ",
        ],
    )
    .await;
}

// The bootstrap's checkpoint fsync passes; the first periodic one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkpoint_fsync_stops_pgroar_and_the_restart_loses_nothing() {
    fail_then_recover(
        "io_ckpt_fsync",
        "checkpoint-fsync=1*off->1*return->off",
        &[
            "fsync of checkpoint",
            "previous checkpoint and the WAL after it are kept",
        ],
    )
    .await;
}

// Killed after a periodic checkpoint is durable, before the WAL behind the previous one is
// removed: the restart loads the new checkpoint and skips what the WAL still holds below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_checkpoint_and_wal_truncation_loses_nothing() {
    fail_then_recover(
        "io_ckpt_truncate",
        "checkpoint-before-truncate=3*off->return",
        &["failpoint checkpoint-before-truncate"],
    )
    .await;
}

// Killed after the bootstrap's checkpoint is durable, before its marker: the directory is an
// unfinished bootstrap, which `run` starts over from scratch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_bootstrap_checkpoint_and_marker_starts_over() {
    let db = TestDb::new("io_marker");
    db.execute(SCHEMA).unwrap();
    let client = db.client().await.unwrap();
    seed(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut runner, port) = crate::it::support::feed::Runner::in_dir(dir.path());
    let slot = format!("s_{}", db.name());
    let text = crate::it::support::feed::config_text(
        &db.url(),
        &slot,
        &dir.path().join("data"),
        port,
        1 << 20,
    );
    std::fs::write(&runner.config, text).unwrap();
    runner.env = vec![("FAILPOINTS".into(), "bootstrap-before-marker=return".into())];
    let status = runner.spawn(&["bootstrap"]).0.wait().unwrap();
    assert!(!status.success(), "{}", runner.log_tail());
    assert!(dir.path().join("data/index/index.ckpt").exists());
    runner.env.clear();
    let mut child = runner.spawn(&["run"]);
    runner.wait_ready(&mut child).await;
    assert!(
        runner
            .log_tail()
            .contains("the last bootstrap did not finish"),
        "{}",
        runner.log_tail()
    );
    let served = Served { dir, runner, child };
    client
        .batch_execute(&insert_sql(4001, 4100, 9))
        .await
        .unwrap();
    assert_equals_sql(&served, &client, "after the second bootstrap").await;
}
