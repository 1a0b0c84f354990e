//! TRUNCATE of source tables through the whole pipeline against a real Postgres: the index after
//! each workload equals SQL ground truth over the same tables (the full index state, dead slots
//! included), whether the TRUNCATE hits a join table, the direct table (CASCADE), several tables
//! at once, sits between inserts in one transaction, or is replayed after a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pgroar::WalKey;
use pgroar::cluster::TestDb;
use pgroar::config::Config;
use pgroar::index::{DumpKey, FieldDump, IndexState, Snapshot};
use pgroar::pipeline::{Pipeline, PipelineOptions};
use pgroar::translate::Translator;
use pgroar::wal::{WalEntry, WalReader};
use tempfile::TempDir;
use tokio_postgres::Client;

use super::support::follow::{wait_caught_up, wait_streaming};

const PUBLICATION: &str = "pgroar_truncate";
/// How long any wait for the pipeline may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// A direct table and two join tables whose rows go with their item (as `TagsOnImage` does).
const SCHEMA: &str = "
CREATE TABLE items (id int PRIMARY KEY, a int, s int NOT NULL);
CREATE TABLE tags (item int REFERENCES items(id) ON DELETE CASCADE, tag int, PRIMARY KEY (item, tag));
CREATE TABLE tools (item int REFERENCES items(id) ON DELETE CASCADE, tool int, PRIMARY KEY (item, tool));
CREATE PUBLICATION pgroar_truncate FOR TABLE items, tags, tools;
";

struct Fixture {
    db: TestDb,
    dir: TempDir,
    slot: String,
}

impl Fixture {
    fn new(topic: &str) -> Fixture {
        let db = TestDb::new(topic);
        db.execute(SCHEMA).expect("schema");
        let slot = format!("s_{}", db.name());
        Fixture {
            db,
            dir: tempfile::tempdir().expect("data dir"),
            slot,
        }
    }

    fn config(&self) -> Config {
        let text = format!(
            r#"
[postgres]
url = "{url}"
publication = "{PUBLICATION}"
slot = "{slot}"
[storage]
data_dir = "{dir}"
[http]
listen = "127.0.0.1:0"
[index]
filters = [{{ name = "a", kind = "single" }}, {{ name = "tagIds", kind = "multi" }},
           {{ name = "toolIds", kind = "multi" }}]
sorts = [{{ name = "s", bits = 32 }}]
checkpoint_interval_secs = 3600
[[sources]]
table = "items"
track_fields = ["a", "s"]
sets_alive = true
on_delete = true
[[sources]]
table = "tags"
slot_field = "item"
field = "tagIds"
value_field = "tag"
[[sources]]
table = "tools"
slot_field = "item"
field = "toolIds"
value_field = "tool"
"#,
            url = self.db.url(),
            slot = self.slot,
            dir = self.dir.path().display(),
        );
        Config::from_toml_str(&text, std::iter::empty()).expect("test config")
    }

    async fn start(&self) -> Pipeline {
        let config = self.config();
        let translator = Translator::new(&config).expect("translator");
        let mut options = PipelineOptions::from_config(&config);
        options.source.status_interval = Duration::from_millis(200);
        options.source.keepalive_mark_interval = Duration::from_millis(200);
        options.source.backoff_initial = Duration::from_millis(50);
        options.source.backoff_max = Duration::from_secs(1);
        let p = Pipeline::start(config, translator, options)
            .await
            .expect("pipeline starts");
        wait_streaming(&p).await;
        p
    }

    async fn client(&self) -> Client {
        self.db.client().await.expect("client")
    }

    fn wal_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("wal")
    }

    fn index_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("index")
    }
}

/// Stops the pipeline and waits for its final checkpoint.
async fn stop(p: Pipeline) {
    p.stop();
    tokio::time::timeout(PATIENCE, p.join())
        .await
        .expect("the pipeline stops in time")
        .expect("the pipeline stops cleanly");
}

/// The index state the tables imply: every item alive with its `a` and `s`, every tag and tool
/// row a value of its item's multi field, and nothing else anywhere (no dead slot keeps a bit:
/// a join row cannot outlive its item).
async fn ground_truth(client: &Client) -> IndexState {
    let mut state = IndexState::default();
    let mut a = FieldDump::default();
    let mut s = BTreeMap::new();
    for r in client
        .query("SELECT id, a, s FROM items ORDER BY id", &[])
        .await
        .unwrap()
    {
        let slot = r.get::<_, i32>(0) as u32;
        state.alive.push(slot);
        match r.get::<_, Option<i32>>(1) {
            None => a.null.push(slot),
            Some(v) => a
                .values
                .entry(DumpKey::Int(v.into()))
                .or_default()
                .push(slot),
        }
        let v = r.get::<_, i32>(2);
        if v != 0 {
            s.insert(slot, v as u32);
        }
    }
    state.filters.insert("a".into(), a);
    for (field, sql) in [
        ("tagIds", "SELECT item, tag FROM tags ORDER BY tag, item"),
        (
            "toolIds",
            "SELECT item, tool FROM tools ORDER BY tool, item",
        ),
    ] {
        let mut dump = FieldDump::default();
        for r in client.query(sql, &[]).await.unwrap() {
            let key = DumpKey::Int(r.get::<_, i32>(1).into());
            dump.values
                .entry(key)
                .or_default()
                .push(r.get::<_, i32>(0) as u32);
        }
        state.filters.insert(field.into(), dump);
    }
    state.sorts.insert("s".into(), s);
    state
}

/// The whole snapshot (dead slots included) equals the SQL ground truth.
async fn assert_matches_sql(client: &Client, snap: &Snapshot, what: &str) {
    let mut got = snap.debug_state();
    got.applied = WalKey::ZERO;
    let want = ground_truth(client).await;
    assert_eq!(got.alive, want.alive, "{what}: live slots");
    for (field, dump) in &want.filters {
        assert_eq!(got.filters.get(field), Some(dump), "{what}: field {field}");
    }
    assert_eq!(got.sorts, want.sorts, "{what}: sort field s");
    assert_eq!(got, want, "{what}");
}

/// Items `from..=to` (`a` = id % 7, NULL every 11th), 1–3 tags each, a tool for even ids.
fn fill_sql(from: i32, to: i32) -> String {
    format!(
        "INSERT INTO items SELECT i, CASE WHEN i % 11 = 0 THEN NULL ELSE i % 7 END, i * 10
           FROM generate_series({from}, {to}) i;
         INSERT INTO tags SELECT i, t FROM generate_series({from}, {to}) i, generate_series(1, 1 + i % 3) t;
         INSERT INTO tools SELECT i, 100 + i % 4 FROM generate_series({from}, {to}) i WHERE i % 2 = 0;"
    )
}

/// Updates, deletes (cascading to the join rows) and join-row churn over items `from..=to`.
fn churn_sql(from: i32, to: i32) -> String {
    format!(
        "UPDATE items SET a = (coalesce(a, 0) + 1) % 7, s = s + 1 WHERE id BETWEEN {from} AND {to} AND id % 3 = 0;
         DELETE FROM items WHERE id BETWEEN {from} AND {to} AND id % 10 = 0;
         DELETE FROM tags WHERE item BETWEEN {from} AND {to} AND item % 4 = 1 AND tag = 1;
         INSERT INTO tags SELECT id, 9 FROM items WHERE id BETWEEN {from} AND {to} AND id % 5 = 2;"
    )
}

/// New tags `first..=first+3` for the items whose id is 0 or 1 mod `step`.
fn retag_sql(first: i32, step: i32) -> String {
    format!(
        "INSERT INTO tags SELECT id, {first} + id % 3 FROM items WHERE id % {step} = 1;
         INSERT INTO tags SELECT id, {first} + 3 FROM items WHERE id % {step} = 0"
    )
}

fn count(snap: &Snapshot, filter: &str) -> u64 {
    snap.count(Some(filter)).unwrap()
}

/// How many `truncate` ops the WAL holds.
fn wal_truncates(f: &Fixture) -> usize {
    let end = pgroar::wal::Wal::inspect(f.wal_dir()).unwrap().end;
    let mut reader = WalReader::open(f.wal_dir(), WalKey::ZERO).unwrap();
    let mut n = 0;
    while let Some(e) = reader.next(end).unwrap() {
        if let WalEntry::Ops { ops, .. } = e {
            n += ops.ops.iter().filter(|op| op.is_truncate()).count();
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_join_table_loses_its_values_and_takes_new_ones() {
    let f = Fixture::new("truncate_join");
    let client = f.client().await;
    let p = f.start().await;
    client.batch_execute(&fill_sql(1, 300)).await.unwrap();
    client.batch_execute(&churn_sql(1, 300)).await.unwrap();
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot(), "before the truncate").await;
    assert!(count(&p.snapshot(), "tagIds in [1, 2, 3]") > 200);

    client.batch_execute("TRUNCATE tags").await.unwrap();
    wait_caught_up(&p, &client).await;
    let snap = p.snapshot();
    assert_eq!(count(&snap, "tagIds in [1, 2, 3, 9]"), 0);
    assert!(count(&snap, "toolIds in [100, 101, 102, 103]") > 100);
    assert_matches_sql(&client, &snap, "after TRUNCATE tags").await;

    // Tag rows written after the truncate show up; so does later churn.
    client.batch_execute(&retag_sql(40, 4)).await.unwrap();
    client.batch_execute(&churn_sql(1, 300)).await.unwrap();
    wait_caught_up(&p, &client).await;
    assert!(count(&p.snapshot(), "tagIds in [40, 41, 42]") > 50);
    assert_matches_sql(&client, &p.snapshot(), "tags after the truncate").await;
    stop(p).await;
    assert_eq!(
        wal_truncates(&f),
        1,
        "one truncate op for one TRUNCATE of a join table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncating_the_direct_table_deletes_every_slot() {
    let f = Fixture::new("truncate_direct");
    let client = f.client().await;
    let p = f.start().await;
    client.batch_execute(&fill_sql(1, 300)).await.unwrap();
    client.batch_execute(&churn_sql(1, 300)).await.unwrap();
    // Inserted before the truncate in its own transaction: gone; inserted after it, in the same
    // and in a later transaction: present, and inheriting nothing from the slots' old values.
    client
        .batch_execute(&format!(
            "BEGIN; {} TRUNCATE items CASCADE; {} COMMIT;",
            fill_sql(301, 320),
            fill_sql(250, 260),
        ))
        .await
        .unwrap();
    client.batch_execute(&fill_sql(1001, 1020)).await.unwrap();
    client
        .batch_execute("UPDATE items SET a = 6 WHERE id % 2 = 0")
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    let snap = p.snapshot();
    let alive = snap.debug_state().alive;
    assert_eq!(
        alive,
        (250..=260).chain(1001..=1020).collect::<Vec<u32>>(),
        "only the rows inserted after the TRUNCATE are alive"
    );
    assert_matches_sql(&client, &snap, "after TRUNCATE items CASCADE").await;
    stop(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncating_two_tables_in_one_statement_clears_both_fields() {
    let f = Fixture::new("truncate_two");
    let client = f.client().await;
    let p = f.start().await;
    client.batch_execute(&fill_sql(1, 200)).await.unwrap();
    client
        .batch_execute("TRUNCATE tags, tools RESTART IDENTITY")
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    let snap = p.snapshot();
    assert_eq!(snap.alive_count(), 200, "the items stay");
    assert_eq!(count(&snap, "tagIds in [1, 2, 3]"), 0);
    assert_eq!(count(&snap, "toolIds in [100, 101, 102, 103]"), 0);
    assert_matches_sql(&client, &snap, "after TRUNCATE tags, tools").await;
    client.batch_execute(&retag_sql(60, 3)).await.unwrap();
    client
        .batch_execute("INSERT INTO tools SELECT id, 7 FROM items WHERE id % 9 = 0")
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot(), "rows after the truncate").await;
    stop(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_between_writes_of_one_transaction() {
    let f = Fixture::new("truncate_txn");
    let client = f.client().await;
    let p = f.start().await;
    client.batch_execute(&fill_sql(1, 200)).await.unwrap();
    client
        .batch_execute(&format!(
            "BEGIN;
             {retag_before}; {churn};
             TRUNCATE tags;
             {retag_after};
             DELETE FROM items WHERE id % 5 = 0;
             TRUNCATE tools;
             INSERT INTO tools SELECT id, 8 FROM items WHERE id % 6 = 0;
             COMMIT;",
            retag_before = retag_sql(20, 2),
            churn = churn_sql(1, 200),
            retag_after = retag_sql(30, 3),
        ))
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    let snap = p.snapshot();
    assert_eq!(count(&snap, "tagIds in [1, 2, 3, 9, 20, 21, 22, 23]"), 0);
    assert!(count(&snap, "tagIds in [30, 31, 32, 33]") > 40);
    assert_matches_sql(&client, &snap, "after the transaction").await;
    stop(p).await;
}

/// Copies the files of directory `from` into `to` (replacing what `to` held).
fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncates_survive_restarts_from_the_checkpoint_and_the_wal() {
    let f = Fixture::new("truncate_restart");
    let client = f.client().await;
    let saved = tempfile::tempdir().unwrap();

    // A checkpoint from before any truncate, kept aside.
    let p = f.start().await;
    client.batch_execute(&fill_sql(1, 300)).await.unwrap();
    wait_caught_up(&p, &client).await;
    stop(p).await;
    copy_dir(&f.index_dir(), saved.path());

    // Truncates of every kind, while running and while stopped.
    let p = f.start().await;
    client.batch_execute("TRUNCATE tags").await.unwrap();
    client.batch_execute(&retag_sql(40, 2)).await.unwrap();
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot(), "first run").await;
    stop(p).await;
    client
        .batch_execute(&format!(
            "BEGIN; TRUNCATE items CASCADE; {} COMMIT; {}",
            fill_sql(500, 700),
            churn_sql(500, 700)
        ))
        .await
        .unwrap();

    // From the newest checkpoint: the stopped-time truncate streams in.
    let p = f.start().await;
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot(), "streamed after a restart").await;
    client
        .batch_execute("TRUNCATE tools; INSERT INTO tools SELECT id, 5 FROM items WHERE id % 7 = 0")
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot(), "second run").await;
    stop(p).await;
    // One op per TRUNCATE, but `TRUNCATE items CASCADE` empties the join tables' fields too (a
    // whole-index truncate leaves join-table values): 1 + (1 + 2) + 1.
    assert_eq!(wal_truncates(&f), 5, "the truncates in the WAL");

    // From the old checkpoint: all three truncates are replayed from the WAL, in order.
    copy_dir(saved.path(), &f.index_dir());
    let p = f.start().await;
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot(), "replayed from the WAL").await;
    stop(p).await;

    // And once more from the checkpoint that replay wrote, with nothing new.
    let p = f.start().await;
    assert_matches_sql(&client, &p.snapshot(), "checkpoint alone").await;
    stop(p).await;
}
