//! The random workload against the release path as users run it: the `pgroar` binary
//! bootstraps tables that already hold part of the workload, then is SIGKILLed at random points
//! (after random transactions, after a random delay) and restarted with `run` while the rest
//! commits. Then every link is moved away and back, so each product's joined fields are derived
//! again from the parent rows the last run holds. After it catches up and stops cleanly, the
//! index it left equals SQL's
//! LEFT JOIN on every field of every live product, in both replica identities; the kill points
//! are part of the generated input, so a failure shrinks to a short history.
//!
//! Bounded for CI (`PGROAR_JOIN_KILL_CASES`, default 4 cases per identity); a release check:
//! `PGROAR_JOIN_KILL_CASES=20 cargo test --release --test main joins::crash -- --nocapture`.

use std::time::{Duration, Instant};

use pgroar::cluster::TestDb;
use pgroar::index::Index;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

use super::{Txn, config_text, first_difference, index_products, schema_sql, sql_products, txn};
use crate::it::support::feed::{PATIENCE, Runner};

/// Cases per replica identity unless `PGROAR_JOIN_KILL_CASES` says otherwise.
const CASES: u32 = 4;

/// A transaction, and whether pgroar is killed after it (after `delay_ms`).
#[derive(Clone, Debug)]
struct Step {
    txn: Txn,
    kill: bool,
    delay_ms: u64,
}

fn step() -> impl Strategy<Value = Step> {
    (txn(), prop::bool::weighted(0.1), 0..120u64).prop_map(|(txn, kill, delay_ms)| Step {
        txn,
        kill,
        delay_ms,
    })
}

/// One case: `before` commits before the bootstrap, `after` while pgroar is killed and
/// restarted.
async fn case(identity: &str, before: &[Txn], after: &[Step]) -> Result<usize, String> {
    let db = TestDb::new(&format!("joins_kill_{}", identity.to_lowercase()));
    db.execute(&schema_sql(identity)).unwrap();
    let client = db.client().await.unwrap();
    for t in before {
        client.batch_execute(&t.to_string()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (runner, port) = Runner::in_dir(dir.path());
    let slot = format!("s_{}", db.name());
    let listen = format!("127.0.0.1:{port}");
    std::fs::write(
        &runner.config,
        config_text(&db.url(), &slot, &data, &listen),
    )
    .unwrap();
    let mut child = runner.spawn(&["bootstrap"]);
    runner.wait_ready(&mut child).await;
    let mut kills = 0;
    for s in after {
        client.batch_execute(&s.txn.to_string()).await.unwrap();
        if s.kill {
            tokio::time::sleep(Duration::from_millis(s.delay_ms)).await;
            if child.0.try_wait().unwrap().is_some() {
                return Err(format!("exited by itself:\n{}", runner.log_tail()));
            }
            child.0.kill().unwrap(); // SIGKILL
            child.0.wait().unwrap();
            kills += 1;
            child = runner.spawn(&["run"]);
        }
    }
    // The index the kills left, once caught up, then again after every link moved away and
    // back: each product's joined fields derived again from the parent rows the last run holds
    // (a run that lost some, say in its checkpoint, shows there).
    runner.wait_ready(&mut child).await;
    runner.wait_caught_up(&client).await;
    check(
        &runner,
        child,
        &data,
        &client,
        (identity, kills, "after the kills"),
    )
    .await?;
    let mut child = runner.spawn(&["run"]);
    client
        .batch_execute(
            r#"UPDATE product SET "shopId" = -"shopId"; UPDATE product SET "shopId" = -"shopId";
               UPDATE product_mv SET mv = -mv; UPDATE product_mv SET mv = -mv;"#,
        )
        .await
        .unwrap();
    runner.wait_ready(&mut child).await;
    runner.wait_caught_up(&client).await;
    check(
        &runner,
        child,
        &data,
        &client,
        (identity, kills, "after every link moved"),
    )
    .await?;
    Ok(kills)
}

/// Stops the caught-up `child` with SIGTERM (it must exit 0) and compares the index it left
/// with SQL's LEFT JOIN.
async fn check(
    runner: &Runner,
    mut child: crate::it::support::feed::Guard,
    data: &std::path::Path,
    client: &tokio_postgres::Client,
    (identity, kills, when): (&str, usize, &str),
) -> Result<(), String> {
    // SAFETY: kill takes a pid and a signal number, no pointers.
    let rc = unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop:\n{}",
            runner.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !exit.success() {
        return Err(format!("exit {exit:?}:\n{}", runner.log_tail()));
    }
    let schema = pgroar::config::Config::load(&runner.config)
        .unwrap()
        .schema();
    let index = Index::load_checkpoint(&data.join("index"), schema)
        .unwrap()
        .expect("a checkpoint");
    let want = sql_products(client).await;
    match first_difference(&want, &index_products(&index.debug_state())) {
        Some(d) => Err(format!(
            "replica identity {identity}, {when} ({kills} kills): {d}\n{}",
            runner.log_tail()
        )),
        None => Ok(()),
    }
}

#[test]
fn sigkills_at_random_points_leave_an_index_equal_to_the_left_join() {
    let cases = std::env::var("PGROAR_JOIN_KILL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let input = (
        prop::collection::vec(txn(), 0..20),
        prop::collection::vec(step(), 20..60),
    );
    for identity in ["DEFAULT", "FULL"] {
        let started = Instant::now();
        let kills = std::cell::Cell::new(0);
        let mut runner = TestRunner::new(RunnerConfig {
            cases,
            max_shrink_iters: 50,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let result = runner.run(&input, |(before, after)| {
            let n = rt
                .block_on(case(identity, &before, &after))
                .map_err(TestCaseError::fail)?;
            kills.set(kills.get() + n);
            Ok(())
        });
        eprintln!(
            "joins crash, replica identity {identity}: {cases} cases, {} kills, {:.1?}",
            kills.get(),
            started.elapsed()
        );
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
