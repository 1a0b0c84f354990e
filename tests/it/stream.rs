//! The streaming pipeline against a real Postgres: replication stream → WAL → apply loop →
//! index, checked against SQL ground truth; restarts, reconnects, idle slots, a 200k-row
//! transaction, and the start-up checks that refuse to lose data silently.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgroar::cluster::TestDb;
use pgroar::config::Config;
use pgroar::index::{MAX_LIMIT, Order, Query, Snapshot, Sort};
use pgroar::pipeline::checkpoint::covered_lsn;
use pgroar::pipeline::{Pipeline, PipelineError, PipelineOptions};
use pgroar::source::SourceError;
use pgroar::status::Counter;
use pgroar::translate::Translator;
use pgroar::wal::{WalEntry, WalReader};
use pgroar::{Lsn, WalKey};
use tempfile::TempDir;
use tokio_postgres::Client;

use super::support::follow::{current_lsn, wait_caught_up, wait_streaming};

mod binary;
mod checkpoints;
mod served;
mod tls;
mod values;

const PUBLICATION: &str = "pgroar_stream";
/// How long any wait for the pipeline may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

const SCHEMA: &str = "
CREATE TABLE items (id int PRIMARY KEY, a int, b int, s int NOT NULL);
CREATE TABLE other (id serial PRIMARY KEY, v text);
CREATE PUBLICATION pgroar_stream FOR TABLE items;
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
        Config::from_toml_str(&self.config_text("127.0.0.1:0"), std::iter::empty())
            .expect("test config")
    }

    fn config_text(&self, listen: &str) -> String {
        format!(
            r#"
[postgres]
url = "{url}"
publication = "{PUBLICATION}"
slot = "{slot}"
[storage]
data_dir = "{dir}"
[http]
listen = "{listen}"
[index]
filters = [{{ name = "a", kind = "single" }}, {{ name = "b", kind = "single" }}]
sorts = [{{ name = "s", bits = 32 }}]
checkpoint_interval_secs = 3600
[[sources]]
table = "items"
track_fields = ["a", "b", "s"]
sets_alive = true
on_delete = true
"#,
            url = self.db.url(),
            slot = self.slot,
            dir = self.dir.path().display(),
        )
    }

    async fn start(&self) -> Pipeline {
        self.start_with(|_| {}).await
    }

    async fn start_with(&self, tune: impl FnOnce(&mut PipelineOptions)) -> Pipeline {
        self.start_config(self.config(), tune).await
    }

    /// Starts a pipeline on `config` (this fixture's, edited) with the test timings.
    async fn start_config(
        &self,
        config: Config,
        tune: impl FnOnce(&mut PipelineOptions),
    ) -> Pipeline {
        let translator = Translator::new(&config).expect("translator");
        let mut options = PipelineOptions::from_config(&config);
        options.source.status_interval = Duration::from_millis(200);
        options.source.keepalive_mark_interval = Duration::from_millis(200);
        options.source.backoff_initial = Duration::from_millis(50);
        options.source.backoff_max = Duration::from_secs(1);
        tune(&mut options);
        Pipeline::start(config, translator, options)
            .await
            .expect("pipeline starts")
    }

    async fn client(&self) -> Client {
        self.db.client().await.expect("client")
    }

    fn wal_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("wal")
    }
}

/// The index answers every filter on `a` and `b` (nulls included), the live count and the top
/// of the `s` order exactly as SQL does.
async fn assert_matches_sql(client: &Client, snap: &Snapshot) {
    let count: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(snap.alive_count(), count as u64, "live rows");
    for (field, values) in [("a", 0..8), ("b", 0..6)] {
        for v in values.map(Some).chain([None]) {
            let cond = v.map_or("IS NULL".to_owned(), |v| format!("= {v}"));
            let want: Vec<u32> = client
                .query(
                    &format!("SELECT id FROM items WHERE {field} {cond} ORDER BY id"),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i32>(0) as u32)
                .collect();
            let literal = v.map_or("null".to_owned(), |v| v.to_string());
            let got = snap
                .query(&Query {
                    filter: Some(format!("{field} eq {literal}")),
                    limit: MAX_LIMIT,
                    ..Query::default()
                })
                .unwrap();
            assert_eq!(got.ids, want, "{field} eq {literal}");
        }
    }
    let want: Vec<u32> = client
        .query("SELECT id FROM items ORDER BY s DESC LIMIT 100", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i32>(0) as u32)
        .collect();
    let got = snap
        .query(&Query {
            sort: Some(Sort {
                field: "s".into(),
                order: Order::Desc,
            }),
            limit: 100,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(got.ids, want, "top 100 by s");
}

/// Inserts ids `from..=to` (a = id % 7, b = id % 5 or NULL, s unique per id).
fn insert_sql(from: i32, to: i32) -> String {
    format!(
        "INSERT INTO items SELECT i, i % 7, CASE WHEN i % 11 = 0 THEN NULL ELSE i % 5 END, i * 1000 \
         FROM generate_series({from}, {to}) i"
    )
}

/// Several transactions of every kind; ids in `from..=to` are inserted once each.
async fn mixed_workload(client: &Client, from: i32, to: i32) {
    client.batch_execute(&insert_sql(from, to)).await.unwrap();
    client
        .batch_execute(&format!(
            "BEGIN;
             UPDATE items SET a = (a + 1) % 7 WHERE id BETWEEN {from} AND {to} AND id % 3 = 0;
             UPDATE items SET b = NULL WHERE id BETWEEN {from} AND {to} AND id % 13 = 0;
             COMMIT;
             UPDATE items SET s = s + 1 WHERE id BETWEEN {from} AND {to} AND id % 4 = 0;
             UPDATE items SET b = (coalesce(b, 0) + 2) % 5, a = 7 WHERE id BETWEEN {from} AND {to} AND id % 17 = 0;
             DELETE FROM items WHERE id BETWEEN {from} AND {to} AND id % 10 = 0;"
        ))
        .await
        .unwrap();
    // Many small transactions: several per group commit.
    for id in (from..=to).step_by(41) {
        client
            .execute(
                "UPDATE items SET a = (coalesce(a, 0) + 3) % 7, s = s + 2 WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_inserts_updates_deletes_to_sql_ground_truth() {
    let f = Fixture::new("stream_basic");
    let client = f.client().await;
    let p = f.start().await;
    wait_streaming(&p).await;
    mixed_workload(&client, 1, 3000).await;
    // A deleted id comes back with new values: it inherits nothing.
    client
        .batch_execute(
            "INSERT INTO items VALUES (10, 2, 3, 77), (20, NULL, NULL, 78);
             BEGIN; DELETE FROM items WHERE id = 30; INSERT INTO items VALUES (30, 5, 1, 79); COMMIT;",
        )
        .await
        .unwrap();
    let target = wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot()).await;
    let status = p.status().clone();
    assert!(status.durable() >= target && status.received() >= target);
    let transactions = status.count(Counter::Transactions);
    assert!(transactions > 70, "{transactions}");
    assert!(status.count(Counter::OpsApplied) > 3000);
    let summary = p.join_after_stop().await;
    assert!(summary.durable >= target);
    assert_eq!(summary.checkpointed, summary.applied);
    // The slot was told everything durable, and nothing more: everything before
    // `durable + 1` (the WAL holds what committed at or before `durable`).
    let confirmed = slot_confirmed(&client, &f.slot).await;
    assert!(
        confirmed >= target && confirmed.0 <= summary.durable.0 + 1,
        "{confirmed} {}",
        summary.durable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200k_row_transaction_streams_through() {
    let f = Fixture::new("stream_big");
    let client = f.client().await;
    let p = f.start().await;
    wait_streaming(&p).await;
    client.batch_execute(&insert_sql(1, 200_000)).await.unwrap();
    client
        .batch_execute(
            "UPDATE items SET a = 6, b = NULL WHERE id % 1000 = 1; DELETE FROM items WHERE id % 997 = 0",
        )
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot()).await;
    p.join_after_stop().await;
    // The transaction is one Begin…Commit in the WAL, 200k records long.
    let mut reader = WalReader::open(f.wal_dir(), WalKey::ZERO).unwrap();
    let end = pgroar::wal::Wal::inspect(f.wal_dir()).unwrap().end;
    let mut per_txn: BTreeMap<Lsn, u64> = BTreeMap::new();
    while let Some(e) = reader.next(end).unwrap() {
        if let WalEntry::Ops { key, .. } = e {
            *per_txn.entry(key.lsn).or_default() += 1;
        }
    }
    assert!(per_txn.values().any(|&n| n == 200_000), "{per_txn:?}");
}

/// A reader polling the served snapshot while single transactions insert, rewrite, and
/// truncate-then-reload 200k rows (each cut into 20 apply batches) sees every transaction whole
/// or not at all: only the states between transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_sees_part_of_a_transaction() {
    const N: u64 = 200_000;
    let f = Fixture::new("stream_whole");
    let client = f.client().await;
    let p = f.start().await;
    wait_streaming(&p).await;
    let published = p.published();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeMap::<(u64, u64, u64), u64>::new();
            // One more look after the stop: the last state was published before it.
            let mut last = false;
            while !last {
                last = stop.load(std::sync::atomic::Ordering::Acquire);
                let snap = published.load_full();
                let count = |f: &str| snap.count(Some(f)).unwrap();
                let state = (snap.alive_count(), count("a eq 1"), count("a eq 2"));
                *seen.entry(state).or_default() += 1;
            }
            seen
        })
    };
    let sql =
        |a: u64| format!("INSERT INTO items SELECT i, {a}, NULL, i FROM generate_series(1, {N}) i");
    client.batch_execute(&sql(0)).await.unwrap();
    wait_caught_up(&p, &client).await;
    client
        .batch_execute("UPDATE items SET a = 1")
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    client
        .batch_execute(&format!("BEGIN; TRUNCATE items; {}; COMMIT", sql(2)))
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let seen = reader.join().unwrap();
    let whole = [(0, 0, 0), (N, 0, 0), (N, N, 0), (N, 0, N)];
    for state in seen.keys() {
        assert!(
            whole.contains(state),
            "a reader saw (live, a = 1, a = 2) = {state:?}, which no committed prefix had: {seen:?}"
        );
    }
    assert!(seen.contains_key(&(N, 0, N)), "{seen:?}");
    p.join_after_stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_without_loss_or_duplicates() {
    let f = Fixture::new("stream_restart");
    let client = f.client().await;

    let p = f.start().await;
    wait_streaming(&p).await;
    mixed_workload(&client, 1, 1000).await;
    wait_caught_up(&p, &client).await;
    let first = p.join_after_stop().await;

    // Written while pgroar is down: the slot keeps it.
    mixed_workload(&client, 1001, 2000).await;

    let p = f.start().await;
    // Starts from the checkpoint, not from scratch.
    assert_eq!(p.status().checkpointed(), covered_lsn(first.checkpointed));
    assert!(p.snapshot().applied() >= first.checkpointed);
    wait_streaming(&p).await;
    mixed_workload(&client, 2001, 3000).await;
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot()).await;
    p.join_after_stop().await;

    // Restart once more with nothing new: the checkpoint alone answers.
    let p = f.start().await;
    assert_matches_sql(&client, &p.snapshot()).await;
    p.join_after_stop().await;

    // No duplicates: every insert is in the WAL exactly once, records in key order.
    let end = pgroar::wal::Wal::inspect(f.wal_dir()).unwrap().end;
    let mut reader = WalReader::open(f.wal_dir(), WalKey::ZERO).unwrap();
    let mut last = WalKey::ZERO;
    while let Some(e) = reader.next(end).unwrap() {
        if let WalEntry::Ops { key, .. } = e {
            assert!(key > last, "{key:?} after {last:?}");
            last = key;
        }
    }
    let creates = wal_creates(&f);
    assert_eq!(creates.len(), 3000);
    assert!(
        creates.values().all(|&n| n == 1),
        "an insert was written twice"
    );
}

/// Every entry of the WAL left in the fixture's data directory, in order.
fn wal_entries(f: &Fixture) -> Vec<WalEntry> {
    let end = pgroar::wal::Wal::inspect(f.wal_dir()).unwrap().end;
    let mut reader = WalReader::open(f.wal_dir(), WalKey::ZERO).unwrap();
    let mut entries = Vec::new();
    while let Some(e) = reader.next(end).unwrap() {
        entries.push(e);
    }
    entries
}

/// Every entity id with a `creates_slot` record in the WAL, with how many there are.
fn wal_creates(f: &Fixture) -> BTreeMap<i64, u32> {
    let end = pgroar::wal::Wal::inspect(f.wal_dir()).unwrap().end;
    let mut reader = WalReader::open(f.wal_dir(), WalKey::ZERO).unwrap();
    let mut creates: BTreeMap<i64, u32> = BTreeMap::new();
    while let Some(e) = reader.next(end).unwrap() {
        if let WalEntry::Ops { ops, .. } = e
            && ops.creates_slot
        {
            *creates.entry(ops.entity_id).or_default() += 1;
        }
    }
    creates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_at_a_commit_skips_the_transaction_postgres_resends() {
    let f = Fixture::new("stream_resend");
    let client = f.client().await;
    // No Mark at idle commits and no keepalive Marks: the durable LSN at the stop is a
    // commit's, and Postgres re-sends the transaction committed exactly there.
    let p = f
        .start_with(|o| {
            o.source.mark_idle_commits = false;
            o.source.keepalive_mark_interval = Duration::from_secs(3600);
        })
        .await;
    wait_streaming(&p).await;
    for id in 1..=50 {
        client.batch_execute(&insert_sql(id, id)).await.unwrap();
    }
    let deadline = Instant::now() + PATIENCE;
    while p.status().count(Counter::Transactions) < 50 {
        assert!(Instant::now() < deadline, "the inserts were not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = p.join_after_stop().await;
    // The WAL ends with that commit, not with a Mark past it.
    let end = pgroar::wal::Wal::inspect(f.wal_dir()).unwrap().end;
    let mut reader = WalReader::open(f.wal_dir(), WalKey::ZERO).unwrap();
    let mut last = None;
    while let Some(e) = reader.next(end).unwrap() {
        last = Some(e);
    }
    assert_eq!(last, Some(WalEntry::Commit { lsn: first.durable }));
    let p = f.start().await;
    wait_streaming(&p).await;
    for id in 51..=60 {
        client.batch_execute(&insert_sql(id, id)).await.unwrap();
    }
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot()).await;
    p.join_after_stop().await;
    let creates = wal_creates(&f);
    assert_eq!(creates.len(), 60);
    assert!(
        creates.values().all(|&n| n == 1),
        "an insert was written twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_commit_marks_the_last_commits_end() {
    let f = Fixture::new("stream_commit_end");
    let client = f.client().await;
    // No keepalive Marks: every Mark is a commit end.
    let p = f
        .start_with(|o| {
            o.source.keepalive_mark_interval = Duration::from_secs(3600);
            // Only the idle trigger may sync: a time-triggered sync writes no commit-end Mark.
            o.source.group_commit_max_delay = Duration::from_secs(3600);
        })
        .await;
    wait_streaming(&p).await;
    // One transaction at a time, each made durable before the next: every group commit is idle.
    // (Received is not enough: the next insert could then join the same group commit.)
    for id in 1..=5 {
        let before = p.status().durable();
        client.batch_execute(&insert_sql(id, id)).await.unwrap();
        let deadline = Instant::now() + PATIENCE;
        while p.status().durable() == before {
            assert!(
                Instant::now() < deadline,
                "transaction {id} not made durable"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    p.join_after_stop().await;
    let end = pgroar::wal::Wal::inspect(f.wal_dir()).unwrap().end;
    let mut reader = WalReader::open(f.wal_dir(), WalKey::ZERO).unwrap();
    let mut entries = Vec::new();
    while let Some(e) = reader.next(end).unwrap() {
        entries.push(e);
    }
    let pairs: Vec<(Lsn, Lsn)> = entries
        .windows(2)
        .filter_map(|w| match (&w[0], &w[1]) {
            (WalEntry::Commit { lsn: c }, WalEntry::Mark { lsn: m }) => Some((*c, *m)),
            _ => None,
        })
        .collect();
    assert_eq!(pairs.len(), 5, "{entries:?}");
    // The mark is inside the commit record: above its start, below anything committed later.
    for (c, m) in pairs {
        assert!(m > c && m.0 < c.0 + 1024, "{c} {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_walsender_is_killed() {
    let f = Fixture::new("stream_reconnect");
    let client = f.client().await;
    let p = f.start().await;
    wait_streaming(&p).await;
    for round in 0..3 {
        let base = round * 500;
        mixed_workload(&client, base + 1, base + 500).await;
        client
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&f.slot],
            )
            .await
            .unwrap();
    }
    mixed_workload(&client, 1501, 2000).await;
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot()).await;
    assert!(
        p.status().count(Counter::Reconnects) >= 1,
        "no reconnect counted"
    );
    p.join_after_stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_publication_does_not_pin_the_servers_wal() {
    let f = Fixture::new("stream_idle");
    let client = f.client().await;
    let p = f.start().await;
    wait_streaming(&p).await;
    let before = slot_confirmed(&client, &f.slot).await;
    // Only tables outside the publication are written.
    for _ in 0..20 {
        client
            .execute(
                "INSERT INTO other (v) SELECT md5(i::text) FROM generate_series(1, 500) i",
                &[],
            )
            .await
            .unwrap();
    }
    let target = current_lsn(&client).await;
    assert!(target > before);
    // Everything before `target` gets confirmed: keepalive positions are marked one byte below
    // the server's (a transaction may still commit exactly there), so `target - 1` is enough.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let confirmed = slot_confirmed(&client, &f.slot).await;
        if confirmed.0 + 1 >= target.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot stayed at {confirmed} (target {target}, started at {before})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing was applied but the position; the index is still empty.
    tokio::time::timeout(PATIENCE, p.applied().wait_for(|k| k.covers(target)))
        .await
        .expect("applied reaches the acknowledged position")
        .unwrap();
    assert_eq!(p.snapshot().alive_count(), 0);
    let summary = p.join_after_stop().await;
    assert!(summary.durable.0 + 1 >= target.0, "{}", summary.durable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_ahead_of_the_wal_is_refused_with_the_rebootstrap_advice() {
    let f = Fixture::new("stream_ahead");
    let client = f.client().await;
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&f.slot],
        )
        .await
        .unwrap();
    client.batch_execute(&insert_sql(1, 10)).await.unwrap();
    client
        .execute(
            "SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())",
            &[&f.slot],
        )
        .await
        .unwrap();
    let confirmed = slot_confirmed(&client, &f.slot).await;
    // A fresh data directory holds nothing: the slot's changes up to `confirmed` are lost to it.
    let p = f.start().await;
    let err = tokio::time::timeout(PATIENCE, p.join())
        .await
        .expect("the pipeline stops by itself")
        .expect_err("a slot ahead of the WAL is an error");
    match &err {
        PipelineError::Source(SourceError::SlotAhead {
            confirmed: c,
            durable,
            ..
        }) => {
            assert_eq!((*c, *durable), (confirmed, Lsn::ZERO));
        }
        other => panic!("unexpected error: {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("re-bootstrapped"), "{text}");
    assert!(text.contains(&confirmed.to_string()), "{text}");
    assert!(text.contains("pg_drop_replication_slot"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_created_just_before_a_crash_is_adopted() {
    let f = Fixture::new("stream_adopt");
    let client = f.client().await;
    // What a crash right after CREATE_REPLICATION_SLOT leaves: the intent file, the slot, an
    // empty WAL.
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&f.slot],
        )
        .await
        .unwrap();
    let consistent = slot_confirmed(&client, &f.slot).await;
    let intent = f.dir.path().join(pgroar::source::slot::CREATING_SLOT_FILE);
    std::fs::write(&intent, &f.slot).unwrap();
    client.batch_execute(&insert_sql(1, 20)).await.unwrap();

    let p = f.start().await;
    wait_streaming(&p).await;
    client.batch_execute(&insert_sql(21, 30)).await.unwrap();
    wait_caught_up(&p, &client).await;
    // Everything committed after the consistent point is in; the intent is gone.
    assert_eq!(p.snapshot().alive_count(), 30);
    assert!(!intent.exists());
    let summary = p.join_after_stop().await;
    assert!(summary.durable > consistent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_tracked_column_stops_the_stream_naming_it() {
    let f = Fixture::new("stream_ddl");
    let client = f.client().await;
    let p = f.start().await;
    wait_streaming(&p).await;
    client.batch_execute(&insert_sql(1, 100)).await.unwrap();
    let before = wait_caught_up(&p, &client).await;
    // An unrelated column may come and go.
    client
        .batch_execute(
            "ALTER TABLE items ADD COLUMN note text; INSERT INTO items VALUES (101, 1, 1, 1, 'x');
             ALTER TABLE items DROP COLUMN note; INSERT INTO items VALUES (102, 1, 1, 2);",
        )
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    assert_eq!(p.snapshot().alive_count(), 102);
    client
        .batch_execute("ALTER TABLE items DROP COLUMN b; INSERT INTO items VALUES (103, 1, 3)")
        .await
        .unwrap();
    let after_103 = current_lsn(&client).await;
    let err = tokio::time::timeout(PATIENCE, p.join())
        .await
        .expect("the pipeline stops by itself")
        .expect_err("a dropped tracked column is an error");
    let text = pgroar::source::error_chain(&err);
    assert!(text.contains("items.b"), "{text}");
    // Nothing of that transaction was written or acknowledged: once the config or the table is
    // fixed, the slot re-sends it.
    let confirmed = slot_confirmed(&client, &f.slot).await;
    assert!(confirmed >= before && confirmed < after_103, "{confirmed}");
    let end = pgroar::wal::Wal::inspect(f.wal_dir()).unwrap().end;
    let mut reader = WalReader::open(f.wal_dir(), WalKey::ZERO).unwrap();
    let mut ids = Vec::new();
    while let Some(e) = reader.next(end).unwrap() {
        if let WalEntry::Ops { ops, .. } = e {
            ids.push(ops.entity_id);
        }
    }
    assert_eq!(ids.len(), 102);
    assert!(!ids.contains(&103));
}

/// `stop` + `join`, expecting success.
trait StopJoin {
    async fn join_after_stop(self) -> pgroar::pipeline::RunSummary;
}

impl StopJoin for Pipeline {
    async fn join_after_stop(self) -> pgroar::pipeline::RunSummary {
        self.stop();
        tokio::time::timeout(PATIENCE, self.join())
            .await
            .expect("the pipeline stops in time")
            .expect("the pipeline stops cleanly")
    }
}

/// A blocking HTTP call on the blocking pool; returns the status code and the JSON body.
async fn http(
    method: &'static str,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = match body {
            Some(b) => agent.post(&url).send_json(&b),
            None => agent.get(&url).call(),
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let code = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    })
    .await
    .unwrap()
}

/// The slot's confirmed flush position (0/0 before it has one).
async fn slot_confirmed(client: &Client, slot: &str) -> Lsn {
    crate::it::support::follow::slot_confirmed(client, slot)
        .await
        .unwrap_or(Lsn::ZERO)
}
