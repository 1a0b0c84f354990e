//! Bootstrap: how long `pgroar bootstrap` takes to dump an Image-like table, a tags join table
//! and a Post-like fan-out table into a checkpointed index, against a raw `COPY … TO STDOUT` of
//! the same tables into `/dev/null` (psql, one table after the other), in the same run.
//!
//! Setup, on a private throwaway cluster: `Image` (N rows, 9 columns), `TagsOnImage` (5 tags per
//! image), `Post` (N/5 rows), a publication over the three, `VACUUM ANALYZE`. Then, alternating,
//! twice: the raw COPY of the whole tables, the raw COPY of only the columns the sources read
//! (what pgroar copies), and the bootstrap (in process: catalog checks, slot and snapshot,
//! parallel COPY, translate, bitmaps, checkpoint fsynced, marker; each run on its own data
//! directory and slot).
//!
//! ```sh
//! cargo bench --bench bootstrap                              # 1M images, 5M tags, 200k posts
//! PGROAR_BOOTSTRAP_IMAGES=100000 cargo bench --bench bootstrap # a quick run
//! ```

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]
// Scenario and case-table functions run long; library code keeps the line limit.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgroar::bootstrap::{self, BootstrapOptions};
use pgroar::cluster::{Cluster, ClusterOptions};
use pgroar::config::Config;
use pgroar::status::Progress;
use tokio_postgres::NoTls;

const TABLES: [(&str, &str); 3] = [
    (
        "Image",
        r#"id, "nsfwLevel", type, "scannedAt", "createdAt", flags, "postId""#,
    ),
    ("TagsOnImage", r#""imageId", "tagId", attributes"#),
    ("Post", r#"id, "publishedAt""#),
];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let images: i64 = std::env::var("PGROAR_BOOTSTRAP_IMAGES")
        .ok()
        .map(|s| s.parse().expect("PGROAR_BOOTSTRAP_IMAGES must be a number"))
        .unwrap_or(1_000_000);
    let cluster = Cluster::start(ClusterOptions::fast()).expect("starting a cluster");
    let db = cluster
        .create_database("boot")
        .expect("creating the database");
    let url = cluster.url(&db);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    });
    let sql = |q: &str| rt.block_on(client.batch_execute(q)).expect(q);
    let t = Instant::now();
    sql(&format!(
        r#"
        CREATE TYPE "ImageType" AS ENUM ('image', 'video', 'audio');
        CREATE TABLE "Image" (
            id integer PRIMARY KEY, "nsfwLevel" integer NOT NULL, type "ImageType" NOT NULL,
            "scannedAt" timestamptz, "createdAt" timestamptz NOT NULL, flags integer NOT NULL,
            "postId" integer, url text NOT NULL, meta text);
        CREATE TABLE "TagsOnImage" ("imageId" integer, "tagId" integer,
            attributes integer NOT NULL DEFAULT 0, PRIMARY KEY ("imageId", "tagId"));
        CREATE TABLE "Post" (id integer PRIMARY KEY, "publishedAt" timestamptz, title text);
        INSERT INTO "Image" SELECT i, (ARRAY[1,2,4,8,16])[1 + i % 5],
            (ARRAY['image','video','audio']::"ImageType"[])[1 + i % 3],
            CASE WHEN i % 7 = 0 THEN NULL ELSE timestamptz '2023-01-01' + i * interval '1 minute' END,
            timestamptz '2023-01-01' + i * interval '1 minute', (i::bigint * 2731 % 65536)::int, 1 + i % {posts},
            'https://images.example/' || md5(i::text), repeat('m', i % 50)
          FROM generate_series(1, {images}) i;
        INSERT INTO "TagsOnImage" SELECT i, (1 + (i::bigint * 7 + t * 104729) % 20000)::int,
            CASE WHEN (i + t) % 50 = 0 THEN 1024 ELSE 0 END
          FROM generate_series(1, {images}) i, generate_series(1, 5) t;
        INSERT INTO "Post" SELECT p, timestamptz '2024-01-01' + p * interval '1 hour', 'post ' || p
          FROM generate_series(1, {posts}) p;
        CREATE PUBLICATION pgroar FOR TABLE "Image", "TagsOnImage", "Post";
        "#,
        posts = images / 5,
    ));
    sql("VACUUM ANALYZE");
    eprintln!("loaded in {:.1?}", t.elapsed());
    let psql = find_psql();
    let work = tempfile::tempdir().unwrap();

    let mut raw_full = Vec::new();
    let mut raw_cols = Vec::new();
    let mut boots = Vec::new();
    for round in 0..2 {
        raw_full.push(raw_copy(&psql, &url, |t, _| {
            format!(r#"COPY "{t}" TO STDOUT"#)
        }));
        raw_cols.push(raw_copy(&psql, &url, |t, cols| {
            format!(r#"COPY (SELECT {cols} FROM "{t}") TO STDOUT"#)
        }));
        let config = config(&url, &work.path().join(format!("data{round}")), round);
        let started = Instant::now();
        let summary = rt
            .block_on(bootstrap::bootstrap(
                &config,
                &BootstrapOptions::default(),
                &Progress::new(),
            ))
            .expect("bootstrap");
        let took = started.elapsed();
        eprintln!(
            "round {round}: raw COPY {:.2?} (columns read: {:.2?}), bootstrap {took:.2?}",
            raw_full[round].0, raw_cols[round].0
        );
        eprintln!("  phases: {:?}", summary.phases);
        for t in &summary.tables {
            eprintln!(
                "  {:<20} {:>9} rows {:>8.1} MiB {:>10.0} rows/s",
                t.table,
                t.rows,
                t.bytes as f64 / 1048576.0,
                t.rows_per_sec
            );
        }
        boots.push((took, summary));
        sql(&format!("SELECT pg_drop_replication_slot('bench_{round}')"));
    }
    println!(
        "bootstrap bench: {images} images, {} tags, {} posts",
        images * 5,
        images / 5
    );
    for round in 0..2 {
        let (full, per_full) = &raw_full[round];
        let (cols, per_cols) = &raw_cols[round];
        let (boot, summary) = &boots[round];
        println!(
            "round {round}: bootstrap {:.2}s | raw COPY whole tables {:.2}s ({}) -> ratio {:.2}x | \
             raw COPY of the columns read {:.2}s ({}) -> ratio {:.2}x | {} rows, {} alive",
            boot.as_secs_f64(),
            full.as_secs_f64(),
            per_table(per_full),
            boot.as_secs_f64() / full.as_secs_f64(),
            cols.as_secs_f64(),
            per_table(per_cols),
            boot.as_secs_f64() / cols.as_secs_f64(),
            summary.rows,
            summary.alive,
        );
        for t in &summary.tables {
            println!(
                "    {}: {} rows at {:.0} rows/s",
                t.table, t.rows, t.rows_per_sec
            );
        }
    }
}

fn per_table(times: &[(String, Duration)]) -> String {
    times
        .iter()
        .map(|(t, d)| format!("{t} {:.2}s", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Times `psql -c <copy>` into /dev/null for each table, one after the other.
fn raw_copy(
    psql: &Path,
    url: &str,
    copy: impl Fn(&str, &str) -> String,
) -> (Duration, Vec<(String, Duration)>) {
    let mut per = Vec::new();
    let all = Instant::now();
    for (table, cols) in TABLES {
        let t = Instant::now();
        let status = Command::new(psql)
            .arg(url)
            .arg("-X")
            .arg("-q")
            .arg("-c")
            .arg(copy(table, cols))
            .stdout(Stdio::from(std::fs::File::create("/dev/null").unwrap()))
            .status()
            .expect("psql runs");
        assert!(status.success());
        per.push((table.to_owned(), t.elapsed()));
    }
    (all.elapsed(), per)
}

fn config(url: &str, dir: &Path, round: usize) -> Config {
    let text = format!(
        r#"
[postgres]
url = "{url}"
publication = "pgroar"
slot = "bench_{round}"
[storage]
data_dir = "{dir}"
[http]
listen = "127.0.0.1:0"
[index]
filters = [
  {{ name = "nsfwLevel", kind = "single" }}, {{ name = "type", kind = "single" }},
  {{ name = "hasMeta", kind = "bool" }}, {{ name = "postId", kind = "single" }},
  {{ name = "tagIds", kind = "multi" }},
]
sorts = [ {{ name = "existedAt", bits = 32 }}, {{ name = "id", bits = 32 }}, {{ name = "publishedAt", bits = 32 }} ]
[[sources]]
table = "Image"
sets_alive = true
on_delete = "delete_slot"
track_fields = [
  "nsfwLevel", "{{type}}::text as type", "id",
  "extract(epoch from GREATEST({{scannedAt}}, {{createdAt}}))::bigint as existedAt",
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
    );
    Config::from_toml_str(&text, std::iter::empty()).expect("bench config")
}

fn find_psql() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut dirs = candidates;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            dirs.push(e.path().join("bin"));
        }
    }
    dirs.into_iter()
        .map(|d| d.join("psql"))
        .find(|p| p.exists())
        .expect("psql on PATH or under /usr/lib/postgresql/*/bin")
}
