//! The differential tests: random workloads, the triggers and the slot on one database, the ops
//! compared per transaction. `PGROAR_TRIGGER_CASES` × `PGROAR_TRIGGER_TXNS` sets the size (the
//! default runs more than 10,000 statements; see docs/comparison.md for the longer run).

use std::process::Command;

use std::sync::Arc;

use pgroar::cluster::TestDb;
use pgroar::dataset::{self, DatasetOptions, Identity, LoadProgress, Writer, WriterStats};
use pgroar::source::ConnInfo;
use pgroar::triggers::{self, Options};
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

use super::workload::{Txn, Workload, run, workload};
use super::{count, create_slot, feed_config, first_difference, prepare, stream_ops, trigger_ops};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

use crate::it::support::runtime;

/// What one workload did.
#[derive(Default, Debug)]
struct Outcome {
    statements: usize,
    failed_txns: usize,
    txns_with_ops: usize,
    entity_ops: usize,
}

/// Runs `txns` on a fresh database with triggers and a slot; the first transaction whose ops
/// differ, or what ran.
fn run_case(rt: &tokio::runtime::Runtime, txns: &[Txn]) -> Result<Outcome, String> {
    let db = TestDb::new("triggers");
    let config = feed_config(&db);
    rt.block_on(async {
        let client = db.client().await.expect("a client");
        prepare(&client, &config).await;
        create_slot(&client, &config.postgres.slot).await;
        let failed_txns = run(&client, txns).await;
        let stream = stream_ops(&client, &config).await;
        let written = trigger_ops(&client).await;
        client
            .execute(
                "SELECT pg_drop_replication_slot($1)",
                &[&config.postgres.slot],
            )
            .await
            .expect("drop the slot");
        if let Some(diff) = first_difference(&stream, &written) {
            return Err(diff);
        }
        Ok(Outcome {
            statements: txns.iter().map(|t| t.statements.len()).sum(),
            failed_txns,
            txns_with_ops: stream.len(),
            entity_ops: count(&stream),
        })
    })
}

/// The smallest sub-workload (whole transactions, then statements) that still fails, by
/// removing chunks while the failure stays; at most `budget` runs.
fn minimize(rt: &tokio::runtime::Runtime, mut txns: Vec<Txn>, mut budget: usize) -> Vec<Txn> {
    let fails = |t: &[Txn], budget: &mut usize| {
        *budget = budget.saturating_sub(1);
        run_case(rt, t).is_err()
    };
    let mut chunk = txns.len().div_ceil(2);
    while chunk >= 1 && budget > 0 {
        let mut i = 0;
        while i < txns.len() && budget > 0 {
            let mut candidate = txns.clone();
            candidate.drain(i..(i + chunk).min(txns.len()));
            if fails(&candidate, &mut budget) {
                txns = candidate;
            } else {
                i += chunk;
            }
        }
        chunk /= 2;
    }
    // Then single statements inside the transactions left.
    for t in 0..txns.len() {
        let mut s = 0;
        while s < txns[t].statements.len() && txns[t].statements.len() > 1 && budget > 0 {
            let mut candidate = txns.clone();
            candidate[t].statements.remove(s);
            if fails(&candidate, &mut budget) {
                txns = candidate;
            } else {
                s += 1;
            }
        }
    }
    txns
}

#[test]
fn triggers_and_the_slot_write_the_same_ops_per_transaction() {
    let rt = runtime();
    let cases = env_or("PGROAR_TRIGGER_CASES", 4);
    let per_case = env_or("PGROAR_TRIGGER_TXNS", 900);
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases as u32,
        failure_persistence: None,
        // A failing workload is cut down by `minimize` (whole transactions, then statements).
        max_shrink_iters: 0,
        ..RunnerConfig::default()
    });
    let total = std::cell::RefCell::new(Outcome::default());
    let result = runner.run(&workload(per_case), |Workload(txns)| {
        match run_case(&rt, &txns) {
            Ok(o) => {
                let mut total = total.borrow_mut();
                total.statements += o.statements;
                total.failed_txns += o.failed_txns;
                total.txns_with_ops += o.txns_with_ops;
                total.entity_ops += o.entity_ops;
                Ok(())
            }
            Err(diff) => {
                let smallest = minimize(&rt, txns, 300);
                let sql: Vec<String> = smallest.iter().map(Txn::sql).collect();
                let diff = run_case(&rt, &smallest).err().unwrap_or(diff);
                Err(TestCaseError::fail(format!(
                    "{diff}\nsmallest workload that reproduces it ({} transactions):\n{}",
                    smallest.len(),
                    sql.join("\n")
                )))
            }
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let total = total.into_inner();
    eprintln!(
        "triggers vs slot: {} statements in {} cases ({} transactions failed or rolled back), \
         {} transactions with ops, {} entity ops equal per transaction, in {:?}",
        total.statements,
        cases,
        total.failed_txns,
        total.txns_with_ops,
        total.entity_ops,
        started.elapsed()
    );
    // The workload must exercise what it claims.
    assert!(total.statements >= cases * per_case * 2, "{total:?}");
    assert!(total.entity_ops > total.statements / 4, "{total:?}");
}

/// The dataset generator's writer (the demo's mix: new posts with their images and join rows,
/// rescores, publishes, moves, flag flips, base-model changes, deletes of images and posts) on
/// a generated feed, triggers and slot side by side.
#[test]
fn the_generators_writer_gives_the_same_ops_from_triggers_and_slot() {
    let rt = runtime();
    let db = TestDb::new("triggers_writer");
    let config = feed_config(&db);
    rt.block_on(async {
        let conn = ConnInfo::parse(&db.url()).unwrap();
        let options = DatasetOptions {
            images: 3_000,
            seed: 3,
            identity: Identity::Full,
            publication: config.postgres.publication.clone(),
        };
        dataset::generate(&conn, &options, Arc::new(LoadProgress::default()))
            .await
            .expect("the dataset loads");
        let client = db.client().await.unwrap();
        client
            .batch_execute(&triggers::install_sql(&config, &Options::default()))
            .await
            .expect("the trigger SQL installs");
        create_slot(&client, &config.postgres.slot).await;
        let stats = Arc::new(WriterStats::default());
        let mut writer = Writer::connect(&conn, 17, stats.clone()).await.unwrap();
        let steps = env_or("PGROAR_TRIGGER_WRITER_STEPS", 1_500);
        for _ in 0..steps {
            writer.step().await.expect("the writer's transaction");
        }
        assert!(
            stats.counts().iter().all(|&n| n > 0),
            "{:?}",
            stats.counts()
        );
        let stream = stream_ops(&client, &config).await;
        let written = trigger_ops(&client).await;
        if let Some(diff) = first_difference(&stream, &written) {
            panic!("{diff}");
        }
        // Most writer transactions change an indexed row (some delete an image already gone).
        assert!(stream.len() * 5 > steps * 4, "{} of {steps}", stream.len());
        eprintln!(
            "triggers vs slot, the generator's writer: {steps} transactions, {} entity ops equal",
            count(&stream)
        );
        client
            .execute(
                "SELECT pg_drop_replication_slot($1)",
                &[&config.postgres.slot],
            )
            .await
            .unwrap();
    });
}

/// The binary's output, run twice (idempotent), then after a config change (the stale trigger
/// goes), then `--drop` (every trigger goes, the ops table stays).
#[test]
fn the_printed_sql_installs_twice_replaces_and_drops() {
    let rt = runtime();
    let db = TestDb::new("triggers_cli");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgroar.toml");
    let text = pgroar::dataset::config_text(&db.url(), "s", &dir.path().join("d"), "127.0.0.1:0");
    let config = pgroar::config::Config::from_toml_str(&text, std::iter::empty()).unwrap();
    std::fs::write(&path, &text).unwrap();
    let print = |extra: &[&str]| {
        let mut args = vec!["triggers", "--config", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_pgroar"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let install = print(&[]);
    assert_eq!(install, triggers::install_sql(&config, &Options::default()));
    rt.block_on(async {
        let client = db.client().await.unwrap();
        client
            .batch_execute(&format!(
                "{}{}",
                pgroar::dataset::SCHEMA,
                pgroar::dataset::KEYS
            ))
            .await
            .unwrap();
        let names = || async {
            let rows = client
                .query(
                    "SELECT tgname::text, tgenabled::text FROM pg_trigger \
                     WHERE tgname LIKE 'pgroar%' ORDER BY 1",
                    &[],
                )
                .await
                .unwrap();
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>()
        };
        client.batch_execute(&install).await.expect("first install");
        let first = names().await;
        assert_eq!(first.len(), 6, "{first:?}");
        assert!(
            first.iter().all(|(_, enabled)| enabled == "A"),
            "ENABLE ALWAYS: {first:?}"
        );
        client
            .batch_execute(&install)
            .await
            .expect("second install");
        assert_eq!(names().await, first);
        client
            .batch_execute(
                "INSERT INTO \"Image\" VALUES (1, 1, 'image', 1, NULL, 0, now(), NULL, NULL, NULL)",
            )
            .await
            .unwrap();

        // The config changes one source: its trigger is replaced, the others stay.
        let changed = text.replace("  \"userId\",\n", "");
        assert_ne!(changed, text);
        std::fs::write(&path, &changed).unwrap();
        let reinstall = print(&[]);
        client
            .batch_execute(&reinstall)
            .await
            .expect("install after a change");
        let after = names().await;
        assert_eq!(after.len(), 6, "{after:?}");
        assert_eq!(
            after.iter().filter(|n| first.contains(n)).count(),
            5,
            "{first:?} → {after:?}"
        );
        let functions: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgroar\\_%\\_%' \
                 AND prorettype = 'trigger'::regtype",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(functions, 6, "the replaced trigger's function is dropped");

        client
            .batch_execute(&print(&["--drop"]))
            .await
            .expect("drop");
        assert!(names().await.is_empty());
        let kept: i64 = client
            .query_one("SELECT count(*) FROM pgroar_ops", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, 1, "the ops table and its rows are kept");
    });
}
