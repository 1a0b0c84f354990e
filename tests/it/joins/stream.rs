//! The random workload streamed in process, in both replica identities at once: after every
//! case (a list of transactions, some rolled back) each streamed index, the index fed the
//! trigger pipeline's ops for the same transactions through the sink, and a bootstrap of the
//! same tables must equal SQL's LEFT JOIN on every field of every live product.
//!
//! Bounded for CI (`PGROAR_JOIN_CASES`, default 200 cases of up to 12 transactions); a release
//! check runs thousands:
//! `PGROAR_JOIN_CASES=2000 cargo test --release --test main joins::stream -- --nocapture`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgroar::bootstrap::{self, BootstrapOptions};
use pgroar::cluster::TestDb;
use pgroar::config::Config;
use pgroar::dedup::Deduper;
use pgroar::index::Index;
use pgroar::pipeline::{Pipeline, PipelineOptions};
use pgroar::sink::coalescing::{CoalescingSink, SinkOptions};
use pgroar::status::Progress;
use pgroar::translate::Translator;
use pgroar::{Lsn, WalKey};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use tempfile::TempDir;
use tokio_postgres::Client;

use super::{
    TRIGGERS, Txn, config_text, first_difference, index_products, schema_sql, sql_products,
    trigger_ops, txn,
};
use crate::it::support::follow::{wait_caught_up, wait_streaming};

/// Cases per run unless `PGROAR_JOIN_CASES` says otherwise.
const CASES: u32 = 200;

/// One replica identity's database, its streamed pipeline, and the trigger-fed index.
struct Side {
    identity: &'static str,
    db: TestDb,
    dir: TempDir,
    client: Client,
    pipeline: Pipeline,
    triggers: CoalescingSink,
    deduper: Deduper,
    /// The last trigger op fed to `triggers`.
    fed: i64,
    bootstraps: u32,
}

impl Side {
    async fn new(identity: &'static str) -> Side {
        let db = TestDb::new(&format!("joins_{}", identity.to_lowercase()));
        db.execute(&schema_sql(identity)).unwrap();
        db.execute(TRIGGERS).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = config(&db, &format!("s_{}", db.name()), dir.path());
        let translator = Translator::new(&config).unwrap();
        let mut options = PipelineOptions::from_config(&config);
        options.source.status_interval = Duration::from_millis(20);
        options.source.keepalive_mark_interval = Duration::from_millis(20);
        let schema = config.schema();
        let pipeline = Pipeline::start(config, translator, options).await.unwrap();
        wait_streaming(&pipeline).await;
        let client = db.client().await.unwrap();
        Side {
            identity,
            triggers: CoalescingSink::spawn(Index::new(schema.clone()), SinkOptions::default()),
            deduper: Deduper::new(&schema),
            fed: 0,
            bootstraps: 0,
            db,
            dir,
            client,
            pipeline,
        }
    }

    /// Runs one case and checks every index against SQL; `Err` describes the first difference.
    async fn case(&mut self, txns: &[Txn]) -> Result<(), String> {
        self.client
            .batch_execute("TRUNCATE product CASCADE; TRUNCATE shop, mv")
            .await
            .unwrap();
        for t in txns {
            let sql = t.to_string();
            self.client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let want = sql_products(&self.client).await;
        let identity = self.identity;
        let context = |what: &str| format!("{what}, replica identity {identity}");

        wait_caught_up(&self.pipeline, &self.client).await;
        let streamed = self.pipeline.snapshot().debug_state();
        if let Some(d) = first_difference(&want, &index_products(&streamed)) {
            return Err(format!("{}: {d}", context("streamed")));
        }

        let (ops, last) = trigger_ops(&self.client, self.fed).await;
        self.fed = last;
        let batch = self.deduper.dedup(ops);
        self.triggers
            .send(batch, WalKey::end_of(Lsn(last as u64)))
            .unwrap();
        let fed = self.triggers.sync().unwrap().debug_state();
        if let Some(d) = first_difference(&want, &index_products(&fed)) {
            return Err(format!("{}: {d}", context("fed the triggers' ops")));
        }
        let mut same = fed.clone();
        same.applied = streamed.applied;
        if same.parents != streamed.parents {
            return Err(format!(
                "{}: parent rows {:?} where the stream has {:?}",
                context("fed the triggers' ops"),
                same.parents,
                streamed.parents
            ));
        }

        let booted = self.bootstrap().await;
        if let Some(d) = first_difference(&want, &index_products(&booted.debug_state())) {
            return Err(format!("{}: {d}", context("bootstrapped")));
        }
        Ok(())
    }

    /// A bootstrap of the tables as they are, under a slot of its own (dropped after).
    async fn bootstrap(&mut self) -> Index {
        self.bootstraps += 1;
        let slot = format!("s_{}_b{}", self.db.name(), self.bootstraps);
        let dir = self.dir.path().join(format!("boot{}", self.bootstraps));
        let config = config(&self.db, &slot, &dir);
        let options = BootstrapOptions {
            connections: 2,
            workers: 2,
            chunk_pages: 1,
            force: false,
        };
        bootstrap::bootstrap(&config, &options, &Progress::new())
            .await
            .expect("bootstrap");
        self.client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .unwrap();
        let index = Index::load_checkpoint(&dir.join("index"), config.schema())
            .unwrap()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        index
    }
}

fn config(db: &TestDb, slot: &str, dir: &Path) -> Config {
    Config::from_toml_str(
        &config_text(&db.url(), slot, dir, "127.0.0.1:0"),
        std::iter::empty(),
    )
    .unwrap()
}

#[test]
fn random_workloads_equal_the_left_join_streamed_fed_and_bootstrapped() {
    let cases = std::env::var("PGROAR_JOIN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let sides = std::cell::RefCell::new(
        rt.block_on(async { vec![Side::new("DEFAULT").await, Side::new("FULL").await] }),
    );
    let started = Instant::now();
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let statements = std::cell::Cell::new(0usize);
    let result = runner.run(&prop::collection::vec(txn(), 1..13), |txns| {
        statements.set(statements.get() + txns.iter().map(|t| t.stmts.len()).sum::<usize>());
        for side in sides.borrow_mut().iter_mut() {
            rt.block_on(side.case(&txns))
                .map_err(|e| TestCaseError::fail(format!("{e}\n{}", script(&txns))))?;
        }
        Ok(())
    });
    eprintln!(
        "joins: {cases} cases, {} statements (some cases rerun while shrinking) in {:.1?}",
        statements.get(),
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(async {
        for side in sides.into_inner() {
            side.pipeline.stop();
            side.pipeline.join().await.unwrap();
        }
    });
}

/// The transactions as one SQL script, for a failure message.
fn script(txns: &[Txn]) -> String {
    txns.iter().map(|t| format!("{t}\n")).collect()
}
