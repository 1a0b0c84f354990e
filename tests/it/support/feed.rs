//! A shared Image-feed fixture for tests of the real pipeline: an `Image` table (direct source),
//! a `TagsOnImage` join table with a filter, a `Post` fan-out table; a random workload over
//! them; the config; a runner for the `pgroar` binary; and the SQL ground truth of every
//! filter value the index holds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::index::{MAX_LIMIT, Query, Snapshot};
use tokio_postgres::Client;

/// Image ids live in `1..=IDS` in the workload.
pub const IDS: u32 = 6000;
/// How long any wait for a child may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The tables and the publication `pgroar_feed`.
pub const SCHEMA: &str = r#"
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
CREATE PUBLICATION pgroar_feed FOR TABLE "Image", "TagsOnImage", "Post";
"#;

/// A small deterministic generator (xorshift64*), seeded per run and printed on failure.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The config of the feed: `port` for HTTP, WAL segments of `segment_bytes`, checkpoints
/// every second.
pub fn config_text(url: &str, slot: &str, dir: &Path, port: u16, segment_bytes: u64) -> String {
    format!(
        r#"
[postgres]
url = "{url}"
publication = "pgroar_feed"
slot = "{slot}"
[storage]
data_dir = "{dir}"
[http]
listen = "127.0.0.1:{port}"
[wal]
segment_bytes = {segment_bytes}
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
pub fn insert_sql(from: u64, to: u64, salt: u64) -> String {
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

/// Ten posts and images `1..=images` (with their tags), in batches of 20,000.
pub async fn load_feed(client: &Client, images: u64) {
    client
        .batch_execute(
            r#"INSERT INTO "Post" SELECT p, timestamptz '2024-03-01 00:00:00+00' + p * interval '1 day'
               FROM generate_series(1, 10) p"#,
        )
        .await
        .unwrap();
    for from in (1..=images).step_by(20_000) {
        client
            .batch_execute(&insert_sql(from, (from + 19_999).min(images), 0))
            .await
            .unwrap();
    }
}

/// One random statement over ids `a..=b`.
pub fn statement(rng: &mut Rng, a: u64, b: u64) -> String {
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
pub async fn workload(
    client: Client,
    seed: u64,
    stop: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
) -> u64 {
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
pub async fn http(
    url: String,
    body: Option<serde_json::Value>,
) -> Option<(u16, serde_json::Value)> {
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
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub struct Runner {
    pub config: PathBuf,
    pub log: PathBuf,
    pub base: String,
    /// Extra environment of the child (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
}

impl Runner {
    /// A runner whose config and log live in `dir`, serving on a free port of 127.0.0.1;
    /// returns it with the port.
    pub fn in_dir(dir: &Path) -> (Runner, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let runner = Runner {
            config: dir.join("pgroar.toml"),
            log: dir.join("pgroar.log"),
            base: format!("http://127.0.0.1:{port}"),
            env: Vec::new(),
        };
        (runner, port)
    }

    pub fn spawn(&self, command: &[&str]) -> Guard {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_pgroar"))
            .args(command)
            .arg("--config")
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("PGROAR_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map(Guard)
            .unwrap()
    }

    /// The last lines of the child's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub async fn wait_ready(&self, child: &mut Guard) {
        self.wait_ok(child, "/readyz", None).await;
    }

    /// Waits until `path` (GET, or POST of `body`) answers 200 while the child runs.
    pub async fn wait_ok(&self, child: &mut Guard, path: &str, body: Option<serde_json::Value>) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(exit) = child.0.try_wait().unwrap() {
                panic!("exited early: {exit:?}\n{}", self.log_tail());
            }
            if let Some((200, _)) = http(format!("{}{path}", self.base), body.clone()).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never answered 200:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn status(&self) -> serde_json::Value {
        let (code, status) = http(format!("{}/status", self.base), None)
            .await
            .expect("status answers");
        assert_eq!(code, 200, "{status}");
        status
    }

    /// Waits until the served index has applied everything written so far (`lsn.applied` in
    /// `/status`); returns the position waited for. A tiny logical message gives the walsender
    /// something past the target to report on a quiet database.
    pub async fn wait_caught_up(&self, client: &Client) -> Lsn {
        let target = super::follow::current_lsn(client).await;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.status().await;
            let applied: Lsn = status["lsn"]["applied"]
                .as_str()
                .unwrap_or_else(|| panic!("{status}"))
                .parse()
                .unwrap();
            if applied >= target {
                return target;
            }
            assert!(
                Instant::now() < deadline,
                "applied {applied} never reached {target}: {status}\n{}",
                self.log_tail()
            );
            super::follow::nudge(client).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// SQL's answer to `field eq value` over the images table.
pub async fn sql_ids(client: &Client, cond: &str) -> Vec<u32> {
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

/// Every filter value of the feed's index, with the SQL condition over `"Image" i` that
/// selects the same images.
pub fn checks() -> Vec<(String, String)> {
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
    checks
}

/// Asserts that `snap` answers every filter value and the live count exactly as SQL does over
/// the same tables.
pub async fn assert_snapshot_matches(client: &Client, snap: &Snapshot, context: &str) {
    let count: i64 = client
        .query_one(r#"SELECT count(*) FROM "Image""#, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(snap.alive_count(), count as u64, "live images ({context})");
    for (filter, cond) in checks() {
        let want = sql_ids(client, &cond).await;
        let got = snap
            .query(&Query {
                filter: Some(filter.clone()),
                limit: MAX_LIMIT,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(got.ids.len(), want.len(), "{filter} ({context})");
        assert_eq!(got.ids, want, "{filter} ({context})");
    }
}

/// Asserts that every image of a post carries its post's `publishedAt` (the fan-out source):
/// sorted by it descending, the images of posts come in an order SQL agrees with. Holds for an
/// index just loaded from the tables (the stream's fan-out only follows `Post` changes).
pub async fn assert_published_order(client: &Client, snap: &Snapshot) {
    let rows = client
        .query(
            r#"SELECT i.id, coalesce(GREATEST(extract(epoch from p."publishedAt")::bigint, 0), 0)
               FROM "Image" i JOIN "Post" p ON p.id = i."postId" ORDER BY 1"#,
            &[],
        )
        .await
        .unwrap();
    let epoch: std::collections::BTreeMap<u32, i64> = rows
        .iter()
        .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1)))
        .collect();
    let got = snap
        .query(&Query {
            filter: Some("postId gte 1".into()),
            sort: Some(pgroar::index::Sort {
                field: "publishedAt".into(),
                order: pgroar::index::Order::Desc,
            }),
            limit: MAX_LIMIT,
            ..Query::default()
        })
        .unwrap();
    let mut ids = got.ids.clone();
    ids.sort_unstable();
    assert_eq!(
        ids,
        epoch.keys().copied().collect::<Vec<_>>(),
        "images of posts"
    );
    let values: Vec<i64> = got.ids.iter().map(|id| epoch[id]).collect();
    assert!(
        values.windows(2).all(|w| w[0] >= w[1]),
        "publishedAt order disagrees with SQL: {values:?}"
    );
    assert!(values.iter().any(|&v| v > 0), "no image got a publishedAt");
}

/// Asserts the same through a running server's `POST /query`.
pub async fn assert_server_matches(client: &Client, base: &str, context: &str) {
    let query = |filter: Option<String>| {
        let url = format!("{base}/query");
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
    assert_eq!(query(None).await["total"], count, "live images ({context})");
    for (filter, cond) in checks() {
        let want = sql_ids(client, &cond).await;
        let answer = query(Some(filter.clone())).await;
        let got: Vec<u32> = serde_json::from_value(answer["ids"].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{filter} ({context})");
        assert_eq!(got, want, "{filter} ({context})");
    }
}

/// `pgroar check --config <config>` as a user runs it: whether it succeeded, and what it said.
pub fn check_output(config: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgroar"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// [`check_output`] passes: exit 0 and "the index equals SQL".
pub fn assert_check_passes(config: &std::path::Path) {
    let (ok, text) = check_output(config);
    assert!(ok && text.contains("the index equals SQL at LSN"), "{text}");
}
