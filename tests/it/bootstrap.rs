//! `pgroar bootstrap` against a real Postgres: the dump equals SQL over the same tables, also
//! while a writer keeps changing them (then streaming from the consistent point catches up with
//! no gap and no duplicate); empty tables; a publication row filter; the publication check; a
//! complete index is kept unless forced; and a SIGKILL in the middle of the dump is recovered from
//! by starting over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::bootstrap::{self, BootstrapError, BootstrapOptions, DataDir};
use pgroar::cluster::TestDb;
use pgroar::config::Config;
use pgroar::index::Index;
use pgroar::pipeline::{Pipeline, PipelineOptions};
use pgroar::status::Progress;
use pgroar::translate::Translator;
use tempfile::TempDir;
use tokio_postgres::Client;

use super::support::follow::{current_lsn, wait_caught_up};

use super::support::feed::{
    self, IDS, PATIENCE, Runner, SCHEMA, assert_published_order, assert_server_matches,
    assert_snapshot_matches, load_feed, workload,
};

struct Boot {
    db: TestDb,
    dir: TempDir,
    slot: String,
    /// The fan-out source also writes the field its query reads (the same value), so the
    /// fan-out table loads row by row through the index instead of in bulk.
    row_by_row: bool,
}

impl Boot {
    fn new(topic: &str) -> Boot {
        let db = TestDb::new(topic);
        db.execute(SCHEMA).expect("schema");
        let slot = format!("s_{}", db.name());
        Boot {
            db,
            dir: tempfile::tempdir().expect("data dir"),
            slot,
            row_by_row: false,
        }
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn config(&self) -> Config {
        let mut text = feed::config_text(&self.db.url(), &self.slot, &self.data(), 0, 64 << 20);
        if self.row_by_row {
            let track =
                r#"track_fields = ["extract(epoch from {publishedAt})::bigint as publishedAt"]"#;
            assert!(text.contains(track));
            // Writing its own link, the source cannot be a join: it applies to the matches.
            let own = r#"track_fields = ["extract(epoch from {publishedAt})::bigint as publishedAt", "{id} as postId"]
join = false"#;
            text = text.replace(track, own);
        }
        Config::from_toml_str(&text, std::iter::empty()).expect("config")
    }

    async fn client(&self) -> Client {
        self.db.client().await.expect("client")
    }

    /// How many replication slots carry this test's slot name.
    async fn slots(&self) -> i64 {
        self.client()
            .await
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Small jobs so that every table is split into several page ranges.
    fn options() -> BootstrapOptions {
        BootstrapOptions {
            connections: 3,
            workers: 2,
            chunk_pages: 4,
            force: false,
        }
    }

    async fn bootstrap(
        &self,
        options: &BootstrapOptions,
    ) -> Result<bootstrap::BootstrapSummary, BootstrapError> {
        bootstrap::bootstrap(&self.config(), options, &Progress::new()).await
    }

    fn load(&self) -> Index {
        let config = self.config();
        Index::load_checkpoint(&self.data().join("index"), config.schema())
            .expect("the checkpoint loads")
            .expect("a checkpoint exists")
    }

    async fn stream(&self) -> Pipeline {
        let config = self.config();
        let translator = Translator::new(&config).expect("translator");
        let mut options = PipelineOptions::from_config(&config);
        options.source.status_interval = Duration::from_millis(200);
        options.source.keepalive_mark_interval = Duration::from_millis(200);
        Pipeline::start(config, translator, options)
            .await
            .expect("the pipeline starts on the bootstrapped directory")
    }
}

async fn count(client: &Client, table: &str) -> u64 {
    let n: i64 = client
        .query_one(&format!(r#"SELECT count(*) FROM "{table}""#), &[])
        .await
        .unwrap()
        .get(0);
    n as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dump_equals_sql_and_a_complete_index_is_kept_unless_forced() {
    let b = Boot::new("boot_static");
    let client = b.client().await;
    load_feed(&client, u64::from(IDS)).await;
    let summary = b.bootstrap(&Boot::options()).await.expect("bootstrap");
    let rows = count(&client, "Image").await
        + count(&client, "TagsOnImage").await
        + count(&client, "Post").await;
    assert_eq!(summary.rows, rows, "every row copied once");
    // The tables really were split into page ranges.
    let image = summary
        .tables
        .iter()
        .find(|t| t.table == "public.Image")
        .unwrap();
    assert!(image.pages_total > 4 && image.done, "{image:?}");
    assert_eq!(
        summary.translate.bad_slot_ids + summary.translate.eval_errors,
        0
    );
    assert!(matches!(
        bootstrap::marker::state(&b.data()).unwrap(),
        DataDir::Complete(m) if m.consistent_point == summary.consistent_point
    ));
    assert!(
        summary
            .phases
            .iter()
            .any(|(p, _)| *p == "merging fan-out values"),
        "the fan-out loaded in bulk: {:?}",
        summary.phases
    );

    let index = b.load();
    assert_eq!(
        index.applied(),
        pgroar::WalKey::end_of(Lsn(summary.consistent_point.0 - 1)),
        "one byte below the consistent point: a commit exactly at it is streamed"
    );
    let snap = index.snapshot();
    assert_snapshot_matches(&client, &snap, "after the dump").await;
    assert_published_order(&client, &snap).await;

    // A second bootstrap refuses to throw the index away...
    let again = b.bootstrap(&Boot::options()).await;
    assert!(
        matches!(again, Err(BootstrapError::AlreadyBootstrapped { .. })),
        "{again:?}"
    );
    assert!(again.unwrap_err().to_string().contains("--force"));
    // ...unless forced: the slot is recreated and the new index reflects later changes.
    client
        .batch_execute(
            r#"DELETE FROM "Image" WHERE id % 2 = 0; UPDATE "Post" SET "publishedAt" = now()"#,
        )
        .await
        .unwrap();
    let forced = b
        .bootstrap(&BootstrapOptions {
            force: true,
            ..Boot::options()
        })
        .await
        .expect("forced bootstrap");
    assert!(forced.consistent_point > summary.consistent_point);
    let snap = b.load().snapshot();
    assert_snapshot_matches(&client, &snap, "after the forced bootstrap").await;
    assert_published_order(&client, &snap).await;
    assert_eq!(b.slots().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_that_writes_what_its_query_reads_loads_row_by_row_and_equals_sql() {
    // (The default config's fan-out loads in bulk: the first test checks that.)
    let mut b = Boot::new("boot_rowwise");
    b.row_by_row = true;
    let client = b.client().await;
    load_feed(&client, 3000).await;
    let summary = b.bootstrap(&Boot::options()).await.expect("bootstrap");
    assert!(
        summary
            .phases
            .iter()
            .all(|(p, _)| *p != "merging fan-out values"),
        "the fan-out went row by row: {:?}",
        summary.phases
    );
    let snap = b.load().snapshot();
    assert_snapshot_matches(&client, &snap, "after the row-by-row dump").await;
    assert_published_order(&client, &snap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_under_a_concurrent_writer_then_streaming_has_no_gap_and_no_duplicate() {
    let b = Boot::new("boot_writer");
    let client = b.client().await;
    load_feed(&client, u64::from(IDS)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let touched = Arc::new(AtomicU64::new(0));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("bootstrap writer seed {seed}");
    let work = tokio::spawn(workload(
        b.client().await,
        seed,
        Arc::clone(&stop),
        Arc::clone(&touched),
    ));
    // The writer is running before the slot exists and keeps running through the dump.
    while touched.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = current_lsn(&client).await;
    let summary = b.bootstrap(&Boot::options()).await.expect("bootstrap");
    // A dump of these tables can end before the writer's next commit: wait for one past the
    // consistent point, so the stream has changes of its own to catch up on.
    let deadline = Instant::now() + PATIENCE;
    let mut after = current_lsn(&client).await;
    while after <= summary.consistent_point && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        after = current_lsn(&client).await;
    }
    assert!(
        before < summary.consistent_point && summary.consistent_point < after,
        "the writer committed around the snapshot: {before} < {} < {after}",
        summary.consistent_point
    );
    let pipeline = b.stream().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let txns = work.await.unwrap();
    assert!(txns > 0);
    wait_caught_up(&pipeline, &client).await;
    assert_snapshot_matches(&client, &pipeline.snapshot(), "after catching up").await;
    pipeline.stop();
    pipeline.join().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_row_filter_applies_to_the_dump() {
    let b = Boot::new("boot_rowfilter");
    let client = b.client().await;
    load_feed(&client, 3000).await;
    // Only even tags are published: the dump must leave the others out, as the stream would.
    client
        .batch_execute(
            r#"ALTER PUBLICATION pgroar_feed SET TABLE "Image", "TagsOnImage" WHERE ("tagId" % 2 = 0), "Post""#,
        )
        .await
        .unwrap();
    let odd: u64 = client
        .query_one(
            r#"SELECT count(*) FROM "TagsOnImage" WHERE "tagId" % 2 = 1"#,
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0) as u64;
    assert!(odd > 0, "the feed has odd tags to filter out");
    let summary = b.bootstrap(&Boot::options()).await.expect("bootstrap");
    assert_eq!(
        summary.rows,
        3000 + count(&client, "TagsOnImage").await - odd + 10
    );
    // What SQL says once the unpublished rows are gone is what the dump loaded.
    client
        .batch_execute(r#"DELETE FROM "TagsOnImage" WHERE "tagId" % 2 = 1"#)
        .await
        .unwrap();
    let snap = b.load().snapshot();
    assert_snapshot_matches(&client, &snap, "after a dump under a row filter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_tables_bootstrap_then_stream() {
    let b = Boot::new("boot_empty");
    let client = b.client().await;
    let summary = b.bootstrap(&Boot::options()).await.expect("bootstrap");
    assert_eq!((summary.rows, summary.alive), (0, 0));
    assert_eq!(b.load().alive_count(), 0);
    let pipeline = b.stream().await;
    load_feed(&client, 500).await;
    wait_caught_up(&pipeline, &client).await;
    let snap = pipeline.snapshot();
    assert_eq!(snap.alive_count(), 500);
    assert_snapshot_matches(&client, &snap, "streamed into an empty bootstrap").await;
    pipeline.stop();
    pipeline.join().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_without_every_source_table_is_refused_with_the_fix() {
    let b = Boot::new("boot_pub");
    b.db.execute(r#"ALTER PUBLICATION pgroar_feed DROP TABLE "TagsOnImage", "Post""#)
        .unwrap();
    let err = b.bootstrap(&Boot::options()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, BootstrapError::PublicationIncomplete { .. }),
        "{text}"
    );
    assert!(
        text.contains(r#"ALTER PUBLICATION "pgroar_feed" ADD TABLE"#)
            && text.contains(r#""public"."TagsOnImage""#)
            && text.contains(r#""public"."Post""#)
            && !text.contains(r#""public"."Image""#),
        "{text}"
    );
    b.db.execute("DROP PUBLICATION pgroar_feed").unwrap();
    let text = b.bootstrap(&Boot::options()).await.unwrap_err().to_string();
    assert!(text.contains("CREATE PUBLICATION"), "{text}");
    // Nothing was created: no slot, an empty data directory.
    assert_eq!(b.slots().await, 0);
    assert_eq!(bootstrap::marker::state(&b.data()).unwrap(), DataDir::Empty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_the_dump_then_bootstrap_or_run_starts_over() {
    let b = Boot::new("boot_kill");
    let client = b.client().await;
    load_feed(&client, 300_000).await;
    let (runner, port) = Runner::in_dir(b.dir.path());
    std::fs::write(
        &runner.config,
        feed::config_text(&b.db.url(), &b.slot, &b.data(), port, 64 << 20),
    )
    .unwrap();
    // Killed twice in the middle of the dump: the second `bootstrap` finds the first one's
    // leftovers (no marker, a stale slot) and starts over; `run` then does the same.
    for attempt in 0..2 {
        let mut child = runner.spawn(&[
            "bootstrap",
            "--no-stream",
            "--connections",
            "1",
            "--workers",
            "1",
        ]);
        // Kill once rows are flowing, as /status reports them.
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(
                child.0.try_wait().unwrap().is_none(),
                "attempt {attempt}: the bootstrap ended before it could be killed:\n{}",
                runner.log_tail()
            );
            if let Some((200, status)) = feed::http(format!("{}/status", runner.base), None).await
                && status["bootstrap"]["tables"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["rows"].as_u64() > Some(0)))
            {
                assert_eq!(status["phase"], "bootstrapping", "{status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no progress:\n{}",
                runner.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        assert!(
            matches!(
                bootstrap::marker::state(&b.data()).unwrap(),
                DataDir::Incomplete { slot: Some(ref s) } if *s == b.slot
            ),
            "attempt {attempt}: the killed dump must not look complete"
        );
    }
    assert!(
        runner.log_tail().contains("unfinished bootstrap was found"),
        "{}",
        runner.log_tail()
    );

    // `run` sees the missing marker, drops the stale slot, bootstraps again and streams.
    let mut child = runner.spawn(&["run"]);
    runner.wait_ready(&mut child).await;
    assert!(matches!(
        bootstrap::marker::state(&b.data()).unwrap(),
        DataDir::Complete(_)
    ));
    assert!(
        runner.log_tail().contains("did not finish"),
        "{}",
        runner.log_tail()
    );
    client
        .batch_execute(r#"DELETE FROM "Image" WHERE id % 7 = 0; UPDATE "Image" SET "nsfwLevel" = 32 WHERE id % 11 = 0"#)
        .await
        .unwrap();
    runner.wait_caught_up(&client).await;
    assert_server_matches(&client, &runner.base, "after a killed dump and a restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_answered_from_the_dump_while_its_checkpoint_is_written() {
    let b = Boot::new("boot_preview");
    let client = b.client().await;
    load_feed(&client, 20_000).await;
    let (mut runner, port) = Runner::in_dir(b.dir.path());
    std::fs::write(
        &runner.config,
        feed::config_text(&b.db.url(), &b.slot, &b.data(), port, 64 << 20),
    )
    .unwrap();
    // Writing the checkpoint takes 6 s (a failpoint): the dump's index answers meanwhile.
    runner.env = vec![(
        "FAILPOINTS".into(),
        "bootstrap-checkpoint=sleep(6000)".into(),
    )];
    let mut child = runner.spawn(&["bootstrap"]);
    runner
        .wait_ok(&mut child, "/query", Some(serde_json::json!({"limit": 1})))
        .await;
    // A body as large as the streaming server reads (past axum's 2 MiB default) is read here
    // too, and refused for what it says, not for its size.
    let list: Vec<String> = (0..400_000).map(|i| i.to_string()).collect();
    let big =
        serde_json::json!({"filter": format!("nsfwLevel in [{}]", list.join(", ")), "limit": 1});
    let (code, answer) = feed::http(format!("{}/query", runner.base), Some(big))
        .await
        .unwrap();
    assert_eq!(
        (code, &answer["code"]),
        (400, &"filter_syntax".into()),
        "{answer}"
    );
    // Every answer equals SQL at the consistent point, before the bootstrap is durable.
    assert_server_matches(&client, &runner.base, "while the checkpoint is written").await;
    let (_, status) = feed::http(format!("{}/status", runner.base), None)
        .await
        .unwrap();
    assert_eq!(status["phase"], "bootstrapping", "{status}");
    assert!(
        !matches!(
            bootstrap::marker::state(&b.data()).unwrap(),
            DataDir::Complete(_)
        ),
        "the answers must come before the marker"
    );
    // A read-your-writes wait past the dump is refused, not hung: nothing streams yet.
    client
        .batch_execute(&feed::insert_sql(30_001, 30_010, 3))
        .await
        .unwrap();
    let after = current_lsn(&client).await;
    let wait = serde_json::json!({"limit": 1, "min_lsn": after.to_string(), "timeout_ms": 200});
    let (code, answer) = feed::http(format!("{}/query", runner.base), Some(wait))
        .await
        .unwrap();
    assert_eq!(
        (code, &answer["code"]),
        (503, &"unavailable".into()),
        "{answer}"
    );
    // A stop now lets the checkpoint finish and keeps the complete index; `run` streams from it
    // and catches up with the rows added meanwhile.
    // SAFETY: kill takes a pid and a signal number, no pointers.
    assert_eq!(
        unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}\n{}", runner.log_tail());
    assert!(
        matches!(
            bootstrap::marker::state(&b.data()).unwrap(),
            DataDir::Complete(_)
        ),
        "{}",
        runner.log_tail()
    );
    runner.env.clear();
    let mut child = runner.spawn(&["run"]);
    runner.wait_ready(&mut child).await;
    runner.wait_caught_up(&client).await;
    assert_server_matches(&client, &runner.base, "streaming after the preview").await;
    assert!(
        !runner.log_tail().contains("did not finish"),
        "{}",
        runner.log_tail()
    );
}
