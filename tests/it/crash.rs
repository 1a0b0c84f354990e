//! Crash test of the real binary: `pgroar run` is SIGKILLed at random moments while a random
//! workload (inserts, updates that flip the join filter, deletes and re-inserts, transactions
//! from one row to ~5k rows) keeps committing. Small WAL segments and a checkpoint every second
//! make the WAL rotate and lose its oldest segments behind checkpoints during the run, so kills
//! also land after (and while) segments are deleted; the test checks that this happened. After
//! every kill the slot's `confirmed_flush_lsn` must not be ahead of the durable LSN of the WAL
//! left on disk; after the last restart catches up, every filter value answers exactly the ids
//! SQL says, and SIGTERM exits 0.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::cluster::TestDb;
use pgroar::wal::Wal;
use tempfile::TempDir;
use tokio_postgres::Client;

/// How many times the child is SIGKILLed.
const KILLS: usize = 24;
/// Image ids live in `1..=IDS`.
const IDS: u32 = 6000;
/// How long any wait for the child may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);
/// WAL segment size: small enough that the workload fills dozens of segments.
const SEGMENT_BYTES: u64 = 128 << 10;

const SCHEMA: &str = r#"
CREATE TYPE image_type AS ENUM ('image', 'video', 'audio');
CREATE TABLE "Image" (
    id int PRIMARY KEY, "nsfwLevel" int, type image_type, flags int NOT NULL DEFAULT 0,
    "postId" int);
CREATE TABLE "TagsOnImage" (
    "imageId" int REFERENCES "Image"(id) ON DELETE CASCADE, "tagId" int,
    attributes int NOT NULL DEFAULT 0, PRIMARY KEY ("imageId", "tagId"));
CREATE TABLE "Post" (id int PRIMARY KEY, "publishedAt" timestamptz);
ALTER TABLE "Image" REPLICA IDENTITY FULL;
ALTER TABLE "TagsOnImage" REPLICA IDENTITY FULL;
ALTER TABLE "Post" REPLICA IDENTITY FULL;
CREATE PUBLICATION pgroar_crash FOR TABLE "Image", "TagsOnImage", "Post";
"#;

/// A small deterministic generator (xorshift64*), seeded per run and printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn config_text(url: &str, slot: &str, dir: &Path, port: u16) -> String {
    format!(
        r#"
[postgres]
url = "{url}"
publication = "pgroar_crash"
slot = "{slot}"
[storage]
data_dir = "{dir}"
[http]
listen = "127.0.0.1:{port}"
[wal]
segment_bytes = {SEGMENT_BYTES}
[index]
filters = [
  {{ name = "nsfwLevel", kind = "single" }}, {{ name = "type", kind = "single" }},
  {{ name = "hasMeta", kind = "bool" }}, {{ name = "postId", kind = "single" }},
  {{ name = "tagIds", kind = "multi" }},
]
sorts = [ {{ name = "publishedAt", bits = 32 }} ]
checkpoint_interval_secs = 1
[[sources]]
table = "Image"
sets_alive = true
on_delete = "delete_slot"
track_fields = [
  "nsfwLevel", "{{type}}::text as type",
  "({{flags}} & (1 << 13)) != 0 AND ({{flags}} & (1 << 2)) = 0 as hasMeta", "postId",
]
[[sources]]
table = "TagsOnImage"
slot_field = "imageId"
field = "tagIds"
value_field = "tagId"
filter = "({{attributes}} >> 10) & 1 = 0"
[[sources]]
table = "Post"
query = "postId eq {{id}}"
track_fields = ["extract(epoch from {{publishedAt}})::bigint as publishedAt"]
"#,
        dir = dir.display(),
    )
}

/// Inserts images `from..=to` (existing ids are left alone) with one to three tags each.
fn insert_sql(from: u64, to: u64, salt: u64) -> String {
    format!(
        r#"INSERT INTO "Image"(id, "nsfwLevel", type, flags, "postId")
             SELECT i, (ARRAY[1,2,4,8,16])[1 + (i + {salt}) % 5],
                    (ARRAY['image','video','audio']::image_type[])[1 + (i + {salt}) % 3],
                    ((i + {salt}) * 2731) % 65536,
                    CASE WHEN i % 9 = 0 THEN NULL ELSE 1 + (i + {salt}) % 10 END
             FROM generate_series({from}, {to}) i ON CONFLICT (id) DO NOTHING;
           INSERT INTO "TagsOnImage"
             SELECT i, 1 + (i * t + {salt}) % 20, CASE WHEN (i + t + {salt}) % 5 = 0 THEN 1024 ELSE 0 END
             FROM generate_series({from}, {to}) i, generate_series(1, 1 + i % 3) t
             ON CONFLICT DO NOTHING;"#
    )
}

/// One random statement over ids `a..=b`.
fn statement(rng: &mut Rng, a: u64, b: u64) -> String {
    let m = rng.range(1, 7);
    let r = rng.range(0, m - 1);
    let salt = rng.range(0, 1000);
    let range = format!("id BETWEEN {a} AND {b} AND id % {m} = {r}");
    let tag_range = format!(r#""imageId" BETWEEN {a} AND {b} AND "imageId" % {m} = {r}"#);
    match rng.range(0, 9) {
        0 => insert_sql(a, b, salt),
        1 => {
            let v = ["1", "2", "4", "8", "16", "32", "NULL"][rng.range(0, 6) as usize];
            format!(r#"UPDATE "Image" SET "nsfwLevel" = {v} WHERE {range}"#)
        }
        2 => {
            let v = ["'image'", "'video'", "'audio'", "NULL"][rng.range(0, 3) as usize];
            format!(r#"UPDATE "Image" SET type = {v} WHERE {range}"#)
        }
        3 => {
            let bit = [8192, 4][rng.range(0, 1) as usize];
            format!(r#"UPDATE "Image" SET flags = flags # {bit} WHERE {range}"#)
        }
        // The join filter's outcome flips.
        4 => {
            format!(r#"UPDATE "TagsOnImage" SET attributes = attributes # 1024 WHERE {tag_range}"#)
        }
        5 => format!(r#"DELETE FROM "Image" WHERE {range}"#),
        // Delete and re-insert in the same transaction.
        6 => format!(
            r#"DELETE FROM "Image" WHERE {range}; {}"#,
            insert_sql(a, b, salt)
        ),
        7 => format!(
            r#"UPDATE "Image" SET "postId" = {} WHERE {range};
               UPDATE "Post" SET "publishedAt" = timestamptz '2024-01-01 00:00:00+00' + {salt} * interval '1 hour'
                 WHERE id = {}"#,
            rng.range(1, 10),
            rng.range(1, 10)
        ),
        8 => format!(
            r#"DELETE FROM "TagsOnImage" WHERE {tag_range} AND "tagId" % 3 = {}"#,
            salt % 3
        ),
        _ => format!(
            r#"INSERT INTO "TagsOnImage" SELECT id, 1 + ({salt} + id) % 20, 0 FROM "Image" WHERE {range}
               ON CONFLICT ("imageId", "tagId") DO UPDATE SET attributes = 0"#
        ),
    }
}

/// Commits random transactions until `stop`; returns how many committed.
async fn workload(client: Client, seed: u64, stop: Arc<AtomicBool>, rows: Arc<AtomicU64>) -> u64 {
    let mut rng = Rng(seed | 1);
    let mut txns = 0;
    while !stop.load(Ordering::Relaxed) {
        let big = rng.range(0, 19) == 0;
        let mut sql = String::from("BEGIN;\n");
        let statements = if big { 1 } else { rng.range(1, 4) };
        for _ in 0..statements {
            let width = if big {
                5000
            } else {
                [0, 3, 40, 300][rng.range(0, 3) as usize]
            };
            let a = rng.range(1, IDS.saturating_sub(width as u32) as u64);
            let b = a + width;
            sql.push_str(&statement(&mut rng, a, b));
            sql.push_str(";\n");
            rows.fetch_add(width + 1, Ordering::Relaxed);
        }
        sql.push_str("COMMIT;");
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        txns += 1;
        tokio::time::sleep(Duration::from_millis(rng.range(2, 25))).await;
    }
    txns
}

/// A blocking HTTP call on the blocking pool; `None` when the server cannot be reached.
async fn http(url: String, body: Option<serde_json::Value>) -> Option<(u16, serde_json::Value)> {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = match body {
            Some(b) => agent.post(&url).send_json(&b),
            None => agent.get(&url).call(),
        }
        .ok()?;
        let code = response.status().as_u16();
        let text = response.body_mut().read_to_string().ok()?;
        Some((
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        ))
    })
    .await
    .unwrap()
}

/// The running child; killed and reaped if the test panics, so no process outlives it.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

struct Runner {
    config: PathBuf,
    log: PathBuf,
    base: String,
}

impl Runner {
    /// Starts `pgroar <command> --config …`.
    fn spawn(&self, command: &str) -> Guard {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_pgroar"))
            .arg(command)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map(Guard)
            .unwrap()
    }

    /// The last lines of the child's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn wait_ready(&self, child: &mut Guard) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(exit) = child.0.try_wait().unwrap() {
                panic!("exited early: {exit:?}\n{}", self.log_tail());
            }
            if let Some((200, _)) = http(format!("{}/readyz", self.base), None).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never ready:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    async fn status(&self) -> serde_json::Value {
        let (code, status) = http(format!("{}/status", self.base), None)
            .await
            .expect("status answers");
        assert_eq!(code, 200, "{status}");
        status
    }
}

async fn lsn_of(client: &Client, sql: &str) -> Option<Lsn> {
    let row = client.query_one(sql, &[]).await.unwrap();
    row.get::<_, Option<String>>(0).map(|s| s.parse().unwrap())
}

async fn slot_confirmed(client: &Client, slot: &str) -> Option<Lsn> {
    let row = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    row.get::<_, Option<String>>(0).map(|s| s.parse().unwrap())
}

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
    let confirmed = slot_confirmed(client, slot).await.expect("the slot exists");
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

/// SQL's answer to `field eq value` over the images table.
async fn sql_ids(client: &Client, cond: &str) -> Vec<u32> {
    client
        .query(
            &format!(r#"SELECT i.id FROM "Image" i WHERE {cond} ORDER BY 1"#),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i32>(0) as u32)
        .collect()
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let runner = Runner {
        config: dir.path().join("pgroar.toml"),
        log: dir.path().join("pgroar.log"),
        base: format!("http://127.0.0.1:{port}"),
    };
    std::fs::write(&runner.config, config_text(&db.url(), &slot, &data, port)).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);

    // The slot is created by the first start; everything after it is streamed.
    let mut child = runner.spawn("run");
    runner.wait_ready(&mut child).await;
    client
        .batch_execute(
            r#"INSERT INTO "Post" SELECT p, timestamptz '2024-03-01 00:00:00+00' + p * interval '1 day'
               FROM generate_series(1, 10) p"#,
        )
        .await
        .unwrap();
    for from in (1..=IDS as u64).step_by(1500) {
        client
            .batch_execute(&insert_sql(from, from + 1499, 0))
            .await
            .unwrap();
    }

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
        child = runner.spawn("run");
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
    let target = lsn_of(&client, "SELECT pg_current_wal_lsn()::text")
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = runner.status().await;
        let applied: Lsn = status["lsn"]["applied"]
            .as_str()
            .unwrap_or_else(|| panic!("{status}"))
            .parse()
            .unwrap();
        if applied >= target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "applied {applied} never reached {target}: {status}\n{}",
            runner.log_tail()
        );
        client
            .execute(
                "SELECT pg_logical_emit_message(false, 'pgroar-test', '')",
                &[],
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let query = |filter: Option<String>| {
        let url = format!("{}/query", runner.base);
        async move {
            let (code, answer) = http(
                url,
                Some(serde_json::json!({"filter": filter, "limit": 1_000_000})),
            )
            .await
            .expect("query answers");
            assert_eq!(code, 200, "{filter:?}: {answer}");
            answer
        }
    };
    let count: i64 = client
        .query_one(r#"SELECT count(*) FROM "Image""#, &[])
        .await
        .unwrap()
        .get(0);
    let all = query(None).await;
    assert_eq!(all["total"], count, "live images");

    let mut checks: Vec<(String, String)> = Vec::new();
    for v in ["1", "2", "4", "8", "16", "32"] {
        checks.push((
            format!("nsfwLevel eq {v}"),
            format!(r#"i."nsfwLevel" = {v}"#),
        ));
    }
    checks.push((
        "nsfwLevel eq null".into(),
        r#"i."nsfwLevel" IS NULL"#.into(),
    ));
    for v in ["image", "video", "audio"] {
        checks.push((format!("type eq '{v}'"), format!("i.type = '{v}'")));
    }
    checks.push(("type eq null".into(), "i.type IS NULL".into()));
    let has_meta = "((i.flags & (1 << 13)) != 0 AND (i.flags & (1 << 2)) = 0)";
    checks.push(("hasMeta eq true".into(), has_meta.into()));
    checks.push(("hasMeta eq false".into(), format!("NOT {has_meta}")));
    for v in 1..=10 {
        checks.push((format!("postId eq {v}"), format!(r#"i."postId" = {v}"#)));
    }
    checks.push(("postId eq null".into(), r#"i."postId" IS NULL"#.into()));
    for v in 1..=20 {
        checks.push((
            format!("tagIds eq {v}"),
            format!(
                r#"EXISTS (SELECT 1 FROM "TagsOnImage" t WHERE t."imageId" = i.id AND t."tagId" = {v}
                   AND (t.attributes >> 10) & 1 = 0)"#
            ),
        ));
    }
    for (filter, cond) in &checks {
        let want = sql_ids(&client, cond).await;
        let answer = query(Some(filter.clone())).await;
        let got: Vec<u32> = serde_json::from_value(answer["ids"].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{filter}: seed {seed}");
        assert_eq!(got, want, "{filter}: seed {seed}");
        assert_eq!(answer["total"], want.len(), "{filter}");
    }

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
