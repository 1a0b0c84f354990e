//! The image-feed dataset against a real Postgres: the generator's tables and skew; then a
//! bootstrap with `docs/examples/image-feed.toml`, the writer's mix streamed, and the live check
//! at one LSN finding the index equal to SQL — and finding a difference injected into the index.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgroar::bootstrap::{self, BootstrapOptions};
use pgroar::cluster::TestDb;
use pgroar::config::Config;
use pgroar::dataset::{self, DatasetOptions, Identity, LoadProgress, Writer, WriterStats};
use pgroar::index::{Index, IndexState, Snapshot};
use pgroar::ops::{EntityOps, Op};
use pgroar::oracle::{CheckError, CheckReport, Oracle, SqlSnapshot, compare};
use pgroar::pipeline::{Pipeline, PipelineOptions};
use pgroar::source::ConnInfo;
use pgroar::status::Progress;
use pgroar::translate::Translator;
use tempfile::TempDir;

const IMAGES: u32 = 20_000;

/// The example config pointed at the test's database and directory, also written to
/// `<dir>/pgroar.toml` for the binary.
fn config(db: &TestDb, dir: &TempDir) -> Config {
    let text = dataset::config_text(
        &db.url(),
        &format!("s_{}", db.name()),
        &dir.path().join("data"),
        "127.0.0.1:0",
    );
    std::fs::write(dir.path().join("pgroar.toml"), &text).unwrap();
    Config::from_toml_str(&text, std::iter::empty()).expect("the example config loads")
}

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn start(config: &Config) -> Pipeline {
    let translator = Translator::new(config).expect("translator");
    let mut options = PipelineOptions::from_config(config);
    options.source.status_interval = Duration::from_millis(200);
    options.source.keepalive_mark_interval = Duration::from_millis(200);
    Pipeline::start(config.clone(), translator, options)
        .await
        .expect("the pipeline starts")
}

/// The check as `pgroar check` runs it, in process: SQL at a fresh slot's consistent point, the
/// index pinned there.
async fn check(config: &Config, pipeline: &Pipeline) -> CheckReport {
    let conn = ConnInfo::parse(&config.postgres.url).unwrap();
    let oracle = Oracle::new(config);
    pipeline
        .pins()
        .hold()
        .expect("no other check holds the index");
    let sql = SqlSnapshot::take(&conn, &config.postgres.publication)
        .await
        .expect("a SQL snapshot");
    let pinned = pipeline.pins().request(sql.lsn());
    let deadline = Instant::now() + Duration::from_secs(30);
    let snapshot: Snapshot = loop {
        if let Ok(answer) = pinned.try_recv() {
            break answer.expect("pinned at the snapshot's LSN").settled();
        }
        assert!(
            Instant::now() < deadline,
            "the index never reached {}",
            sql.lsn()
        );
        sql.nudge().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(snapshot.applied().lsn < sql.lsn());
    let max = oracle.max_slot(sql.client()).await.unwrap();
    let max = max.max(snapshot_max(&snapshot));
    let index = |slots: RangeInclusive<u32>| {
        let state: Result<IndexState, CheckError> = Ok(snapshot.state_in(slots));
        std::future::ready(state)
    };
    compare(&oracle, &sql, max, 7_000, index)
        .await
        .expect("the check runs")
}

fn snapshot_max(s: &Snapshot) -> u32 {
    s.state_in(0..=u32::MAX).alive.last().copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_feed_streams_and_checks_equal_to_sql() {
    let db = TestDb::new("dataset");
    let dir = tempfile::tempdir().unwrap();
    let config = config(&db, &dir);
    let conn = ConnInfo::parse(&db.url()).unwrap();
    let options = DatasetOptions {
        images: IMAGES,
        seed: 11,
        identity: Identity::Default,
        publication: config.postgres.publication.clone(),
    };
    let progress = Arc::new(LoadProgress::default());
    let sizes = dataset::generate(&conn, &options, progress.clone())
        .await
        .expect("the dataset loads");
    assert!((progress.fraction(IMAGES) - 1.0).abs() < 1e-9);
    let client = db.client().await.unwrap();
    assert_eq!(
        scalar(&client, r#"SELECT count(*) FROM "Image""#).await,
        i64::from(IMAGES)
    );
    // Posts of 1 to 50 images; every image's post exists.
    let (small, large) = (
        scalar(
            &client,
            r#"SELECT min(n) FROM (SELECT count(*) n FROM "Image" GROUP BY "postId") c"#,
        )
        .await,
        scalar(
            &client,
            r#"SELECT max(n) FROM (SELECT count(*) n FROM "Image" GROUP BY "postId") c"#,
        )
        .await,
    );
    assert!(small >= 1 && large <= 50 && large > 20, "{small}..{large}");
    assert_eq!(
        scalar(&client, r#"SELECT count(*) FROM "Image" i LEFT JOIN "Post" p ON p.id = i."postId" WHERE p.id IS NULL"#).await,
        0
    );
    // Skew: the busiest user owns far more than an even share; the top tag is on many images.
    let top_user = scalar(
        &client,
        r#"SELECT max(n) FROM (SELECT count(*) n FROM "Image" GROUP BY "userId") c"#,
    )
    .await;
    assert!(
        top_user > 20 * i64::from(IMAGES / sizes.users),
        "{top_user}"
    );
    let top_tag = scalar(
        &client,
        r#"SELECT max(n) FROM (SELECT count(*) n FROM "TagsOnImage" GROUP BY "tagId") c"#,
    )
    .await;
    assert!(top_tag > i64::from(IMAGES / 20), "{top_tag}");
    // One image in twenty has a meta large enough to leave the row (TOAST).
    let toasted = scalar(
        &client,
        r#"SELECT count(*) FROM "Image" WHERE pg_column_size(meta) > 2000"#,
    )
    .await;
    assert!(
        (IMAGES as i64 / 40..IMAGES as i64 / 10).contains(&toasted),
        "{toasted}"
    );
    // Generating twice is refused, naming the tables.
    let again = dataset::generate(&conn, &options, Arc::new(LoadProgress::default())).await;
    assert!(again.unwrap_err().to_string().contains("Image"));

    bootstrap::bootstrap(&config, &BootstrapOptions::default(), &Progress::new())
        .await
        .expect("bootstrap");
    let pipeline = start(&config).await;
    let stats = Arc::new(WriterStats::default());
    let mut writer = Writer::connect(&conn, 5, stats.clone()).await.unwrap();
    for _ in 0..400 {
        writer.step().await.expect("the writer's statement");
    }
    assert!(
        stats.counts().iter().filter(|&&n| n > 0).count() >= 8,
        "{:?}",
        stats.counts()
    );
    let report = check(&config, &pipeline).await;
    assert!(
        report.slots > u64::from(IMAGES) * 9 / 10,
        "{}",
        report.slots
    );
    assert!(
        report.diff.is_empty(),
        "the index differs from SQL:\n{}",
        report.diff
    );

    pipeline.stop();
    pipeline.join().await.expect("a clean stop");
    // The binary, as a user runs it without a server: it brings the data directory's index up
    // to date in its own process and compares.
    let (ok, out) = check_binary(&dir);
    assert!(ok && out.contains("the index equals SQL at LSN"), "{out}");
    // An init step that runs before every start leaves a complete index alone.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgroar"))
        .args(["bootstrap", "--if-needed", "--no-stream", "--config"])
        .arg(dir.path().join("pgroar.toml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("nothing to bootstrap"),
        "{said}"
    );

    // A corrupted index: one image's nsfwLevel and one tag changed behind the stream's back.
    let data = dir.path().join("data").join("index");
    let mut index = Index::load_checkpoint(&data, config.schema())
        .unwrap()
        .unwrap();
    let victim = index.snapshot().state_in(0..=u32::MAX).alive[10];
    index.apply(&EntityOps::new(
        i64::from(victim),
        vec![Op::set("nsfwLevel", 99), Op::add("tagIds", 987_654)],
    ));
    index.snapshot().write_checkpoint(&data).unwrap();
    let pipeline = start(&config).await;
    let report = check(&config, &pipeline).await;
    let text = report.diff.to_string();
    assert!(
        text.contains(&format!("nsfwLevel = 99: extra 1 [{victim}]")),
        "{text}"
    );
    assert!(
        text.contains(&format!("tagIds = 987654: extra 1 [{victim}]")),
        "{text}"
    );
    assert!(text.contains("missing 1"), "{text}");
    assert_eq!(report.diff.len(), 3, "{text}");
    pipeline.stop();
    pipeline.join().await.unwrap();
    let (ok, out) = check_binary(&dir);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("nsfwLevel = 99: extra 1 [{victim}]")),
        "{out}"
    );
    assert!(out.contains("the index differs from SQL"), "{out}");
}

/// `pgroar check --config <dir>/pgroar.toml`: whether it succeeded, and what it printed.
fn check_binary(dir: &TempDir) -> (bool, String) {
    crate::it::support::feed::check_output(&dir.path().join("pgroar.toml"))
}
