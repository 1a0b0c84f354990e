//! `migrations/` as a DBA runs them: applied twice to a throwaway cluster over the image feed,
//! then pgroar bootstraps, streams and checks the index as the least-privilege `pgroar` role.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgroar::bootstrap::{self, BootstrapOptions};
use pgroar::cluster::TestDb;
use pgroar::config::Config;
use pgroar::dataset::{self, DatasetOptions, Identity, LoadProgress, Writer, WriterStats};
use pgroar::oracle::{CheckError, Oracle, SqlSnapshot, compare};
use pgroar::pipeline::{Pipeline, PipelineOptions};
use pgroar::source::ConnInfo;
use pgroar::status::Progress;
use pgroar::translate::Translator;

const MIGRATIONS: [&str; 4] = [
    include_str!("../../migrations/001_role.sql"),
    include_str!("../../migrations/002_grants.sql"),
    include_str!("../../migrations/003_publication.sql"),
    include_str!("../../migrations/004_replica_identity.sql"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrations_are_idempotent_and_enough_for_a_non_superuser() {
    let db = TestDb::new("migrations");
    let admin = ConnInfo::parse(&db.url()).unwrap();
    let options = DatasetOptions {
        images: 3000,
        seed: 3,
        identity: Identity::Full,
        publication: String::new(),
    };
    dataset::generate(&admin, &options, Arc::new(LoadProgress::default()))
        .await
        .expect("the dataset loads");
    for round in 0..2 {
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            db.execute(sql)
                .unwrap_or_else(|e| panic!("round {round}, migration {}: {e}", i + 1));
        }
    }
    let client = db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT rolsuper, rolreplication, rolcanlogin FROM pg_roles WHERE rolname = 'pgroar'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (false, true, true)
    );
    let identities: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relreplident = 'd' AND relname = ANY($1)",
            &[&dataset::TABLES
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(identities, 6, "004 set every table back to DEFAULT");

    let url = db.url().replacen("postgres@", "pgroar@", 1);
    assert!(url.contains("pgroar@"), "{url}");
    let dir = tempfile::tempdir().unwrap();
    let text = dataset::config_text(
        &url,
        &format!("s_{}", db.name()),
        &dir.path().join("data"),
        "127.0.0.1:0",
    );
    let config = Config::from_toml_str(&text, std::iter::empty()).unwrap();
    bootstrap::bootstrap(&config, &BootstrapOptions::default(), &Progress::new())
        .await
        .expect("the pgroar role bootstraps");
    let translator = Translator::new(&config).unwrap();
    let mut popts = PipelineOptions::from_config(&config);
    popts.source.status_interval = Duration::from_millis(200);
    popts.source.keepalive_mark_interval = Duration::from_millis(200);
    let pipeline = Pipeline::start(config.clone(), translator, popts)
        .await
        .expect("the pgroar role streams");
    let mut writer = Writer::connect(&admin, 9, Arc::new(WriterStats::default()))
        .await
        .unwrap();
    for _ in 0..100 {
        writer.step().await.unwrap();
    }
    // The check as the same role: a temporary slot, its snapshot, the oracle's queries.
    let conn = ConnInfo::parse(&url).unwrap();
    let sql = SqlSnapshot::take(&conn, &config.postgres.publication)
        .await
        .expect("the pgroar role takes a SQL snapshot");
    let pinned = pipeline.pins().request(sql.lsn());
    let deadline = Instant::now() + Duration::from_secs(30);
    let snapshot = loop {
        if let Ok(answer) = pinned.try_recv() {
            break answer.unwrap().settled();
        }
        assert!(Instant::now() < deadline, "never pinned");
        sql.nudge()
            .await
            .expect("the pgroar role nudges the stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let oracle = Oracle::new(&config);
    let max = oracle.max_slot(sql.client()).await.unwrap();
    let report = compare(&oracle, &sql, max, 1000, |slots| {
        let state: Result<_, CheckError> = Ok(snapshot.state_in(slots));
        std::future::ready(state)
    })
    .await
    .unwrap();
    assert!(report.slots >= 2900, "{}", report.slots);
    assert!(report.diff.is_empty(), "{}", report.diff);
    pipeline.stop();
    pipeline.join().await.unwrap();
}
