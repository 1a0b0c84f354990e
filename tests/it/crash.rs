//! Crash test of the real binary: `pgroar run` is SIGKILLed at random moments while a random
//! workload (inserts, updates that flip the join filter, deletes and re-inserts, transactions
//! from one row to ~5k rows) keeps committing. Small WAL segments and a checkpoint every second
//! make the WAL rotate and lose its oldest segments behind checkpoints during the run, so kills
//! also land after (and while) segments are deleted; the test checks that this happened. After
//! every kill the slot's `confirmed_flush_lsn` must not be ahead of the durable LSN of the WAL
//! left on disk; after the last restart catches up, every filter value answers exactly the ids
//! SQL says, and SIGTERM exits 0.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::cluster::TestDb;
use pgroar::wal::Wal;
use tempfile::TempDir;
use tokio_postgres::Client;

use super::support::feed::{
    IDS, PATIENCE, Rng, Runner, SCHEMA, assert_server_matches, config_text, load_feed, workload,
};

/// How many times the child is SIGKILLed.
const KILLS: usize = 24;
/// WAL segment size: small enough that the workload fills dozens of segments.
const SEGMENT_BYTES: u64 = 128 << 10;

/// After a kill: Postgres was never told more was flushed than the WAL on disk holds.
/// Returns the WAL's durable LSN and the slot's confirmed LSN.
async fn assert_slot_not_ahead(
    client: &Client,
    slot: &str,
    data: &Path,
    kill: usize,
) -> (Lsn, Lsn) {
    let report = Wal::inspect(data.join("wal")).expect("the WAL left by a kill is readable");
    let durable = report.durable_lsn;
    let confirmed = crate::it::support::follow::slot_confirmed(client, slot)
        .await
        .expect("the slot exists");
    let adopting = data.join(pgroar::source::slot::CREATING_SLOT_FILE).exists();
    if adopting {
        assert_eq!(
            report.transactions, 0,
            "kill {kill}: an intent file next to a WAL"
        );
    } else {
        // A slot position is where the next record starts (everything *before* it confirmed); a
        // WAL position covers everything *at or before* it: one byte apart is in step.
        assert!(
            confirmed.0 <= durable.0 + 1,
            "kill {kill}: slot confirmed {confirmed} is ahead of the WAL's durable {durable} ({})",
            report.summary()
        );
    }
    (durable, confirmed)
}

/// The WAL segment numbers in `data`'s WAL directory, oldest first.
fn segments(data: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(data.join("wal"))
        .map(|dir| {
            dir.filter_map(|e| pgroar::wal::parse_segment_file_name(e.ok()?.file_name().to_str()?))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_never_acks_ahead_of_the_wal() {
    let started = Instant::now();
    let db = TestDb::new("crash");
    db.execute(SCHEMA).unwrap();
    let client = db.client().await.unwrap();
    let dir: TempDir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Slot names are cluster-wide; the database's name is unique.
    let slot = format!("s_{}", db.name());
    let (runner, port) = Runner::in_dir(dir.path());
    std::fs::write(
        &runner.config,
        config_text(&db.url(), &slot, &data, port, SEGMENT_BYTES),
    )
    .unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);

    // The slot is created by the first start (a bootstrap of the still empty tables);
    // everything after it is streamed.
    let mut child = runner.spawn(&["bootstrap"]);
    runner.wait_ready(&mut child).await;
    load_feed(&client, IDS as u64).await;

    let stop = Arc::new(AtomicBool::new(false));
    let rows = Arc::new(AtomicU64::new(0));
    let work = tokio::spawn(workload(
        db.client().await.unwrap(),
        seed,
        stop.clone(),
        rows.clone(),
    ));

    let mut durables = Vec::new();
    // Per kill: the oldest and newest WAL segment left on disk.
    let mut left: Vec<(u64, u64)> = Vec::new();
    for kill in 0..KILLS {
        if kill % 4 == 3 {
            // Now and then let it reach streaming, so kills also land mid-stream.
            runner.wait_ready(&mut child).await;
            // Past the 1 s status interval: acknowledgements sent mid-run get checked too.
            tokio::time::sleep(Duration::from_millis(rng.range(1000, 1600))).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(50, 600))).await;
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "exited by itself before kill {kill}:\n{}",
            runner.log_tail()
        );
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        assert!(!work.is_finished(), "the workload stopped early");
        durables.push(assert_slot_not_ahead(&client, &slot, &data, kill).await);
        let segs = segments(&data);
        left.push((
            segs.first().copied().unwrap_or(0),
            segs.last().copied().unwrap_or(0),
        ));
        child = runner.spawn(&["run"]);
    }
    stop.store(true, Ordering::Relaxed);
    let txns = work.await.unwrap();
    // The check was not vacuous: acknowledgements moved while the child was being killed.
    let acked: std::collections::BTreeSet<Lsn> = durables.iter().map(|&(_, c)| c).collect();
    assert!(
        acked.len() >= KILLS / 4,
        "the slot barely moved: {durables:?}"
    );
    // Some acknowledgement went past what the previous run had recovered, i.e. was sent by
    // a run that was then killed.
    let mid_run = durables.windows(2).filter(|w| w[1].1 > w[0].0).count();
    assert!(
        mid_run >= 1,
        "no run acknowledged anything new: {durables:?}"
    );

    // The WAL rotated, and segments behind checkpoints were deleted by runs that were then
    // killed: some kill found the oldest segment gone, and later kills found even more gone.
    let truncated = left.iter().filter(|&&(oldest, _)| oldest > 1).count();
    let deleted_between = left.windows(2).filter(|w| w[1].0 > w[0].0).count();
    assert!(
        left.last().is_some_and(|&(_, newest)| newest > 4),
        "the WAL barely rotated: {left:?}"
    );
    assert!(
        truncated >= 1 && deleted_between >= 1,
        "no segment was deleted before a kill: {left:?}"
    );

    // Catch up: the applied LSN reaches the end of the workload. A tiny logical message gives
    // the walsender something past the target to report on a quiet database.
    runner.wait_ready(&mut child).await;
    let target = runner.wait_caught_up(&client).await;

    let count: i64 = client
        .query_one(r#"SELECT count(*) FROM "Image""#, &[])
        .await
        .unwrap()
        .get(0);
    assert_server_matches(&client, &runner.base, &format!("seed {seed}")).await;

    // SIGTERM: a clean stop, and the final acknowledgement is still not ahead of the WAL.
    // SAFETY: kill takes a pid and a signal number, no pointers.
    let rc = unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop:\n{}",
            runner.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}\n{}", runner.log_tail());
    let (last, _) = assert_slot_not_ahead(&client, &slot, &data, KILLS).await;
    assert!(
        last >= target,
        "durable {last} after SIGTERM, target {target}"
    );
    eprintln!(
        "crash test: {KILLS} kills ({mid_run} after a mid-run acknowledgement, {truncated} over a \
         truncated WAL, {deleted_between} after a run deleted segments), {txns} transactions \
         (~{} rows touched), {} images, WAL segments left after kills {left:?}, \
         durable>=confirmed after kills {:?}, {:.1?}",
        rows.load(Ordering::Relaxed),
        count,
        durables
            .iter()
            .map(|(d, c)| format!("{d}>={c}"))
            .collect::<Vec<_>>(),
        started.elapsed()
    );
}
