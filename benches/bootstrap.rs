//! Bootstrap as a user meets it: the release `pgroar bootstrap` from spawning the process until
//! its first `/query` is answered, against a raw `psql COPY … TO STDOUT > /dev/null` of the same
//! tables — one table after the other, and in parallel over as many sessions as pgroar opens —
//! in the same run, on two schemas:
//!
//! * `image`: `Image` (N rows, 9 columns incl. a URL and a text column the sources do not
//!   read), `TagsOnImage` (5 rows per image, 2% filtered out by the source's filter) and `Post`
//!   (N/5 rows, a fan-out kept as a join);
//! * `feed`: the image-feed dataset of `pgroar generate` (six tables, Zipf-skewed users and
//!   tags, three join tables, two fan-outs, a TOASTed text nobody reads) indexed by
//!   `docs/examples/image-feed.toml`, its `existedAt` written as
//!   `GREATEST(extract(epoch from COALESCE(a, b))::bigint, extract(epoch from b)::bigint)`.
//!
//! Each schema gets its own database on one private throwaway cluster, `VACUUM ANALYZE`d. Then,
//! alternating, `PGROAR_BOOTSTRAP_ROUNDS` times (default 2): sequential raw COPY, parallel raw
//! COPY (every table of at least 1,024 pages split in equal `ctid` ranges, one per session),
//! and `pgroar bootstrap` on a fresh data directory and slot.
//!
//! ```sh
//! cargo bench --bench bootstrap                                   # 1M images, both schemas
//! PGROAR_BOOTSTRAP_IMAGES=100000 cargo bench --bench bootstrap    # a quick run
//! PGROAR_BOOTSTRAP_SCHEMA=feed cargo bench --bench bootstrap      # one schema
//! PGROAR_BENCH_BIN=/path/to/pgroar cargo bench --bench bootstrap  # another build
//! ```

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]
// Scenario and case-table functions run long; library code keeps the line limit.
#![allow(clippy::too_many_lines)]

mod process;
mod schemas;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgroar::cluster::{Cluster, ClusterOptions};
use pgroar::dataset::Identity;
use process::{Pgroar, free_port, pg_program, pgroar_bin};
use tokio_postgres::Client;

/// COPY sessions pgroar opens by default: the number of CPUs, 2 to 8.
fn sessions() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .clamp(2, 8)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Schema {
    Image,
    Feed,
}

impl Schema {
    fn name(self) -> &'static str {
        match self {
            Schema::Image => "image",
            Schema::Feed => "feed",
        }
    }
}

/// One round's figures.
struct Round {
    seq: Duration,
    par: Duration,
    boot: Duration,
    /// From the log: the bootstrap's own seconds and phases.
    summary: String,
    cpu: f64,
    rss: f64,
    threads: String,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let images: u32 = env_num("PGROAR_BOOTSTRAP_IMAGES", 1_000_000);
    let rounds: usize = env_num("PGROAR_BOOTSTRAP_ROUNDS", 2);
    let schemas: Vec<Schema> = match std::env::var("PGROAR_BOOTSTRAP_SCHEMA").as_deref() {
        Ok("image") => vec![Schema::Image],
        Ok("feed") => vec![Schema::Feed],
        Ok("both") | Err(_) => vec![Schema::Image, Schema::Feed],
        Ok(other) => panic!("PGROAR_BOOTSTRAP_SCHEMA is image, feed or both, not {other}"),
    };
    let cluster = Cluster::start(ClusterOptions::fast()).expect("starting a cluster");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let psql = pg_program("psql", Some(cluster.bin_dir()));
    let bin = pgroar_bin();
    let work = tempfile::Builder::new()
        .prefix("pgroar-bootstrap-bench-")
        .tempdir()
        .unwrap();
    let mut report = Vec::new();
    for schema in schemas {
        let db = cluster.create_database(schema.name()).unwrap();
        let url = cluster.url(&db);
        let client = rt.block_on(schemas::connect(&url));
        let t = Instant::now();
        match schema {
            Schema::Image => load_image(&rt, &client, images),
            Schema::Feed => schemas::load_feed(&rt, &url, images, Identity::Default),
        }
        for sql in ["VACUUM ANALYZE", "CHECKPOINT"] {
            rt.block_on(client.batch_execute(sql)).unwrap();
        }
        let tables = rt.block_on(tables(&client));
        eprintln!(
            "{}: loaded in {:.1?}: {}",
            schema.name(),
            t.elapsed(),
            tables
                .iter()
                .map(|(t, rows, pages)| format!("{t} {rows} rows / {pages} pages"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut results = Vec::new();
        for round in 0..rounds {
            let seq = raw_copy(&psql, &url, &tables, 1);
            let par = raw_copy(&psql, &url, &tables, sessions());
            let name = format!("{}{round}", schema.name());
            let port = free_port();
            let data_dir = work.path().join(format!("data-{name}"));
            let config = config_text(schema, &url, &name, &data_dir, port);
            let pgroar = Pgroar::new(work.path(), &name, port, &config);
            let t = Instant::now();
            let mut child = pgroar.spawn(&bin, &["bootstrap"], "info");
            let answer = pgroar.wait_query(&mut child, r#"{"limit": 1}"#);
            let boot = t.elapsed();
            let (cpu, rss) = (
                process::cpu_seconds(child.id()),
                process::peak_rss_mib(child.id()),
            );
            let threads = process::thread_cpu_text(child.id());
            process::stop(child);
            rt.block_on(
                client.batch_execute(&format!("SELECT pg_drop_replication_slot('bench_{name}')")),
            )
            .unwrap();
            let summary = log_summary(&pgroar.log);
            eprintln!(
                "{name}: raw COPY sequential {:.2} s, parallel ×{} {:.2} s; pgroar bootstrap to \
                 the first answer {:.2} s ({} alive), CPU {cpu:.2} s, peak RSS {rss:.0} MiB\n  \
                 {summary}\n  CPU by thread: {threads}",
                seq.as_secs_f64(),
                sessions(),
                par.as_secs_f64(),
                boot.as_secs_f64(),
                answer["total"],
            );
            results.push(Round {
                seq,
                par,
                boot,
                summary,
                cpu,
                rss,
                threads,
            });
        }
        report.push((schema, tables, results));
    }
    print_report(images, &report);
    if std::env::var_os("PGROAR_BENCH_KEEP").is_some() {
        eprintln!("kept {}", work.keep().display());
    }
}

/// A published table: name, rows, pages.
type Table = (String, i64, i64);

fn print_report(images: u32, report: &[(Schema, Vec<Table>, Vec<Round>)]) {
    println!(
        "\nwhole-process bootstrap, {images} images, {} COPY sessions",
        sessions()
    );
    for (schema, tables, rounds) in report {
        let rows: i64 = tables.iter().map(|t| t.1).sum();
        println!(
            "\nschema {}: {rows} rows in {} tables",
            schema.name(),
            tables.len()
        );
        println!(
            "| round | raw COPY sequential | raw COPY parallel | pgroar bootstrap, to first \
             answer | ÷ sequential | ÷ parallel | CPU | peak RSS |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (i, r) in rounds.iter().enumerate() {
            let (s, p, b) = (
                r.seq.as_secs_f64(),
                r.par.as_secs_f64(),
                r.boot.as_secs_f64(),
            );
            println!(
                "| {i} | {s:.2} s | {p:.2} s | {b:.2} s | {:.2}× | {:.2}× | {:.2} s | {:.0} MiB |",
                b / s,
                b / p,
                r.cpu,
                r.rss
            );
        }
        for (i, r) in rounds.iter().enumerate() {
            println!("round {i}: {}", r.summary);
            println!("  CPU by thread: {}", r.threads);
        }
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().map_or(default, |s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

fn load_image(rt: &tokio::runtime::Runtime, client: &Client, images: u32) {
    rt.block_on(client.batch_execute(&format!(
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
        posts = (images / 5).max(1),
    )))
    .unwrap();
}

fn config_text(schema: Schema, url: &str, name: &str, data_dir: &Path, port: u16) -> String {
    let listen = format!("127.0.0.1:{port}");
    match schema {
        Schema::Feed => schemas::feed_config(url, &format!("bench_{name}"), data_dir, port),
        Schema::Image => format!(
            r#"
[postgres]
url = "{url}"
publication = "pgroar"
slot = "bench_{name}"
[storage]
data_dir = "{dir}"
[http]
listen = "{listen}"
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
            dir = data_dir.display(),
        ),
    }
}

/// The published tables with their row and page counts, largest first.
async fn tables(client: &Client) -> Vec<(String, i64, i64)> {
    let rows = client
        .query(
            "SELECT format('%I.%I', p.schemaname, p.tablename), c.reltuples::bigint, \
                    c.relpages::bigint
             FROM pg_publication_tables p
             JOIN pg_class c ON c.oid = format('%I.%I', p.schemaname, p.tablename)::regclass
             WHERE p.pubname = 'pgroar' ORDER BY c.relpages DESC",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0), r.get(2)))
        .collect()
}

/// `psql -c 'COPY … TO STDOUT' > /dev/null` over every table with `sessions` psql processes at
/// a time; with more than one, tables of at least 1,024 pages are split in `sessions` equal
/// `ctid` ranges (largest jobs first).
fn raw_copy(psql: &Path, url: &str, tables: &[(String, i64, i64)], sessions: usize) -> Duration {
    let mut jobs: Vec<(i64, String)> = Vec::new();
    for (table, _, pages) in tables {
        if sessions == 1 || *pages < 1024 {
            jobs.push((*pages, format!("COPY {table} TO STDOUT")));
            continue;
        }
        let per = (pages + sessions as i64 - 1) / sessions as i64;
        for i in 0..sessions as i64 {
            let mut range = format!("ctid >= '({},0)'::tid", i * per);
            if i + 1 < sessions as i64 {
                range += &format!(" AND ctid < '({},0)'::tid", (i + 1) * per);
            }
            jobs.push((
                per,
                format!("COPY (SELECT * FROM {table} WHERE {range}) TO STDOUT"),
            ));
        }
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.0));
    let queue = Mutex::new(jobs.into_iter().map(|(_, sql)| sql).collect::<Vec<_>>());
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..sessions {
            s.spawn(|| {
                while let Some(sql) = {
                    let mut q = queue.lock().unwrap();
                    if q.is_empty() {
                        None
                    } else {
                        Some(q.remove(0))
                    }
                } {
                    let status = Command::new(psql)
                        .arg(url)
                        .args(["-X", "-q", "-c", &sql])
                        .stdout(Stdio::from(std::fs::File::create("/dev/null").unwrap()))
                        .status()
                        .expect("psql runs");
                    assert!(status.success(), "{sql} failed");
                }
            });
        }
    });
    t.elapsed()
}

/// The bootstrap's own report from its log: seconds, phases and tables.
fn log_summary(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let pick = |needle: &str, key: &str| {
        text.lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| {
                l.split_once(key)
                    .map(|(_, v)| v.split_whitespace().next().unwrap_or("").to_owned())
            })
            .next_back()
            .unwrap_or_default()
    };
    let phases = text
        .lines()
        .filter(|l| l.contains("bootstrap phases"))
        .filter_map(|l| l.split_once("phases=").map(|(_, v)| v.trim().to_owned()))
        .next_back()
        .unwrap_or_default();
    format!(
        "bootstrap {} s (phases: {phases}); serving: WAL open {} ms, checkpoint load {} ms",
        pick("bootstrap complete", "secs="),
        pick("WAL opened", "wal_open_ms="),
        pick("WAL opened", "checkpoint_load_ms="),
    )
}
