//! Checkpoints while streaming: periodic ones truncate the WAL behind them and restarts use
//! them.

use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::pipeline::checkpoint::covered_lsn;
use pgroar::pipeline::{Pipeline, PipelineOptions};
use tokio_postgres::Client;

use super::{Fixture, PATIENCE, StopJoin, assert_matches_sql, mixed_workload};
use super::{wait_caught_up, wait_streaming};

/// Segment numbers in the WAL directory, oldest first.
fn segments(f: &Fixture) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(f.wal_dir())
        .unwrap()
        .filter_map(|e| pgroar::wal::parse_segment_file_name(e.unwrap().file_name().to_str()?))
        .collect();
    v.sort_unstable();
    v
}

/// Waits for a checkpoint of everything applied now; returns the LSN it covers.
async fn wait_checkpoint_of_applied(p: &Pipeline) -> Lsn {
    let applied = *p.applied().borrow();
    let deadline = Instant::now() + PATIENCE;
    while p.status().checkpointed() < covered_lsn(applied) {
        assert!(Instant::now() < deadline, "no periodic checkpoint");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.status().checkpointed()
}

/// Stops `p`, makes changes while it is down, starts it again with `tune` and checks that the
/// index equals SQL once caught up.
async fn restart_matches_sql(
    f: &Fixture,
    client: &Client,
    p: Pipeline,
    tune: impl Fn(&mut PipelineOptions),
    from: i32,
) {
    p.join_after_stop().await;
    mixed_workload(client, from, from + 999).await;
    let p = f.start_with(tune).await;
    wait_streaming(&p).await;
    wait_caught_up(&p, client).await;
    assert_matches_sql(client, &p.snapshot()).await;
    p.join_after_stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_checkpoints_truncate_the_wal_and_restarts_use_them() {
    let f = Fixture::new("stream_checkpoint");
    let client = f.client().await;
    let tune = |o: &mut PipelineOptions| {
        o.checkpoint_interval = Duration::from_millis(200);
        o.segment_bytes = 64 << 10;
    };
    let p = f.start_with(tune).await;
    wait_streaming(&p).await;
    mixed_workload(&client, 1, 3000).await;
    wait_caught_up(&p, &client).await;
    let first = wait_checkpoint_of_applied(&p).await;
    // One more checkpoint: the WAL is truncated behind the previous checkpoint (kept to fall
    // back on), so the one above is now the previous.
    let deadline = Instant::now() + PATIENCE;
    mixed_workload(&client, 5001, 5010).await;
    while p.status().checkpointed() <= first {
        assert!(Instant::now() < deadline, "no second periodic checkpoint");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Written while running, before any stop: the segments the previous one covers are gone.
    let live = segments(&f);
    assert!(live[0] > 1 && live.len() < 4, "{live:?}");
    // Restart over the truncated WAL (no gap before the checkpoint's cursor), with changes made
    // while down.
    restart_matches_sql(&f, &client, p, tune, 3001).await;
}
